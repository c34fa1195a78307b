// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.spi.BlockCurvature;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A dense weight's input factor kept as its square root {@code R} ({@code A = RᵀR}, rank ≤ m &lt; nIn): the
 * Kronecker rule's step through Woodbury's identity against the solve of the damped Kronecker product formed entry
 * by entry, in float64 and float32, the quadratic model, the fallback where the damping is negligible, averaging
 * (which forms A), and a checkpoint of the low-rank state.
 */
class LowRankInputFactorTest {

    private static final int M = 3;
    private static final int N_IN = 7;
    private static final int N_OUT = 2;

    private static INDArray sqrtInputFactor(long seed) {
        PreconditionedUpdaterTest.seed(seed);
        return Nd4j.randn(DataType.DOUBLE, M, N_IN).divi(Math.sqrt(M));
    }

    private static INDArray outputFactor(long seed) {
        PreconditionedUpdaterTest.seed(seed);
        INDArray s = Nd4j.randn(DataType.DOUBLE, N_OUT, 4);
        return s.mmul(s.transpose()).divi(4);
    }

    private static ParameterCurvature state(INDArray r, INDArray b) {
        ParameterCurvature state = new ParameterCurvature();
        state.segment = new BlockCurvature.Segment("1", "W", 0, N_IN * N_OUT, new long[] {N_IN, N_OUT}, 'c', 0.0);
        state.inputSideFirst = true;
        state.average(new Preconditioner.Curvature(new INDArray[] {null, b}, r), 0.0);
        return state;
    }

    /** @return {@code ((RᵀR + πdI) ⊗ (B + d/π I))⁻¹ vec(G)} by Gauss-Jordan on the formed product */
    private static INDArray expected(INDArray r, INDArray b, INDArray g, double lambda) {
        INDArray a = r.transpose().mmul(r);
        double pi = Math.sqrt((Nd4j.diag(a).sumNumber().doubleValue() / N_IN)
                / (Nd4j.diag(b).sumNumber().doubleValue() / N_OUT));
        double d = Math.sqrt(lambda);
        INDArray matrix = PreconditionedUpdaterTest.kron(a.add(Nd4j.eye(N_IN).castTo(DataType.DOUBLE).muli(pi * d)),
                b.add(Nd4j.eye(N_OUT).castTo(DataType.DOUBLE).muli(d / pi)));
        return PreconditionedUpdaterTest.solve(matrix, g.dup('c').reshape(g.length())).reshape('c', N_IN, N_OUT);
    }

    private static double relativeError(INDArray expected, INDArray actual) {
        return expected.sub(actual.castTo(DataType.DOUBLE)).amaxNumber().doubleValue()
                / expected.amaxNumber().doubleValue();
    }

    @Test
    void theStepThroughTheSquareRootSolvesTheDampedKroneckerProduct() {
        KroneckerPreconditioner rule = new KroneckerPreconditioner(KFLR.class);
        INDArray r = sqrtInputFactor(1);
        INDArray b = outputFactor(2);
        PreconditionedUpdaterTest.seed(3);
        INDArray g = Nd4j.randn(DataType.DOUBLE, N_IN, N_OUT);
        for (double lambda : new double[] {1e-3, 0.1, 10}) {
            ParameterCurvature s = state(r, b);
            INDArray step = rule.precondition(g, s, lambda, true);
            assertTrue(s.lowRankDamping > 0, "λ = " + lambda + ": low-rank inverse");
            assertNull(s.factors[0], "A is not formed");
            assertEquals(3, s.inverses.length);
            assertEquals(M, s.inverses[1].rows(), "an m × m inverse");
            assertTrue(relativeError(expected(r, b, g, lambda), step) < 1e-10, "λ = " + lambda);
            // a float32 gradient: applied in float64, returned in float32
            INDArray step32 = rule.precondition(g.castTo(DataType.FLOAT), s, lambda, false);
            assertEquals(DataType.FLOAT, step32.dataType());
            assertTrue(relativeError(expected(r, b, g, lambda), step32) < 1e-6, "λ = " + lambda + ", float32");
        }
    }

    @Test
    void theQuadraticModelUsesTheSquareRoot() {
        KroneckerPreconditioner rule = new KroneckerPreconditioner(KFLR.class);
        INDArray r = sqrtInputFactor(4);
        INDArray b = outputFactor(5);
        PreconditionedUpdaterTest.seed(6);
        INDArray d = Nd4j.randn(DataType.DOUBLE, N_IN, N_OUT);
        INDArray v = d.dup('c').reshape(N_IN * N_OUT, 1);
        double expected = v.transpose().mmul(PreconditionedUpdaterTest.kron(r.transpose().mmul(r), b)).mmul(v)
                .getDouble(0);
        assertEquals(expected, rule.curvatureQuadratic(d, state(r, b)), 1e-12 * Math.abs(expected));
    }

    @Test
    void negligibleDampingFallsBackToTheFormedFactorsPseudoInverse() {
        KroneckerPreconditioner rule = new KroneckerPreconditioner(KFLR.class);
        INDArray r = sqrtInputFactor(7);
        INDArray b = outputFactor(8);
        ParameterCurvature s = state(r, b);
        PreconditionedUpdaterTest.seed(9);
        INDArray g = Nd4j.randn(DataType.DOUBLE, N_IN, N_OUT);
        INDArray step = rule.precondition(g, s, 1e-30, true);
        assertEquals(0.0, s.lowRankDamping, "δ below the cutoff: explicit inverses");
        assertNotNull(s.factors[0], "A formed for them");
        assertTrue(r.transpose().mmul(r).equalsWithEps(s.factors[0], 1e-14));
        assertTrue(Double.isFinite(step.mul(step).sumNumber().doubleValue()),
                "finite: directions without curvature get no step");
    }

    @Test
    void averagingFormsTheFactorAndDropsTheSquareRoot() {
        INDArray r1 = sqrtInputFactor(10);
        INDArray r2 = sqrtInputFactor(11);
        INDArray b = outputFactor(12);
        ParameterCurvature s = state(r1, b);
        s.average(new Preconditioner.Curvature(new INDArray[] {null, b.mul(2)}, r2), 0.25);
        assertNull(s.sqrtInputFactor);
        INDArray expectedA = r1.transpose().mmul(r1).muli(0.25).addi(r2.transpose().mmul(r2).muli(0.75));
        assertTrue(expectedA.equalsWithEps(s.factors[0], 1e-14));
        assertTrue(b.mul(0.25).addi(b.mul(2 * 0.75)).equalsWithEps(s.factors[1], 1e-14));
        // without decay the next iteration's square root replaces the average
        s.average(new Preconditioner.Curvature(new INDArray[] {null, b}, r2), 0.0);
        assertEquals(r2, s.sqrtInputFactor);
        assertNull(s.factors[0]);
    }

    @Test
    void aCheckpointKeepsTheSquareRootAndTheLowRankInverses() {
        KroneckerPreconditioner rule = new KroneckerPreconditioner(KFLR.class);
        ParameterCurvature s = state(sqrtInputFactor(13), outputFactor(14));
        PreconditionedUpdaterTest.seed(15);
        INDArray g = Nd4j.randn(DataType.DOUBLE, N_IN, N_OUT);
        INDArray before = rule.precondition(g, s, 0.1, true);
        ParameterCurvature restored = ParameterCurvature.restore(s.save());
        assertEquals(s.sqrtInputFactor, restored.sqrtInputFactor);
        assertEquals(s.lowRankDamping, restored.lowRankDamping, 0.0);
        assertEquals(before, rule.precondition(g, restored, 0.1, false), "the cached low-rank inverses are applied");
    }

    @Test
    void aFloat32StepThroughTheSquareRootLosesNoMoreThanTheConditionNumberAllows() {
        // pixel-like inputs in [0, 1]: one large eigenvalue (the mean) over many small ones, small damping
        int m = 20;
        int nIn = 60;
        PreconditionedUpdaterTest.seed(16);
        INDArray r = Nd4j.rand(DataType.DOUBLE, m, nIn).divi(Math.sqrt(m)).castTo(DataType.FLOAT)
                .castTo(DataType.DOUBLE);
        INDArray b = outputFactor(17);
        PreconditionedUpdaterTest.seed(18);
        INDArray g = Nd4j.randn(DataType.DOUBLE, nIn, N_OUT).castTo(DataType.FLOAT).castTo(DataType.DOUBLE);
        KroneckerPreconditioner rule = new KroneckerPreconditioner(KFLR.class);
        for (double lambda : new double[] {1e-4, 1e-2}) {
            ParameterCurvature s = new ParameterCurvature();
            s.segment = new BlockCurvature.Segment("1", "W", 0, nIn * N_OUT, new long[] {nIn, N_OUT}, 'c', 0.0);
            s.inputSideFirst = true;
            s.average(new Preconditioner.Curvature(new INDArray[] {null, b}, r), 0.0);
            INDArray reference = rule.precondition(g, s, lambda, true);
            ParameterCurvature s32 = ParameterCurvature.restore(s.save());
            s32.inverses = null;
            INDArray step32 = rule.precondition(g.castTo(DataType.FLOAT), s32, lambda, true);
            assertTrue(s32.lowRankDamping > 0);
            double largest = r.transpose().mmul(r).norm2Number().doubleValue();
            double condition = largest / s32.lowRankDamping;
            double error = relativeError(reference, step32);
            assertTrue(error < 6e-8 * condition, "λ = " + lambda + ": relative error " + error
                    + " against float32 precision × condition number " + condition);
        }
    }
}
