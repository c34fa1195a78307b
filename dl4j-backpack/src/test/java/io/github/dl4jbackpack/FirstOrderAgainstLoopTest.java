// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Map;
import java.util.TreeSet;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every first-order extension, on float64 networks covering the supported layers, activations,
 * losses and convolution modes, against per-example gradients computed by DL4J itself one example
 * at a time.
 */
class FirstOrderAgainstLoopTest {

    static final double RTOL = 1e-9;
    static final double ATOL = 1e-12;

    /** A test network: its layers, its input, loss and output width. */
    record Case(String name, InputType input, long[] featureShape, LossFunction loss, int nOut, Layer... layers) {
        MultiLayerNetwork build(DataType dataType) {
            return TestNets.build(dataType, input, layers);
        }

        INDArray features(DataType dataType) {
            return TestNets.features(dataType, 7, featureShape);
        }

        INDArray labels(DataType dataType) {
            return TestNets.labels(dataType, loss, 8, featureShape[0], nOut);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static OutputLayer out(LossFunction loss, Activation activation, int nOut) {
        return new OutputLayer.Builder(loss).activation(activation).nOut(nOut).build();
    }

    static DenseLayer dense(int nOut, Activation activation) {
        return new DenseLayer.Builder().nOut(nOut).activation(activation).build();
    }

    static Stream<Case> cases() {
        long n = 5;
        return Stream.of(
                new Case("mlp relu / softmax-mcxent", InputType.feedForward(6), new long[] {n, 6}, LossFunction.MCXENT, 4,
                        dense(7, Activation.RELU), out(LossFunction.MCXENT, Activation.SOFTMAX, 4)),
                new Case("mlp sigmoid tanh / softmax-nll", InputType.feedForward(5), new long[] {n, 5},
                        LossFunction.NEGATIVELOGLIKELIHOOD, 3, dense(6, Activation.SIGMOID), dense(4, Activation.TANH),
                        out(LossFunction.NEGATIVELOGLIKELIHOOD, Activation.SOFTMAX, 3)),
                new Case("mlp elu / identity-mse", InputType.feedForward(4), new long[] {n, 4}, LossFunction.MSE, 3,
                        dense(5, Activation.ELU), out(LossFunction.MSE, Activation.IDENTITY, 3)),
                new Case("mlp selu / identity-l2", InputType.feedForward(4), new long[] {n, 4}, LossFunction.L2, 2,
                        dense(5, Activation.SELU), out(LossFunction.L2, Activation.IDENTITY, 2)),
                new Case("mlp tanh / sigmoid-xent", InputType.feedForward(6), new long[] {n, 6}, LossFunction.XENT, 3,
                        dense(5, Activation.TANH), out(LossFunction.XENT, Activation.SIGMOID, 3)),
                new Case("mlp leakyrelu / tanh-l1", InputType.feedForward(4), new long[] {n, 4}, LossFunction.L1, 3,
                        dense(6, Activation.LEAKYRELU), out(LossFunction.L1, Activation.TANH, 3)),
                new Case("mlp softplus / identity-hinge", InputType.feedForward(4), new long[] {n, 4}, LossFunction.HINGE,
                        3, dense(6, Activation.SOFTPLUS), out(LossFunction.HINGE, Activation.IDENTITY, 3)),
                new Case("mlp swish / softmax-kl", InputType.feedForward(4), new long[] {n, 4},
                        LossFunction.KL_DIVERGENCE, 3, dense(6, Activation.SWISH),
                        out(LossFunction.KL_DIVERGENCE, Activation.SOFTMAX, 3)),
                new Case("mlp gelu, no bias / cosine", InputType.feedForward(4), new long[] {n, 4},
                        LossFunction.COSINE_PROXIMITY, 3,
                        new DenseLayer.Builder().nOut(6).activation(Activation.GELU).hasBias(false).build(),
                        out(LossFunction.COSINE_PROXIMITY, Activation.TANH, 3)),
                new Case("mlp relu + ActivationLayer + LossLayer", InputType.feedForward(5), new long[] {n, 5},
                        LossFunction.MCXENT, 4, dense(6, Activation.RELU),
                        new ActivationLayer.Builder().activation(Activation.TANH).build(),
                        dense(4, Activation.IDENTITY),
                        new LossLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).build()),
                new Case("cnn truncate pad relu, maxpool, sigmoid conv, dense", InputType.convolutional(8, 8, 2),
                        new long[] {4, 2, 8, 8}, LossFunction.MCXENT, 5,
                        new ConvolutionLayer.Builder(3, 3).padding(1, 1).nOut(4).activation(Activation.RELU).build(),
                        new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                        new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.SIGMOID).build(),
                        dense(6, Activation.RELU), out(LossFunction.MCXENT, Activation.SOFTMAX, 5)),
                new Case("cnn same stride 2, avgpool same / mse", InputType.convolutional(9, 7, 3),
                        new long[] {n, 3, 9, 7}, LossFunction.MSE, 3,
                        new ConvolutionLayer.Builder(3, 3).stride(2, 2).convolutionMode(ConvolutionMode.Same).nOut(4)
                                .activation(Activation.TANH).build(),
                        new SubsamplingLayer.Builder(PoolingType.AVG).kernelSize(3, 3).stride(2, 2)
                                .convolutionMode(ConvolutionMode.Same).build(),
                        out(LossFunction.MSE, Activation.IDENTITY, 3)),
                new Case("cnn strict stride 2 pad 1, pnorm pooling", InputType.convolutional(9, 9, 2),
                        new long[] {n, 2, 9, 9}, LossFunction.MCXENT, 4,
                        new ConvolutionLayer.Builder(3, 3).stride(2, 2).padding(1, 1)
                                .convolutionMode(ConvolutionMode.Strict).nOut(3).activation(Activation.ELU).build(),
                        new SubsamplingLayer.Builder(PoolingType.PNORM).pnorm(2).kernelSize(2, 2).stride(1, 1).build(),
                        out(LossFunction.MCXENT, Activation.SOFTMAX, 4)),
                new Case("cnn dilation 2, no bias, ActivationLayer, same+dilation / xent", InputType.convolutional(10, 10, 2),
                        new long[] {n, 2, 10, 10}, LossFunction.XENT, 2,
                        new ConvolutionLayer.Builder(3, 3).dilation(2, 2).hasBias(false).nOut(3)
                                .activation(Activation.IDENTITY).build(),
                        new ActivationLayer.Builder().activation(Activation.SOFTSIGN).build(),
                        new ConvolutionLayer.Builder(2, 2).stride(2, 2).dilation(2, 2)
                                .convolutionMode(ConvolutionMode.Same).nOut(2).activation(Activation.RELU6).build(),
                        out(LossFunction.XENT, Activation.SIGMOID, 2)),
                new Case("cnn wide channels, few positions (trace norm path)", InputType.convolutional(4, 4, 8),
                        new long[] {n, 8, 4, 4}, LossFunction.MSE, 2,
                        new ConvolutionLayer.Builder(3, 3).nOut(16).activation(Activation.TANH).build(),
                        out(LossFunction.MSE, Activation.IDENTITY, 2)),
                new Case("flat input to cnn (FeedForwardToCnn)", InputType.convolutionalFlat(6, 6, 1),
                        new long[] {n, 36}, LossFunction.MCXENT, 3,
                        new ConvolutionLayer.Builder(3, 3).nOut(2).activation(Activation.HARDTANH).build(),
                        out(LossFunction.MCXENT, Activation.SOFTMAX, 3)));
    }

    static Stream<Arguments> namedCases() {
        return cases().map(Arguments::of);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("namedCases")
    void allFirstOrderExtensionsInOnePassMatchTheLoop(Case c) {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        INDArray x = c.features(DataType.DOUBLE);
        INDArray y = c.labels(DataType.DOUBLE);
        Map<String, INDArray> reference = Reference.individualGradients(net, x, y);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new BatchGrad(), new BatchL2Grad(),
                new SumGradSquared(), new Variance(), new BatchDotGrad(), new WeightedGradientSum());
        assertMatches(reference, q, RTOL, ATOL);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("namedCases")
    void eachExtensionAloneMatchesTheLoop(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        INDArray x = c.features(DataType.DOUBLE);
        INDArray y = c.labels(DataType.DOUBLE);
        Map<String, INDArray> reference = Reference.individualGradients(net, x, y);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        // the weighted sums are formed after four more passes, which reuse DL4J's workspaces
        Quantities sums = bp.backward(x, y, new WeightedGradientSum());
        Quantities l2 = bp.backward(x, y, new BatchL2Grad());
        Quantities sgs = bp.backward(x, y, new SumGradSquared());
        Quantities variance = bp.backward(x, y, new Variance());
        Quantities dots = bp.backward(x, y, new BatchDotGrad());
        INDArray weights = Reference.testWeights(x.size(0));
        reference.forEach((key, g) -> {
            int layer = Integer.parseInt(key.substring(0, key.indexOf('_')));
            String param = key.substring(key.indexOf('_') + 1);
            assertClose(Reference.squaredNorms(g), l2.get(BatchL2Grad.class, layer, param), RTOL, ATOL, key + " l2");
            assertClose(Reference.sumGradSquared(g), sgs.get(SumGradSquared.class, layer, param), RTOL, ATOL,
                    key + " sgs");
            assertClose(Reference.variance(g), variance.get(Variance.class, layer, param), RTOL, ATOL,
                    key + " variance");
            assertClose(Reference.dots(g), dots.get(BatchDotGrad.class, layer, param), RTOL, ATOL, key + " dots");
            WeightedGradientSum.Deferred sum = sums.get(WeightedGradientSum.class, layer, param);
            assertEquals(x.size(0), sum.batchSize(), key + " batch size");
            assertArrayEquals(net.getParam(key).shape(), sum.shape(), key + " shape");
            assertClose(Reference.weightedSum(g, weights), sum.of(weights), RTOL, ATOL, key + " weighted sum");
            assertClose(g.sum(0), sum.of(Nd4j.ones(DataType.DOUBLE, x.size(0))), RTOL, ATOL, key + " gradient");
            // added in place: into a column-major view at an offset of a flat buffer, as DL4J's gradient views
            // (a dense layer's weights: one product accumulated there), and into a row-major array
            INDArray expected = Reference.weightedSum(g, weights);
            INDArray flat = Nd4j.rand(DataType.DOUBLE, 1, expected.length() + 3);
            INDArray view = flat.get(org.nd4j.linalg.indexing.NDArrayIndex.point(0),
                    org.nd4j.linalg.indexing.NDArrayIndex.interval(3, expected.length() + 3)).reshape('f',
                    expected.shape());
            INDArray rowMajor = Nd4j.rand(DataType.DOUBLE, expected.shape());
            for (INDArray target : new INDArray[] {view, rowMajor}) {
                INDArray before = target.dup();
                INDArray head = flat.get(org.nd4j.linalg.indexing.NDArrayIndex.point(0),
                        org.nd4j.linalg.indexing.NDArrayIndex.interval(0, 3)).dup();
                sum.addTo(weights, target);
                assertClose(before.add(expected), target, RTOL, ATOL, key + " added in place, order "
                        + target.ordering());
                assertEquals(head, flat.get(org.nd4j.linalg.indexing.NDArrayIndex.point(0),
                        org.nd4j.linalg.indexing.NDArrayIndex.interval(0, 3)), key + " untouched around the view");
            }
            org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> sum.addTo(weights, Nd4j.zeros(DataType.DOUBLE, expected.length() + 1)), key + " shape");
        });
    }

    /**
     * Two convolutions whose unfolded input exceeds one chunk ({@code N·K·P} above
     * {@link io.github.dl4jbackpack.internal.layers.OuterProductTerms#UNFOLDED_SUM_CHUNK_ELEMENTS}). A first layer
     * over a large image with few channels ({@code K = 3·5·5 = 75}, {@code P = 60·60}): its individual gradients
     * ({@code O·K} numbers per example) are smaller than {@code Δ} and the input, so the sum keeps them (formed once
     * for the norms too when both are asked). A layer with a wide kernel over many channels ({@code K = 8·7·7 = 392},
     * {@code P = 10·10}): the sum keeps {@code Δ} and the input and unfolds it again chunk by chunk of examples.
     * Either way, with the norms asked before, after or not at all, sums and norms must be the loop's.
     */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("largeConvolutions")
    void aLargeConvolutionsWeightedSumIsTheLoops(String geometry, String order, long n, int channels, int size,
                                                 int kernel, int nOut) {
        MultiLayerNetwork net = new MultiLayerNetwork(new org.deeplearning4j.nn.conf.NeuralNetConfiguration.Builder()
                .seed(8).dataType(DataType.DOUBLE).list(
                        new ConvolutionLayer.Builder(kernel, kernel).nOut(nOut).activation(Activation.TANH).build(),
                        new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(size, size, channels)).build());
        net.init();
        long k = (long) channels * kernel * kernel;
        long p = (long) (size - kernel + 1) * (size - kernel + 1);
        assertTrue(n * k * p > 2 * io.github.dl4jbackpack.internal.layers.OuterProductTerms
                .UNFOLDED_SUM_CHUNK_ELEMENTS, "several chunks");
        assertEquals(geometry.startsWith("first"), nOut * k < nOut * p + (long) channels * size * size,
                "the geometry keeps the individual gradients");
        INDArray x = TestNets.features(DataType.DOUBLE, 3, n, channels, size, size);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, n, 3);
        INDArray g = Reference.individualGradients(net, x, y).get("0_W");
        io.github.dl4jbackpack.extensions.Extension[] extensions = switch (order) {
            case "sum only" -> new io.github.dl4jbackpack.extensions.Extension[] {new WeightedGradientSum()};
            case "norms first" -> new io.github.dl4jbackpack.extensions.Extension[] {
                    new BatchL2Grad(), new WeightedGradientSum()};
            default -> new io.github.dl4jbackpack.extensions.Extension[] {
                    new WeightedGradientSum(), new BatchL2Grad()};
        };
        Quantities q = BackPackNetwork.extend(net).backward(x, y, extensions);
        WeightedGradientSum.Deferred sum = q.get(WeightedGradientSum.class, 0, "W");
        INDArray weights = Reference.testWeights(n);
        INDArray expected = Reference.weightedSum(g, weights);
        assertClose(expected, sum.of(weights), RTOL, ATOL, "weighted sum");
        INDArray target = Nd4j.ones(DataType.DOUBLE, expected.shape());
        sum.addTo(weights, target);
        assertClose(expected.add(1.0), target, RTOL, ATOL, "added in place");
        if (!order.equals("sum only")) {
            INDArray flat = g.reshape('c', n, g.length() / n);
            assertClose(flat.mul(flat).sum(1), q.get(BatchL2Grad.class, 0, "W"), RTOL, ATOL, "norms");
        }
        q.close();
        assertThrows(IllegalStateException.class, () -> sum.of(weights), "a closed sum is refused");
    }

    /**
     * A convolution's input is unfolded chunk by chunk of examples for every first-order value ({@code U} is never
     * held for the whole batch): with several chunks, the individual gradients, squared norms (from the gradients,
     * or from Gram matrices of positions for a small output over many channels), second moment and variance must
     * be the loop's.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("chunkedConvolutions")
    void aConvolutionUnfoldedByChunksGivesTheLoopsValues(String geometry, long n, int channels, int size, int kernel,
                                                         int nOut) {
        MultiLayerNetwork net = new MultiLayerNetwork(new org.deeplearning4j.nn.conf.NeuralNetConfiguration.Builder()
                .seed(9).dataType(DataType.DOUBLE).list(
                        new ConvolutionLayer.Builder(kernel, kernel).nOut(nOut).activation(Activation.TANH).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(size, size, channels)).build());
        net.init();
        long k = (long) channels * kernel * kernel;
        long p = (long) (size - kernel + 1) * (size - kernel + 1);
        // the smallest step of any path holds the examples' unfolded inputs: every path takes several steps
        assertTrue(n * k * p > io.github.dl4jbackpack.internal.layers.OuterProductTerms.UNFOLDED_STEP_ELEMENTS,
                "several chunks");
        assertEquals(geometry.startsWith("Gram"), p * (k + nOut) < nOut * k, "the norms' path");
        INDArray x = TestNets.features(DataType.DOUBLE, 5, n, channels, size, size);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 6, n, 3);
        Map<String, INDArray> loop = Reference.individualGradients(net, x, y);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities reductions = bp.backward(x, y, new BatchL2Grad(), new SumGradSquared(), new Variance());
        Quantities individual = bp.backward(x, y, new BatchGrad());
        for (String param : new String[] {"W", "b"}) {
            INDArray g = loop.get("0_" + param);
            assertClose(g, individual.get(BatchGrad.class, 0, param), RTOL, ATOL, param + " individual gradients");
            assertClose(Reference.squaredNorms(g), reductions.get(BatchL2Grad.class, 0, param), RTOL, ATOL,
                    param + " norms");
            assertClose(Reference.sumGradSquared(g), reductions.get(SumGradSquared.class, 0, param), RTOL, ATOL,
                    param + " second moment");
            assertClose(Reference.variance(g), reductions.get(Variance.class, 0, param), RTOL, ATOL,
                    param + " variance");
        }
    }

    static Stream<Arguments> chunkedConvolutions() {
        return Stream.of(
                Arguments.of("gradients: a first layer over a large image", 48L, 3, 64, 5, 8),
                Arguments.of("Gram matrices: a small output over many channels", 448L, 64, 8, 3, 64));
    }

    static Stream<Arguments> largeConvolutions() {
        return Stream.of("sum only", "norms first", "norms after").flatMap(order -> Stream.of(
                Arguments.of("first layer over a large image", order, 64L, 3, 64, 5, 8),
                Arguments.of("wide kernel over many channels", order, 112L, 8, 16, 7, 16)));
    }

    /**
     * Closing a weighted sum frees its copies: it, and a sum of its layer sharing them (a dense bias shares its
     * weight's {@code Δ}), refuse further sums with a clear message instead of reading freed memory; sums formed
     * before stay valid; another layer's sums are untouched.
     */
    @org.junit.jupiter.api.Test
    void closedWeightedSumsAreRefusedWithTheirSiblings() {
        Case dense = cases().filter(c -> c.name().startsWith("mlp relu")).findFirst().orElseThrow();
        MultiLayerNetwork net = dense.build(DataType.DOUBLE);
        INDArray x = dense.features(DataType.DOUBLE);
        INDArray y = dense.labels(DataType.DOUBLE);
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new WeightedGradientSum());
        INDArray weights = Reference.testWeights(x.size(0));
        WeightedGradientSum.Deferred w = q.get(WeightedGradientSum.class, 0, "W");
        WeightedGradientSum.Deferred b = q.get(WeightedGradientSum.class, 0, "b");
        WeightedGradientSum.Deferred other = q.get(WeightedGradientSum.class, 1, "W");
        INDArray before = w.of(weights);
        INDArray otherSum = other.of(weights);
        w.close();
        w.close();
        IllegalStateException closed = assertThrows(IllegalStateException.class, () -> w.of(weights));
        assertTrue(closed.getMessage().contains("closed"), closed.getMessage());
        IllegalStateException sibling = assertThrows(IllegalStateException.class, () -> b.of(weights));
        assertTrue(sibling.getMessage().contains("another sum of its layer"), sibling.getMessage());
        assertTrue(Double.isFinite(before.sumNumber().doubleValue()), "a sum formed before stays valid");
        assertClose(otherSum, other.of(weights), 0, 0, "another layer's sum");
    }

    /** Checks all five first-order quantities of {@code q} against the stacked reference gradients. */
    static void assertMatches(Map<String, INDArray> reference, Quantities q, double rtol, double atol) {
        TreeSet<Integer> layers = new TreeSet<>();
        reference.forEach((key, g) -> {
            int layer = Integer.parseInt(key.substring(0, key.indexOf('_')));
            String param = key.substring(key.indexOf('_') + 1);
            layers.add(layer);
            assertClose(g, q.get(BatchGrad.class, layer, param), rtol, atol, key + " BatchGrad");
            assertClose(Reference.squaredNorms(g), q.get(BatchL2Grad.class, layer, param), rtol, atol,
                    key + " BatchL2Grad");
            assertClose(Reference.sumGradSquared(g), q.get(SumGradSquared.class, layer, param), rtol, atol,
                    key + " SumGradSquared");
            assertClose(Reference.variance(g), q.get(Variance.class, layer, param), rtol, atol, key + " Variance");
            assertClose(Reference.dots(g), q.get(BatchDotGrad.class, layer, param), rtol, atol, key + " BatchDotGrad");
            INDArray weights = Reference.testWeights(g.size(0));
            assertClose(Reference.weightedSum(g, weights), q.get(WeightedGradientSum.class, layer, param).of(weights),
                    rtol, atol, key + " WeightedGradientSum");
        });
        assertEquals(layers, q.layers(BatchGrad.class), "layers with values");
    }
}
