// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

import java.util.List;

/**
 * Privacy accounting with Gaussian differential privacy through the central limit theorem — an asymptotic
 * <em>estimate</em>, not a guarantee.
 *
 * <p>By the CLT for f-DP (Dong, Roth and Su 2019, "Gaussian Differential Privacy", arXiv:1905.02383), T steps of the
 * Poisson-subsampled Gaussian mechanism are approximately μ-GDP with
 * <pre>μ = q √(T (e^{1/σ²} − 1))</pre>
 * (Bu, Dong, Long and Su 2020, "Deep Learning with Gaussian Differential Privacy", Harvard Data Science Review; the
 * formula of Opacus' {@code compute_mu_poisson}), and μ-GDP is (ε, δ)-DP exactly when
 * <pre>δ = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2)</pre>
 * which is solved for ε by bisection ({@link #epsilonForMu}).
 *
 * <p><strong>Limits.</strong> The CLT holds as T → ∞ with {@code q√T} fixed. For a finite run the result is an
 * approximation that can <em>underestimate</em> ε — badly when the number of steps is small, when q is not small,
 * or when σ is small — and Opacus warns that its Gaussian accountant "can underestimate privacy expenditure". Use
 * {@link RdpAccountant} (the default) to report privacy guarantees; use this accountant only to compare.
 *
 * <p>Like Opacus' {@code GaussianAccountant}, only steps with one σ and one q are composed: a step with other values
 * is refused. Instances are mutable and not thread-safe.
 */
public final class GdpAccountant implements PrivacyAccountant {

    private SampledGaussianSteps entry;

    /** An empty accountant. */
    public GdpAccountant() {
    }

    /**
     * μ of T Poisson-subsampled Gaussian steps by the CLT.
     *
     * @param noiseMultiplier σ, finite and {@code >= 0}
     * @param sampleRate q in [0, 1]
     * @param steps T {@code >= 1}
     * @return {@code q √(T (e^{1/σ²} − 1))}: 0 when q = 0, otherwise +Infinity when σ = 0
     * @throws IllegalArgumentException if an argument is out of range
     */
    public static double muPoisson(double noiseMultiplier, double sampleRate, long steps) {
        Checks.noiseMultiplier(noiseMultiplier);
        Checks.sampleRate(sampleRate);
        Checks.steps(steps);
        if (sampleRate == 0) {
            return 0;
        }
        return sampleRate * Math.sqrt(steps * Math.expm1(1 / (noiseMultiplier * noiseMultiplier)));
    }

    /**
     * δ of a μ-GDP mechanism at ε (Dong, Roth and Su 2019, Corollary 2.13).
     *
     * @param mu μ {@code >= 0}, or +Infinity
     * @param epsilon ε {@code >= 0}, or +Infinity
     * @return {@code Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2)} in [0, 1]: 0 when μ = 0 or ε = +Infinity, otherwise 1 when
     *     μ = +Infinity
     * @throws IllegalArgumentException if μ or ε is negative or NaN
     */
    public static double deltaForMu(double mu, double epsilon) {
        checkMu(mu);
        if (!(epsilon >= 0)) {
            throw new IllegalArgumentException("epsilon must be >= 0, got " + epsilon);
        }
        if (mu == 0 || epsilon == Double.POSITIVE_INFINITY) {
            return 0;
        }
        if (mu == Double.POSITIVE_INFINITY) {
            return 1;
        }
        if (epsilon == 0) {
            return SpecialFunctions.erf(mu / (2 * Math.sqrt(2)));
        }
        // Φ(a) − e^ε Φ(b) = Φ(a) (1 − e^{ε + log Φ(b) − log Φ(a)}), in log space so that far tails do not underflow.
        double logA = SpecialFunctions.logNormalCdf(-epsilon / mu + mu / 2);
        double logB = epsilon + SpecialFunctions.logNormalCdf(-epsilon / mu - mu / 2);
        return logB >= logA ? 0 : -Math.exp(logA) * Math.expm1(logB - logA);
    }

    /**
     * ε of a μ-GDP mechanism at δ: the root of {@link #deltaForMu} (decreasing in ε), bracketed by doubling and
     * found by bisection to a relative 10⁻¹⁵; the upper end of the final bracket is returned.
     *
     * @param mu μ {@code >= 0}, or +Infinity
     * @param delta δ in (0, 1)
     * @return ε {@code >= 0}: 0 when already {@code δ(0) <= δ}, +Infinity when μ = +Infinity
     * @throws IllegalArgumentException if μ is negative or NaN or δ is not in (0, 1)
     */
    public static double epsilonForMu(double mu, double delta) {
        checkMu(mu);
        Checks.delta(delta);
        if (mu == Double.POSITIVE_INFINITY) {
            return Double.POSITIVE_INFINITY;
        }
        if (deltaForMu(mu, 0) <= delta) {
            return 0;
        }
        double low = 0;
        double high = 1;
        while (deltaForMu(mu, high) > delta) {
            low = high;
            high *= 2;
            if (high == Double.POSITIVE_INFINITY) {
                return high;
            }
        }
        while (high - low > 1e-15 * high) {
            double middle = 0.5 * (low + high);
            if (middle <= low || middle >= high) {
                break;
            }
            if (deltaForMu(mu, middle) > delta) {
                low = middle;
            } else {
                high = middle;
            }
        }
        return high;
    }

    /**
     * {@inheritDoc}
     *
     * @throws IllegalArgumentException also if σ or q differs from the steps recorded before
     */
    @Override
    public void step(double noiseMultiplier, double sampleRate, long steps) {
        SampledGaussianSteps next = new SampledGaussianSteps(noiseMultiplier, sampleRate, steps);
        if (entry == null) {
            entry = next;
        } else if (entry.noiseMultiplier() == noiseMultiplier && entry.sampleRate() == sampleRate) {
            entry = new SampledGaussianSteps(noiseMultiplier, sampleRate, Math.addExact(entry.steps(), steps));
        } else {
            throw new IllegalArgumentException("GdpAccountant composes only steps with one noise multiplier and one"
                    + " sample rate: got noiseMultiplier = " + noiseMultiplier + ", sampleRate = " + sampleRate
                    + " after noiseMultiplier = " + entry.noiseMultiplier() + ", sampleRate = "
                    + entry.sampleRate() + "; use RdpAccountant for varying ones");
        }
    }

    /**
     * μ of the steps recorded so far.
     *
     * @return {@link #muPoisson} of the history, 0 when nothing was recorded
     */
    public double mu() {
        return entry == null ? 0 : muPoisson(entry.noiseMultiplier(), entry.sampleRate(), entry.steps());
    }

    /**
     * {@inheritDoc}
     *
     * <p>An asymptotic estimate, {@link #epsilonForMu} of {@link #mu()}, that can be lower than the true ε (see the
     * class documentation).
     */
    @Override
    public double epsilon(double delta) {
        return epsilonForMu(mu(), Checks.delta(delta));
    }

    @Override
    public List<SampledGaussianSteps> history() {
        return entry == null ? List.of() : List.of(entry);
    }

    /** @return {@code "gdp"} */
    @Override
    public String mechanism() {
        return "gdp";
    }

    private static void checkMu(double mu) {
        if (!(mu >= 0)) {
            throw new IllegalArgumentException("mu must be >= 0 or +Infinity, got " + mu);
        }
    }
}
