// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

/**
 * Gradient second moment {@code Σ_n g_n ⊙ g_n} of the individual gradients
 * {@code g_n = (1/N) ∇θ ℓ_n}.
 *
 * <p>Value per parameter: the parameter's shape. For the mean of the squared per-example loss
 * gradients {@code (1/N) Σ_n ∇ℓ_n ⊙ ∇ℓ_n}, multiply by {@code N}.
 *
 * <p>Memory: for dense layers one matrix product {@code (X⊙X)ᵀ(Δ⊙Δ)} of the parameter's size.
 * For convolutions the individual gradients of one layer are formed in chunks of examples whose
 * size is bounded, so the extra memory stays at most about the layer's parameter count times a
 * small chunk of the batch.
 */
public final class SumGradSquared implements Extension<INDArray> {

    /** Creates the extension. */
    public SumGradSquared() {
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return layer.sumGradSquared();
    }
}
