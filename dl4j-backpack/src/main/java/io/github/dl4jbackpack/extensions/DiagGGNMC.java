// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;
import java.util.Map;

/**
 * Monte Carlo estimate of the GGN diagonal (see {@link DiagGGNExact}): the factor of
 * {@code H_n / N} is replaced by M columns {@code (1/√(N M)) ∇_f ℓ(f_n, ŷ_m)} with targets
 * {@code ŷ_m} drawn from the model's predictive distribution, so the estimate is unbiased. Samples
 * are drawn from {@code Nd4j.getRandom()}: seed it for reproducible runs. Drawing advances that
 * generator, so during training with other random operations (dropout) the later draws differ from
 * a run without this extension.
 *
 * <p>Value per parameter: the parameter's shape.
 *
 * <p>Cost: one second-order backward pass of M columns per example; with M = 1 about one extra
 * gradient pass. Used together with {@link BatchDiagGGNMC} of the same M in one call, both use the
 * same samples.
 */
public final class DiagGGNMC implements Extension<INDArray> {

    private final FactorKind kind;

    /** Creates the estimator with one sample. */
    public DiagGGNMC() {
        this(1);
    }

    /** @param mcSamples number of Monte Carlo samples M, at least 1 */
    public DiagGGNMC(int mcSamples) {
        this.kind = FactorKind.sampled(mcSamples);
    }

    /** @return the number of Monte Carlo samples */
    public int mcSamples() {
        return kind.samples();
    }

    @Override
    public List<CurvatureRequest> curvatureRequests() {
        return List.of(CurvatureRequest.diagonal(kind));
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return layer.curvature(kind, false);
    }

    @Override
    public String name() {
        return "DiagGGNMC(" + kind.samples() + ")";
    }
}
