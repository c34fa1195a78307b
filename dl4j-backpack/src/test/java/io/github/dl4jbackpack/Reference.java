// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Independent references: per-example gradients from a loop of single-example passes through a
 * plain (never extended) copy of the DL4J network, and the first-order quantities derived from
 * them by their definitions; plus a tolerance assertion.
 */
final class Reference {

    private Reference() {
    }

    /** @return the rows [n, n+1) of an array of any rank */
    static INDArray example(INDArray a, long n) {
        INDArrayIndex[] idx = new INDArrayIndex[a.rank()];
        idx[0] = NDArrayIndex.interval(n, n + 1);
        for (int i = 1; i < idx.length; i++) {
            idx[i] = NDArrayIndex.all();
        }
        return a.get(idx).dup();
    }

    /**
     * @return "layer_param" → stacked {@code g_n = (1/N) ∇ℓ_n}, shape {@code [N, *p]}, computed by DL4J
     *     one example at a time on a fresh clone of {@code net}
     */
    static Map<String, INDArray> individualGradients(MultiLayerNetwork net, INDArray x, INDArray y) {
        return individualGradients(net, x, y, null, null);
    }

    /**
     * @return "layer_param" → stacked {@code g_n = (1/N) ∇ℓ_n}, shape {@code [N, *p]} ({@code p} the
     *     parameter's shape), computed by DL4J one sequence at a time (with its rows of the masks, where given) on a fresh clone of {@code net}
     */
    static Map<String, INDArray> individualGradients(MultiLayerNetwork net, INDArray x, INDArray y,
                                                     INDArray featuresMask, INDArray labelsMask) {
        MultiLayerNetwork plain = net.clone();
        long n = x.size(0);
        Map<String, List<INDArray>> perExample = new LinkedHashMap<>();
        for (long i = 0; i < n; i++) {
            plain.setLayerMaskArrays(featuresMask == null ? null : example(featuresMask, i),
                    labelsMask == null ? null : example(labelsMask, i));
            plain.setInput(example(x, i));
            plain.setLabels(example(y, i));
            plain.computeGradientAndScore();
            plain.gradient().gradientForVariable().forEach((key, g) -> {
                // shaped like the parameter, as the quantities are (DL4J's gradient of a 1D convolution drops an axis)
                long[] shape = plain.getParam(key).shape();
                long[] withBatch = new long[shape.length + 1];
                withBatch[0] = 1;
                System.arraycopy(shape, 0, withBatch, 1, shape.length);
                perExample.computeIfAbsent(key, k -> new ArrayList<>()).add(g.dup('c').reshape(withBatch).div(n));
            });
        }
        Map<String, INDArray> out = new LinkedHashMap<>();
        perExample.forEach((key, list) -> out.put(key, Nd4j.concat(0, list.toArray(new INDArray[0]))));
        return out;
    }

    /** @return {@code g} flattened to {@code [N, D]} */
    static INDArray flat(INDArray batched) {
        return batched.dup('c').reshape(batched.size(0), batched.length() / batched.size(0));
    }

    static INDArray squaredNorms(INDArray batched) {
        INDArray f = flat(batched);
        return f.mul(f).sum(1);
    }

    static INDArray sumGradSquared(INDArray batched) {
        return batched.mul(batched).sum(0);
    }

    static INDArray variance(INDArray batched) {
        long n = batched.size(0);
        INDArray mean = batched.sum(0).div(n);
        return batched.mul(batched).sum(0).div(n).sub(mean.mul(mean));
    }

    static INDArray dots(INDArray batched) {
        INDArray f = flat(batched);
        return f.mmul(f.transpose());
    }

    /**
     * @param n the batch size
     * @return weights for {@code WeightedGradientSum} tests: distinct, one negative, one zero (when N &gt; 2)
     */
    static INDArray testWeights(long n) {
        double[] w = new double[(int) n];
        for (int i = 0; i < n; i++) {
            w[i] = 0.25 + 0.5 * i;
        }
        w[0] = -0.6;
        if (n > 2) {
            w[2] = 0.0;
        }
        return Nd4j.createFromArray(w);
    }

    /** @return {@code Σ_n w_n g_n} by an explicit loop over the examples */
    static INDArray weightedSum(INDArray batched, INDArray weights) {
        INDArray sum = Nd4j.zeros(batched.dataType(), java.util.Arrays.copyOfRange(batched.shape(), 1, batched.rank()));
        for (long i = 0; i < batched.size(0); i++) {
            sum.addi(example(batched, i).reshape(sum.shape()).mul(weights.getDouble(i)));
        }
        return sum;
    }

    /**
     * Asserts {@code |actual − expected| ≤ rtol·|expected| + atol·max|expected|} elementwise, shapes
     * equal.
     */
    static void assertClose(INDArray expected, INDArray actual, double rtol, double atol, String what) {
        assertArrayEquals(expected.shape(), actual.shape(), what + ": shape");
        INDArray e = expected.castTo(org.nd4j.linalg.api.buffer.DataType.DOUBLE);
        INDArray a = actual.castTo(org.nd4j.linalg.api.buffer.DataType.DOUBLE);
        double scale = Math.max(e.amaxNumber().doubleValue(), Double.MIN_NORMAL);
        INDArray diff = org.nd4j.linalg.ops.transforms.Transforms.abs(a.sub(e));
        INDArray tol = org.nd4j.linalg.ops.transforms.Transforms.abs(e).muli(rtol).addi(atol * scale);
        double worst = diff.sub(tol).maxNumber().doubleValue();
        if (worst > 0 || Double.isNaN(a.sumNumber().doubleValue())) {
            fail(what + ": max |diff| = " + diff.maxNumber() + " exceeds tolerance (rtol " + rtol + ", atol "
                    + atol + " × max|expected| " + scale + ")");
        }
    }

    /**
     * Every first-order extension of a float64 network against its loop of single-example passes: the
     * reductions on their own (formed without the individual gradients), then BatchGrad and
     * BatchDotGrad.
     */
    static void assertFirstOrderEqualsSingleExamplePasses(MultiLayerNetwork net, INDArray x, INDArray y, String what) {
        assertFirstOrderEqualsSingleSequencePasses(net, x, y, null, null, what);
    }

    /**
     * Every first-order extension of a float64 network on a batch of sequences with masks (either may be
     * null) against its loop of single-sequence passes, each with its rows of the masks: the reductions
     * on their own (formed without the individual gradients), then BatchGrad and BatchDotGrad.
     */
    static void assertFirstOrderEqualsSingleSequencePasses(MultiLayerNetwork net, INDArray x, INDArray y,
                                                           INDArray featuresMask, INDArray labelsMask, String what) {
        Map<String, INDArray> loop = individualGradients(net.clone(), x, y, featuresMask, labelsMask);
        Quantities reductions = BackPackNetwork.extend(net).backward(x, y, featuresMask, labelsMask,
                new io.github.dl4jbackpack.extensions.BatchL2Grad(), new io.github.dl4jbackpack.extensions.SumGradSquared(),
                new io.github.dl4jbackpack.extensions.Variance(), new io.github.dl4jbackpack.extensions.WeightedGradientSum());
        INDArray weights = testWeights(x.size(0));
        Quantities all = BackPackNetwork.extend(net).backward(x, y, featuresMask, labelsMask,
                new io.github.dl4jbackpack.extensions.BatchGrad(), new io.github.dl4jbackpack.extensions.BatchDotGrad());
        for (String key : loop.keySet()) {
            INDArray g = loop.get(key);
            String where = what + " " + key;
            assertClose(g, all.byKey(io.github.dl4jbackpack.extensions.BatchGrad.class, key), 1e-10, 1e-12,
                    where + " BatchGrad");
            assertClose(dots(g), all.byKey(io.github.dl4jbackpack.extensions.BatchDotGrad.class, key), 1e-10, 1e-12,
                    where + " BatchDotGrad");
            assertClose(squaredNorms(g), reductions.byKey(io.github.dl4jbackpack.extensions.BatchL2Grad.class, key),
                    1e-10, 1e-12, where + " BatchL2Grad");
            assertClose(sumGradSquared(g), reductions.byKey(io.github.dl4jbackpack.extensions.SumGradSquared.class,
                    key), 1e-10, 1e-12, where + " SumGradSquared");
            assertClose(variance(g), reductions.byKey(io.github.dl4jbackpack.extensions.Variance.class, key), 1e-8,
                    1e-12, where + " Variance");
            assertClose(weightedSum(g, weights), reductions.byKey(
                    io.github.dl4jbackpack.extensions.WeightedGradientSum.class, key).of(weights), 1e-10, 1e-12,
                    where + " WeightedGradientSum");
        }
    }
}
