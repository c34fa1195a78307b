// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import java.util.Locale;

/**
 * One point of an optimiser's hyperparameter grid.
 *
 * @param optimizer the optimiser
 * @param alpha the learning rate α
 * @param lambda the damping λ; {@code NaN} for the baselines, which have none
 */
public record Setting(Optimizer optimizer, double alpha, double lambda) {

    /** Checks that curvature rules have a damping and baselines none. */
    public Setting {
        if (optimizer.curvature() == Double.isNaN(lambda)) {
            throw new IllegalArgumentException(optimizer.curvature() ? optimizer + " needs a damping λ"
                    : optimizer + " has no damping λ");
        }
    }

    /** @return a file-name-safe identifier, e.g. {@code kfac_a1.00e-02_l1.00e-03} */
    public String id() {
        return optimizer.id() + "_a" + format(alpha) + (Double.isNaN(lambda) ? "" : "_l" + format(lambda));
    }

    /** @return e.g. {@code α=1e-2, λ=1e-3} */
    public String describe() {
        return "α=" + shortFormat(alpha) + (Double.isNaN(lambda) ? "" : ", λ=" + shortFormat(lambda));
    }

    static String format(double v) {
        return String.format(Locale.ROOT, "%.2e", v);
    }

    static String shortFormat(double v) {
        double e = Math.log10(v);
        if (v > 0 && Math.abs(e - Math.rint(e)) < 1e-9) {
            int k = (int) Math.rint(e);
            return k == 0 ? "1" : k == 1 ? "10" : "1e" + k;
        }
        return String.format(Locale.ROOT, "%.3g", v);
    }
}
