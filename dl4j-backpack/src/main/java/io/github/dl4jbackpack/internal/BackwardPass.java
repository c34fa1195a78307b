package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.Extension;

import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The extensions' results of one backward pass, filled layer by layer as the pass goes down. */
final class BackwardPass {

    private final List<Extension<?>> extensions;
    private final long batchSize;
    private final Map<Class<?>, Map<Integer, Map<String, Object>>> results = new HashMap<>();

    BackwardPass(List<Extension<?>> extensions, long batchSize) {
        this.extensions = extensions;
        this.batchSize = batchSize;
    }

    private boolean complete;

    long batchSize() {
        return batchSize;
    }

    void markComplete() {
        complete = true;
    }

    boolean isComplete() {
        return complete;
    }

    void computeAt(LayerBackprop layer) {
        for (Extension<?> extension : extensions) {
            Map<String, ?> values = extension.compute(layer);
            Map<String, Object> ordered = new LinkedHashMap<>();
            for (String param : layer.parameterNames()) {
                if (values.containsKey(param)) {
                    ordered.put(param, values.get(param));
                }
            }
            if (ordered.size() != values.size()) {
                throw new IllegalStateException(extension.name() + " returned values for " + values.keySet()
                        + " but layer " + layer.layerIndex() + " has parameters " + layer.parameterNames());
            }
            results.computeIfAbsent(extension.getClass(), k -> new HashMap<>())
                    .put(layer.layerIndex(), ordered);
        }
    }

    Quantities finish(double score) {
        return new Quantities(score, batchSize, results);
    }
}
