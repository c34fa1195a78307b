// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * How each example's loss gradient {@code ∇ℓ_n} is clipped before the gradients are summed: to l2 norm at most
 * {@code C} over all parameters ({@link #flat}), or layer by layer, each layer's part to norm at most its own
 * threshold {@code C_l} ({@link #perLayer}). The sensitivity of the clipped sum, which the noise is scaled to, is
 * {@code C} or {@code √(Σ_l C_l²)}. Immutable.
 */
public final class Clipping {

    private final double flatNorm;
    private final Map<String, Double> thresholds;

    private Clipping(double flatNorm, Map<String, Double> thresholds) {
        this.flatNorm = flatNorm;
        this.thresholds = thresholds;
    }

    /**
     * @param norm {@code C > 0}: every example's gradient over all parameters is scaled to norm at most C
     * @return flat clipping
     * @throws IllegalArgumentException if {@code C} is not positive and finite
     */
    public static Clipping flat(double norm) {
        check("clipping norm", norm);
        return new Clipping(norm, Map.of());
    }

    /**
     * @param thresholds every layer with parameters (its name: index in a MultiLayerNetwork, vertex name in a
     *     ComputationGraph) with its threshold {@code C_l > 0}
     * @return per-layer clipping
     * @throws IllegalArgumentException if a threshold is not positive and finite, or there is none
     */
    public static Clipping perLayer(Map<String, Double> thresholds) {
        Objects.requireNonNull(thresholds, "thresholds");
        if (thresholds.isEmpty()) {
            throw new IllegalArgumentException("per-layer clipping needs a threshold for every layer with parameters");
        }
        Map<String, Double> copy = new LinkedHashMap<>();
        thresholds.forEach((layer, c) -> {
            check("clipping threshold of layer " + layer, c == null ? Double.NaN : c);
            copy.put(layer, c);
        });
        return new Clipping(Double.NaN, Collections.unmodifiableMap(copy));
    }

    private static void check(String what, double c) {
        if (!(c > 0) || !Double.isFinite(c)) {
            throw new IllegalArgumentException(what + " must be positive and finite, got " + c
                    + " (a clipping norm of 0 or less would void the privacy guarantee)");
        }
    }

    /** @return whether every layer has its own threshold */
    public boolean isPerLayer() {
        return !thresholds.isEmpty();
    }

    /** @return the flat norm {@code C} (NaN for per-layer clipping) */
    public double norm() {
        return flatNorm;
    }

    /** @return the per-layer thresholds by layer name (empty for flat clipping) */
    public Map<String, Double> thresholds() {
        return thresholds;
    }

    /** @return the l2 sensitivity of the clipped sum: {@code C}, or {@code √(Σ_l C_l²)} */
    public double sensitivity() {
        if (!isPerLayer()) {
            return flatNorm;
        }
        double sum = 0;
        for (double c : thresholds.values()) {
            sum += c * c;
        }
        return Math.sqrt(sum);
    }

    @Override
    public String toString() {
        return isPerLayer() ? "per-layer clipping " + thresholds : "flat clipping to norm " + flatNorm;
    }
}
