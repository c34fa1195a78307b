// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

/**
 * An independent evaluation of the Rényi divergences between {@code μ = (1−q) N(0, σ²) + q N(1, σ²)} and
 * {@code μ0 = N(0, σ²)} by numerical integration, sharing no code with the implementation.
 *
 * <p>With {@code L(z) = log(μ(z)/μ0(z)) = log(1 − q + q e^{(2z−1)/(2σ²)})},
 * {@code E_{μ0}[(μ/μ0)^a] − 1 = ∫ φ_σ(z) (e^{a L(z)} − 1) dz}: a = α gives {@code D_α(μ ‖ μ0)}, a = 1 − α gives
 * {@code D_α(μ0 ‖ μ)} (since {@code E_μ[(μ0/μ)^α] = E_{μ0}[(μ/μ0)^{1−α}]}). The integrand is taken as
 * {@code φ_σ (e^{aL} − 1 − a (e^L − 1))}: the subtracted part integrates to 0 ({@code E_{μ0}[μ/μ0] = 1}) and what is
 * left is non-negative (y^a is convex for a ≥ 1 and for a ≤ 0), so the sum has no cancellation and small divergences
 * keep their relative accuracy.
 *
 * <p>The integrand is analytic in the strip {@code |Im z| < πσ²} (its singularities are where
 * {@code 1 − q + q e^{(2z−1)/(2σ²)} = 0}) and decays like a Gaussian, so the trapezoidal rule on a uniform grid
 * converges geometrically, with error about {@code e^{−2π²σ²/h}} plus {@code e^{−2π²σ²/h²}} for the Gaussian
 * factors; the range [−14σ, max(α, 1) + 14σ] holds both bumps (around 0 and around α) to far below double precision.
 * Each value is computed with step h and h/2 and the two must agree to 10⁻¹², or the test fails.
 */
final class RenyiQuadrature {

    private static final double LOG_SQRT_2_PI = 0.5 * Math.log(2 * Math.PI);
    /** Below {@code SERIES_LIMIT / max(1, |a|)} in |u|, {@code (1 + u)^a − 1 − a u} is summed as a series. */
    private static final double SERIES_LIMIT = 0.1;

    private RenyiQuadrature() {
    }

    /**
     * @param q sample rate in (0, 1)
     * @param sigma σ &gt; 0
     * @param power a: α for D(μ ‖ μ0), 1 − α for D(μ0 ‖ μ)
     * @return {@code E_{μ0}[(μ/μ0)^a] − 1}
     */
    static double excess(double q, double sigma, double power) {
        double reach = Math.max(Math.max(power, 1 - power), 1);
        double step = Math.min(sigma, sigma * sigma) / 8;
        double coarse = trapezoid(q, sigma, power, -14 * sigma, reach + 14 * sigma, step);
        double fine = trapezoid(q, sigma, power, -14 * sigma, reach + 14 * sigma, step / 2);
        if (!(Math.abs(fine - coarse) <= 1e-12 * Math.abs(fine))) {
            throw new AssertionError("quadrature not converged for q=" + q + " σ=" + sigma + " a=" + power
                    + ": " + coarse + " with step h, " + fine + " with h/2");
        }
        return fine;
    }

    private static double trapezoid(double q, double sigma, double power, double low, double high, double step) {
        long points = (long) Math.ceil((high - low) / step);
        double sum = 0;
        for (long k = 0; k <= points; k++) {
            sum += integrand(q, sigma, power, low + k * step);
        }
        return sum * step;
    }

    /** @return {@code φ_σ(z) (e^{a L(z)} − 1 − a (e^{L(z)} − 1))}, which is {@code >= 0} */
    private static double integrand(double q, double sigma, double power, double z) {
        double t = (2 * z - 1) / (2 * sigma * sigma);
        double logRatio = t < 700 ? Math.log1p(q * Math.expm1(t)) : Math.log(q) + t + Math.log1p((1 - q) / q
                * Math.exp(-t));
        double logDensity = -z * z / (2 * sigma * sigma) - Math.log(sigma) - LOG_SQRT_2_PI;
        double density = Math.exp(logDensity);
        double u = t < 700 ? q * Math.expm1(t) : Double.POSITIVE_INFINITY;
        if (Math.abs(u) <= SERIES_LIMIT / Math.max(1, Math.abs(power))) {
            return density * curvature(u, power);
        }
        double exponent = power * logRatio;
        if (exponent > 50 || u > 1e300) {
            return Math.exp(exponent + logDensity) - density - power * (Math.exp(logRatio + logDensity) - density);
        }
        return density * (Math.expm1(exponent) - power * u);
    }

    /** @return {@code (1 + u)^a − 1 − a u = Σ_{k≥2} C(a, k) u^k} for small |u| */
    private static double curvature(double u, double power) {
        double term = power * (power - 1) / 2 * u * u;
        double sum = term;
        for (int k = 2; k < 200 && Math.abs(term) > 1e-18 * Math.abs(sum); k++) {
            term *= (power - k) / (k + 1) * u;
            sum += term;
        }
        return sum;
    }
}
