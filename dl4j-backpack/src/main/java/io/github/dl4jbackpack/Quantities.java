package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.Extension;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.SortedSet;
import java.util.TreeSet;
import java.util.stream.Collectors;

/**
 * The results of one extended backward pass: for every requested extension, a value per layer
 * (index as in {@code MultiLayerNetwork.getLayers()}) and per DL4J parameter name ({@code "W"},
 * {@code "b"}, ...), plus the pass's score and batch size.
 *
 * <p>Immutable: array values are handed out as copies, so callers may modify what they get.
 * Values follow the scaling of the project's MATH.md (objective: mean loss over the batch) and are
 * shaped like the parameter ({@code paramTable()} shape), with the batch axis first for
 * per-example quantities. All arrays are detached from DL4J workspaces.
 */
public final class Quantities {

    private final double score;
    private final long batchSize;
    private final Map<Class<?>, Map<Integer, Map<String, Object>>> values;

    /**
     * Created by the library at the end of a backward pass.
     *
     * @param score the score DL4J computed for the pass
     * @param batchSize the number of examples N
     * @param values extension class → layer index → parameter name → value (copied)
     */
    public Quantities(double score, long batchSize, Map<Class<?>, Map<Integer, Map<String, Object>>> values) {
        this.score = score;
        this.batchSize = batchSize;
        Map<Class<?>, Map<Integer, Map<String, Object>>> copy = new LinkedHashMap<>();
        values.forEach((ext, byLayer) -> {
            Map<Integer, Map<String, Object>> layers = new HashMap<>();
            byLayer.forEach((layer, params) -> layers.put(layer, Collections.unmodifiableMap(new LinkedHashMap<>(params))));
            copy.put(ext, Collections.unmodifiableMap(layers));
        });
        this.values = Collections.unmodifiableMap(copy);
    }

    /**
     * @return the score of the pass, exactly {@code net.score()} after it: DL4J's mean loss over the
     *     batch, plus any regularisation penalty the configuration adds
     */
    public double score() {
        return score;
    }

    /** @return the number of examples N in the batch */
    public long batchSize() {
        return batchSize;
    }

    /**
     * The value of one extension for one parameter.
     *
     * @param extension the extension's class, e.g. {@code Variance.class}
     * @param layer the layer index as in {@code net.getLayers()}
     * @param param the DL4J parameter name, e.g. {@code "W"} or {@code "b"}
     * @param <T> the extension's value type
     * @return the value (arrays as a fresh copy)
     * @throws IllegalArgumentException if the extension was not computed in this pass, or the layer
     *     or parameter has no value
     */
    public <T> T get(Class<? extends Extension<T>> extension, int layer, String param) {
        Map<String, Object> params = layerValues(extension, layer);
        Object value = params.get(param);
        if (value == null) {
            throw new IllegalArgumentException(extension.getSimpleName() + ": layer " + layer + " has no parameter '"
                    + param + "'; its parameters are " + params.keySet());
        }
        return copyOf(value);
    }

    /**
     * The values of one extension for all parameters of one layer.
     *
     * @param extension the extension's class
     * @param layer the layer index
     * @param <T> the extension's value type
     * @return parameter name → value (arrays as fresh copies), in the layer's parameter order
     * @throws IllegalArgumentException if the extension was not computed or the layer has no values
     */
    public <T> Map<String, T> get(Class<? extends Extension<T>> extension, int layer) {
        Map<String, T> out = new LinkedHashMap<>();
        layerValues(extension, layer).forEach((param, value) -> out.put(param, copyOf(value)));
        return out;
    }

    /**
     * @param extension an extension class
     * @return whether this pass computed it
     */
    public boolean contains(Class<? extends Extension<?>> extension) {
        return values.containsKey(extension);
    }

    /** @return the classes of the extensions this pass computed */
    public Set<Class<?>> extensions() {
        return values.keySet();
    }

    /**
     * @param extension an extension class that this pass computed
     * @return the indices of the layers that have values (the layers with parameters), ascending
     */
    public SortedSet<Integer> layers(Class<? extends Extension<?>> extension) {
        return Collections.unmodifiableSortedSet(new TreeSet<>(byLayer(extension).keySet()));
    }

    /**
     * @param extension an extension class that this pass computed
     * @param layer a layer index with values
     * @return the parameter names of that layer, in the layer's parameter order
     */
    public Set<String> params(Class<? extends Extension<?>> extension, int layer) {
        return layerValues(extension, layer).keySet();
    }

    private Map<Integer, Map<String, Object>> byLayer(Class<?> extension) {
        Map<Integer, Map<String, Object>> byLayer = values.get(extension);
        if (byLayer == null) {
            throw new IllegalArgumentException(extension.getSimpleName() + " was not computed in this pass; computed: "
                    + values.keySet().stream().map(Class::getSimpleName).collect(Collectors.toList()));
        }
        return byLayer;
    }

    private Map<String, Object> layerValues(Class<?> extension, int layer) {
        Map<Integer, Map<String, Object>> byLayer = byLayer(extension);
        Map<String, Object> params = byLayer.get(layer);
        if (params == null) {
            throw new IllegalArgumentException(extension.getSimpleName() + " has no values for layer " + layer
                    + " (a layer without parameters, or no such layer); layers with values: "
                    + new TreeSet<>(byLayer.keySet()));
        }
        return params;
    }

    @SuppressWarnings("unchecked")
    private static <T> T copyOf(Object value) {
        if (value instanceof INDArray) {
            return (T) ((INDArray) value).dup();
        }
        return (T) value;
    }

    @Override
    public String toString() {
        return "Quantities{score=" + score + ", batchSize=" + batchSize + ", extensions="
                + values.keySet().stream().map(Class::getSimpleName).collect(Collectors.toList()) + "}";
    }
}
