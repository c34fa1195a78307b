// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.graph.ElementWiseVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.CnnLossLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.Deconvolution2D;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.DepthwiseConvolution2D;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LocalResponseNormalization;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SeparableConvolution2D;
import org.deeplearning4j.nn.conf.layers.SpaceToDepthLayer;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.conf.layers.Upsampling2D;
import org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer;
import org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D;
import org.deeplearning4j.nn.conf.preprocessor.CnnToFeedForwardPreProcessor;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.function.Supplier;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Vision layers in channels-last layout (NHWC): the same network built NCHW and NHWC with the same
 * parameters, fed the same (permuted) data, gives the same value of every extension (the NCHW values are
 * checked against brute force elsewhere); an NHWC network with the flattening DL4J inserts in front of a
 * dense layer, directly against explicit Jacobians and a loop of single-example passes.
 */
class ChannelsLastTest {

    private static final long N = 3;

    /**
     * The extensions compared (the sampled one seeded the same for both layouts), with batch normalisation
     * normalising with the running statistics (every extension is defined).
     */
    private static final List<Supplier<Extension<?>>> EXTENSIONS = List.of(BatchGrad::new, BatchL2Grad::new,
            Variance::new, DiagGGNExact::new, BatchDiagGGNExact::new, DiagHessian::new, KFLR::new, KFAC::new,
            KFRA::new);

    /** What the library refuses on a network with batch normalisation, in either layout. */
    private static final java.util.Set<Class<?>> BATCH_NORMALISATION = java.util.Set.of(KFRA.class);

    /** The extensions compared with batch normalisation normalising with the batch's statistics. */
    private static final List<Supplier<Extension<?>>> BATCH_LEVEL = List.of(DiagGGNExact::new, DiagHessian::new,
            KFLR::new, KFAC::new);

    private static INDArray channelsLast(INDArray nchw) {
        return nchw.permute(0, 2, 3, 1).dup('c');
    }

    /** A stack of layers in one layout. */
    private interface Stack {
        Layer[] layers(CNN2DFormat format);
    }

    private static MultiLayerNetwork network(DataType type, long h, long w, long c, CNN2DFormat format, Stack stack) {
        return TestNets.build(type, InputType.convolutional(h, w, c, format), stack.layers(format));
    }

    /** conv (Same, stride 2) + BN + max pooling + LRN + padding, cropping, upsampling + global pooling + dense. */
    private static Layer[] vision(CNN2DFormat f) {
        return new Layer[] {
            // LRN first: its backward step is not its derivative, so nothing below may need a Hessian residual
            new LocalResponseNormalization.Builder().k(1.5).n(3).alpha(0.3).beta(0.75).dataFormat(f).build(),
            new ConvolutionLayer.Builder(3, 3).nOut(4).stride(2, 2).convolutionMode(ConvolutionMode.Same)
                    .dataFormat(f).activation(Activation.TANH).build(),
            new BatchNormalization.Builder().dataFormat(f).build(),
            new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(1, 1).dataFormat(f).build(),
            new ZeroPaddingLayer.Builder(1, 0, 1, 1).dataFormat(f).build(),
            new Cropping2D.Builder(0, 1, 1, 0).dataFormat(f).build(),
            new Upsampling2D.Builder(2).dataFormat(f).build(),
            new ConvolutionLayer.Builder(2, 2).nOut(3).dataFormat(f).activation(Activation.SOFTPLUS).build(),
            new GlobalPoolingLayer.Builder(PoolingType.AVG).build(),
            new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(),
            new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build()};
    }

    /** depthwise, separable, transposed convolution, space to depth, global max pooling. */
    private static Layer[] channelwise(CNN2DFormat f) {
        return new Layer[] {
            new DepthwiseConvolution2D.Builder(3, 3).depthMultiplier(2).convolutionMode(ConvolutionMode.Same)
                    .dataFormat(f).activation(Activation.SIGMOID).build(),
            new SeparableConvolution2D.Builder(2, 2).nOut(3).depthMultiplier(2).dataFormat(f)
                    .activation(Activation.TANH).build(),
            new Deconvolution2D.Builder(3, 3).nOut(2).stride(2, 2).convolutionMode(ConvolutionMode.Same)
                    .dataFormat(f).activation(Activation.ELU).build(),
            new SpaceToDepthLayer.Builder(2, f).build(),
            new GlobalPoolingLayer.Builder(PoolingType.MAX).build(),
            new OutputLayer.Builder(LossFunction.MSE).activation(Activation.IDENTITY).nOut(2).build()};
    }

    /** A convolution and a per-position softmax cross-entropy. */
    private static Layer[] perPosition(CNN2DFormat f) {
        return new Layer[] {
            new ConvolutionLayer.Builder(3, 3).nOut(3).convolutionMode(ConvolutionMode.Same).dataFormat(f)
                    .activation(Activation.TANH).build(),
            new ConvolutionLayer.Builder(2, 2).nOut(3).dataFormat(f).activation(Activation.IDENTITY).build(),
            new CnnLossLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).format(f).build()};
    }

    /** Every extension in both layouts; the NHWC network gets the NCHW one's parameters. */
    private static void assertSameInBothLayouts(DataType type, Stack stack, long h, long w, long c, INDArray y,
                                                java.util.Set<Class<?>> skipped, double rtol,
                                                double atol) {
        MultiLayerNetwork nchw = network(type, h, w, c, CNN2DFormat.NCHW, stack);
        MultiLayerNetwork nhwc = network(type, h, w, c, CNN2DFormat.NHWC, stack);
        nhwc.setParams(nchw.params());
        INDArray x = TestNets.features(type, 5, N, c, h, w);
        INDArray yLast = y.rank() == 4 ? channelsLast(y) : y;
        // DL4J's parameter layouts do not depend on the data format: the same parameters, the same function
        INDArray out = nchw.output(x, false);
        INDArray outLast = nhwc.output(channelsLast(x), false);
        assertClose(out.rank() == 4 ? channelsLast(out) : out, outLast, rtol, atol, "outputs");
        assertSameInBothLayouts(BackPackNetwork.extend(nchw), BackPackNetwork.extend(nhwc), x, y, yLast, skipped,
                rtol, atol);
    }

    private static void assertSameInBothLayouts(BackPackNetwork nchw, BackPackNetwork nhwc, INDArray x, INDArray y,
                                                INDArray yLast, java.util.Set<Class<?>> skipped, double rtol,
                                                double atol) {
        for (BatchNormStatistics statistics : BatchNormStatistics.values()) {
            nchw.setBatchNormStatistics(statistics);
            nhwc.setBatchNormStatistics(statistics);
            // with fixed statistics (running, or the batch's as constants) every extension is defined
            for (Supplier<Extension<?>> extension : statistics != BatchNormStatistics.BATCH ? EXTENSIONS
                    : BATCH_LEVEL) {
                if (skipped.contains(extension.get().getClass())) {
                    continue;
                }
                TestNets.seed(11);
                Quantities first = nchw.backward(x, y, extension.get());
                TestNets.seed(11);
                Quantities last = nhwc.backward(channelsLast(x), yLast, extension.get());
                assertSame(first, last, rtol, atol);
            }
        }
    }

    /** Every value of the one extension of {@code first} equals the same of {@code last}. */
    @SuppressWarnings("unchecked")
    private static void assertSame(Quantities first, Quantities last, double rtol, double atol) {
        Class<? extends Extension<?>> extension = (Class<? extends Extension<?>>) first.extensions().iterator().next();
        assertEquals(first.keys(extension), last.keys(extension), extension.getSimpleName() + " keys");
        assertTrue(!first.keys(extension).isEmpty(), extension.getSimpleName() + " has values");
        // values that vanish mathematically (a bias right below a batch normalisation) are compared at the
        // scale of the extension's largest value
        double scale = 0;
        for (String key : first.keys(extension)) {
            Object a = first.byKey((Class<? extends Extension<Object>>) (Class<?>) extension, key);
            for (INDArray v : a instanceof KroneckerFactors ? ((KroneckerFactors) a).factors() : List.of((INDArray) a)) {
                scale = Math.max(scale, v.amaxNumber().doubleValue());
            }
        }
        for (String key : first.keys(extension)) {
            Object a = first.byKey((Class<? extends Extension<Object>>) (Class<?>) extension, key);
            Object b = last.byKey((Class<? extends Extension<Object>>) (Class<?>) extension, key);
            String what = extension.getSimpleName() + " " + key;
            if (a instanceof KroneckerFactors) {
                List<INDArray> fa = ((KroneckerFactors) a).factors();
                List<INDArray> fb = ((KroneckerFactors) b).factors();
                assertEquals(fa.size(), fb.size(), what);
                for (int i = 0; i < fa.size(); i++) {
                    assertEqualAtScale(fa.get(i), fb.get(i), rtol, atol * scale, what + " factor " + i);
                }
            } else {
                assertEqualAtScale((INDArray) a, (INDArray) b, rtol, atol * scale, what);
            }
        }
    }

    private static void assertEqualAtScale(INDArray expected, INDArray actual, double rtol, double atol, String what) {
        assertEquals(java.util.Arrays.toString(expected.shape()), java.util.Arrays.toString(actual.shape()), what);
        double diff = expected.castTo(DataType.DOUBLE).sub(actual.castTo(DataType.DOUBLE)).amaxNumber().doubleValue();
        double bound = rtol * expected.amaxNumber().doubleValue() + atol;
        assertTrue(diff <= bound, what + ": max |diff| = " + diff + " exceeds " + bound);
    }

    @Test
    void visionStackGivesTheSameInBothLayouts() {
        assertSameInBothLayouts(DataType.DOUBLE, ChannelsLastTest::vision, 8, 8, 2,
                TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, N, 3), BATCH_NORMALISATION, 1e-9, 1e-12);
    }

    @Test
    void visionStackGivesTheSameInBothLayoutsInFloat32() {
        assertSameInBothLayouts(DataType.FLOAT, ChannelsLastTest::vision, 8, 8, 2,
                TestNets.labels(DataType.FLOAT, LossFunction.MCXENT, 4, N, 3), BATCH_NORMALISATION, 1e-3, 1e-5);
    }

    @Test
    void channelwiseAndTransposedConvolutionsGiveTheSameInBothLayouts() {
        assertSameInBothLayouts(DataType.DOUBLE, ChannelsLastTest::channelwise, 5, 5, 2,
                TestNets.labels(DataType.DOUBLE, LossFunction.MSE, 4, N, 2), java.util.Set.of(KFLR.class, KFAC.class, KFRA.class),
                1e-9, 1e-12);
    }

    @Test
    void perPositionLossGivesTheSameInBothLayouts() {
        // one-hot over the channels at every position, [N, C, H, W]
        INDArray y = Nd4j.zeros(DataType.DOUBLE, N, 3, 4, 4);
        java.util.Random r = new java.util.Random(3);
        for (int n = 0; n < N; n++) {
            for (int i = 0; i < 4; i++) {
                for (int j = 0; j < 4; j++) {
                    y.putScalar(new int[] {n, r.nextInt(3), i, j}, 1.0);
                }
            }
        }
        assertSameInBothLayouts(DataType.DOUBLE, ChannelsLastTest::perPosition, 5, 5, 2, y, java.util.Set.of(), 1e-9,
                1e-12);
    }

    private static ComputationGraph graph(CNN2DFormat f) {
        ComputationGraphConfiguration conf = new NeuralNetConfiguration.Builder().seed(7).dataType(DataType.DOUBLE)
                .weightInit(WeightInit.XAVIER).updater(new Sgd(0.1)).graphBuilder()
                .addInputs("in")
                .addLayer("conv", new ConvolutionLayer.Builder(3, 3).nOut(3).convolutionMode(ConvolutionMode.Same)
                        .dataFormat(f).activation(Activation.TANH).build(), "in")
                .addLayer("bn", new BatchNormalization.Builder().dataFormat(f).build(), "conv")
                .addLayer("pool", new SubsamplingLayer.Builder(PoolingType.AVG).kernelSize(2, 2).stride(1, 1)
                        .convolutionMode(ConvolutionMode.Same).dataFormat(f).build(), "conv")
                .addVertex("add", new ElementWiseVertex(ElementWiseVertex.Op.Add), "bn", "pool")
                .addLayer("deconv", new Deconvolution2D.Builder(2, 2).nOut(2).stride(2, 2).dataFormat(f)
                        .activation(Activation.SIGMOID).build(), "add")
                .addLayer("gp", new GlobalPoolingLayer.Builder(PoolingType.SUM).build(), "deconv")
                .addLayer("out", new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3)
                        .build(), "gp")
                .setOutputs("out").setInputTypes(InputType.convolutional(4, 4, 2, f)).build();
        ComputationGraph graph = new ComputationGraph(conf);
        graph.init();
        return graph;
    }

    @Test
    void computationGraphGivesTheSameInBothLayouts() {
        ComputationGraph nchw = graph(CNN2DFormat.NCHW);
        TestNets.seed(2);
        nchw.params().assign(Nd4j.randn(DataType.DOUBLE, nchw.params().shape()).muli(0.5));
        ComputationGraph nhwc = graph(CNN2DFormat.NHWC);
        nhwc.setParams(nchw.params());
        INDArray x = TestNets.features(DataType.DOUBLE, 5, N, 2, 4, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, N, 3);
        assertClose(nchw.outputSingle(x), nhwc.outputSingle(channelsLast(x)), 1e-12, 1e-14, "outputs");
        assertSameInBothLayouts(BackPackNetwork.extend(nchw), BackPackNetwork.extend(nhwc), x, y, y, BATCH_NORMALISATION, 1e-9,
                1e-12);
    }

    /**
     * DL4J flattens NHWC activations in their own order ({@code (h·W + w)·C + c}, as Keras does): an NHWC
     * network through that flattening, directly against explicit Jacobians and single-example passes.
     */
    @Test
    void flatteningNetworkEqualsBruteForce() {
        Function<LossFunction, MultiLayerNetwork> build = loss -> network(DataType.DOUBLE, 5, 4, 2,
                CNN2DFormat.NHWC, f -> new Layer[] {
                    new ConvolutionLayer.Builder(2, 2).nOut(3).dataFormat(f).activation(Activation.TANH).build(),
                    new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(1, 1).dataFormat(f).build(),
                    new DenseLayer.Builder().nOut(4).activation(Activation.SIGMOID).build(),
                    new OutputLayer.Builder(loss).activation(loss == LossFunction.L2 ? Activation.IDENTITY
                            : Activation.SOFTMAX).nOut(3).build()});
        MultiLayerNetwork net = build.apply(LossFunction.MCXENT);
        CnnToFeedForwardPreProcessor flatten = (CnnToFeedForwardPreProcessor) net.getLayerWiseConfigurations()
                .getInputPreProcess(2);
        assertInstanceOf(CnnToFeedForwardPreProcessor.class, flatten);
        assertEquals(CNN2DFormat.NHWC, flatten.getFormat());
        INDArray x = TestNets.features(DataType.DOUBLE, 5, N, 5, 4, 2);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, N, 3);
        MultiLayerNetwork ref = build.apply(LossFunction.L2);
        ref.setParams(net.params());
        Map<String, INDArray> batchGgn = BruteForce.batchDiagGgn(BruteForce.jacobians(ref, x), BruteForce.Loss.MCXENT);
        Map<String, INDArray> loop = Reference.individualGradients(net.clone(), x, y);
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new BatchDiagGGNExact(), new BatchGrad());
        assertEquals(3, q.layers(BatchGrad.class).size(), "every layer with parameters");
        for (String key : batchGgn.keySet()) {
            int layer = BruteForce.layerOf(key);
            String param = BruteForce.paramOf(key);
            assertClose(batchGgn.get(key), q.get(BatchDiagGGNExact.class, layer, param), 1e-9, 1e-13, "GGN " + key);
            assertClose(loop.get(key), q.get(BatchGrad.class, layer, param), 1e-10, 1e-13, "BatchGrad " + key);
        }
    }
}
