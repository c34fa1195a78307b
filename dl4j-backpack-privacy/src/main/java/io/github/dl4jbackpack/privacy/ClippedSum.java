// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy;

import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The sum of the clipped per-example loss gradients of one extended pass, {@code Σ_n c_n ∇ℓ_n}, from the pass's
 * {@link BatchL2Grad} (the norms) and {@link WeightedGradientSum} (the sums for weights given after the pass):
 * with {@code ∇ℓ_n = N g_n}, the clipped sum is {@code Σ_n (N c_n) g_n}, never formed per example where the
 * layer's gradient is a product (docs/math.md#per-example-clipping).
 *
 * @param sums the clipped sum per DL4J parameter key ({@code "<layer>_<param>"}), parameter-shaped
 * @param norms {@code ‖∇ℓ_n‖} over all parameters, before clipping
 * @param clipped how many examples had some factor {@code c_n < 1}
 */
record ClippedSum(Map<String, INDArray> sums, double[] norms, int clipped) {

    /**
     * @param q the quantities of one pass, with {@link BatchL2Grad} and {@link WeightedGradientSum}
     * @param clipping the clipping rule
     * @param standIn whether the batch stands in for an empty one: every weight is 0
     * @return the clipped sum
     * @throws IllegalArgumentException if a per-layer rule lacks a layer of the pass or names one it does not have
     */
    static ClippedSum of(Quantities q, Clipping clipping, boolean standIn) {
        int n = Math.toIntExact(q.batchSize());
        double scale = (double) n * n;
        Map<String, double[]> layerSquares = new LinkedHashMap<>();
        for (String layer : q.layerNames(BatchL2Grad.class)) {
            double[] squares = new double[n];
            for (String param : q.params(BatchL2Grad.class, layer)) {
                double[] values = q.get(BatchL2Grad.class, layer, param).toDoubleVector();
                for (int i = 0; i < n; i++) {
                    squares[i] += scale * values[i];
                }
            }
            layerSquares.put(layer, squares);
        }
        if (clipping.isPerLayer() && !clipping.thresholds().keySet().equals(layerSquares.keySet())) {
            Set<String> missing = new TreeSet<>(layerSquares.keySet());
            missing.removeAll(clipping.thresholds().keySet());
            Set<String> unknown = new TreeSet<>(clipping.thresholds().keySet());
            unknown.removeAll(layerSquares.keySet());
            throw new IllegalArgumentException("per-layer clipping needs a threshold for exactly the layers with "
                    + "parameters " + layerSquares.keySet() + "; missing " + missing + ", unknown " + unknown);
        }
        double[] total = new double[n];
        layerSquares.values().forEach(s -> {
            for (int i = 0; i < n; i++) {
                total[i] += s[i];
            }
        });
        double[] norms = new double[n];
        for (int i = 0; i < n; i++) {
            norms[i] = Math.sqrt(total[i]);
            if (!Double.isFinite(norms[i])) {
                throw new IllegalStateException("the loss gradient of example " + i + " of the batch is not finite "
                        + "(norm " + norms[i] + "): it cannot be clipped; check the data and the learning rate");
            }
        }
        boolean[] clippedExample = new boolean[n];
        Map<String, INDArray> sums = new LinkedHashMap<>();
        double[] flatWeights = clipping.isPerLayer() ? null : weights(norms, clipping.norm(), clippedExample);
        for (String layer : q.layerNames(WeightedGradientSum.class)) {
            double[] weights = flatWeights;
            if (weights == null) {
                double[] s = layerSquares.get(layer);
                double[] layerNorms = new double[n];
                for (int i = 0; i < n; i++) {
                    layerNorms[i] = Math.sqrt(s[i]);
                }
                weights = weights(layerNorms, clipping.thresholds().get(layer), clippedExample);
            }
            INDArray w = standIn ? Nd4j.zeros(n) : Nd4j.createFromArray(weights);
            for (String param : q.params(WeightedGradientSum.class, layer)) {
                sums.put(layer + "_" + param, q.get(WeightedGradientSum.class, layer, param).of(w));
            }
        }
        int clipped = 0;
        for (boolean c : clippedExample) {
            clipped += c ? 1 : 0;
        }
        return new ClippedSum(sums, norms, clipped);
    }

    /**
     * @param norms {@code ‖∇ℓ_n‖} (of all parameters or of one layer)
     * @param threshold C
     * @param clipped marks the examples clipped here
     * @return {@code N c_n} with {@code c_n = min(1, C / ‖∇ℓ_n‖)} (1 for a zero gradient)
     */
    private static double[] weights(double[] norms, double threshold, boolean[] clipped) {
        int n = norms.length;
        double[] w = new double[n];
        for (int i = 0; i < n; i++) {
            double c = norms[i] > threshold ? threshold / norms[i] : 1.0;
            clipped[i] |= c < 1.0;
            w[i] = n * c;
        }
        return w;
    }
}
