package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.internal.curvature.CurvaturePass;
import io.github.dl4jbackpack.internal.curvature.CurvatureRequest;
import io.github.dl4jbackpack.internal.curvature.FactorKind;
import io.github.dl4jbackpack.internal.layers.CurvatureSink;
import io.github.dl4jbackpack.internal.layers.RecordedLayer;
import io.github.dl4jbackpack.internal.losses.LossCurvature;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * One extended backward pass: first-order extensions are computed layer by layer as DL4J's pass
 * goes down; what the second-order pass needs is recorded on the way, and that pass runs when
 * DL4J's pass has reached the first layer. Results are collected per extension, layer and
 * parameter.
 */
final class BackwardPass {

    private final List<Extension<?>> firstOrder = new ArrayList<>();
    private final List<Extension<?>> secondOrder = new ArrayList<>();
    private final Set<CurvatureRequest> requests = new LinkedHashSet<>();
    private final long batchSize;
    private final long memoryBudget;
    private final RecordedLayer[] records;
    private final Map<Class<?>, Map<Integer, Map<String, Object>>> results = new HashMap<>();
    private LossCurvature loss;
    private boolean complete;

    BackwardPass(List<Extension<?>> extensions, long batchSize, int layerCount, long memoryBudget) {
        for (Extension<?> e : extensions) {
            if (e.curvatureRequests().isEmpty()) {
                firstOrder.add(e);
            } else {
                secondOrder.add(e);
                requests.addAll(e.curvatureRequests());
            }
        }
        this.batchSize = batchSize;
        this.memoryBudget = memoryBudget;
        this.records = new RecordedLayer[layerCount];
    }

    long batchSize() {
        return batchSize;
    }

    boolean needsFirstOrder() {
        return !firstOrder.isEmpty();
    }

    boolean needsCurvature() {
        return !requests.isEmpty();
    }

    boolean needsResidual() {
        return requests.stream().anyMatch(r -> r.kind().equals(FactorKind.RESIDUAL));
    }

    void setLoss(LossCurvature loss) {
        this.loss = loss;
    }

    void record(RecordedLayer layer) {
        records[layer.index()] = layer;
    }

    boolean isComplete() {
        return complete;
    }

    /** Computes the first-order extensions for one layer with parameters. */
    void computeAt(LayerBackprop layer) {
        for (Extension<?> extension : firstOrder) {
            store(extension, layer);
        }
    }

    /** DL4J's pass has reached the first layer: runs the second-order pass, if any, and its extensions. */
    void complete() {
        if (needsCurvature()) {
            try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                List<RecordedLayer> layers = Arrays.asList(records);
                if (layers.contains(null) || loss == null) {
                    throw new IllegalStateException("the backward pass did not record every layer");
                }
                Map<FactorKind, Map<Integer, CurvatureSink>> curvature =
                        new CurvaturePass(layers, memoryBudget).run(loss, requests);
                for (RecordedLayer r : layers) {
                    if (!r.kind().hasParameters()) {
                        continue;
                    }
                    Map<FactorKind, CurvatureSink> sinks = new HashMap<>();
                    curvature.forEach((kind, byLayer) -> sinks.put(kind, byLayer.get(r.index())));
                    LayerBackprop layer = new LayerBackprop(r, sinks);
                    for (Extension<?> extension : secondOrder) {
                        store(extension, layer);
                    }
                }
            }
        }
        complete = true;
    }

    private void store(Extension<?> extension, LayerBackprop layer) {
        Map<String, ?> values = extension.compute(layer);
        Map<String, Object> ordered = new LinkedHashMap<>();
        for (String param : layer.parameterNames()) {
            Object value = values.get(param);
            if (value != null) {
                // computed in a scratch workspace: the results outlive it
                ordered.put(param, value instanceof INDArray ? ScratchWorkspace.outside((INDArray) value) : value);
            }
        }
        if (ordered.size() != values.size()) {
            throw new IllegalStateException(extension.name() + " returned values for " + values.keySet()
                    + " but layer " + layer.layerIndex() + " has parameters " + layer.parameterNames());
        }
        results.computeIfAbsent(extension.getClass(), k -> new HashMap<>()).put(layer.layerIndex(), ordered);
    }

    Quantities finish(double score) {
        return new Quantities(score, batchSize, results);
    }
}
