// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

/**
 * Pairwise dot products {@code ⟨g_n, g_m⟩} of the individual gradients
 * {@code g_n = (1/N) ∇θ ℓ_n}, per parameter.
 *
 * <p>Value per parameter: shape {@code [N, N]}, symmetric, with the {@link BatchL2Grad} values on
 * its diagonal. Multiply by {@code N²} for dot products of per-example loss gradients.
 *
 * <p>Memory: for dense layers two {@code [N, N]} Gram matrices ({@code (x_n·x_m)(δ_n·δ_m)}),
 * never materialising individual gradients. For convolutions the layer's individual gradients
 * ({@code N × #params} of that layer) are formed once.
 */
public final class BatchDotGrad implements Extension<INDArray> {

    /** Creates the extension. */
    public BatchDotGrad() {
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return layer.individualGradientDots();
    }
}
