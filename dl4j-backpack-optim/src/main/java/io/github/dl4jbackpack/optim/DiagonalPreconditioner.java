package io.github.dl4jbackpack.optim;


import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.ParameterQuantities;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/** {@code Δ = g / (diag G + λ + η)}, elementwise, with a diagonal curvature extension. */
final class DiagonalPreconditioner implements Preconditioner {

    private final Class<? extends Extension<INDArray>> curvature;

    DiagonalPreconditioner(Class<? extends Extension<INDArray>> curvature) {
        this.curvature = curvature;
    }

    @Override
    public INDArray precondition(INDArray gradient, BlockCurvature.Segment segment, ParameterQuantities quantities,
                                 double damping) {
        INDArray diagonal = quantities.get(curvature, segment.layer(), segment.param()).castTo(DataType.DOUBLE);
        return gradient.div(diagonal.addi(damping + segment.l2()));
    }
}
