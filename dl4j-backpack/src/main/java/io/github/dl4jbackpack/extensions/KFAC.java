// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import java.util.List;
import java.util.Map;

/**
 * KFAC (Martens &amp; Grosse 2015): Kronecker factors like {@link KFLR}, with the output-side factor
 * estimated from M Monte Carlo columns per example (targets sampled from the model's predictive
 * distribution with {@code Nd4j.getRandom()}), an unbiased estimate of KFLR's {@code B}; the
 * input-side factor is exact.
 *
 * <p>Cost: a second-order pass of M columns per example (shared with {@link DiagGGNMC} of the same
 * M), plus the factors.
 */
public final class KFAC implements Extension<KroneckerFactors> {

    private final FactorKind kind;

    /** Creates KFAC with one Monte Carlo sample. */
    public KFAC() {
        this(1);
    }

    /** @param mcSamples number of Monte Carlo samples M, at least 1 */
    public KFAC(int mcSamples) {
        this.kind = FactorKind.sampled(mcSamples);
    }

    /** @return the number of Monte Carlo samples */
    public int mcSamples() {
        return kind.samples();
    }

    @Override
    public List<CurvatureRequest> curvatureRequests() {
        return List.of(CurvatureRequest.outputFactor(kind));
    }

    @Override
    public Map<String, KroneckerFactors> compute(LayerSignals layer) {
        return layer.kronecker(kind);
    }

    @Override
    public String name() {
        return "KFAC(" + kind.samples() + ")";
    }
}
