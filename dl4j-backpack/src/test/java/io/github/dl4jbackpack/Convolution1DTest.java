// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.MaskState;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.layers.Convolution1DLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.layers.Subsampling1DLayer;
import org.deeplearning4j.nn.conf.layers.Upsampling1D;
import org.deeplearning4j.nn.conf.layers.ZeroPadding1DLayer;
import org.deeplearning4j.nn.conf.layers.convolutional.Cropping1D;
import org.deeplearning4j.nn.conf.weightnoise.DropConnect;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.activations.impl.ActivationTanH;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The {@code Convolution1DLayer} kind on its own, against DL4J, float64: the kind is handed DL4J's own
 * {@code δ = ∂L/∂z} (recorded by a tanh that keeps what its backward step returns), divided by N, and its
 * per-sequence gradients must (1) sum, times N, to DL4J's batch gradient and (2) equal DL4J's gradient of
 * each sequence run alone with its own masks, divided by N, with their reductions (see
 * {@link SimpleRnnTest#assertKindMatchesDl4j}). Kernel, stride, dilation and padding in Truncate, Strict,
 * Same and Causal modes, one step, without masks and with tail (variable lengths) and head (ALIGN_END)
 * masks; two 1D convolutions around Subsampling1DLayer, Upsampling1D, ZeroPadding1DLayer and Cropping1D.
 * Then every first-order extension through {@code BackPackNetwork.backward} with masks. Also: DL4J's
 * MultiLayerNetwork leaves a 1D convolution's outputs unmasked (it passes the reduced mask on without setting
 * it on the layer), NWC and weight noise are refused, and the curvature extensions accept the four
 * parameter-free 1D layers (their curvature, and the 1D convolution's, is tested in
 * {@code SequenceCurvatureTest}, {@code SequenceKroneckerTest} and {@code LayerKindContractTest}).
 */
class Convolution1DTest {

    private static final int N_IN = 2;
    private static final int N_OUT = 3;
    private static final int CLASSES = 2;
    private static final int N = 3;

    @BeforeAll
    static void doublePrecision() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    /** A tanh that keeps {@code ∂L/∂z} of its last backward step. */
    static final class RecordingTanh extends ActivationTanH {
        private INDArray preActivationGradient;

        @Override
        public Pair<INDArray, INDArray> backprop(INDArray in, INDArray epsilon) {
            Pair<INDArray, INDArray> result = super.backprop(in, epsilon);
            preActivationGradient = result.getFirst().dup();
            return result;
        }
    }

    /** @return the summed loss's {@code ∂L/∂z} that layer {@code index}'s recording tanh kept */
    private static Function<MultiLayerNetwork, INDArray> recorded(int index) {
        return net -> ((RecordingTanh) ((org.deeplearning4j.nn.conf.layers.BaseLayer) net.getLayer(index).conf()
                .getLayer()).getActivationFn()).preActivationGradient;
    }

    /** One 1D convolution's settings and the input length. */
    record Settings(int kernel, int stride, int dilation, int padding, ConvolutionMode mode, int length) {
        Convolution1DLayer layer(int nIn) {
            return new Convolution1DLayer.Builder().kernelSize(kernel).stride(stride).dilation(dilation)
                    .padding(padding).convolutionMode(mode).nIn(nIn).nOut(N_OUT).activation(new RecordingTanh())
                    .build();
        }

        @Override
        public String toString() {
            return mode + " k" + kernel + " s" + stride + " d" + dilation + " p" + padding + " T" + length;
        }
    }

    /** @return a network without workspaces, whose layers keep their inputs after DL4J's pass */
    private static MultiLayerNetwork network(org.deeplearning4j.nn.conf.layers.Layer... layers) {
        return network(WorkspaceMode.NONE, layers);
    }

    private static MultiLayerNetwork network(WorkspaceMode workspaces, org.deeplearning4j.nn.conf.layers.Layer... layers) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(13)
                .dataType(DataType.DOUBLE).trainingWorkspaceMode(workspaces)
                .inferenceWorkspaceMode(workspaces).list(layers).build());
        net.init();
        TestNets.randomiseParameters(net, 13);
        return net;
    }

    private static RnnOutputLayer output() {
        return new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(N_OUT).nOut(CLASSES)
                .dataFormat(RNNFormat.NCW)
                .build();
    }

    /** @return the mask DL4J propagates past layer {@code index} (its own reduction) */
    private static INDArray reducedMask(MultiLayerNetwork net, int index, INDArray mask) {
        return net.getLayer(index).feedForwardMaskArray(mask, MaskState.Active, (int) mask.size(0)).getFirst().dup();
    }

    private static void assertSettings(Settings s) {
        MultiLayerNetwork net = network(s.layer(N_IN), output());
        INDArray x = TestNets.features(DataType.DOUBLE, 5, N, N_IN, s.length());
        long outLength = net.output(x).size(2);
        INDArray y = SimpleRnnTest.labels(N, CLASSES, outLength, 6);
        SimpleRnnTest.assertKindMatchesDl4j(net, 0, x, y, null, null, recorded(0), s + ", no mask");
        if (s.length() > 1) {
            int t = s.length();
            INDArray tail = SimpleRnnTest.mask(t, new int[] {0, 0, 0}, new int[] {t, t - 1, t / 2});
            SimpleRnnTest.assertKindMatchesDl4j(net, 0, x, y, tail, reducedMask(net, 0, tail), recorded(0),
                    s + ", tail masked");
            INDArray head = SimpleRnnTest.mask(t, new int[] {0, 1, t - t / 2}, new int[] {t, t - 1, t / 2});
            SimpleRnnTest.assertKindMatchesDl4j(net, 0, x, y, head, reducedMask(net, 0, head), recorded(0),
                    s + ", head masked");
        }
    }

    @Test
    void truncateAndStrict() {
        assertSettings(new Settings(3, 1, 1, 0, ConvolutionMode.Truncate, 7));
        assertSettings(new Settings(3, 2, 1, 1, ConvolutionMode.Truncate, 8));
        assertSettings(new Settings(2, 3, 2, 2, ConvolutionMode.Truncate, 9));
        assertSettings(new Settings(3, 2, 1, 0, ConvolutionMode.Strict, 7));
    }

    @Test
    void same() {
        assertSettings(new Settings(4, 2, 1, 0, ConvolutionMode.Same, 7));
        assertSettings(new Settings(3, 1, 2, 0, ConvolutionMode.Same, 6));
        assertSettings(new Settings(5, 3, 1, 0, ConvolutionMode.Same, 4));
    }

    @Test
    void causal() {
        assertSettings(new Settings(3, 1, 2, 0, ConvolutionMode.Causal, 6));
        assertSettings(new Settings(2, 2, 1, 0, ConvolutionMode.Causal, 7));
    }

    @Test
    void singleStep() {
        assertSettings(new Settings(1, 1, 1, 0, ConvolutionMode.Truncate, 1));
        assertSettings(new Settings(3, 1, 1, 0, ConvolutionMode.Same, 1));
        assertSettings(new Settings(3, 1, 1, 0, ConvolutionMode.Causal, 1));
    }

    /** Two convolutions around the four parameterless 1D layers: lengths 8 → 8 → 4 → 8 → 11 → 8 → 7. */
    @Test
    void aroundParameterlessLayers() {
        int length = 8;
        MultiLayerNetwork net = network(new Settings(3, 1, 1, 0, ConvolutionMode.Same, length).layer(N_IN),
                new Subsampling1DLayer.Builder(SubsamplingLayer.PoolingType.MAX, 2, 2).build(),
                new Upsampling1D.Builder(2).build(),
                new ZeroPadding1DLayer.Builder(1, 2).build(),
                new Cropping1D.Builder(2, 1).build(),
                new Settings(2, 1, 1, 0, ConvolutionMode.Truncate, 8).layer(N_OUT),
                output());
        for (int i = 1; i <= 4; i++) {
            Layer layer = net.getLayer(i);
            LayerDerivatives kind = LayerKinds.of(layer).orElseThrow();
            assertEquals(layer.getClass().getSimpleName(), kind.kindName());
            String reason = kind.secondOrderUnsupported(layer, false);
            // the pooling, padding, cropping and upsampling layers are supported by the curvature extensions
            assertNull(reason, reason);
        }
        INDArray x = TestNets.features(DataType.DOUBLE, 9, N, N_IN, length);
        INDArray y = SimpleRnnTest.labels(N, CLASSES, 7, 10);
        INDArray features = SimpleRnnTest.mask(length, new int[] {0, 0, 0}, new int[] {8, 6, 3});
        INDArray labels = SimpleRnnTest.mask(7, new int[] {0, 0, 0}, new int[] {7, 5, 2});
        for (int index : new int[] {0, 5}) {
            SimpleRnnTest.assertKindMatchesDl4j(net, index, x, y, null, null, recorded(index), "layer " + index);
            SimpleRnnTest.assertKindMatchesDl4j(net, index, x, y, features, labels, recorded(index),
                    "layer " + index + ", tail masked");
        }
    }

    /**
     * Through {@code BackPackNetwork.backward} with masks, with workspaces: every first-order extension of
     * two convolutions around the four parameterless 1D layers under a per-step output, of a causal
     * convolution feeding a SimpleRnn (head and tail masks), and of strided convolutions under global
     * pooling over masked time, against single-sequence passes.
     */
    @Test
    void firstOrderExtensionsEqualSingleSequencePasses() {
        int length = 8;
        INDArray x = TestNets.features(DataType.DOUBLE, 21, 4, N_IN, length);
        INDArray tail = SimpleRnnTest.mask(length, new int[] {0, 0, 0, 0}, new int[] {8, 6, 3, 1});
        INDArray head = SimpleRnnTest.mask(length, new int[] {0, 2, 5, 7}, new int[] {8, 6, 3, 1});

        MultiLayerNetwork chain = network(WorkspaceMode.ENABLED,
                new Convolution1DLayer.Builder().kernelSize(3).convolutionMode(ConvolutionMode.Same).nIn(N_IN)
                        .nOut(N_OUT).activation(Activation.TANH).build(),
                new Subsampling1DLayer.Builder(SubsamplingLayer.PoolingType.AVG, 2, 2).build(),
                new Upsampling1D.Builder(2).build(),
                new ZeroPadding1DLayer.Builder(1, 2).build(),
                new Cropping1D.Builder(2, 1).build(),
                new Convolution1DLayer.Builder().kernelSize(2).dilation(2).nIn(N_OUT).nOut(N_OUT)
                        .activation(Activation.SOFTPLUS).build(),
                output());
        INDArray y = SimpleRnnTest.labels(4, CLASSES, 6, 22);
        Reference.assertFirstOrderEqualsSingleSequencePasses(chain, x, y, null, null, "chain, no mask");
        Reference.assertFirstOrderEqualsSingleSequencePasses(chain, x, y, null,
                SimpleRnnTest.mask(6, new int[] {0, 0, 0, 0}, new int[] {6, 4, 2, 1}), "chain, label mask");

        MultiLayerNetwork recurrent = network(WorkspaceMode.ENABLED,
                new Convolution1DLayer.Builder().kernelSize(3).dilation(2).convolutionMode(ConvolutionMode.Causal)
                        .nIn(N_IN).nOut(N_OUT).activation(Activation.TANH).build(),
                new org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn.Builder().nIn(N_OUT).nOut(4)
                        .activation(Activation.TANH).build(),
                new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(4).nOut(CLASSES)
                        .dataFormat(RNNFormat.NCW).build());
        y = SimpleRnnTest.labels(4, CLASSES, length, 23);
        for (INDArray m : new INDArray[] {null, tail, head}) {
            Reference.assertFirstOrderEqualsSingleSequencePasses(recurrent, x, y, m, m,
                    "causal convolution and SimpleRnn, mask " + m);
        }

        for (PoolingType pooling : new PoolingType[] {PoolingType.AVG, PoolingType.MAX}) {
            // with the input type, DL4J puts the flattening its output layer needs after the pooling
            MultiLayerNetwork pooled = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(13)
                    .dataType(DataType.DOUBLE).list(
                            new Convolution1DLayer.Builder().kernelSize(3).stride(2)
                                    .convolutionMode(ConvolutionMode.Same).nOut(N_OUT).activation(Activation.RELU)
                                    .build(),
                            new Convolution1DLayer.Builder().kernelSize(2).nOut(N_OUT).activation(Activation.TANH)
                                    .build(),
                            new GlobalPoolingLayer.Builder(pooling).build(),
                            new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES)
                                    .build())
                    .setInputType(org.deeplearning4j.nn.conf.inputs.InputType.recurrent(N_IN, length)).build());
            pooled.init();
            TestNets.randomiseParameters(pooled, 25);
            INDArray labels = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 24, 4, CLASSES);
            Reference.assertFirstOrderEqualsSingleSequencePasses(pooled, x, labels, null, null, pooling + " pooling");
            Reference.assertFirstOrderEqualsSingleSequencePasses(pooled, x, labels, tail, null,
                    pooling + " pooling, tail masked");
            Reference.assertFirstOrderEqualsSingleSequencePasses(pooled, x, labels, head, null,
                    pooling + " pooling, head masked");
        }
    }

    /**
     * DL4J's MultiLayerNetwork hands a Convolution1DLayer's reduced mask on to the next layer but never sets
     * it on the layer itself, so the layer's own forward masking does not happen: its outputs at masked steps
     * are those of the unmasked input.
     */
    @Test
    void dl4jLeavesConvolution1DOutputsUnmasked() {
        MultiLayerNetwork net = network(new Settings(3, 1, 1, 0, ConvolutionMode.Causal, 5).layer(N_IN), output());
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 1, N_IN, 5);
        INDArray mask = SimpleRnnTest.mask(5, new int[] {0}, new int[] {2});
        net.setLayerMaskArrays(mask, mask);
        assertNull(net.getLayer(0).getMaskArray());
        INDArray masked = net.feedForward(x, mask, mask).get(1);
        INDArray unmasked = net.feedForward(x, null, null).get(1);
        Reference.assertClose(unmasked, masked, 1e-14, 0, "Convolution1DLayer output with and without a mask");
        assertTrue(masked.getDouble(0, 0, 4) != 0.0);
    }

    @Test
    void channelsLastAndWeightNoiseAreRefused() {
        MultiLayerNetwork nwc = network(new Convolution1DLayer.Builder().kernelSize(2).nIn(N_IN).nOut(N_OUT)
                .rnnDataFormat(RNNFormat.NWC).build(), output());
        String reason = LayerKinds.whyUnsupported(nwc.getLayer(0));
        assertTrue(reason != null && reason.contains("NWC"), reason);
        MultiLayerNetwork noisy = network(new Convolution1DLayer.Builder().kernelSize(2).nIn(N_IN).nOut(N_OUT)
                .weightNoise(new DropConnect(0.5)).build(), output());
        reason = LayerKinds.whyUnsupported(noisy.getLayer(0));
        assertTrue(reason != null && reason.contains("weight noise"), reason);
        Layer layer = noisy.getLayer(0);
        // its Kronecker factors exist ("expand" over positions, tested in SequenceKroneckerTest)
        reason = LayerKinds.of(layer).orElseThrow().noKroneckerFactors(layer);
        assertTrue(reason == null, reason);
    }
}
