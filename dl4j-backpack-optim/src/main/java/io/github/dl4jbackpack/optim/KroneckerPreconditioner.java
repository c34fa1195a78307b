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
 * without damped curvature get no step (pseudo-inverse). The damped inverses are cached in the parameter's state
 * and recomputed when the rule asks (its inverse interval) if the factors or λ changed since.
 */
final class KroneckerPreconditioner implements Preconditioner {

    private final Class<? extends Extension<KroneckerFactors>> curvature;

    KroneckerPreconditioner(Class<? extends Extension<KroneckerFactors>> curvature) {
        this.curvature = curvature;
    }

    @Override
    public INDArray[] read(BlockCurvature.Segment segment, ParameterQuantities quantities, ParameterCurvature state) {
        KroneckerFactors k = quantities.get(curvature, segment.layer(), segment.param());
        state.inputSideFirst = k.inputSideFirst();
        INDArray b = k.outputFactor().castTo(DataType.DOUBLE);
        return k.inputFactor().isEmpty() ? new INDArray[] {b}
                : new INDArray[] {k.inputFactor().get().castTo(DataType.DOUBLE), b};
    }

    @Override
    public INDArray precondition(INDArray gradient, ParameterCurvature state, double damping, boolean refresh) {
        if (state.inverses == null || refresh && (state.inversesStale || state.invertedDamping != damping)) {
            state.setInverses(inverses(state.factors, state.inputSideFirst, damping + state.segment.l2()), damping);
        }
        INDArray[] inverses = state.inversesIn(gradient.dataType());
        if (inverses.length == 1) {
            INDArray g = gradient.reshape('c', gradient.length(), 1);
            return inverses[0].mmul(g).reshape('c', gradient.shape());
        }
        INDArray first = inverses[0];
        INDArray second = inverses[1];
        INDArray matrix = gradient.dup('c').reshape('c', first.rows(), second.rows());
        return first.mmul(matrix).mmul(second).reshape('c', gradient.shape());
    }

    @Override
    public double curvatureQuadratic(INDArray direction, ParameterCurvature state) {
        INDArray[] f = state.factors;
        if (f.length == 1) {
            INDArray d = direction.reshape('c', direction.length(), 1);
            return d.transpose().mmul(f[0]).mmul(d).getDouble(0);
        }
        // dᵀ (F₁ ⊗ F₂) d = Σ D ∘ (F₁ D F₂) for the row-major matrix D of d, in the arrangement the step applies
        INDArray first = state.inputSideFirst ? f[0] : f[1];
        INDArray second = state.inputSideFirst ? f[1] : f[0];
        INDArray matrix = direction.dup('c').reshape('c', first.rows(), second.rows());
        return first.mmul(matrix).mmul(second).muli(matrix).sumNumber().doubleValue();
    }

    /**
     * @param factors {@code [B]} or {@code [A, B]}
     * @param inputSideFirst the arrangement {@code A ⊗ B} (else {@code B ⊗ A})
     * @param total λ + η
     * @return {@code [(B + (λ+η) I)⁻¹]}, or the π-damped inverses of A and B in the order they are applied
     */
    private static INDArray[] inverses(INDArray[] factors, boolean inputSideFirst, double total) {
        if (factors.length == 1) {
            return new INDArray[] {dampedInverse(factors[0], total)};
        }
        INDArray a = factors[0];
        INDArray b = factors[1];
        double pi = piDamping(trace(a) / a.rows(), trace(b) / b.rows());
        double d = Math.sqrt(total);
        INDArray aInverse = dampedInverse(a, pi * d);
        INDArray bInverse = dampedInverse(b, d / pi);
        return inputSideFirst ? new INDArray[] {aInverse, bInverse} : new INDArray[] {bInverse, aInverse};
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
