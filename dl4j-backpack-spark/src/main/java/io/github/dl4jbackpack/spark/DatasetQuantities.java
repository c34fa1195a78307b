// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.Variance;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * The quantities of a whole data set D of M = |D| examples (docs/math.md#data-sets): every extension's value with
 * the scaling one machine gives a single batch of M examples (the objective is the mean loss over D), the mean
 * gradient {@code (1/M) Σ_n ∇ℓ_n} and the gradient noise scale. Values are float64, shaped like the parameter,
 * addressed as in {@link Quantities}; immutable (arrays are handed out as copies).
 */
public final class DatasetQuantities {

    private final Quantities values;
    private final Map<String, Map<String, INDArray>> meanGradient;
    private final double noiseScale;

    DatasetQuantities(Quantities values, Map<String, Map<String, INDArray>> meanGradient, double noiseScale) {
        this.values = values;
        Map<String, Map<String, INDArray>> copy = new LinkedHashMap<>();
        meanGradient.forEach((layer, params) -> copy.put(layer, Collections.unmodifiableMap(new LinkedHashMap<>(params))));
        this.meanGradient = Collections.unmodifiableMap(copy);
        this.noiseScale = noiseScale;
    }

    /** @return M, the number of examples in the data set */
    public long size() {
        return values.batchSize();
    }

    /** @return the mean of the batches' scores weighted by their sizes: the mean loss over D plus regularisation */
    public double score() {
        return values.score();
    }

    /**
     * @param extension the extension's class, e.g. {@code DiagGGNExact.class}
     * @param layer the layer's name (index in a MultiLayerNetwork, vertex name in a graph)
     * @param param DL4J's parameter name
     * @param <T> the value's type
     * @return the data set's value
     */
    public <T> T get(Class<? extends Extension<T>> extension, String layer, String param) {
        return values.get(extension, layer, param);
    }

    /**
     * @param extension an extension's class
     * @return whether it was computed
     */
    public boolean contains(Class<? extends Extension<?>> extension) {
        return values.contains(extension);
    }

    /** @return the values as a {@link Quantities} whose batch size is M, for code written for one machine's */
    public Quantities asQuantities() {
        return values;
    }

    /**
     * @param layer the layer's name
     * @param param DL4J's parameter name
     * @return {@code (1/M) Σ_n ∇ℓ_n}, the gradient of the mean loss over D (without regularisation)
     */
    public INDArray meanGradient(String layer, String param) {
        Map<String, INDArray> params = meanGradient.get(layer);
        if (params == null || !params.containsKey(param)) {
            throw new IllegalArgumentException("no gradient of layer \"" + layer + "\" parameter '" + param
                    + "'; layers " + meanGradient.keySet());
        }
        return params.get(param).dup();
    }

    /** @return the layers with a mean gradient, in the network's order */
    public Set<String> layerNames() {
        return meanGradient.keySet();
    }

    /**
     * The simple gradient noise scale of McCandlish et al. (2018), {@code B = tr Σ / ‖G‖²}, with G the mean
     * gradient over D and Σ the covariance of the examples' loss gradients over D (population covariance, over
     * every parameter with a gradient): the batch size at which the noise of a batch's gradient is about as large
     * as the gradient itself.
     *
     * @return B
     * @throws IllegalStateException if {@link Variance} was not computed
     */
    public double gradientNoiseScale() {
        if (Double.isNaN(noiseScale) && !values.contains(Variance.class)) {
            throw new IllegalStateException("the gradient noise scale needs Variance: add new Variance() to the "
                    + "extensions");
        }
        return noiseScale;
    }

    @Override
    public String toString() {
        return "DatasetQuantities[M=" + size() + ", " + values.extensions().size() + " extensions]";
    }
}
