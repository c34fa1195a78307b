// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

/**
 * Gradient variance: the elementwise population variance of the individual gradients
 * {@code g_n = (1/N) ∇θ ℓ_n}, {@code (1/N) Σ_n (g_n − ḡ)⊙(g_n − ḡ)} with
 * {@code ḡ = (1/N) Σ_n g_n = ∇L / N} (docs/math.md#first-order).
 *
 * <p>Value per parameter: the parameter's shape, never negative. Because of the {@code 1/N} inside
 * {@code g_n} this equals {@code Var_n(∇ℓ_n) / N²}: multiply by {@code N²} for the variance of
 * per-example loss gradients, or by {@code N} for the variance of the minibatch-mean gradient as an
 * estimator of the expected gradient (for i.i.d. examples).
 *
 * <p>Accuracy: computed from deviations from the mean gradient, not as
 * {@code SumGradSquared/N − ḡ²}, whose cancellation makes that formula useless in float32 when the
 * mean gradient is large compared with its spread.
 *
 * <p>Cost: dense layers four products of the size of the layer's gradient product; convolutions
 * form individual gradients in bounded chunks of examples; no {@code [N, #params]} array.
 */
public final class Variance implements Extension<INDArray> {

    /** Creates the extension. */
    public Variance() {
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return layer.variance();
    }
}
