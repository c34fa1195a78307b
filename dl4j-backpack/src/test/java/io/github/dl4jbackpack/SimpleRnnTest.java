// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.internal.layers.FirstOrderTerms;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.conf.weightnoise.DropConnect;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Function;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The {@code SimpleRnn} kind on its own, against DL4J, float64: the kind is handed {@code ε = ∂L/∂h} of the
 * mean loss (DL4J's output layer's backward step, run by hand after DL4J's pass) and its per-sequence
 * gradients must (1) sum, times N, to DL4J's batch gradient and (2) equal DL4J's gradient of each sequence
 * run alone with its own masks, divided by N; their reductions (squared norms, second moment, variance,
 * dot products) must equal those of the single-sequence gradients. Without masks, with a tail masked
 * (variable lengths), with the head masked (ALIGN_END), with mask weights between 0 and 1, with one step,
 * in the NWC layout, with relu.
 * Then every first-order extension through {@code BackPackNetwork.backward} with masks. Also: DL4J's
 * masked head restarts the recurrence from zero (a head-masked sequence is the shortened one), and layer
 * normalisation and weight noise are refused.
 */
class SimpleRnnTest {

    private static final int N_IN = 3;
    private static final int N_OUT = 4;
    private static final int CLASSES = 2;

    @BeforeAll
    static void doublePrecision() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    private static MultiLayerNetwork network(Activation activation, RNNFormat format) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(11)
                .dataType(DataType.DOUBLE).trainingWorkspaceMode(WorkspaceMode.NONE)
                .inferenceWorkspaceMode(WorkspaceMode.NONE).list(
                        new SimpleRnn.Builder().nIn(N_IN).nOut(N_OUT).activation(activation).dataFormat(format).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(N_OUT)
                                .nOut(CLASSES).dataFormat(format).build())
                .build());
        net.init();
        TestNets.randomiseParameters(net, 11);
        return net;
    }

    /** @return a {@code [N, T]} mask with ones on steps {@code [from_n, from_n + length_n)} */
    static INDArray mask(long length, int[] from, int[] lengths) {
        INDArray m = Nd4j.zeros(DataType.DOUBLE, from.length, length);
        for (int n = 0; n < from.length; n++) {
            m.get(NDArrayIndex.point(n), NDArrayIndex.interval(from[n], from[n] + lengths[n])).assign(1.0);
        }
        return m;
    }

    /** @return one-hot labels {@code [N, classes, T]} */
    static INDArray labels(long n, int classes, long length, long seed) {
        java.util.Random r = new java.util.Random(seed);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, n, classes, length);
        for (int i = 0; i < n; i++) {
            for (int t = 0; t < length; t++) {
                y.putScalar(new long[] {i, r.nextInt(classes), t}, 1.0);
            }
        }
        return y;
    }

    /** @return the array with its last two axes swapped (NCW ↔ NWC), as a copy */
    static INDArray swapLastAxes(INDArray a) {
        return a.permute(0, 2, 1).dup('c');
    }

    /** Runs DL4J's gradient pass with the given data and masks on {@code net}, masks of earlier passes cleared. */
    static void dl4jPass(MultiLayerNetwork net, INDArray x, INDArray y, INDArray featuresMask, INDArray labelsMask) {
        net.clearLayerMaskArrays();
        net.setInput(x);
        net.setLabels(y);
        net.setLayerMaskArrays(featuresMask, labelsMask);
        net.computeGradientAndScore();
    }

    /** @return the gradient at the output layer's input of the summed loss, DL4J's backward step run again */
    static INDArray outputLayerInputGradient(MultiLayerNetwork net) {
        return net.getOutputLayer().backpropGradient(null, LayerWorkspaceMgr.noWorkspaces()).getSecond().dup();
    }

    /**
     * Asserts the kind of layer {@code layerIndex} against DL4J: after DL4J's batch pass, the kind's terms
     * from the layer's input and {@code outputGradient(net)} (the summed loss's gradient the kind expects,
     * divided by N here) against the batch gradient and against single-sequence passes on a copy, in the
     * parameters' shapes (DL4J's gradient of a 1D convolution's weight drops the parameter's last axis).
     */
    static void assertKindMatchesDl4j(MultiLayerNetwork net, int layerIndex, INDArray x, INDArray y,
                                      INDArray featuresMask, INDArray labelsMask,
                                      Function<MultiLayerNetwork, INDArray> outputGradient, String what) {
        long n = x.size(0);
        MultiLayerNetwork plain = net.clone();
        dl4jPass(net, x, y, featuresMask, labelsMask);
        Layer layer = net.getLayer(layerIndex);
        Map<String, INDArray> batch = new LinkedHashMap<>();
        layer.paramTable().keySet().forEach(param ->
                batch.put(param, net.gradient().getGradientFor(layerIndex + "_" + param).dup('c')
                        .reshape(layer.getParam(param).shape())));
        INDArray gradient = outputGradient.apply(net).div(n);
        LayerDerivatives kind = LayerKinds.of(layer).orElseThrow();
        assertTrue(kind.unsupportedConfiguration(layer) == null, what + ": " + kind.unsupportedConfiguration(layer));
        // read while the layer's input is the pass's (terms are valid in the scope of the pass only)
        FirstOrderTerms terms = kind.firstOrder(layer, layer.input(), gradient);
        Map<String, INDArray> individual = terms.individualGradients();
        FirstOrderTerms reductions = kind.firstOrder(layer, layer.input(), gradient);
        Map<String, INDArray> norms = reductions.individualGradientSquaredNorms();
        Map<String, INDArray> sumGradSquared = reductions.sumGradSquared();
        Map<String, INDArray> variance = reductions.variance();
        Map<String, INDArray> dots = reductions.individualGradientDots();

        Map<String, INDArray> single = new LinkedHashMap<>();
        batch.forEach((param, g) -> single.put(param, Nd4j.create(DataType.DOUBLE,
                withBatchAxis(n, g.shape()))));
        for (long i = 0; i < n; i++) {
            dl4jPass(plain, Reference.example(x, i), Reference.example(y, i),
                    featuresMask == null ? null : Reference.example(featuresMask, i),
                    labelsMask == null ? null : Reference.example(labelsMask, i));
            for (String param : single.keySet()) {
                single.get(param).get(NDArrayIndex.point(i)).assign(plain.gradient()
                        .getGradientFor(layerIndex + "_" + param).dup('c').reshape(layer.getParam(param).shape()).div(n));
            }
        }
        for (String param : single.keySet()) {
            String where = what + " " + param;
            INDArray g = individual.get(param);
            assertNotNull(g, where);
            assertClose(batch.get(param), g.sum(0).muli(n), 1e-10, 1e-12, where + ": N Σ g_n = DL4J's batch gradient");
            INDArray expected = single.get(param);
            assertClose(expected, g, 1e-10, 1e-12, where + ": g_n = DL4J's gradient of sequence n alone / N");
            assertClose(Reference.squaredNorms(expected), norms.get(param), 1e-10,
                    1e-12, where + ": ‖g_n‖²");
            assertClose(Reference.sumGradSquared(expected), sumGradSquared.get(param), 1e-10, 1e-12,
                    where + ": Σ g_n²");
            assertClose(Reference.variance(expected), variance.get(param), 1e-8, 1e-12,
                    where + ": variance");
            assertClose(Reference.dots(expected), dots.get(param), 1e-10, 1e-12,
                    where + ": ⟨g_n, g_m⟩");
        }
    }

    /** @return {@code [n, *shape]} */
    private static long[] withBatchAxis(long n, long[] shape) {
        long[] out = new long[shape.length + 1];
        out[0] = n;
        System.arraycopy(shape, 0, out, 1, shape.length);
        return out;
    }

    private static void assertMatches(Activation activation, RNNFormat format, long length, INDArray featuresMask,
                                      String what) {
        MultiLayerNetwork net = network(activation, format);
        INDArray x = TestNets.features(DataType.DOUBLE, 7, 3, N_IN, length);
        INDArray y = labels(3, CLASSES, length, 8);
        if (format == RNNFormat.NWC) {
            x = swapLastAxes(x);
            y = swapLastAxes(y);
        }
        assertKindMatchesDl4j(net, 0, x, y, featuresMask, featuresMask, SimpleRnnTest::outputLayerInputGradient, what);
    }

    @Test
    void withoutMask() {
        assertMatches(Activation.TANH, RNNFormat.NCW, 5, null, "no mask");
    }

    @Test
    void tailMaskedVariableLengths() {
        assertMatches(Activation.TANH, RNNFormat.NCW, 5, mask(5, new int[] {0, 0, 0}, new int[] {5, 3, 1}),
                "tail masked");
    }

    @Test
    void headMaskedAlignEnd() {
        assertMatches(Activation.TANH, RNNFormat.NCW, 5, mask(5, new int[] {0, 2, 3}, new int[] {5, 3, 2}),
                "head masked");
    }

    /** Weights between 0 and 1: DL4J scales state and δ by the mask and takes act' at the scaled z. */
    @Test
    void fractionalMask() {
        INDArray m = Nd4j.create(new double[][] {{1, 0.5, 1, 0.25}, {0.75, 1, 0, 0}, {1, 1, 0.5, 1}});
        assertMatches(Activation.TANH, RNNFormat.NCW, 4, m, "fractional mask");
    }

    @Test
    void singleStep() {
        assertMatches(Activation.TANH, RNNFormat.NCW, 1, null, "T = 1");
        assertMatches(Activation.SIGMOID, RNNFormat.NCW, 1, null, "T = 1, sigmoid");
    }

    @Test
    void channelsLastLayoutAndRelu() {
        assertMatches(Activation.RELU, RNNFormat.NWC, 4, mask(4, new int[] {0, 1, 0}, new int[] {4, 3, 2}),
                "NWC, relu");
    }

    /**
     * DL4J's SimpleRnn zeroes the state at masked steps, so the unmasked steps of a head-masked sequence
     * see what the shortened sequence sees: same output, same gradient.
     */
    @Test
    void dl4jRestartsTheRecurrenceAfterAMaskedHead() {
        MultiLayerNetwork net = network(Activation.TANH, RNNFormat.NCW);
        int length = 5;
        int head = 2;
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 1, N_IN, length);
        INDArray y = labels(1, CLASSES, length, 4);
        INDArray m = mask(length, new int[] {head}, new int[] {length - head});
        MultiLayerNetwork masked = net.clone();
        dl4jPass(masked, x, y, m, m);
        MultiLayerNetwork shortened = net.clone();
        dl4jPass(shortened, x.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(head, length)).dup(),
                y.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(head, length)).dup(), null, null);
        assertClose(shortened.gradient().gradient(), masked.gradient().gradient(), 1e-10, 1e-13,
                "head-masked gradient = shortened sequence's");
    }

    /**
     * Through {@code BackPackNetwork.backward} with masks: every first-order extension of two stacked
     * SimpleRnns (the lower one's {@code ε} comes through the upper one's backward step) under a per-step
     * output, in NCW and NWC, with workspaces, against single-sequence passes.
     */
    @Test
    void firstOrderExtensionsOfStackedLayersEqualSingleSequencePasses() {
        for (RNNFormat format : RNNFormat.values()) {
            MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(17)
                    .dataType(DataType.DOUBLE).list(
                            new SimpleRnn.Builder().nOut(N_OUT).activation(Activation.TANH).dataFormat(format).build(),
                            new SimpleRnn.Builder().nOut(3).activation(Activation.SIGMOID).dataFormat(format).build(),
                            new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES)
                                    .dataFormat(format).build())
                    .setInputType(org.deeplearning4j.nn.conf.inputs.InputType.recurrent(N_IN, format)).build());
            net.init();
            TestNets.randomiseParameters(net, 17);
            int length = 5;
            INDArray x = TestNets.features(DataType.DOUBLE, 18, 4, N_IN, length);
            INDArray y = labels(4, CLASSES, length, 19);
            if (format == RNNFormat.NWC) {
                x = swapLastAxes(x);
                y = swapLastAxes(y);
            }
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, null, null, format + ", no mask");
            INDArray tail = mask(length, new int[] {0, 0, 0, 0}, new int[] {5, 2, 4, 1});
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, tail, tail, format + ", tail masked");
            INDArray head = mask(length, new int[] {0, 3, 1, 4}, new int[] {5, 2, 4, 1});
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, head, head, format + ", head masked");
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, null, tail, format + ", label mask only");
        }
    }

    @Test
    void layerNormalisationAndWeightNoiseAreRefused() {
        MultiLayerNetwork norm = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().dataType(DataType.DOUBLE)
                .list(new SimpleRnn.Builder().nIn(N_IN).nOut(N_OUT).hasLayerNorm(true).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(N_OUT)
                                .nOut(CLASSES).build())
                .build());
        norm.init();
        String reason = LayerKinds.whyUnsupported(norm.getLayer(0));
        assertTrue(reason != null && reason.contains("layer normalisation"), reason);
        MultiLayerNetwork noisy = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().dataType(DataType.DOUBLE)
                .list(new SimpleRnn.Builder().nIn(N_IN).nOut(N_OUT).weightNoise(new DropConnect(0.5)).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(N_OUT)
                                .nOut(CLASSES).build())
                .build());
        noisy.init();
        reason = LayerKinds.whyUnsupported(noisy.getLayer(0));
        assertTrue(reason != null && reason.contains("weight noise"), reason);
    }
}
