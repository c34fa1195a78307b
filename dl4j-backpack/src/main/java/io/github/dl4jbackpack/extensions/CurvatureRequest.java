// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

/**
 * What a second-order extension needs from the second-order pass: one statistic of the curvature
 * obtained from one kind of factor.
 *
 * @param kind the factor to propagate
 * @param statistic what to accumulate from it at every layer with parameters
 */
public record CurvatureRequest(FactorKind kind, Statistic statistic) {

    /** What the pass accumulates per layer. */
    public enum Statistic {
        /** The curvature diagonal, summed over the batch. */
        DIAGONAL,
        /** The curvature diagonal per example. */
        BATCH_DIAGONAL,
        /** The output-side Kronecker factor {@code B} (docs/math.md#kronecker-factors). */
        OUTPUT_FACTOR
    }

    /**
     * @param kind the factor to propagate
     * @return a request of the summed diagonal
     */
    public static CurvatureRequest diagonal(FactorKind kind) {
        return new CurvatureRequest(kind, Statistic.DIAGONAL);
    }

    /**
     * @param kind the factor to propagate
     * @return a request of the per-example diagonal
     */
    public static CurvatureRequest batchDiagonal(FactorKind kind) {
        return new CurvatureRequest(kind, Statistic.BATCH_DIAGONAL);
    }

    /**
     * @param kind the factor to propagate
     * @return a request of the output-side Kronecker factor
     */
    public static CurvatureRequest outputFactor(FactorKind kind) {
        return new CurvatureRequest(kind, Statistic.OUTPUT_FACTOR);
    }
}
