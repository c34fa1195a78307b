// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;
import java.util.Map;

/**
 * Per-example terms of the Monte Carlo GGN diagonal (see {@link DiagGGNMC}); they sum over the
 * batch axis to the {@link DiagGGNMC} estimate of the same pass and sample count.
 *
 * <p>Value per parameter: shape {@code [N, *p]}.
 *
 * <p>Cost: that of {@link DiagGGNMC} plus {@code N × #params} for the result.
 */
public final class BatchDiagGGNMC implements Extension<INDArray> {

    private final FactorKind kind;

    /** Creates the estimator with one sample. */
    public BatchDiagGGNMC() {
        this(1);
    }

    /** @param mcSamples number of Monte Carlo samples M, at least 1 */
    public BatchDiagGGNMC(int mcSamples) {
        this.kind = FactorKind.sampled(mcSamples);
    }

    /** @return the number of Monte Carlo samples */
    public int mcSamples() {
        return kind.samples();
    }

    @Override
    public List<CurvatureRequest> curvatureRequests() {
        return List.of(CurvatureRequest.batchDiagonal(kind));
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return layer.curvature(kind, true);
    }

    @Override
    public String name() {
        return "BatchDiagGGNMC(" + kind.samples() + ")";
    }
}
