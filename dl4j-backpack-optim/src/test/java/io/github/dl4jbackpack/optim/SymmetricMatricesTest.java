// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The damped inverses of curvature factors: the Cholesky route against the eigendecomposition and against the
 * definition {@code (M + δI) X = I}, and the cases where it must step aside (no damping, damping below the
 * cutoff, a zero factor).
 */
class SymmetricMatricesTest {

    /** @return {@code X Xᵀ / k} for a random {@code [n, k]} X of rank min(n, k) */
    private static INDArray factor(int n, int k, long seed) {
        Nd4j.getRandom().setSeed(seed);
        INDArray x = Nd4j.randn(DataType.DOUBLE, n, k);
        return x.mmul(x.transpose()).divi(k);
    }

    private static double maxAbsDifference(INDArray a, INDArray b) {
        return a.sub(b).amaxNumber().doubleValue();
    }

    @Test
    void choleskyInverseEqualsTheEigendecompositionAndInverts() {
        for (int[] shape : new int[][] {{1, 1}, {7, 3}, {40, 80}, {60, 10}}) {
            INDArray m = factor(shape[0], shape[1], 3 + shape[0]);
            for (double damping : new double[] {1e-3, 0.1, 10}) {
                INDArray cholesky = SymmetricMatrices.choleskyInverse(m, damping);
                assertNotNull(cholesky, "positive definite with damping " + damping);
                INDArray eigen = SymmetricMatrices.eigenInverse(m, damping);
                double scale = eigen.amaxNumber().doubleValue();
                assertTrue(maxAbsDifference(cholesky, eigen) <= 1e-10 * scale, shape[0] + "x" + shape[0] + " δ="
                        + damping + ": " + maxAbsDifference(cholesky, eigen));
                INDArray product = m.add(Nd4j.eye(shape[0]).castTo(DataType.DOUBLE).muli(damping)).mmul(cholesky);
                assertTrue(maxAbsDifference(product, Nd4j.eye(shape[0]).castTo(DataType.DOUBLE)) <= 1e-9,
                        "(M + δI) X = I");
                assertEquals(0.0, maxAbsDifference(cholesky, cholesky.transpose()), 0.0, "exactly symmetric");
                assertEquals(DataType.DOUBLE, cholesky.dataType());
            }
        }
    }

    @Test
    void withoutSafeDampingTheEigendecompositionDecides() {
        INDArray m = factor(20, 5, 9);   // rank 5: singular without damping
        assertNull(SymmetricMatrices.choleskyInverse(m, 0.0), "no damping");
        assertNull(SymmetricMatrices.choleskyInverse(m, 1e-15), "damping below the relative cutoff");
        INDArray zero = Nd4j.zeros(DataType.DOUBLE, 4, 4);
        assertEquals(0.0, SymmetricMatrices.dampedInverse(zero, 0.0).amaxNumber().doubleValue(), 0.0,
                "the pseudo-inverse of a factor without curvature is 0");
        INDArray pseudo = SymmetricMatrices.dampedInverse(m, 0.0);
        // M M⁺ M = M for the pseudo-inverse
        assertTrue(maxAbsDifference(m.mmul(pseudo).mmul(m), m) <= 1e-9, "pseudo-inverse");
    }

    @Test
    void dampedInverseTakesTheCholeskyRouteWhenItIsSafe() {
        INDArray m = factor(30, 50, 4);
        INDArray expected = SymmetricMatrices.choleskyInverse(m, 0.01);
        assertEquals(0.0, maxAbsDifference(SymmetricMatrices.dampedInverse(m, 0.01), expected), 0.0);
    }
}
