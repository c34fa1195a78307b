// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;


import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.ParameterQuantities;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * {@code Δ = g / (diag G + λ + η)}, elementwise, with a diagonal curvature extension; 0 where
 * {@code diag G + λ + η} is 0 (possible only with λ = 0), instead of the 0/0 of a dead unit. Nothing is cached:
 * the division is as cheap as applying a cached inverse.
 */
final class DiagonalPreconditioner implements Preconditioner {

    private final Class<? extends Extension<INDArray>> curvature;

    DiagonalPreconditioner(Class<? extends Extension<INDArray>> curvature) {
        this.curvature = curvature;
    }

    @Override
    public Curvature read(BlockCurvature.Segment segment, ParameterQuantities quantities, ParameterCurvature state) {
        return new Curvature(new INDArray[] {quantities.get(curvature, segment.layer(), segment.param())
                .castTo(DataType.DOUBLE)}, null);
    }

    @Override
    public INDArray precondition(INDArray gradient, ParameterCurvature state, double damping, boolean refresh) {
        INDArray denominator = state.factors[0].add(damping + state.segment.l2()).castTo(gradient.dataType());
        // no curvature and no damping (a dead unit with λ = 0): no step there, not 0/0
        INDArray curved = denominator.gt(0.0).castTo(gradient.dataType());
        INDArray safe = denominator.add(curved.rsub(1.0));
        return gradient.div(safe).muli(curved);
    }

    @Override
    public double curvatureQuadratic(INDArray direction, ParameterCurvature state) {
        return state.factors[0].mul(direction).muli(direction).sumNumber().doubleValue();
    }
}
