// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.losses;

import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The curvature of one loss (with its output activation) w.r.t. the output layer's pre-activation
 * {@code z}: the Hessian {@code H_n = ∇²_z ℓ(z_n, y_n)}, an exact symmetric factorisation of
 * {@code H_n / N}, and a sampled one whose outer product equals {@code H_n / N} in expectation.
 * One implementation per supported (loss, activation) pair; see {@link LossCurvatures}.
 */
public interface LossCurvature {

    /** @return a description of the pair, for messages */
    String describe();

    /**
     * @param z the output pre-activations {@code [N, C]}
     * @return {@code H_n} for every example, {@code [N, C, C]}
     */
    INDArray hessian(INDArray z);

    /**
     * @param z the output pre-activations {@code [N, C]}
     * @param batchSize N, the divisor of the mean loss
     * @return {@code S} with {@code S_n S_nᵀ = H_n / N}, shape {@code [N, V, C]} (column v of
     *     {@code S_n} is {@code S[n, v, :]}), V = C
     */
    INDArray sqrtHessian(INDArray z, long batchSize);

    /**
     * Monte Carlo factor: column m is {@code (1/√(N M)) ∇_z ℓ(z_n, ŷ_m)} with {@code ŷ_m} drawn
     * from the model's predictive distribution using {@code Nd4j.getRandom()}.
     *
     * @param z the output pre-activations {@code [N, C]}
     * @param batchSize N
     * @param samples M
     * @return the factor, shape {@code [N, M, C]}
     */
    INDArray sampledSqrtHessian(INDArray z, long batchSize, int samples);
}
