// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import java.util.List;
import java.util.Map;

/**
 * KFLR (Botev et al. 2017): Kronecker factors of each layer's GGN block with the exact output-side
 * factor {@code B = Σ_n Σ_v s_nv s_nvᵀ} from the exact factor of {@code H_n / N} propagated to the
 * layer output (summed over output positions for convolutions), and the input-side factor
 * {@code A = (1/N) Σ_n x_n x_nᵀ} (over unfolded patches for convolutions). See
 * {@link KroneckerFactors} for the order of the factors per parameter.
 *
 * <p>Cost: the exact second-order pass of {@link DiagGGNExact} (shared with it), plus
 * {@code nOut²} and {@code nIn²} (convolutions: {@code (nIn·kH·kW)²}) per layer.
 */
public final class KFLR implements Extension<KroneckerFactors> {

    /** Creates the extension. */
    public KFLR() {
    }

    @Override
    public List<CurvatureRequest> curvatureRequests() {
        return List.of(CurvatureRequest.outputFactor(FactorKind.EXACT));
    }

    @Override
    public Map<String, KroneckerFactors> compute(LayerSignals layer) {
        return layer.kronecker(FactorKind.EXACT);
    }
}
