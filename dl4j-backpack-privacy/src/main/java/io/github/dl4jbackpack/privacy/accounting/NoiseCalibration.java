// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

import java.util.Objects;
import java.util.function.Supplier;

/**
 * The smallest noise multiplier σ that keeps a DP-SGD run within a privacy budget (ε, δ).
 *
 * <p>ε is computed for T identical steps on a fresh accountant for each σ tried. The upper end of the search is
 * found by doubling from σ = 1 (σ = 0 spends an infinite ε when q &gt; 0), then the interval is bisected until it is
 * narrower than 10⁻¹⁰ of σ; the upper end is returned, so ε(σ) never exceeds the target and, ε being continuous and
 * decreasing in σ, is within a hair of it (always above 99 % of it). Opacus' {@code get_noise_multiplier} does the
 * same with a looser stop (an absolute 0.01 on ε), so its σ is slightly larger.
 */
public final class NoiseCalibration {

    /** Opacus' {@code MAX_SIGMA}: a target that needs more noise than this is refused as unreachable. */
    public static final double MAX_NOISE_MULTIPLIER = 1e6;

    private static final double RELATIVE_TOLERANCE = 1e-10;

    private NoiseCalibration() {
    }

    /**
     * σ for a target ε with the {@link RdpAccountant} on its default orders.
     *
     * @param targetEpsilon ε &gt; 0, finite
     * @param delta δ in (0, 1)
     * @param sampleRate q in (0, 1]
     * @param steps T {@code >= 1}
     * @return σ with {@code 0.99 · targetEpsilon <= ε(σ) <= targetEpsilon}
     * @throws IllegalArgumentException if an argument is out of range, or the target is unreachable: with a grid of
     *     orders ε cannot go below {@code min_α [log((α−1)/α) − (log δ + log α)/(α − 1)]} however large σ
     */
    public static double noiseMultiplier(double targetEpsilon, double delta, double sampleRate, long steps) {
        return noiseMultiplier(targetEpsilon, delta, sampleRate, steps, RdpAccountant::new);
    }

    /**
     * σ for a target ε with accountants of one's own, one fresh from {@code accountants} for each σ tried (whose ε
     * must decrease with σ).
     *
     * @param targetEpsilon ε &gt; 0, finite
     * @param delta δ in (0, 1)
     * @param sampleRate q in (0, 1]
     * @param steps T {@code >= 1}
     * @param accountants gives an empty accountant at each call, for example {@code GdpAccountant::new}
     * @return σ with {@code ε(σ) <= targetEpsilon}, within 10⁻¹⁰ of the σ where ε(σ) reaches the target
     * @throws IllegalArgumentException if an argument is out of range, or the target is not reached with
     *     σ = {@link #MAX_NOISE_MULTIPLIER}
     * @throws NullPointerException if {@code accountants} is null or gives null
     */
    public static double noiseMultiplier(double targetEpsilon, double delta, double sampleRate, long steps,
            Supplier<? extends PrivacyAccountant> accountants) {
        if (!(targetEpsilon > 0) || Double.isInfinite(targetEpsilon)) {
            throw new IllegalArgumentException("targetEpsilon must be finite and > 0, got " + targetEpsilon);
        }
        Checks.delta(delta);
        if (!(sampleRate > 0 && sampleRate <= 1)) {
            throw new IllegalArgumentException("sampleRate must be in (0, 1], got " + sampleRate);
        }
        Checks.steps(steps);
        Objects.requireNonNull(accountants, "accountants");
        double low = 0;
        double high = 1;
        double epsilonHigh = epsilon(high, delta, sampleRate, steps, accountants);
        while (epsilonHigh > targetEpsilon) {
            if (high >= MAX_NOISE_MULTIPLIER) {
                throw new IllegalArgumentException("targetEpsilon = " + targetEpsilon + " is unreachable for delta = "
                        + delta + ", sampleRate = " + sampleRate + ", steps = " + steps + ": noiseMultiplier = "
                        + high + " still gives epsilon = " + epsilonHigh);
            }
            low = high;
            high *= 2;
            epsilonHigh = epsilon(high, delta, sampleRate, steps, accountants);
        }
        while (high - low > RELATIVE_TOLERANCE * high) {
            double middle = 0.5 * (low + high);
            if (epsilon(middle, delta, sampleRate, steps, accountants) <= targetEpsilon) {
                high = middle;
            } else {
                low = middle;
            }
        }
        return high;
    }

    private static double epsilon(double noiseMultiplier, double delta, double sampleRate, long steps,
            Supplier<? extends PrivacyAccountant> accountants) {
        PrivacyAccountant accountant = Objects.requireNonNull(accountants.get(), "accountants.get()");
        accountant.step(noiseMultiplier, sampleRate, steps);
        return accountant.epsilon(delta);
    }
}
