// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * First-order quantities of one layer with parameters in one backward pass, computed from the
 * layer input and the gradient of the mean loss w.r.t. the layer's (pre-activation) output
 * ({@code δ_n}, which already carries the {@code 1/N}). Each quantity is computed at most once
 * per pass, so extensions asking for the same term share it.
 *
 * <p>Returned arrays live in the scope they were computed in (the first-order scratch workspace
 * during a pass), except the individual gradients, which are made outside every workspace: they are
 * {@code BatchGrad}'s result as they are, often the largest array of the pass, and are not copied
 * again. Maps are keyed by DL4J parameter name in the layer's parameter order.
 */
public abstract class FirstOrderTerms {

    private Map<String, INDArray> individualGradients;
    private Map<String, INDArray> squaredNorms;
    private Map<String, INDArray> secondMoment;
    private Map<String, INDArray> dots;
    private Map<String, INDArray> variance;
    private Map<String, WeightedGradientSum.Deferred> weightedSums;

    /** @return {@code g_n} per parameter, shape {@code [N, *p]} */
    public final Map<String, INDArray> individualGradients() {
        if (individualGradients == null) {
            try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                individualGradients = Collections.unmodifiableMap(computeIndividualGradients());
            }
        }
        return individualGradients;
    }

    /** @return {@code ‖g_n‖²} per parameter, shape {@code [N]} */
    public final Map<String, INDArray> individualGradientSquaredNorms() {
        if (squaredNorms == null) {
            squaredNorms = Collections.unmodifiableMap(computeSquaredNorms());
        }
        return squaredNorms;
    }

    /** @return {@code Σ_n g_n ⊙ g_n} per parameter, parameter shape */
    public final Map<String, INDArray> sumGradSquared() {
        if (secondMoment == null) {
            secondMoment = Collections.unmodifiableMap(computeSumGradSquared());
        }
        return secondMoment;
    }

    /**
     * @return {@code (1/N) Σ_n (g_n − ḡ)⊙(g_n − ḡ)} per parameter, parameter shape, computed from
     *     deviations from the mean (no cancellation of {@code E[g²] − E[g]²}), clamped at 0 against
     *     round-off
     */
    public final Map<String, INDArray> variance() {
        if (variance == null) {
            Map<String, INDArray> v = computeVariance();
            // negative round-off to 0; NaN stays NaN (Transforms.max would turn it into 0)
            v.values().forEach(a -> org.nd4j.linalg.indexing.BooleanIndexing.replaceWhere(a, 0.0,
                    org.nd4j.linalg.indexing.conditions.Conditions.lessThan(0.0)));
            variance = Collections.unmodifiableMap(v);
        }
        return variance;
    }

    /**
     * @param g per-example values {@code [N, ...]} (not modified)
     * @return their population variance over the batch axis by the two-pass formula
     */
    protected static INDArray twoPassVariance(INDArray g) {
        long n = g.size(0);
        INDArray flat = g.dup('c').reshape('c', n, g.length() / n);
        INDArray centred = flat.subiRowVector(flat.mean(0));
        long[] shape = java.util.Arrays.copyOfRange(g.shape(), 1, g.rank());
        return centred.muli(centred).sum(0).divi(n).reshape('c', shape);
    }

    /** @return {@code ⟨g_n, g_m⟩} per parameter, shape {@code [N, N]} */
    public final Map<String, INDArray> individualGradientDots() {
        if (dots == null) {
            dots = Collections.unmodifiableMap(computeDots());
        }
        return dots;
    }

    /**
     * @return per parameter, the weighted sums {@code Σ_n w_n g_n} for weights given later, from copies of what
     *     they need made now (valid after the pass)
     */
    public final Map<String, WeightedGradientSum.Deferred> weightedGradientSums() {
        if (weightedSums == null) {
            weightedSums = Collections.unmodifiableMap(computeWeightedGradientSums());
        }
        return weightedSums;
    }

    /**
     * By default from the individual gradients ({@code N × #params}); kinds whose gradients are products of
     * smaller arrays keep those instead.
     *
     * @return the deferred weighted sums per parameter
     */
    protected Map<String, WeightedGradientSum.Deferred> computeWeightedGradientSums() {
        Map<String, WeightedGradientSum.Deferred> out = new LinkedHashMap<>();
        individualGradients().forEach((param, g) -> out.put(param, DeferredSum.ofIndividualGradients(g)));
        return out;
    }

    /** @return the individual gradients if some extension already asked for them, else null */
    protected final Map<String, INDArray> individualGradientsIfComputed() {
        return individualGradients;
    }

    /**
     * Terms of a layer whose individual gradients are small enough to form directly (a few values per
     * channel): every reduction is computed from them.
     *
     * @param gradients {@code g_n} per parameter, {@code [N, *p]}
     * @return the terms
     */
    public static FirstOrderTerms ofIndividualGradients(Map<String, INDArray> gradients) {
        return new FirstOrderTerms() {
            @Override
            protected Map<String, INDArray> computeIndividualGradients() {
                return new java.util.LinkedHashMap<>(gradients);
            }

            private Map<String, INDArray> each(java.util.function.Function<INDArray, INDArray> f) {
                Map<String, INDArray> out = new java.util.LinkedHashMap<>();
                gradients.forEach((param, g) -> out.put(param, f.apply(g)));
                return out;
            }

            private static INDArray flat(INDArray g) {
                return g.dup('c').reshape('c', g.size(0), g.length() / g.size(0));
            }

            @Override
            protected Map<String, INDArray> computeSquaredNorms() {
                return each(g -> {
                    INDArray f = flat(g);
                    return f.muli(f).sum(1);
                });
            }

            @Override
            protected Map<String, INDArray> computeSumGradSquared() {
                return each(g -> g.mul(g).sum(0));
            }

            @Override
            protected Map<String, INDArray> computeDots() {
                return each(g -> {
                    INDArray f = flat(g);
                    return f.mmul(f.transpose());
                });
            }

            @Override
            protected Map<String, INDArray> computeVariance() {
                return each(FirstOrderTerms::twoPassVariance);
            }
        };
    }

    /** @return {@code g_n} per parameter */
    protected abstract Map<String, INDArray> computeIndividualGradients();

    /** @return {@code ‖g_n‖²} per parameter */
    protected abstract Map<String, INDArray> computeSquaredNorms();

    /** @return {@code Σ_n g_n ⊙ g_n} per parameter */
    protected abstract Map<String, INDArray> computeSumGradSquared();

    /** @return {@code ⟨g_n, g_m⟩} per parameter */
    protected abstract Map<String, INDArray> computeDots();

    /** @return the variance of {@code g_n} per parameter, by a formula free of cancellation at the mean's scale */
    protected abstract Map<String, INDArray> computeVariance();
}
