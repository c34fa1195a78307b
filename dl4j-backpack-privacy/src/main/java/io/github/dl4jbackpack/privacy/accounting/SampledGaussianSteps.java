// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

/**
 * A run of identical training steps, each a Poisson-subsampled Gaussian mechanism: every example is included
 * independently with probability {@code sampleRate} and Gaussian noise of standard deviation {@code noiseMultiplier}
 * times the clipping norm is added to the sum of the clipped per-example gradients.
 *
 * @param noiseMultiplier σ, finite and {@code >= 0} (0 means no noise: no privacy)
 * @param sampleRate q in [0, 1] (0 means no example is ever used: no privacy spent)
 * @param steps how many such steps, {@code >= 1}
 */
public record SampledGaussianSteps(double noiseMultiplier, double sampleRate, long steps) {

    /**
     * Checks the arguments.
     *
     * @param noiseMultiplier σ, finite and {@code >= 0}
     * @param sampleRate q in [0, 1]
     * @param steps how many such steps, {@code >= 1}
     * @throws IllegalArgumentException if σ is negative, NaN or infinite, q is outside [0, 1] or steps is below 1
     */
    public SampledGaussianSteps {
        Checks.noiseMultiplier(noiseMultiplier);
        Checks.sampleRate(sampleRate);
        Checks.steps(steps);
    }
}
