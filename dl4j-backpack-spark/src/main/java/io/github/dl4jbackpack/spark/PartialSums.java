// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.io.Serializable;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.BinaryOperator;

/**
 * What the batches of some partitions add up to, in float64, mergeable in any order (docs/math.md#data-sets):
 * the number of examples M, {@code Σ_k N_k · score_k}, per parameter the running mean {@code μ} of the examples'
 * loss gradients and (with {@code Variance}) the sum of their squared deviations {@code M₂} (merged by Chan et
 * al.'s pairwise update, never as a difference of moments), {@code Σ ∇ℓ_n⊙∇ℓ_n} (SumGradSquared), and
 * {@code Σ_k N_k X_k} of every curvature value X (a diagonal, or both Kronecker factors).
 */
final class PartialSums implements Serializable {

    private static final long serialVersionUID = 1L;

    long count;
    double scoreSum;
    /** layer → param → μ. */
    final Map<String, Map<String, INDArray>> gradientMean = new LinkedHashMap<>();
    /** layer → param → M₂ (only with Variance). */
    final Map<String, Map<String, INDArray>> gradientSquaredDeviations = new LinkedHashMap<>();
    /** extension name → layer → param → sum (diagonal curvature, SumGradSquared). */
    final Map<String, Map<String, Map<String, INDArray>>> sums = new LinkedHashMap<>();
    /** extension name → layer → param → the summed factors. */
    final Map<String, Map<String, Map<String, KroneckerFactors>>> kroneckerSums = new LinkedHashMap<>();

    /** @return the sums of no examples */
    static PartialSums empty() {
        return new PartialSums();
    }

    /**
     * Completes the addition of one batch, after its gradient and values were added.
     *
     * @param n the batch's size N_k
     * @param score the batch's score (DL4J's mean loss plus regularisation)
     */
    void finishBatch(long n, double score) {
        count += n;
        scoreSum += n * score;
    }

    /**
     * Adds one batch's gradient (before {@link #finishBatch}): its mean {@code μ_k} and, with Variance, {@code M₂,k = N_k³ · Variance_k}.
     *
     * @param layer the layer's name
     * @param param the parameter's name
     * @param n the batch's size N_k
     * @param mean {@code μ_k}, float64
     * @param squaredDeviations {@code M₂,k}, float64, or null without Variance
     */
    void addGradient(String layer, String param, long n, INDArray mean, INDArray squaredDeviations) {
        INDArray mu = gradientMean.computeIfAbsent(layer, k -> new LinkedHashMap<>()).get(param);
        if (mu == null) {
            gradientMean.get(layer).put(param, mean.detach());
            if (squaredDeviations != null) {
                gradientSquaredDeviations.computeIfAbsent(layer, k -> new LinkedHashMap<>()).put(param,
                        squaredDeviations.detach());
            }
            return;
        }
        mergeMoments(mu, gradientSquaredDeviations.containsKey(layer)
                ? gradientSquaredDeviations.get(layer).get(param) : null, count, mean, squaredDeviations, n);
    }

    /**
     * Chan et al.'s update of {@code (μ_a, M₂,a)} over {@code n_a} examples with {@code (μ_b, M₂,b)} over
     * {@code n_b}: {@code δ = μ_b − μ_a}, {@code μ ← μ_a + δ n_b/n}, {@code M₂ ← M₂,a + M₂,b + δ² n_a n_b / n}; in
     * place in the first pair.
     */
    private static void mergeMoments(INDArray meanA, INDArray deviationsA, long na, INDArray meanB,
                                     INDArray deviationsB, long nb) {
        double n = na + nb;
        INDArray delta = meanB.sub(meanA);
        if (deviationsA != null && deviationsB != null) {
            deviationsA.addi(deviationsB).addi(delta.mul(delta).muli(na * (nb / n)));
        }
        meanA.addi(delta.muli(nb / n));
    }

    /**
     * @param extension the extension's name
     * @param layer the layer's name
     * @param param the parameter's name
     * @param value a batch's contribution to the sum, float64
     */
    void addSum(String extension, String layer, String param, INDArray value) {
        Map<String, INDArray> params = sums.computeIfAbsent(extension, k -> new LinkedHashMap<>())
                .computeIfAbsent(layer, k -> new LinkedHashMap<>());
        INDArray sum = params.get(param);
        if (sum == null) {
            params.put(param, value.detach());
        } else {
            sum.addi(value);
        }
    }

    /**
     * @param extension the extension's name
     * @param layer the layer's name
     * @param param the parameter's name
     * @param inputFactor a batch's {@code N_k A_k} in float64, or null for a bias
     * @param outputFactor a batch's {@code N_k B_k} in float64
     * @param template the batch's factors, for their arrangement
     */
    void addFactors(String extension, String layer, String param, INDArray inputFactor, INDArray outputFactor,
                    KroneckerFactors template) {
        Map<String, KroneckerFactors> params = kroneckerSums.computeIfAbsent(extension, k -> new LinkedHashMap<>())
                .computeIfAbsent(layer, k -> new LinkedHashMap<>());
        KroneckerFactors sum = params.get(param);
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            if (sum == null) {
                params.put(param, template.withValues(inputFactor == null ? null : inputFactor.detach(),
                        outputFactor.detach()));
            } else {
                INDArray a = sum.inputFactor().map(f -> f.addi(inputFactor)).orElse(null);
                INDArray b = sum.outputFactor().addi(outputFactor);
                params.put(param, sum.withValues(a, b));
                sum.close();
                close(a);
                close(b);
            }
        }
    }

    private static KroneckerFactors addFactors(KroneckerFactors a, KroneckerFactors b) {
        INDArray input = a.inputFactor().map(f -> f.addi(b.inputFactor().orElseThrow())).orElse(null);
        INDArray output = a.outputFactor().addi(b.outputFactor());
        KroneckerFactors sum = a.withValues(input, output);
        a.close();
        b.close();
        close(input);
        close(output);
        return sum;
    }

    /** Frees an array of these sums' own now (ND4J would free it only at a garbage collection). */
    private static void close(INDArray array) {
        if (array != null && array.closeable()) {
            array.close();
        }
    }

    /**
     * Merges other sums into these (Spark's combining step; these may be modified and are returned).
     *
     * @param other sums over other examples
     * @return the sums over both
     */
    PartialSums merge(PartialSums other) {
        if (other.count == 0) {
            return this;
        }
        if (count == 0) {
            return other;
        }
        other.gradientMean.forEach((layer, params) -> params.forEach((param, mean) -> {
            Map<String, INDArray> own = gradientMean.computeIfAbsent(layer, k -> new LinkedHashMap<>());
            if (!own.containsKey(param)) {
                throw new IllegalStateException("partitions disagree on the network's parameters: " + layer + "_"
                        + param);
            }
            Map<String, INDArray> otherDeviations = other.gradientSquaredDeviations.get(layer);
            mergeMoments(own.get(param), gradientSquaredDeviations.containsKey(layer)
                            ? gradientSquaredDeviations.get(layer).get(param) : null, count, mean,
                    otherDeviations == null ? null : otherDeviations.get(param), other.count);
        }));
        mergeNested(sums, other.sums, INDArray::addi);
        mergeNested(kroneckerSums, other.kroneckerSums, PartialSums::addFactors);
        count += other.count;
        scoreSum += other.scoreSum;
        return this;
    }

    private static <T> void mergeNested(Map<String, Map<String, Map<String, T>>> into,
                                        Map<String, Map<String, Map<String, T>>> from, BinaryOperator<T> add) {
        from.forEach((extension, layers) -> layers.forEach((layer, params) -> params.forEach((param, value) ->
                into.computeIfAbsent(extension, k -> new LinkedHashMap<>())
                        .computeIfAbsent(layer, k -> new LinkedHashMap<>()).merge(param, value, add))));
    }

    /** @return a float64 copy of a value outside any workspace */
    static INDArray float64(INDArray value) {
        return value.castTo(DataType.DOUBLE).dup();
    }
}
