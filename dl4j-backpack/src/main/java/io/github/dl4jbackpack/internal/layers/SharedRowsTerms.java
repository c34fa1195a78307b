// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * First-order terms of a layer that sees every example k times, stacked along the batch axis by a
 * {@code StackVertex} (a siamese graph: one weight matrix applied to several inputs of one example).
 * Example n's gradient is the sum over its copies, {@code g_n = Σ_j g_(jN + n)}: the copies' individual
 * gradients are formed by the layer's own terms and summed, and every reduction is taken of those
 * sums. Costs {@code N × #params} of the layer, like {@code BatchGrad}.
 */
public final class SharedRowsTerms extends FirstOrderTerms {

    private final FirstOrderTerms rows;
    private final long copies;

    /**
     * @param rows the terms of the layer over its {@code k·N} rows
     * @param copies k
     */
    public SharedRowsTerms(FirstOrderTerms rows, long copies) {
        this.rows = rows;
        this.copies = copies;
    }

    @Override
    protected Map<String, INDArray> computeIndividualGradients() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        rows.individualGradients().forEach((param, g) -> {
            long n = g.size(0) / copies;
            long[] shape = new long[g.rank() + 1];
            shape[0] = copies;
            shape[1] = n;
            System.arraycopy(g.shape(), 1, shape, 2, g.rank() - 1);
            out.put(param, g.dup('c').reshape('c', shape).sum(0));
        });
        return out;
    }

    /** The rows' own deferred sums, each example's weight given to its k rows. */
    @Override
    protected Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred> computeWeightedGradientSums() {
        Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred> out = new LinkedHashMap<>();
        rows.weightedGradientSums().forEach((param, sum) -> {
            long n = sum.batchSize() / copies;
            out.put(param, new DeferredSum(n, sum.shape(), ((DeferredSum) sum).dataType(),
                    w -> sum.of(Nd4j.tile(w.reshape('c', 1, n), (int) copies, 1).reshape('c', new long[] {copies * n})))
                    .owning(sum));
        });
        return out;
    }

    private static INDArray flat(INDArray g) {
        return g.dup('c').reshape('c', g.size(0), g.length() / g.size(0));
    }

    @Override
    protected Map<String, INDArray> computeSquaredNorms() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        individualGradients().forEach((param, g) -> {
            INDArray f = flat(g);
            out.put(param, f.mul(f).sum(1));
        });
        return out;
    }

    @Override
    protected Map<String, INDArray> computeSumGradSquared() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        individualGradients().forEach((param, g) -> out.put(param, g.mul(g).sum(0)));
        return out;
    }

    @Override
    protected Map<String, INDArray> computeDots() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        individualGradients().forEach((param, g) -> {
            INDArray f = flat(g);
            out.put(param, f.mmul(f.transpose()));
        });
        return out;
    }

    @Override
    protected Map<String, INDArray> computeVariance() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        individualGradients().forEach((param, g) -> out.put(param, twoPassVariance(g)));
        return out;
    }
}
