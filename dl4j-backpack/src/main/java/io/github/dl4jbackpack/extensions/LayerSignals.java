// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;
import java.util.Set;

/**
 * What an {@link Extension} sees of one layer with parameters in one extended backward pass: the
 * first-order terms built from the layer input and the gradient of the mean loss at the layer's
 * output, the layer's gradient, and (after the second-order pass) the curvature that pass
 * accumulated. Implemented by the library; valid only during the call of
 * {@link Extension#compute} that receives it. Maps are keyed by DL4J parameter name ({@code "W"},
 * {@code "b"}, ...) in the layer's parameter order; values follow docs/math.md's scaling.
 *
 * <p>First-order accessors are available to first-order extensions (those without
 * {@link Extension#curvatureRequests()}), curvature accessors to second-order ones. Each term is
 * computed at most once per layer and pass, so extensions asking for the same term share it.
 */
public interface LayerSignals {

    /**
     * @return the layer's stable name: its index as a string ({@code "0"}, {@code "1"}, ...) in a
     *     MultiLayerNetwork, its vertex name in a ComputationGraph
     */
    String layerName();

    /** @return the number of examples N in the batch */
    long batchSize();

    /** @return the layer's parameter names, in DL4J's {@code paramTable()} order */
    Set<String> parameterNames();

    /** @return {@code g_n} per parameter, shape {@code [N, *p]} (docs/math.md#first-order) */
    Map<String, INDArray> individualGradients();

    /** @return {@code ‖g_n‖²} per parameter, shape {@code [N]} */
    Map<String, INDArray> individualGradientSquaredNorms();

    /** @return {@code Σ_n g_n ⊙ g_n} per parameter, parameter shape */
    Map<String, INDArray> sumGradSquared();

    /**
     * @return {@code (1/N) Σ_n (g_n − ḡ)⊙(g_n − ḡ)} per parameter with {@code ḡ = (1/N) Σ_n g_n},
     *     parameter shape, computed without the cancellation of {@code E[g²] − E[g]²}; never negative
     */
    Map<String, INDArray> variance();

    /** @return {@code ⟨g_n, g_m⟩} per parameter, shape {@code [N, N]} */
    Map<String, INDArray> individualGradientDots();

    /**
     * @return per parameter, the weighted sums {@code Σ_n w_n g_n} for weights given after the pass
     *     ({@link WeightedGradientSum}), valid after the pass
     */
    Map<String, WeightedGradientSum.Deferred> weightedGradientSums();

    /**
     * @param param a parameter name of this layer
     * @return {@code ∇L = Σ_n g_n} for that parameter, a new array of the parameter's shape
     */
    INDArray gradient(String param);

    /**
     * @param kind a kind of factor that this pass propagated (see {@link Extension#curvatureRequests()})
     * @param perExample whether to keep the batch axis
     * @return the curvature diagonal from that factor per parameter: parameter-shaped, or
     *     {@code [N, *p]} per example (docs/math.md#second-order)
     */
    Map<String, INDArray> curvature(FactorKind kind, boolean perExample);

    /**
     * @param kind a kind of factor that this pass propagated together with the output-side factor
     * @return the Kronecker factors of every parameter of the layer (docs/math.md#kronecker-factors)
     */
    Map<String, KroneckerFactors> kronecker(FactorKind kind);
}
