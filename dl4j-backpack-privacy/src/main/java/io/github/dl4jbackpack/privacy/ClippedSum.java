// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy;

import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
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
 * layer's gradient is a product (docs/math.md#per-example-clipping). Holds the weights {@code N c_n} per layer;
 * {@link #sum} forms one parameter's sum.
 *
 * @param quantities the pass's quantities
 * @param weights {@code N c_n} per layer name
 * @param norms {@code ‖∇ℓ_n‖} over all parameters, before clipping
 * @param clipped how many examples had some factor {@code c_n < 1}
 */
record ClippedSum(Quantities quantities, Map<String, INDArray> weights, double[] norms, int clipped) {

    /**
     * @return the DL4J parameter keys ({@code "<layer>_<param>"}) with a clipped sum, in the pass's order
     */
    Set<String> keys() {
        Set<String> keys = new java.util.LinkedHashSet<>();
        for (String layer : quantities.layerNames(WeightedGradientSum.class)) {
            for (String param : quantities.params(WeightedGradientSum.class, layer)) {
                keys.add(layer + "_" + param);
            }
        }
        return keys;
    }

    /**
     * Adds {@code Σ_n c_n ∇ℓ_n} of a parameter to a target of its shape (one product accumulated into the target
     * where the layer's sum is one).
     *
     * @param layer a layer name
     * @param param one of its parameters
     * @param target an array of the parameter's shape, e.g. its view of DL4J's gradient
     */
    void addTo(String layer, String param, INDArray target) {
        quantities.get(WeightedGradientSum.class, layer, param).addTo(weights.get(layer), target);
    }

    /** Frees what the pass's weighted sums keep (copies of its layer inputs and output gradients) at once. */
    void freeSums() {
        for (String layer : quantities.layerNames(WeightedGradientSum.class)) {
            for (String param : quantities.params(WeightedGradientSum.class, layer)) {
                quantities.get(WeightedGradientSum.class, layer, param).close();
            }
        }
    }

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
        Map<String, INDArray> weightsByLayer = new LinkedHashMap<>();
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
            try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                weightsByLayer.put(layer, standIn ? Nd4j.zeros(n) : Nd4j.createFromArray(weights));
            }
        }
        int clipped = 0;
        for (boolean c : clippedExample) {
            clipped += c ? 1 : 0;
        }
        return new ClippedSum(q, weightsByLayer, norms, clipped);
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
