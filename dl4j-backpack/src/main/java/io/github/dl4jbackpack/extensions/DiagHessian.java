// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Diagonal of the Hessian of the mean loss, {@code diag ∇²_θ L}: the exact GGN diagonal plus the
 * residual terms {@code diag(φ''(z) ⊙ ∂L/∂a)} of every activation that is not piecewise linear,
 * propagated backwards as signed factors (docs/math.md#hessian-diagonal). For networks whose
 * activations are all piecewise linear (ReLU, leaky ReLU, max pooling, ...) it equals
 * {@link DiagGGNExact}.
 *
 * <p>Value per parameter: the parameter's shape.
 *
 * <p>Cost: that of {@link DiagGGNExact} (shared with it), plus, for every smooth activation, as
 * many columns per example as that activation has outputs pushed down to the first layer, in
 * chunks within the curvature memory budget.
 */
public final class DiagHessian implements Extension<INDArray> {

    /** Creates the extension. */
    public DiagHessian() {
    }

    @Override
    public List<CurvatureRequest> curvatureRequests() {
        return List.of(CurvatureRequest.diagonal(FactorKind.EXACT), CurvatureRequest.diagonal(FactorKind.RESIDUAL));
    }

    @Override
    public Map<String, INDArray> compute(LayerSignals layer) {
        return sum(layer.curvature(FactorKind.EXACT, false), layer.curvature(FactorKind.RESIDUAL, false));
    }

    static Map<String, INDArray> sum(Map<String, INDArray> ggn, Map<String, INDArray> residual) {
        Map<String, INDArray> out = new LinkedHashMap<>();
        ggn.forEach((param, value) -> {
            INDArray r = residual.get(param);
            out.put(param, r == null ? value.dup() : value.add(r));
        });
        return out;
    }
}
