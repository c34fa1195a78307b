// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.spi.ParameterQuantities;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.SortedSet;
import java.util.TreeSet;
import java.util.stream.Collectors;

/**
 * The results of one extended backward pass: for every requested extension, a value per layer and
 * per DL4J parameter name ({@code "W"}, {@code "b"}, ...), plus the pass's score and batch size.
 *
 * <p>Layers are named stably: in a MultiLayerNetwork by their index ({@code "0"}, {@code "1"}, ...,
 * also accepted as {@code int}), in a ComputationGraph by their vertex name. A value can also be
 * addressed by DL4J's own parameter key, {@code "<layer>_<param>"} ({@code "0_W"},
 * {@code "dense1_b"}), as in {@code net.paramTable()}.
 *
 * <p>Immutable: array values are handed out as copies, so callers may modify what they get. Values
 * follow docs/math.md's scaling (objective: the mean loss over the batch, summed over the outputs of
 * a graph) and are shaped like the parameter ({@code paramTable()} shape), with the batch axis first
 * for per-example quantities. All arrays are detached from DL4J workspaces.
 *
 * <p>Their native memory is freed when the garbage collector collects them, which a loop that makes little Java
 * garbage (ND4J arrays are small Java objects) may rarely do; {@link #close()} frees it at once, for loops over
 * many batches of a large network.
 */
public final class Quantities implements ParameterQuantities, AutoCloseable {

    private final double score;
    private final long batchSize;
    private final Map<Class<?>, Map<String, Map<String, Object>>> values;
    private volatile boolean closed;

    /**
     * Created by the library at the end of a backward pass.
     *
     * @param score the score DL4J computed for the pass
     * @param batchSize the number of examples N in the batch
     * @param values extension class → layer name → parameter name → value (copied; layer order kept)
     */
    public Quantities(double score, long batchSize, Map<Class<?>, Map<String, Map<String, Object>>> values) {
        this.score = score;
        this.batchSize = batchSize;
        Map<Class<?>, Map<String, Map<String, Object>>> copy = new LinkedHashMap<>();
        values.forEach((ext, byLayer) -> {
            Map<String, Map<String, Object>> layers = new LinkedHashMap<>();
            byLayer.forEach((layer, params) -> layers.put(layer, Collections.unmodifiableMap(new LinkedHashMap<>(params))));
            copy.put(ext, Collections.unmodifiableMap(layers));
        });
        this.values = Collections.unmodifiableMap(copy);
    }

    /**
     * @return the score of the pass, exactly {@code net.score()} after it: DL4J's mean loss over the
     *     batch (summed over a graph's outputs), plus any regularisation penalty the configuration adds
     */
    public double score() {
        return score;
    }

    @Override
    public long batchSize() {
        return batchSize;
    }

    /**
     * The value of one extension for one parameter.
     *
     * @param extension the extension's class, e.g. {@code Variance.class}
     * @param layer the layer name: its index in a MultiLayerNetwork ({@code "0"}), its vertex name in a graph
     * @param param the DL4J parameter name, e.g. {@code "W"} or {@code "b"}
     * @param <T> the extension's value type
     * @return the value (arrays as a fresh copy)
     * @throws IllegalArgumentException if the extension was not computed in this pass, or the layer
     *     or parameter has no value
     */
    @Override
    public <T> T get(Class<? extends Extension<T>> extension, String layer, String param) {
        Map<String, Object> params = layerValues(extension, layer);
        Object value = params.get(param);
        if (value == null) {
            throw new IllegalArgumentException(extension.getSimpleName() + ": layer \"" + layer + "\" has no parameter '"
                    + param + "'; its parameters are " + params.keySet());
        }
        return copyOf(value);
    }

    /**
     * The value of one extension for one parameter of a MultiLayerNetwork's layer.
     *
     * @param extension the extension's class
     * @param layer the layer index as in {@code net.getLayers()}
     * @param param the DL4J parameter name
     * @param <T> the extension's value type
     * @return the value (arrays as a fresh copy)
     */
    public <T> T get(Class<? extends Extension<T>> extension, int layer, String param) {
        return get(extension, String.valueOf(layer), param);
    }

    /**
     * The value of one extension for one parameter, by DL4J's parameter key.
     *
     * @param extension the extension's class
     * @param key DL4J's key {@code "<layer>_<param>"}, e.g. {@code "0_W"} or {@code "dense1_b"}
     * @param <T> the extension's value type
     * @return the value (arrays as a fresh copy)
     */
    public <T> T byKey(Class<? extends Extension<T>> extension, String key) {
        Map<String, Map<String, Object>> byLayer = byLayer(extension);
        for (Map.Entry<String, Map<String, Object>> layer : byLayer.entrySet()) {
            String prefix = layer.getKey() + "_";
            if (key.startsWith(prefix) && layer.getValue().containsKey(key.substring(prefix.length()))) {
                return copyOf(layer.getValue().get(key.substring(prefix.length())));
            }
        }
        throw new IllegalArgumentException(extension.getSimpleName() + " has no value for parameter key \"" + key
                + "\"; keys with values: " + keys(extension));
    }

    /**
     * The values of one extension for all parameters of one layer.
     *
     * @param extension the extension's class
     * @param layer the layer name
     * @param <T> the extension's value type
     * @return parameter name → value (arrays as fresh copies), in the layer's parameter order
     */
    public <T> Map<String, T> layer(Class<? extends Extension<T>> extension, String layer) {
        Map<String, T> out = new LinkedHashMap<>();
        layerValues(extension, layer).forEach((param, value) -> out.put(param, copyOf(value)));
        return out;
    }

    /**
     * The values of one extension for all parameters of a MultiLayerNetwork's layer.
     *
     * @param extension the extension's class
     * @param layer the layer index
     * @param <T> the extension's value type
     * @return parameter name → value (arrays as fresh copies), in the layer's parameter order
     */
    public <T> Map<String, T> get(Class<? extends Extension<T>> extension, int layer) {
        return layer(extension, String.valueOf(layer));
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
     * @return the names of the layers that have values (the layers with parameters), in topological order
     */
    public Set<String> layerNames(Class<? extends Extension<?>> extension) {
        return Collections.unmodifiableSet(new LinkedHashSet<>(byLayer(extension).keySet()));
    }

    /**
     * @param extension an extension class that this pass computed
     * @return for a MultiLayerNetwork, the indices of the layers that have values, ascending
     * @throws IllegalStateException for a graph, whose layers have names ({@link #layerNames})
     */
    public SortedSet<Integer> layers(Class<? extends Extension<?>> extension) {
        SortedSet<Integer> out = new TreeSet<>();
        for (String name : byLayer(extension).keySet()) {
            try {
                out.add(Integer.parseInt(name));
            } catch (NumberFormatException e) {
                throw new IllegalStateException("layer \"" + name + "\" has a name, not an index: use layerNames()", e);
            }
        }
        return Collections.unmodifiableSortedSet(out);
    }

    /**
     * @param extension an extension class that this pass computed
     * @param layer a layer name with values
     * @return the parameter names of that layer, in the layer's parameter order
     */
    public Set<String> params(Class<? extends Extension<?>> extension, String layer) {
        return layerValues(extension, layer).keySet();
    }

    /**
     * @param extension an extension class that this pass computed
     * @param layer a MultiLayerNetwork layer index with values
     * @return the parameter names of that layer, in the layer's parameter order
     */
    public Set<String> params(Class<? extends Extension<?>> extension, int layer) {
        return params(extension, String.valueOf(layer));
    }

    /**
     * @param extension an extension class that this pass computed
     * @return DL4J's parameter keys {@code "<layer>_<param>"} with values, in network order
     */
    public Set<String> keys(Class<? extends Extension<?>> extension) {
        Set<String> out = new LinkedHashSet<>();
        byLayer(extension).forEach((layer, params) -> params.keySet().forEach(p -> out.add(layer + "_" + p)));
        return out;
    }

    private Map<String, Map<String, Object>> byLayer(Class<?> extension) {
        if (closed) {
            throw new IllegalStateException("these quantities were closed: read their values before close()");
        }
        Map<String, Map<String, Object>> byLayer = values.get(extension);
        if (byLayer == null) {
            throw new IllegalArgumentException(extension.getSimpleName() + " was not computed in this pass; computed: "
                    + values.keySet().stream().map(Class::getSimpleName).collect(Collectors.toList()));
        }
        return byLayer;
    }

    private Map<String, Object> layerValues(Class<?> extension, String layer) {
        Map<String, Map<String, Object>> byLayer = byLayer(extension);
        Map<String, Object> params = byLayer.get(layer);
        if (params == null) {
            throw new IllegalArgumentException(extension.getSimpleName() + " has no values for layer \"" + layer
                    + "\" (a layer without parameters, or no such layer); layers with values: " + byLayer.keySet());
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

    /**
     * Frees the native memory of the values now instead of at a garbage collection. Values read before (copies)
     * stay valid; reading a value afterwards throws {@link IllegalStateException}, and so does reading an array
     * taken from it before (or a view of one). The memory of large per-example values (individual gradients) is
     * not returned to the system but holds the next values of the same type and size computed on the thread that
     * computed them (no fresh pages to map); what that thread's next pass does not reuse is freed at the end of
     * it, or by {@link BackPackNetwork#releaseThreadMemory()}. Optional, idempotent. The
     * quantities of a training iteration are shared with the network's curvature updaters and quantities
     * listeners: close only those of {@link BackPackNetwork#backward} that no listener keeps.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (Map<String, Map<String, Object>> byLayer : values.values()) {
            for (Map<String, Object> params : byLayer.values()) {
                for (Object v : params.values()) {
                    if (v instanceof INDArray a && io.github.dl4jbackpack.internal.memory.ResultMemory.release(a)) {
                        continue;
                    } else if (v instanceof INDArray a && a.closeable()) {
                        a.close();
                    } else if (v instanceof io.github.dl4jbackpack.extensions.KroneckerFactors k) {
                        k.close();
                    } else if (v instanceof io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred d) {
                        d.close();
                    }
                }
            }
        }
    }

    @Override
    public String toString() {
        return "Quantities{score=" + score + ", batchSize=" + batchSize + ", extensions="
                + values.keySet().stream().map(Class::getSimpleName).collect(Collectors.toList()) + "}";
    }
}
