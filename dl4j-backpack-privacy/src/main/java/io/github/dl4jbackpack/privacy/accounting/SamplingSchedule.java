// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

/**
 * The sample rate and number of steps of a DP-SGD run with Poisson sampling.
 *
 * @param sampleRate q in (0, 1]
 * @param steps the number of steps, {@code >= 1}
 */
public record SamplingSchedule(double sampleRate, long steps) {

    /**
     * Checks the arguments.
     *
     * @param sampleRate q in (0, 1]
     * @param steps the number of steps, {@code >= 1}
     * @throws IllegalArgumentException if q is not in (0, 1] or steps is below 1
     */
    public SamplingSchedule {
        if (!(sampleRate > 0 && sampleRate <= 1)) {
            throw new IllegalArgumentException("sampleRate must be in (0, 1], got " + sampleRate);
        }
        Checks.steps(steps);
    }

    /**
     * The schedule of {@code epochs} passes over a dataset of N examples with expected batch size B:
     * {@code q = B / N} and {@code steps = ⌊epochs · N / B⌋}. This is the step count Opacus' {@code
     * get_noise_multiplier} uses for a number of epochs ({@code int(epochs / sample_rate)}), computed exactly in
     * integers rather than in floating point.
     *
     * @param expectedBatchSize B, in [1, N]
     * @param datasetSize N {@code >= 1}
     * @param epochs {@code >= 1}
     * @return the schedule
     * @throws IllegalArgumentException if an argument is out of range
     * @throws ArithmeticException if {@code epochs · N} overflows a long
     */
    public static SamplingSchedule ofEpochs(long expectedBatchSize, long datasetSize, int epochs) {
        if (datasetSize < 1) {
            throw new IllegalArgumentException("datasetSize must be >= 1, got " + datasetSize);
        }
        if (expectedBatchSize < 1 || expectedBatchSize > datasetSize) {
            throw new IllegalArgumentException("expectedBatchSize must be in [1, datasetSize = " + datasetSize
                    + "], got " + expectedBatchSize);
        }
        if (epochs < 1) {
            throw new IllegalArgumentException("epochs must be >= 1, got " + epochs);
        }
        return new SamplingSchedule((double) expectedBatchSize / datasetSize,
                Math.multiplyExact(epochs, datasetSize) / expectedBatchSize);
    }
}
