// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;


import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.ParameterQuantities;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Optional;

/**
 * The Kronecker rule with π-damping (Martens &amp; Grosse 2015; docs/math.md#preconditioned-updates): for a weight with
 * {@code G ≈ A ⊗ B}, {@code d = √(λ+η)} and {@code π = √((tr A / dim A) / (tr B / dim B))},
 * {@code Δ = (A + π d I)⁻¹ ∇W (B + d/π I)⁻¹} (dense; the transposed arrangement for convolutions,
 * whose row-major flattening gives {@code B ⊗ A}). A bias has only {@code B} and gets
 * {@code Δ = (B + (λ+η) I)⁻¹ ∇b}. Where a factor has no curvature (trace 0) π is 1, and directions
 * without damped curvature get no step (pseudo-inverse). The damped inverses are cached in the parameter's state
 * and recomputed when the rule asks (its inverse interval) if the factors or λ changed since. Where a dense
 * weight's {@code A} is one iteration's factor of rank at most {@code m < nIn}, handed over as {@code R [m, nIn]}
 * with {@code A = RᵀR} ({@link KroneckerFactors#sqrtInputFactor()}), its damped inverse is applied as
 * {@code (A + δI)⁻¹ G = (G − Rᵀ(δI + RRᵀ)⁻¹RG)/δ} (Woodbury's identity) and {@code A} is never formed: the exact
 * rule on a logistic regression with a batch of 128 inverts a 128² matrix instead of a 784² one.
 */
final class KroneckerPreconditioner implements Preconditioner {

    /**
     * The low-rank form of the input side's damped inverse is used only where δ exceeds this fraction of
     * {@code tr A}: its difference {@code v − RᵀKRv} loses about {@code log10(tr A / δ)} digits of float64.
     */
    static final double LOW_RANK_CUTOFF = 1e-8;

    private final Class<? extends Extension<KroneckerFactors>> curvature;

    KroneckerPreconditioner(Class<? extends Extension<KroneckerFactors>> curvature) {
        this.curvature = curvature;
    }

    @Override
    public Curvature read(BlockCurvature.Segment segment, ParameterQuantities quantities, ParameterCurvature state) {
        KroneckerFactors k = quantities.get(curvature, segment.layer(), segment.param());
        state.inputSideFirst = k.inputSideFirst();
        INDArray b = k.outputFactor().castTo(DataType.DOUBLE);
        // A kept as its square root is read as that, so that it is never formed on the exact rule's path
        Optional<INDArray> sqrt = k.sqrtInputFactor();
        if (sqrt.isPresent()) {
            return new Curvature(new INDArray[] {null, b}, sqrt.get().castTo(DataType.DOUBLE));
        }
        return new Curvature(k.inputFactor().isEmpty() ? new INDArray[] {b}
                : new INDArray[] {k.inputFactor().get().castTo(DataType.DOUBLE), b}, null);
    }

    @Override
    public INDArray precondition(INDArray gradient, ParameterCurvature state, double damping, boolean refresh) {
        if (state.inverses == null || refresh && (state.inversesStale || state.invertedDamping != damping)) {
            computeInverses(state, damping, gradient.dataType());
        }
        INDArray[] inverses = state.inversesIn(gradient.dataType());
        if (inverses.length == 1) {
            INDArray g = gradient.reshape('c', gradient.length(), 1);
            return inverses[0].mmul(g).reshape('c', gradient.shape());
        }
        if (state.lowRankDamping > 0) {
            // (A + δI)⁻¹ G = (G − Rᵀ K R G)/δ, then · B̃⁻¹; in float64 (the difference cancels digits)
            INDArray r = inverses[0];
            INDArray g = gradient.castTo(DataType.DOUBLE).dup('c').reshape('c', r.columns(), inverses[2].rows());
            // BLAS gemm for the products over m (ND4J's mmul mishandles an inner dimension of 1 holding NaN). R and
            // K are row-major: their transposes are column-major views, what gemm reads without a copy (K = Kᵀ)
            INDArray krg = Nd4j.gemm(inverses[1].transpose(), r.mmul(g).dup('f'), false, false);
            INDArray inputSide = g.subi(Nd4j.gemm(r.transpose(), krg, false, false)).divi(state.lowRankDamping);
            return inputSide.mmul(inverses[2]).reshape('c', gradient.shape()).castTo(gradient.dataType());
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
        if (state.sqrtInputFactor != null) {
            // dᵀ (RᵀR ⊗ B) d = Σ (R D) ∘ (R D B) for the row-major matrix D of d (a dense weight, A ⊗ B)
            INDArray r = state.sqrtInputFactor;
            INDArray rd = r.mmul(direction.dup('c').reshape('c', r.columns(), f[1].rows()));
            return rd.mmul(f[1]).muli(rd).sumNumber().doubleValue();
        }
        // dᵀ (F₁ ⊗ F₂) d = Σ D ∘ (F₁ D F₂) for the row-major matrix D of d, in the arrangement the step applies
        INDArray first = state.inputSideFirst ? f[0] : f[1];
        INDArray second = state.inputSideFirst ? f[1] : f[0];
        INDArray matrix = direction.dup('c').reshape('c', first.rows(), second.rows());
        return first.mmul(matrix).mmul(second).muli(matrix).sumNumber().doubleValue();
    }

    /**
     * Computes the state's damped inverses from its averaged factors with damping λ + η: {@code [(B + (λ+η) I)⁻¹]},
     * or the π-damped inverses of A and B in the order they are applied; where A is kept as its square root
     * {@code R [m, nIn]} and its damping δ is not negligible against its trace, the input side in low-rank form
     * ({@link ParameterCurvature#inverses}: an {@code m × m} inverse instead of an {@code nIn × nIn} one), with
     * {@code RRᵀ} formed in the precision of the network (its {@code A} is formed in that precision too).
     *
     * @param state the parameter's state
     * @param damping λ
     * @param network the data type of the network's gradients
     */
    private static void computeInverses(ParameterCurvature state, double damping, DataType network) {
        double total = damping + state.segment.l2();
        INDArray[] factors = state.factors;
        if (factors.length == 1) {
            state.setInverses(new INDArray[] {dampedInverse(factors[0], total)}, damping, 0);
            return;
        }
        INDArray r = state.sqrtInputFactor;
        INDArray b = factors[1];
        double norm = r != null ? r.norm2Number().doubleValue() : 0;
        double traceA = r != null ? norm * norm : trace(factors[0]);
        long sideA = r != null ? r.columns() : factors[0].rows();
        double pi = piDamping(traceA / sideA, trace(b) / b.rows());
        double d = Math.sqrt(total);
        double delta = pi * d;
        INDArray bInverse = dampedInverse(b, d / pi);
        if (r != null && delta > LOW_RANK_CUTOFF * traceA && Double.isFinite(delta)) {
            // RRᵀ in the network's precision, as the layer's own A would be formed (half the time in float32), by
            // gemm on the column-major view Rᵀ of the row-major R (copying R to column-major order costs more than
            // the product)
            INDArray rt = rowMajor(r).castTo(network == DataType.DOUBLE ? DataType.DOUBLE : DataType.FLOAT).transpose();
            INDArray k = rowMajor(dampedInverse(Nd4j.gemm(rt, rt, true, false), delta));
            state.setInverses(new INDArray[] {rowMajor(r), k, bInverse}, damping, delta);
            return;
        }
        INDArray aInverse = dampedInverse(state.formedFactors()[0], delta);
        state.setInverses(state.inputSideFirst ? new INDArray[] {aInverse, bInverse}
                : new INDArray[] {bInverse, aInverse}, damping, 0);
    }

    /** @return the array itself if it is row-major and contiguous, else a row-major copy */
    private static INDArray rowMajor(INDArray a) {
        return a.ordering() == 'c' && !a.isView() ? a : a.dup('c');
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
