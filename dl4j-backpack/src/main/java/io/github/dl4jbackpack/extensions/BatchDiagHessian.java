// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;
import java.util.Map;

/**
 * Per-example terms of the Hessian diagonal, {@code diag ∇²_θ (ℓ_n / N)} for every n; they sum over
 * the batch axis to {@link DiagHessian}.
 *
 * <p>Value per parameter: shape {@code [N, *p]}.
 *
 * <p>Cost: that of {@link DiagHessian} plus {@code N × #params} for the result.
 */
public final class BatchDiagHessian implements Extension<INDArray> {

    /** Creates the extension. */
    public BatchDiagHessian() {
    }

    @Override
    public List<CurvatureRequest> curvatureRequests() {
        return List.of(CurvatureRequest.batchDiagonal(FactorKind.EXACT), CurvatureRequest.batchDiagonal(FactorKind.RESIDUAL));
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return DiagHessian.sum(layer.curvature(FactorKind.EXACT, true), layer.curvature(FactorKind.RESIDUAL, true));
    }
}
