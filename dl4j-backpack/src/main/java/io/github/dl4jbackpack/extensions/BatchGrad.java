// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

/**
 * Individual gradients {@code g_n = (1/N) ∇θ ℓ_n} of every example in the batch; their sum over
 * the batch axis is the gradient of the mean loss.
 *
 * <p>Value per parameter: shape {@code [N, *p]} where {@code p} is the parameter's
 * {@code paramTable()} shape (dense {@code W}: {@code [N, nIn, nOut]}; convolution {@code W}:
 * {@code [N, nOut, nIn, kH, kW]}; bias: {@code [N, nOut]}).
 *
 * <p>Memory: materialises {@code N × #params} numbers by definition, computed layer by layer
 * from the layer input and output gradient (one batched outer product for dense layers, one batched
 * matrix product with the unfolded input for convolutions).
 */
public final class BatchGrad implements Extension<INDArray> {

    /** Creates the extension. */
    public BatchGrad() {
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return layer.individualGradients();
    }
}
