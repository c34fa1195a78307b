// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

/**
 * Squared l2 norms {@code ‖g_n‖²} of the individual gradients {@code g_n = (1/N) ∇θ ℓ_n}, per
 * parameter.
 *
 * <p>Value per parameter: shape {@code [N]}. To get norms of per-example <em>loss</em> gradients
 * {@code ‖∇ℓ_n‖²}, multiply by {@code N²}.
 *
 * <p>Memory: for dense layers {@code O(N·(nIn + nOut))} via {@code ‖x_n‖²‖δ_n‖²}, never
 * materialising individual gradients. For convolutions it uses
 * {@code tr(δ_n (U_nᵀU_n) δ_nᵀ)} ({@code O(N·P²)} for P output positions) where that is smaller
 * than materialising the layer's {@code N × #params} individual gradients, and the latter otherwise.
 */
public final class BatchL2Grad implements Extension<INDArray> {

    /** Creates the extension. */
    public BatchL2Grad() {
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return layer.individualGradientSquaredNorms();
    }
}
