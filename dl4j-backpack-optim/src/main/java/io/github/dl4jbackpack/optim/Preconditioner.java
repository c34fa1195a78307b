// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;


import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.ParameterQuantities;
import org.nd4j.linalg.api.ndarray.INDArray;

/** How one rule turns a parameter's gradient into its preconditioned direction. */
interface Preconditioner {

    /**
     * @param gradient {@code ∇L + η θ} of one parameter in its {@code paramTable()} shape
     *     (float64)
     * @param segment which parameter, with its L2 strength η
     * @param quantities the iteration's quantities
     * @param damping λ
     * @return {@code (G + (λ+η) I)⁻¹ gradient} in the same shape (float64)
     */
    INDArray precondition(INDArray gradient, BlockCurvature.Segment segment, ParameterQuantities quantities, double damping);
}
