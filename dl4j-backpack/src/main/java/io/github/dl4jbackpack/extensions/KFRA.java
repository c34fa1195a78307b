// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import java.util.List;
import java.util.Map;

/**
 * KFRA (Botev et al. 2017): Kronecker factors like {@link KFLR}, with the output-side factor taken
 * from one batch-averaged curvature matrix propagated backwards instead of per-example factors:
 * {@code Ḡ = (1/N) Σ_n H_n} at the output, and {@code Ḡ ← (1/N) Σ_n J_nᵀ Ḡ J_n} through every module
 * (linear map, pooling, dropout, activation); a layer's {@code B} is {@code Ḡ} at its output (summed
 * over output positions for convolutions).
 *
 * <p>Cost: dense {@code h × h} matrices over whole layer outputs; through convolutions and pooling
 * these grow with the feature map (and pooling needs them per example). When they would exceed the
 * {@link io.github.dl4jbackpack.BackPackNetwork#setCurvatureMemoryBudget curvature memory budget},
 * the pass fails with an {@code IllegalStateException} saying so instead of exhausting memory.
 */
public final class KFRA implements Extension<KroneckerFactors> {

    /** Creates the extension. */
    public KFRA() {
    }

    @Override
    public List<CurvatureRequest> curvatureRequests() {
        return List.of(CurvatureRequest.outputFactor(FactorKind.AVERAGED));
    }

    @Override
    public Map<String, KroneckerFactors> compute(LayerSignals layer) {
        return layer.kronecker(FactorKind.AVERAGED);
    }
}
