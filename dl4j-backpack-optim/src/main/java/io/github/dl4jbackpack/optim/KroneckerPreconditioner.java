// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;


import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.ParameterQuantities;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The Kronecker rule with π-damping (Martens &amp; Grosse 2015; docs/math.md#preconditioned-updates): for a weight with
 * {@code G ≈ A ⊗ B}, {@code d = √(λ+η)} and {@code π = √((tr A / dim A) / (tr B / dim B))},
 * {@code Δ = (A + π d I)⁻¹ ∇W (B + d/π I)⁻¹} (dense; the transposed arrangement for convolutions,
 * whose row-major flattening gives {@code B ⊗ A}). A bias has only {@code B} and gets
 * {@code Δ = (B + (λ+η) I)⁻¹ ∇b}. Where a factor has no curvature (trace 0) π is 1, and directions
 * without damped curvature get no step (pseudo-inverse).
 */
final class KroneckerPreconditioner implements Preconditioner {

    private final Class<? extends Extension<KroneckerFactors>> curvature;

    KroneckerPreconditioner(Class<? extends Extension<KroneckerFactors>> curvature) {
        this.curvature = curvature;
    }

    @Override
    public INDArray precondition(INDArray gradient, BlockCurvature.Segment segment, ParameterQuantities quantities,
                                 double damping) {
        KroneckerFactors k = quantities.get(curvature, segment.layer(), segment.param());
        double total = damping + segment.l2();
        INDArray b = k.outputFactor().castTo(DataType.DOUBLE);
        if (k.inputFactor().isEmpty()) {
            INDArray g = gradient.reshape('c', gradient.length(), 1);
            return dampedInverse(b, total).mmul(g).reshape('c', gradient.shape());
        }
        INDArray a = k.inputFactor().get().castTo(DataType.DOUBLE);
        double pi = piDamping(trace(a) / a.rows(), trace(b) / b.rows());
        double d = Math.sqrt(total);
        INDArray aInverse = dampedInverse(a, pi * d);
        INDArray bInverse = dampedInverse(b, d / pi);
        INDArray first = k.inputSideFirst() ? aInverse : bInverse;
        INDArray second = k.inputSideFirst() ? bInverse : aInverse;
        INDArray matrix = gradient.dup('c').reshape('c', first.rows(), second.rows());
        return first.mmul(matrix).mmul(second).reshape('c', gradient.shape());
    }

    /**
     * @return {@code π = √(meanA / meanB)}, or 1 where a factor has no curvature at all (an all-zero
     *     batch, a saturated softmax), where the ratio is undefined
     */
    static double piDamping(double meanA, double meanB) {
        double pi = Math.sqrt(meanA / meanB);
        return meanA > 0 && meanB > 0 && Double.isFinite(pi) ? pi : 1.0;
    }

    private static double trace(INDArray m) {
        return Nd4j.diag(m).sumNumber().doubleValue();
    }

    private static INDArray dampedInverse(INDArray m, double damping) {
        return SymmetricMatrices.dampedInverse(m, damping);
    }
}
