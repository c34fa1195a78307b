// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;
import java.util.Map;

/**
 * Per-example terms of the exact GGN diagonal, {@code diag((1/N) J_nᵀ H_n J_n)} for every n; they
 * sum over the batch axis to {@link DiagGGNExact}.
 *
 * <p>Value per parameter: shape {@code [N, *p]}.
 *
 * <p>Cost: that of {@link DiagGGNExact} (shared with it in one pass) plus {@code N × #params}
 * for the result.
 */
public final class BatchDiagGGNExact implements Extension<INDArray> {

    /** Creates the extension. */
    public BatchDiagGGNExact() {
    }

    @Override
    public List<CurvatureRequest> curvatureRequests() {
        return List.of(CurvatureRequest.batchDiagonal(FactorKind.EXACT));
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return layer.curvature(FactorKind.EXACT, true);
    }
}
