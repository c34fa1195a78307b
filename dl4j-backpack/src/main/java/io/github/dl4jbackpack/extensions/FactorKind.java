// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

/**
 * Which matrix factor the second-order pass propagates (docs/math.md#second-order): the exact
 * symmetric factor of the loss Hessian, a Monte Carlo factor with a number of samples, the
 * residual factors of the Hessian at nonlinear activations, or KFRA's batch-averaged matrix.
 *
 * @param type the kind of factor
 * @param samples the number of Monte Carlo samples (0 unless {@code SAMPLED})
 */
public record FactorKind(Type type, int samples) {

    /** The kinds of factor. */
    public enum Type {
        /** {@code S_n} with {@code S_n S_nᵀ = H_n / N}, C columns. */
        EXACT,
        /** Monte Carlo columns whose outer products have expectation {@code H_n / N}. */
        SAMPLED,
        /** The Hessian's residual terms {@code diag(φ''(z) ⊙ ∂L/∂a)} at every activation, propagated down. */
        RESIDUAL,
        /** One batch-averaged matrix instead of per-example factors (KFRA, Botev et al. 2017). */
        AVERAGED
    }

    /** The exact factor. */
    public static final FactorKind EXACT = new FactorKind(Type.EXACT, 0);
    /** The Hessian residual factors. */
    public static final FactorKind RESIDUAL = new FactorKind(Type.RESIDUAL, 0);
    /** The batch-averaged curvature matrix of KFRA. */
    public static final FactorKind AVERAGED = new FactorKind(Type.AVERAGED, 0);

    /**
     * @param samples the number of Monte Carlo samples, at least 1
     * @return the sampled factor with that many columns
     */
    public static FactorKind sampled(int samples) {
        if (samples < 1) {
            throw new IllegalArgumentException("the number of Monte Carlo samples must be at least 1, got " + samples);
        }
        return new FactorKind(Type.SAMPLED, samples);
    }
}
