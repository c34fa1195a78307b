// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

import java.util.List;

/**
 * Tracks the privacy spent by a sequence of Poisson-subsampled Gaussian steps and reports it as ε for a given δ.
 *
 * <p>Implementations are mutable and not thread-safe. {@link RdpAccountant} gives an upper bound on ε and is the
 * one to report guarantees with; {@link GdpAccountant} gives an asymptotic estimate that can be too low.
 */
public interface PrivacyAccountant {

    /**
     * Records {@code steps} identical steps.
     *
     * @param noiseMultiplier σ, finite and {@code >= 0}
     * @param sampleRate q in [0, 1]
     * @param steps how many steps, {@code >= 1}
     * @throws IllegalArgumentException if an argument is out of range, or the accountant cannot compose these steps
     *     with the ones it has (see the implementation)
     */
    void step(double noiseMultiplier, double sampleRate, long steps);

    /**
     * Records one step; the same as {@code step(noiseMultiplier, sampleRate, 1)}.
     *
     * @param noiseMultiplier σ, finite and {@code >= 0}
     * @param sampleRate q in [0, 1]
     * @throws IllegalArgumentException as {@link #step(double, double, long)}
     */
    default void step(double noiseMultiplier, double sampleRate) {
        step(noiseMultiplier, sampleRate, 1);
    }

    /**
     * The privacy spent so far.
     *
     * @param delta δ in (0, 1)
     * @return ε {@code >= 0} such that the steps recorded so far are (ε, δ)-differentially private (an estimate only
     *     for accountants that say so); 0 when nothing was recorded; {@code +Infinity} when no finite ε holds
     * @throws IllegalArgumentException if δ is not in (0, 1)
     */
    double epsilon(double delta);

    /**
     * The steps recorded so far, consecutive identical ones merged.
     *
     * @return an unmodifiable copy, oldest first
     */
    List<SampledGaussianSteps> history();

    /**
     * The number of steps recorded so far.
     *
     * @return the sum of {@link SampledGaussianSteps#steps()} over {@link #history()}
     */
    default long totalSteps() {
        long total = 0;
        for (SampledGaussianSteps entry : history()) {
            total = Math.addExact(total, entry.steps());
        }
        return total;
    }

    /**
     * The accounting method, as Opacus names it.
     *
     * @return {@code "rdp"} or {@code "gdp"} for the accountants of this package
     */
    String mechanism();
}
