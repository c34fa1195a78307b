// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * How each example's loss gradient {@code ∇ℓ_n} is clipped before the gradients are summed: to l2 norm at most
 * {@code C} over all parameters ({@link #flat}), or layer by layer, each layer's part to norm at most its own
 * threshold {@code C_l} ({@link #perLayer}), or to a norm that follows a quantile of the examples' norms
 * ({@link #adaptive}). The sensitivity of the clipped sum, which the noise is scaled to, is
 * {@code C} or {@code √(Σ_l C_l²)}. Immutable.
 */
public final class Clipping {

    private final double flatNorm;
    private final Map<String, Double> thresholds;
    /** Adaptive clipping: the target fraction of unclipped examples γ (NaN: a fixed norm). */
    private final double targetQuantile;
    /** Adaptive clipping: the geometric learning rate η of the norm. */
    private final double normLearningRate;
    /** Adaptive clipping: σ_b, the noise multiplier of the count of unclipped examples. */
    private final double countNoise;

    private Clipping(double flatNorm, Map<String, Double> thresholds) {
        this(flatNorm, thresholds, Double.NaN, Double.NaN, Double.NaN);
    }

    private Clipping(double flatNorm, Map<String, Double> thresholds, double targetQuantile, double normLearningRate,
                     double countNoise) {
        this.flatNorm = flatNorm;
        this.thresholds = thresholds;
        this.targetQuantile = targetQuantile;
        this.normLearningRate = normLearningRate;
        this.countNoise = countNoise;
    }

    /**
     * Flat clipping whose norm follows a quantile of the per-example gradient norms (Andrew, Thakkar, McMahan,
     * Ramaswamy 2021, as Opacus' {@code AdaClipDPOptimizer}): after each step,
     * {@code C ← C · exp(−η (b − γ))} with {@code b = (#{n : ‖∇ℓ_n‖ ≤ C} + N(0, σ_b²)) / B} the noisy fraction of
     * unclipped examples over the expected batch size. The count is released with noise too: the gradient's noise
     * multiplier becomes {@code σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2)}, so that both releases together are accounted as
     * one Gaussian mechanism of multiplier σ, which needs {@code σ_b > σ/2}.
     *
     * @param initialNorm the first norm {@code C₀ > 0}
     * @param targetQuantile γ in [0, 1], the fraction of examples to leave unclipped (e.g. 0.5)
     * @param learningRate η &gt; 0 (e.g. 0.2)
     * @param countNoiseMultiplier σ_b ≥ 0, the standard deviation of the count's noise (e.g. B/20)
     * @return adaptive clipping
     * @throws IllegalArgumentException if an argument is out of range
     */
    public static Clipping adaptive(double initialNorm, double targetQuantile, double learningRate,
                                    double countNoiseMultiplier) {
        check("initial clipping norm", initialNorm);
        if (!(targetQuantile >= 0 && targetQuantile <= 1)) {
            throw new IllegalArgumentException("target quantile must be in [0, 1], got " + targetQuantile);
        }
        check("learning rate of the clipping norm", learningRate);
        if (!(countNoiseMultiplier >= 0) || !Double.isFinite(countNoiseMultiplier)) {
            throw new IllegalArgumentException("the count's noise multiplier must be finite and at least 0, got "
                    + countNoiseMultiplier);
        }
        return new Clipping(initialNorm, Map.of(), targetQuantile, learningRate, countNoiseMultiplier);
    }

    /** @return whether the norm adapts to a quantile of the per-example norms ({@link #adaptive}) */
    public boolean isAdaptive() {
        return !Double.isNaN(targetQuantile);
    }

    /** @return γ of adaptive clipping (NaN otherwise) */
    public double targetQuantile() {
        return targetQuantile;
    }

    /** @return η of adaptive clipping (NaN otherwise) */
    public double normLearningRate() {
        return normLearningRate;
    }

    /** @return σ_b of adaptive clipping (NaN otherwise) */
    public double countNoiseMultiplier() {
        return countNoise;
    }

    /**
     * @param sigma the overall noise multiplier σ (the one the accountant uses)
     * @param countNoise σ_b
     * @return the gradient's noise multiplier {@code σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2)} (0 when σ = 0)
     * @throws IllegalArgumentException unless {@code σ_b > σ/2}
     */
    static double gradientNoiseMultiplier(double sigma, double countNoise) {
        if (sigma == 0) {
            return 0;
        }
        if (!(2 * countNoise > sigma)) {
            throw new IllegalArgumentException("adaptive clipping needs the count's noise multiplier σ_b above σ/2 = "
                    + sigma / 2 + ", got " + countNoise);
        }
        return Math.pow(Math.pow(sigma, -2) - Math.pow(2 * countNoise, -2), -0.5);
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

    /** @return the flat norm {@code C} (NaN for per-layer clipping; the first norm of adaptive clipping) */
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
        if (isAdaptive()) {
            return "adaptive clipping from norm " + flatNorm + " (target quantile " + targetQuantile + ", learning rate "
                    + normLearningRate + ", count noise " + countNoise + ")";
        }
        return isPerLayer() ? "per-layer clipping " + thresholds : "flat clipping to norm " + flatNorm;
    }
}
