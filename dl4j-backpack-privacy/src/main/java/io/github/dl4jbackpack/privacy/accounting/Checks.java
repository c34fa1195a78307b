// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

/** The argument checks shared by the package, each naming the argument, its value and what is allowed. */
final class Checks {

    /** The largest finite Rényi order accepted: the exact computation takes time linear in the order. */
    static final double MAX_FINITE_ORDER = 1e6;

    private Checks() {
    }

    static double noiseMultiplier(double noiseMultiplier) {
        if (!(noiseMultiplier >= 0) || Double.isInfinite(noiseMultiplier)) {
            throw new IllegalArgumentException("noiseMultiplier must be finite and >= 0, got " + noiseMultiplier);
        }
        return noiseMultiplier;
    }

    static double sampleRate(double sampleRate) {
        if (!(sampleRate >= 0 && sampleRate <= 1)) {
            throw new IllegalArgumentException("sampleRate must be in [0, 1], got " + sampleRate);
        }
        return sampleRate;
    }

    static double order(double order) {
        if (!(order > 1 && (order <= MAX_FINITE_ORDER || order == Double.POSITIVE_INFINITY))) {
            throw new IllegalArgumentException("order must be > 1 and either at most " + MAX_FINITE_ORDER
                    + " or +Infinity, got " + order);
        }
        return order;
    }

    static double delta(double delta) {
        if (!(delta > 0 && delta < 1)) {
            throw new IllegalArgumentException("delta must be in (0, 1), got " + delta);
        }
        return delta;
    }

    static long steps(long steps) {
        if (steps < 1) {
            throw new IllegalArgumentException("steps must be >= 1, got " + steps);
        }
        return steps;
    }
}
