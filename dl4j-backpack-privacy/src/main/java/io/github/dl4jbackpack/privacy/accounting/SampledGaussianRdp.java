// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

import java.util.Objects;

/**
 * The Rényi differential privacy of one Poisson-subsampled Gaussian mechanism, computed exactly (Mironov, Talwar and
 * Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism", arXiv:1908.10530, Section 3.3).
 *
 * <p>With {@code μ0 = N(0, σ²)} and {@code μ = (1 − q) N(0, σ²) + q N(1, σ²)}, the RDP at order α is
 * {@code D_α(μ ‖ μ0) = log(A_α) / (α − 1)} with {@code A_α = E_{z∼μ0}[(μ(z)/μ0(z))^α]}; the other direction
 * {@code D_α(μ0 ‖ μ)} is never larger (ibid., Section 3), so this is the RDP for adding or removing one example.
 * {@code A_α} is evaluated as TensorFlow Privacy's {@code rdp_accountant} and Opacus' {@code analysis/rdp.py} do, in
 * log space:
 * <ul>
 *   <li>integer α: the binomial expansion {@code A_α = Σ_{i=0}^{α} C(α,i) qⁱ (1−q)^{α−i} e^{(i²−i)/(2σ²)}}, summed
 *       here as {@code log(A_α − 1)} over {@code i ≥ 2} (all terms positive) so that small values keep their
 *       relative accuracy;</li>
 *   <li>fractional α: the two series over the integration ranges below and above
 *       {@code z0 = σ² log(1/q − 1) + 1/2}, with {@code erfc} factors, summed until the alternating tail is below
 *       {@code e^{-37}} of the sum (the terms decrease in magnitude once {@code i > ⌊α⌋}). Terms in the far tail use
 *       the scaled {@code erfcx} so that the large exponents cancel analytically instead of numerically. Where
 *       {@code A_α} is near 1 it is also accumulated as {@code A_α − 1}, the probabilities of the two ranges being
 *       subtracted from the leading terms, for the same reason as above.</li>
 * </ul>
 *
 * <p>Accuracy: integer orders are relatively accurate to about 10⁻¹³ whatever the size of the RDP; for fractional
 * orders {@code A_α − 1} is accurate to about {@code 10⁻¹⁶ A_α} (the tail is cut relative to {@code A_α}): far below
 * what matters for ε, but an {@code A_α − 1} as small as 10⁻⁸ keeps only about eight correct digits.
 *
 * <p>Special cases: q = 0 gives 0 (the mechanism never sees the example); otherwise σ = 0 gives +Infinity; q = 1
 * gives the Gaussian mechanism's {@code α / (2σ²)}; α = +Infinity gives +Infinity. The cost grows linearly with α
 * (and, for fractional α, with the length of the tail, which is long only for q near 1/2 with a large σ), so finite
 * orders are limited to 10⁶.
 */
public final class SampledGaussianRdp {

    /** The tail is cut where a term falls below {@code e^{-TAIL}} of the running sum. */
    private static final double TAIL = 37;
    private static final double SQRT_2 = 1.4142135623730950488;

    private SampledGaussianRdp() {
    }

    /**
     * The RDP of one step.
     *
     * @param noiseMultiplier σ, finite and {@code >= 0}
     * @param sampleRate q in [0, 1]
     * @param order α {@code > 1}: at most 10⁶, or +Infinity
     * @return the Rényi divergence of order α, {@code >= 0}, possibly +Infinity
     * @throws IllegalArgumentException if an argument is out of range
     */
    public static double rdp(double noiseMultiplier, double sampleRate, double order) {
        Checks.noiseMultiplier(noiseMultiplier);
        Checks.sampleRate(sampleRate);
        Checks.order(order);
        if (sampleRate == 0) {
            return 0;
        }
        if (noiseMultiplier == 0) {
            return Double.POSITIVE_INFINITY;
        }
        if (sampleRate == 1) {
            return order / (2 * noiseMultiplier * noiseMultiplier);
        }
        double inverseVariance = 1 / (noiseMultiplier * noiseMultiplier);
        if (order == Double.POSITIVE_INFINITY || inverseVariance == Double.POSITIVE_INFINITY) {
            return Double.POSITIVE_INFINITY;
        }
        double logA = order == Math.rint(order)
                ? logAInteger(inverseVariance, sampleRate, (long) order)
                : logAFractional(noiseMultiplier, inverseVariance, sampleRate, order);
        return Math.max(0, logA / (order - 1));
    }

    /**
     * The RDP of one step at several orders.
     *
     * @param noiseMultiplier σ, finite and {@code >= 0}
     * @param sampleRate q in [0, 1]
     * @param orders the orders α, each {@code > 1}: at most 10⁶, or +Infinity
     * @return {@code rdp(noiseMultiplier, sampleRate, orders[k])} at each k, in a new array
     * @throws IllegalArgumentException if an argument is out of range
     * @throws NullPointerException if {@code orders} is null
     */
    public static double[] rdp(double noiseMultiplier, double sampleRate, double[] orders) {
        Objects.requireNonNull(orders, "orders");
        double[] rdp = new double[orders.length];
        for (int k = 0; k < orders.length; k++) {
            rdp[k] = rdp(noiseMultiplier, sampleRate, orders[k]);
        }
        return rdp;
    }

    /** @return {@code log A_α} for integer α = n ≥ 2 and 0 < q < 1, as {@code log1p(A_α − 1)} */
    private static double logAInteger(double inverseVariance, double q, long n) {
        double logQ = Math.log(q);
        double log1mQ = Math.log1p(-q);
        double halfInverseVariance = 0.5 * inverseVariance;
        BinomialCoefficient coefficient = new BinomialCoefficient(n);
        coefficient.next();
        coefficient.next();
        // A_α − 1 = Σ_{i≥2} C(n,i) qⁱ (1−q)^{n−i} (e^{i(i−1)/(2σ²)} − 1): the i = 0, 1 terms vanish.
        SignedLogSum excess = new SignedLogSum();
        for (long i = 2; i <= n; i++) {
            double term = coefficient.logAbs() + i * logQ + (n - i) * log1mQ
                    + logExpm1(i * (i - 1.0) * halfInverseVariance);
            if (term == Double.POSITIVE_INFINITY) {
                return Double.POSITIVE_INFINITY;
            }
            excess.add(term, false);
            coefficient.next();
        }
        return log1pExp(excess.log());
    }

    /** @return {@code log A_α} for fractional α &gt; 1 and 0 &lt; q &lt; 1 */
    private static double logAFractional(double sigma, double inverseVariance, double q, double alpha) {
        double logQ = Math.log(q);
        double log1mQ = Math.log1p(-q);
        double halfInverseVariance = 0.5 * inverseVariance;
        double z0 = sigma * sigma * (log1mQ - logQ) + 0.5;
        double sqrt2Sigma = SQRT_2 * sigma;
        // log of (1−q)^α e^{−z0²/(2σ²)} / 2: the factor shared by the terms past z0 once written with erfcx.
        double common = alpha * log1mQ - z0 * z0 * halfInverseVariance - SpecialFunctions.LN_2;
        // A_α − 1 in linear space, for when A_α is near 1: the i = 0 term of the first series minus P(z ≤ z0),
        // every other term, minus P(z > z0).
        double excess = 0.5 * SpecialFunctions.erfc(-z0 / sqrt2Sigma) * Math.expm1(alpha * log1mQ)
                - 0.5 * SpecialFunctions.erfc(z0 / sqrt2Sigma);
        SignedLogSum total = new SignedLogSum();
        BinomialCoefficient coefficient = new BinomialCoefficient(alpha);
        double floor = Math.floor(alpha);
        for (long i = 0; ; i++) {
            double j = alpha - i;
            double logCoefficient = coefficient.logAbs();
            boolean negative = coefficient.negative();
            // ∫_{−∞}^{z0} μ0(z) C(α,i) (1−q)^{α−i} (q μ1(z)/μ0(z))ⁱ dz
            double x0 = (i - z0) / sqrt2Sigma;
            double log0 = logCoefficient + (x0 <= 0
                    ? i * logQ + j * log1mQ + i * (i - 1.0) * halfInverseVariance + SpecialFunctions.logErfc(x0)
                            - SpecialFunctions.LN_2
                    : common + Math.log(SpecialFunctions.erfcx(x0)));
            // ∫_{z0}^{∞} μ0(z) C(α,i) (1−q)ⁱ (q μ1(z)/μ0(z))^{α−i} dz
            double x1 = (z0 - j) / sqrt2Sigma;
            double log1 = logCoefficient + (x1 <= 0
                    ? j * logQ + i * log1mQ + j * (j - 1) * halfInverseVariance + SpecialFunctions.logErfc(x1)
                            - SpecialFunctions.LN_2
                    : common + Math.log(SpecialFunctions.erfcx(x1)));
            if (log0 == Double.POSITIVE_INFINITY || log1 == Double.POSITIVE_INFINITY) {
                return Double.POSITIVE_INFINITY;
            }
            total.add(log0, negative);
            total.add(log1, negative);
            double sign = negative ? -1 : 1;
            if (i > 0) {
                excess += sign * Math.exp(log0);
            }
            excess += sign * Math.exp(log1);
            if (i > floor && Math.max(log0, log1) < total.log() - TAIL) {
                break;
            }
            coefficient.next();
        }
        double logA = total.log();
        return logA < 1 ? Math.log1p(excess) : logA;
    }

    /** @return {@code log(e^y − 1)} for {@code y >= 0} */
    private static double logExpm1(double y) {
        return y > TAIL ? y + Math.log1p(-Math.exp(-y)) : Math.log(Math.expm1(y));
    }

    /** @return {@code log(1 + e^y)} */
    private static double log1pExp(double y) {
        return y > 0 ? y + Math.log1p(Math.exp(-y)) : Math.log1p(Math.exp(y));
    }

    /** The generalised binomial coefficients {@code C(α, i)}, i = 0, 1, …, kept as a mantissa and a power of 2. */
    private static final class BinomialCoefficient {

        private static final int SCALE_BITS = 512;
        private static final double SCALE_LOG = SCALE_BITS * SpecialFunctions.LN_2;
        private static final double LARGE = Math.scalb(1.0, SCALE_BITS);
        private static final double SMALL = Math.scalb(1.0, -SCALE_BITS);

        private final double order;
        private long index;
        private double mantissa = 1;
        private long scale;

        BinomialCoefficient(double order) {
            this.order = order;
        }

        double logAbs() {
            return Math.log(Math.abs(mantissa)) + scale * SCALE_LOG;
        }

        boolean negative() {
            return mantissa < 0;
        }

        void next() {
            mantissa = mantissa * (order - index) / (index + 1);
            index++;
            if (Math.abs(mantissa) > LARGE) {
                mantissa = Math.scalb(mantissa, -SCALE_BITS);
                scale++;
            } else if (Math.abs(mantissa) < SMALL) {
                mantissa = Math.scalb(mantissa, SCALE_BITS);
                scale--;
            }
        }
    }

    /** A sum of signed terms given by their logarithms, kept as {@code scaled · e^max} so that nothing overflows. */
    private static final class SignedLogSum {

        private double max = Double.NEGATIVE_INFINITY;
        private double scaled;

        void add(double logMagnitude, boolean negative) {
            if (logMagnitude == Double.NEGATIVE_INFINITY) {
                return;
            }
            double unit = negative ? -1 : 1;
            if (logMagnitude > max) {
                scaled = scaled * Math.exp(max - logMagnitude) + unit;
                max = logMagnitude;
            } else {
                scaled += unit * Math.exp(logMagnitude - max);
            }
        }

        /** @return the logarithm of the sum, which must be positive ({@code -Infinity} when nothing was added) */
        double log() {
            return max + Math.log(scaled);
        }
    }
}
