// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

/**
 * The error function family in double precision, relatively accurate to a few 10⁻¹⁵ over the whole real line,
 * including {@code log erfc} far in the tail where {@code erfc} underflows.
 *
 * <p>For {@code |x| < 1.25} the Maclaurin series of {@code e^{x²} erf(x)}, whose terms are all positive, is
 * summed; above it the Legendre continued fraction of the upper incomplete gamma function
 * {@code Γ(1/2, x²) = √π erfc(x)} is evaluated with the modified Lentz algorithm. Both give
 * {@code erfcx(x) = e^{x²} erfc(x)}, from which the others follow without overflow.
 */
final class SpecialFunctions {

    static final double SQRT_PI = 1.7724538509055160273;
    static final double LN_2 = 0.6931471805599453094;
    private static final double TWO_OVER_SQRT_PI = 1.1283791670955125739;
    private static final double INV_SQRT_2 = 0.7071067811865475244;
    /** Where the series hands over to the continued fraction; erfc(1.25) ≈ 0.077 so 1 − erf loses one digit. */
    private static final double SERIES_LIMIT = 1.25;
    /** Above this, {@code erfcx(x) = 1/(x√π)} to double precision (the next term, −1/(2x²), is below 1e-17). */
    private static final double ASYMPTOTIC_LIMIT = 1e9;
    private static final double TINY = 1e-300;
    private static final double EPSILON = 0x1p-53;
    private static final int MAX_TERMS = 500;

    private SpecialFunctions() {
    }

    /**
     * @param x any real
     * @return {@code erfc(x) = 1 − erf(x)}, relatively accurate also where it is tiny
     */
    static double erfc(double x) {
        if (x < 0) {
            return 2 - erfc(-x);
        }
        if (x < SERIES_LIMIT) {
            return 1 - erf(x);
        }
        // e^{-x²} with x² split exactly into hi + lo, so its rounding does not cost relative accuracy.
        double hi = x * x;
        double lo = Math.fma(x, x, -hi);
        return erfcx(x) * Math.exp(-hi) * Math.exp(-lo);
    }

    /**
     * @param x any real
     * @return {@code erf(x)}, relatively accurate also near 0
     */
    static double erf(double x) {
        if (x < 0) {
            return -erf(-x);
        }
        if (x < SERIES_LIMIT) {
            return TWO_OVER_SQRT_PI * x * positiveSeries(x) * Math.exp(-x * x);
        }
        return 1 - erfc(x);
    }

    /**
     * @param x any real
     * @return {@code log(erfc(x))}, finite wherever {@code x²} is
     */
    static double logErfc(double x) {
        if (x < SERIES_LIMIT) {
            return Math.log1p(-erf(x));
        }
        return Math.log(erfcx(x)) - x * x;
    }

    /**
     * @param x any real
     * @return {@code log Φ(x)}, finite far into the lower tail
     */
    static double logNormalCdf(double x) {
        if (x > 0) {
            return Math.log1p(-0.5 * erfc(x * INV_SQRT_2));
        }
        return logErfc(-x * INV_SQRT_2) - LN_2;
    }

    /** @return {@code Σ_{n≥0} (2x²)ⁿ / (1·3·…·(2n+1))}, so that {@code erf(x) = 2x e^{-x²} S / √π} */
    private static double positiveSeries(double x) {
        double twiceSquare = 2 * x * x;
        double term = 1;
        double sum = 1;
        for (int n = 1; n < MAX_TERMS && term > EPSILON * sum; n++) {
            term *= twiceSquare / (2 * n + 1);
            sum += term;
        }
        return sum;
    }

    /**
     * @param x {@code >= 0}
     * @return the scaled complementary error function {@code e^{x²} erfc(x)}
     */
    static double erfcx(double x) {
        if (x < SERIES_LIMIT) {
            return Math.exp(x * x) - TWO_OVER_SQRT_PI * x * positiveSeries(x);
        }
        if (x > ASYMPTOTIC_LIMIT) {
            return 1 / (x * SQRT_PI);
        }
        // Γ(a, z) = e^{-z} z^a / (z + 1 − a − 1(1 − a) / (z + 3 − a − 2(2 − a) / (z + 5 − a − …))), a = 1/2, z = x².
        double b = x * x + 0.5;
        double c = 1 / TINY;
        double d = 1 / b;
        double fraction = d;
        for (int i = 1; i < MAX_TERMS; i++) {
            double an = -i * (i - 0.5);
            b += 2;
            d = an * d + b;
            if (Math.abs(d) < TINY) {
                d = TINY;
            }
            c = b + an / c;
            if (Math.abs(c) < TINY) {
                c = TINY;
            }
            d = 1 / d;
            double factor = d * c;
            fraction *= factor;
            if (Math.abs(factor - 1) <= 2 * EPSILON) {
                break;
            }
        }
        return x * fraction / SQRT_PI;
    }
}
