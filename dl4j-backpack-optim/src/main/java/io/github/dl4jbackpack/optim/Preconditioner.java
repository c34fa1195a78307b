// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;


import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.ParameterQuantities;
import org.nd4j.linalg.api.ndarray.INDArray;

/** How one rule reads a parameter's curvature and turns the parameter's gradient into its preconditioned direction. */
interface Preconditioner {

    /**
     * One iteration's curvature of one parameter, float64.
     *
     * @param factors in the order of {@link ParameterCurvature#factors}; {@code A} null where it is given as its
     *     square root
     * @param sqrtInputFactor {@code R} with {@code A = RᵀR} (a dense weight whose layer saw fewer rows than inputs),
     *     or null
     */
    record Curvature(INDArray[] factors, INDArray sqrtInputFactor) {

        /** @return the factors with {@code A} formed from its square root where it is given as that */
        INDArray[] formedFactors() {
            if (sqrtInputFactor == null) {
                return factors;
            }
            INDArray[] formed = factors.clone();
            formed[0] = ParameterCurvature.gram(sqrtInputFactor);
            return formed;
        }
    }

    /**
     * Reads this iteration's curvature of one parameter.
     *
     * @param segment which parameter
     * @param quantities the iteration's quantities
     * @param state the parameter's state: its factors are averaged with the returned ones by the caller; a
     *     preconditioner may record how they are arranged
     * @return the curvature
     */
    Curvature read(BlockCurvature.Segment segment, ParameterQuantities quantities, ParameterCurvature state);

    /**
     * @param gradient {@code ∇L + η θ} of one parameter in its {@code paramTable()} shape (float64, or float32 for a
     *     network of a lower precision)
     * @param state the parameter's averaged curvature and cached inverses
     * @param damping λ
     * @param refresh whether this is an iteration to recompute cached inverses from the averaged curvature if it
     *     changed since they were computed (they are also computed when none are cached)
     * @return {@code (G + (λ+η) I)⁻¹ gradient} in the same shape and type
     */
    INDArray precondition(INDArray gradient, ParameterCurvature state, double damping, boolean refresh);

    /**
     * @param direction a direction in the parameter's {@code paramTable()} shape, float64
     * @param state the parameter's averaged curvature
     * @return {@code dᵀ G d} with the rule's undamped curvature G (for the quadratic model of adaptive damping)
     */
    double curvatureQuadratic(INDArray direction, ParameterCurvature state);
}
