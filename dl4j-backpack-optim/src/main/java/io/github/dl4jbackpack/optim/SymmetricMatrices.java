// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.eigen.Eigen;

/** Damped inverses of symmetric positive semi-definite curvature factors. */
final class SymmetricMatrices {

    private SymmetricMatrices() {
    }

    /** Eigenvalues of the damped factor at most this fraction of the largest count as zero. */
    static final double RELATIVE_CUTOFF = 1e-12;

    /**
     * {@code (M + δ I)⁺} through the eigendecomposition {@code M = V diag(e) Vᵀ}, as
     * {@code V diag(1/(e + δ)) Vᵀ}: stable where the determinant is tiny (LU-based inverses refuse
     * such matrices) and exactly symmetric. Directions without curvature ({@code e + δ} at most
     * {@link #RELATIVE_CUTOFF} of the largest, e.g. with δ = 0 on an all-zero factor) get 0, the
     * pseudo-inverse, instead of an infinite step.
     *
     * @param m a symmetric positive semi-definite matrix
     * @param damping δ ≥ 0
     * @return the damped (pseudo-)inverse, float64
     */
    static INDArray dampedInverse(INDArray m, double damping) {
        INDArray vectors = m.castTo(DataType.DOUBLE).add(m.castTo(DataType.DOUBLE).transpose()).muli(0.5).dup('f');
        INDArray values = Eigen.symmetricGeneralizedEigenvalues(vectors, true).addi(damping);
        double cutoff = Math.max(values.maxNumber().doubleValue(), 0) * RELATIVE_CUTOFF;
        double[] inverse = values.toDoubleVector();
        for (int i = 0; i < inverse.length; i++) {
            inverse[i] = inverse[i] > cutoff && inverse[i] > 0 ? 1.0 / inverse[i] : 0.0;
        }
        return vectors.mulRowVector(org.nd4j.linalg.factory.Nd4j.createFromArray(inverse)).mmul(vectors.transpose());
    }
}
