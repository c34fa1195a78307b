// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;
import java.util.Map;

/**
 * Diagonal of the generalised Gauss-Newton matrix of the mean loss,
 * {@code diag G(θ) = diag((1/N) Σ_n J_nᵀ H_n J_n)} with {@code J_n = ∂f_n/∂θ} and
 * {@code H_n = ∇²_f ℓ_n}, computed exactly by propagating a symmetric factor of {@code H_n / N}
 * (C columns per example for C network outputs) backwards.
 *
 * <p>Value per parameter: the parameter's shape.
 *
 * <p>Cost: one second-order backward pass of C columns per example (about C gradient passes of
 * arithmetic); memory per chunk of columns within
 * {@link io.github.dl4jbackpack.BackPackNetwork#setCurvatureMemoryBudget the curvature budget}, plus
 * a copy of every layer's pre-activation.
 */
public final class DiagGGNExact implements Extension<INDArray> {

    /** Creates the extension. */
    public DiagGGNExact() {
    }

    @Override
    public List<CurvatureRequest> curvatureRequests() {
        return List.of(CurvatureRequest.diagonal(FactorKind.EXACT));
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return layer.curvature(FactorKind.EXACT, false);
    }
}
