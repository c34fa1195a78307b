// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.graph.ComputationGraph;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * Independent first-order references for {@link ComputationGraph}s: per-example gradients from a loop
 * of single-example passes through a plain (never extended) clone of the graph, and the first-order
 * quantities derived from them by their definitions (with {@link Reference}'s helpers).
 *
 * <p>Conventions: DL4J's graph score is {@code L = Σ_k (1/N) Σ_n ℓ_n^k} over the output layers k, and
 * its gradient after {@code computeGradientAndScore} is the sum {@code Σ_k Σ_n ∇ℓ_n^k} (the updater
 * divides by N). The individual gradient is {@code g_n = (1/N) Σ_k ∇ℓ_n^k}, so {@code Σ_n g_n = ∇L}.
 * A single-example pass gives {@code Σ_k ∇ℓ_n^k}, which is divided by N. Results are keyed by DL4J's
 * graph parameter keys {@code "<vertexName>_<param>"} in {@code paramTable()} order, per-example
 * values with the batch axis first.
 */
final class GraphReference {

    private GraphReference() {
    }

    /** @return the batch size, checked to be the same for every array */
    static long batchSize(INDArray[] features, INDArray[] labels) {
        long n = features[0].size(0);
        for (INDArray a : features) {
            check(a, n);
        }
        for (INDArray a : labels) {
            check(a, n);
        }
        return n;
    }

    private static void check(INDArray a, long n) {
        if (a.size(0) != n) {
            throw new IllegalArgumentException("batch sizes differ: " + a.size(0) + " vs " + n);
        }
    }

    /** @return example {@code n} of every array (rows [n, n+1)) */
    static INDArray[] examples(INDArray[] arrays, long n) {
        INDArray[] out = new INDArray[arrays.length];
        for (int i = 0; i < arrays.length; i++) {
            out[i] = Reference.example(arrays[i], n);
        }
        return out;
    }

    /**
     * @return key → stacked {@code g_n = (1/N) Σ_k ∇ℓ_n^k}, shape {@code [N, *p]}, computed by DL4J one
     *     example at a time on a clone of {@code graph}
     */
    static Map<String, INDArray> individualGradients(ComputationGraph graph, INDArray[] features, INDArray[] labels) {
        ComputationGraph plain = graph.clone();
        long n = batchSize(features, labels);
        List<String> keys = new ArrayList<>(plain.paramTable().keySet());
        Map<String, List<INDArray>> perExample = new LinkedHashMap<>();
        for (long i = 0; i < n; i++) {
            plain.setInputs(examples(features, i));
            plain.setLabels(examples(labels, i));
            plain.computeGradientAndScore();
            Map<String, INDArray> grads = plain.gradient().gradientForVariable();
            if (!grads.keySet().equals(new HashSet<>(keys))) {
                throw new IllegalStateException("gradient keys " + grads.keySet() + " are not the parameter keys "
                        + keys);
            }
            for (String key : keys) {
                INDArray g = grads.get(key);
                perExample.computeIfAbsent(key, k -> new ArrayList<>())
                        .add(g.dup('c').reshape(BruteForce.withBatch(1, g.shape())).div(n));
            }
        }
        Map<String, INDArray> out = new LinkedHashMap<>();
        perExample.forEach((key, list) -> out.put(key, Nd4j.concat(0, list.toArray(new INDArray[0]))));
        return out;
    }

    /**
     * @return key → {@code ∇L = (DL4J's summed gradient) / N} from one whole-batch
     *     {@code computeGradientAndScore} on a clone of {@code graph}, parameter shape
     */
    static Map<String, INDArray> batchGradient(ComputationGraph graph, INDArray[] features, INDArray[] labels) {
        ComputationGraph plain = graph.clone();
        long n = batchSize(features, labels);
        plain.setInputs(features);
        plain.setLabels(labels);
        plain.computeGradientAndScore();
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (String key : plain.paramTable().keySet()) {
            out.put(key, plain.gradient().getGradientFor(key).dup('c').div(n));
        }
        return out;
    }

    /** @return DL4J's score {@code L} on the whole batch, from a clone of {@code graph} */
    static double score(ComputationGraph graph, INDArray[] features, INDArray[] labels) {
        ComputationGraph plain = graph.clone();
        plain.setInputs(features);
        plain.setLabels(labels);
        plain.computeGradientAndScore();
        return plain.score();
    }

    private static Map<String, INDArray> each(Map<String, INDArray> batched, UnaryOperator<INDArray> f) {
        Map<String, INDArray> out = new LinkedHashMap<>();
        batched.forEach((key, g) -> out.put(key, f.apply(g)));
        return out;
    }

    /** @return key → {@code Σ_n g_n} (= ∇L), parameter shape */
    static Map<String, INDArray> sum(Map<String, INDArray> batched) {
        return each(batched, g -> g.sum(0));
    }

    /** @return key → {@code ‖g_n‖²} per example, {@code [N]} (BatchL2Grad) */
    static Map<String, INDArray> squaredNorms(Map<String, INDArray> batched) {
        return each(batched, Reference::squaredNorms);
    }

    /** @return key → {@code Σ_n g_n ⊙ g_n}, parameter shape (SumGradSquared) */
    static Map<String, INDArray> sumGradSquared(Map<String, INDArray> batched) {
        return each(batched, Reference::sumGradSquared);
    }

    /** @return key → {@code (1/N) Σ_n g_n² − ((1/N) Σ_n g_n)²}, parameter shape (Variance) */
    static Map<String, INDArray> variance(Map<String, INDArray> batched) {
        return each(batched, Reference::variance);
    }

    /** @return key → {@code [g_n · g_m]}, {@code [N, N]} (BatchDotGrad) */
    static Map<String, INDArray> dots(Map<String, INDArray> batched) {
        return each(batched, Reference::dots);
    }
}
