package io.github.dl4jbackpack.optim;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.eigen.Eigen;

/** Damped inverses of symmetric positive semi-definite curvature factors. */
final class SymmetricMatrices {

    private SymmetricMatrices() {
    }

    /**
     * {@code (M + δ I)⁻¹} through the eigendecomposition {@code M = V diag(e) Vᵀ}, as
     * {@code V diag(1/(e + δ)) Vᵀ}: stable where the determinant is tiny (LU-based inverses refuse
     * such matrices) and exactly symmetric.
     *
     * @param m a symmetric positive semi-definite matrix
     * @param damping δ
     * @return the damped inverse, float64
     * @throws IllegalStateException if {@code M + δ I} is not positive definite
     */
    static INDArray dampedInverse(INDArray m, double damping) {
        INDArray vectors = m.castTo(DataType.DOUBLE).add(m.castTo(DataType.DOUBLE).transpose()).muli(0.5).dup('f');
        INDArray values = Eigen.symmetricGeneralizedEigenvalues(vectors, true).addi(damping);
        if (values.minNumber().doubleValue() <= 0) {
            throw new IllegalStateException("the damped curvature factor is not positive definite (smallest eigenvalue "
                    + values.minNumber() + "); use a positive damping λ");
        }
        return vectors.mulRowVector(values.rdivi(1.0)).mmul(vectors.transpose());
    }
}
