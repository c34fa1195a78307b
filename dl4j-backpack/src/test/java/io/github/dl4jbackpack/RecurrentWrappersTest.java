// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.internal.layers.FirstOrderTerms;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.GravesLSTM;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional;
import org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional.Mode;
import org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep;
import org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.conf.layers.recurrent.TimeDistributed;
import org.deeplearning4j.nn.conf.layers.util.MaskZeroLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every first-order extension through DL4J's recurrent wrappers, through {@code BackPackNetwork.backward} with
 * workspaces, float64, against DL4J's single-sequence passes ({@link Reference}): {@code Bidirectional} around
 * SimpleRnn in every mode (CONCAT, ADD, MUL, AVERAGE) without a mask, with a masked tail (variable lengths) and a
 * masked head (ALIGN_END), in NCW and NWC, under an RnnOutputLayer and under LastTimeStep and global pooling with
 * an OutputLayer; around LSTM and GravesLSTM; two stacked; {@code MaskZeroLayer} around SimpleRnn and LSTM with
 * padded steps equal to the masking value. {@code TimeDistributed(DenseLayer)}: end to end with label masks (NCW),
 * and at the kind with label masks in NCW and NWC against single-sequence passes, and with
 * a feature mask, where DL4J's batch is not the batch of masked sequences (its row mask is flattened in another
 * order than its rows), against each sequence's loss within DL4J's batch. Also: the wrapped configurations that
 * are refused, and the Hessian and Kronecker factors through wrappers refused by name.
 */
class RecurrentWrappersTest {

    private static final int N = 4;
    private static final int N_IN = 3;
    private static final int UNITS = 4;
    private static final int CLASSES = 2;
    private static final int LENGTH = 5;
    private static final INDArray TAIL = SimpleRnnTest.mask(LENGTH, new int[] {0, 0, 0, 0}, new int[] {5, 2, 4, 1});
    private static final INDArray HEAD = SimpleRnnTest.mask(LENGTH, new int[] {0, 3, 1, 4}, new int[] {5, 2, 4, 1});

    @BeforeAll
    static void doublePrecision() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    private static MultiLayerNetwork network(RNNFormat format, long seed,
                                             org.deeplearning4j.nn.conf.layers.Layer... layers) {
        return network(WorkspaceMode.ENABLED, format, seed, layers);
    }

    /** @param workspaces NONE where a test reads a layer's input after DL4J's pass */
    private static MultiLayerNetwork network(WorkspaceMode workspaces, RNNFormat format, long seed,
                                             org.deeplearning4j.nn.conf.layers.Layer... layers) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(seed)
                .dataType(DataType.DOUBLE).trainingWorkspaceMode(workspaces).inferenceWorkspaceMode(workspaces)
                .list(layers).setInputType(InputType.recurrent(N_IN, format)).build());
        net.init();
        TestNets.randomiseParameters(net, seed);
        return net;
    }

    private static RnnOutputLayer perStepOutput(RNNFormat format) {
        return new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES)
                .dataFormat(format).build();
    }

    private static SimpleRnn simpleRnn(RNNFormat format) {
        return new SimpleRnn.Builder().nOut(UNITS).activation(Activation.TANH).dataFormat(format).build();
    }

    /** @return features {@code [N, nIn, T]} ({@code [N, T, nIn]} in NWC) */
    private static INDArray features(RNNFormat format, long seed) {
        INDArray x = TestNets.features(DataType.DOUBLE, seed, N, N_IN, LENGTH);
        return format == RNNFormat.NWC ? SimpleRnnTest.swapLastAxes(x) : x;
    }

    /** @return one-hot per-step labels in the format's layout */
    private static INDArray perStepLabels(RNNFormat format, long seed) {
        INDArray y = SimpleRnnTest.labels(N, CLASSES, LENGTH, seed);
        return format == RNNFormat.NWC ? SimpleRnnTest.swapLastAxes(y) : y;
    }

    /** Every first-order extension with no mask, a masked tail and a masked head (feature and label masks). */
    private static void assertWithMasks(MultiLayerNetwork net, INDArray x, INDArray y, boolean labelsMasked,
                                        String what) {
        Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, null, null, what + ", no mask");
        Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, TAIL, labelsMasked ? TAIL : null,
                what + ", tail masked");
        Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, HEAD, labelsMasked ? HEAD : null,
                what + ", head masked");
    }

    @Test
    void bidirectionalSimpleRnnInEveryModeUnderAPerStepOutput() {
        for (Mode mode : Mode.values()) {
            MultiLayerNetwork net = network(RNNFormat.NCW, 21, new Bidirectional(mode, simpleRnn(RNNFormat.NCW)),
                    perStepOutput(RNNFormat.NCW));
            assertWithMasks(net, features(RNNFormat.NCW, 22), perStepLabels(RNNFormat.NCW, 23), true,
                    "Bidirectional(SimpleRnn) " + mode);
        }
    }

    /**
     * NWC: a SimpleRnn first (the library's batch check takes the layout of the features from the first layer,
     * and does not read a Bidirectional configuration's), then the Bidirectional layer in every mode.
     */
    @Test
    void bidirectionalSimpleRnnChannelsLast() {
        for (Mode mode : Mode.values()) {
            MultiLayerNetwork net = network(RNNFormat.NWC, 24, simpleRnn(RNNFormat.NWC),
                    new Bidirectional(mode, simpleRnn(RNNFormat.NWC)), perStepOutput(RNNFormat.NWC));
            assertWithMasks(net, features(RNNFormat.NWC, 25), perStepLabels(RNNFormat.NWC, 26), true,
                    "SimpleRnn → Bidirectional(SimpleRnn) " + mode + " NWC");
        }
    }

    @Test
    void bidirectionalSimpleRnnUnderLastTimeStepAndGlobalPooling() {
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 31, N, CLASSES);
        for (Mode mode : Mode.values()) {
            MultiLayerNetwork last = network(RNNFormat.NCW, 32,
                    new LastTimeStep(new Bidirectional(mode, simpleRnn(RNNFormat.NCW))),
                    new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES).build());
            assertWithMasks(last, features(RNNFormat.NCW, 33), y, false, "LastTimeStep(Bidirectional(SimpleRnn)) " + mode);
            MultiLayerNetwork lastNwc = network(RNNFormat.NWC, 32,
                    new LastTimeStep(new Bidirectional(mode, simpleRnn(RNNFormat.NWC))),
                    new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES).build());
            assertWithMasks(lastNwc, features(RNNFormat.NWC, 33), y, false,
                    "LastTimeStep(Bidirectional(SimpleRnn)) " + mode + " NWC");
            MultiLayerNetwork pooled = network(RNNFormat.NCW, 34, new Bidirectional(mode, simpleRnn(RNNFormat.NCW)),
                    new GlobalPoolingLayer.Builder(PoolingType.AVG).build(),
                    new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES).build());
            assertWithMasks(pooled, features(RNNFormat.NCW, 35), y, false,
                    "Bidirectional(SimpleRnn) " + mode + ", average pooling over time");
        }
    }

    @Test
    void bidirectionalLstmAndGravesLstm() {
        for (Mode mode : new Mode[] {Mode.CONCAT, Mode.MUL, Mode.AVERAGE}) {
            MultiLayerNetwork lstm = network(RNNFormat.NCW, 41,
                    new Bidirectional(mode, new LSTM.Builder().nOut(UNITS).build()), perStepOutput(RNNFormat.NCW));
            assertWithMasks(lstm, features(RNNFormat.NCW, 42), perStepLabels(RNNFormat.NCW, 43), true,
                    "Bidirectional(LSTM) " + mode);
            MultiLayerNetwork graves = network(RNNFormat.NCW, 44,
                    new Bidirectional(mode, new GravesLSTM.Builder().nOut(UNITS).build()), perStepOutput(RNNFormat.NCW));
            assertWithMasks(graves, features(RNNFormat.NCW, 45), perStepLabels(RNNFormat.NCW, 46), true,
                    "Bidirectional(GravesLSTM) " + mode);
        }
        MultiLayerNetwork nwc = network(RNNFormat.NWC, 47, simpleRnn(RNNFormat.NWC), new Bidirectional(Mode.ADD,
                new LSTM.Builder().nOut(UNITS).dataFormat(RNNFormat.NWC).build()), perStepOutput(RNNFormat.NWC));
        assertWithMasks(nwc, features(RNNFormat.NWC, 48), perStepLabels(RNNFormat.NWC, 49), true,
                "SimpleRnn → Bidirectional(LSTM) ADD NWC");
    }

    /** @return the features with the steps outside the mask set to {@code value} */
    private static INDArray padded(INDArray x, INDArray mask, double value, RNNFormat format) {
        INDArray out = x.dup();
        for (int n = 0; n < mask.size(0); n++) {
            for (int t = 0; t < mask.size(1); t++) {
                if (mask.getDouble(n, t) == 0) {
                    (format == RNNFormat.NWC ? out.get(NDArrayIndex.point(n), NDArrayIndex.point(t), NDArrayIndex.all())
                            : out.get(NDArrayIndex.point(n), NDArrayIndex.all(), NDArrayIndex.point(t))).assign(value);
                }
            }
        }
        return out;
    }

    /**
     * MaskZeroLayer: the steps whose features all equal the masking value are masked (as DL4J's layer masks them;
     * no feature mask is given), the loss of the real steps by a label mask.
     */
    @Test
    void maskZeroAroundSimpleRnnAndLstm() {
        double maskingValue = -1;
        for (RNNFormat format : RNNFormat.values()) {
            MultiLayerNetwork net = network(format, 51, new MaskZeroLayer(simpleRnn(format), maskingValue),
                    perStepOutput(format));
            INDArray x = features(format, 52);
            INDArray y = perStepLabels(format, 53);
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, padded(x, TAIL, maskingValue, format), y, null,
                    TAIL, "MaskZeroLayer(SimpleRnn) " + format + ", padded tail");
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, padded(x, HEAD, maskingValue, format), y, null,
                    HEAD, "MaskZeroLayer(SimpleRnn) " + format + ", padded head");
        }
        MultiLayerNetwork lstm = network(RNNFormat.NCW, 54,
                new MaskZeroLayer(new LSTM.Builder().nOut(UNITS).build(), maskingValue), perStepOutput(RNNFormat.NCW));
        Reference.assertFirstOrderEqualsSingleSequencePasses(lstm, padded(features(RNNFormat.NCW, 55), HEAD,
                maskingValue, RNNFormat.NCW), perStepLabels(RNNFormat.NCW, 56), null, HEAD,
                "MaskZeroLayer(LSTM), padded head");
    }

    private static TimeDistributed timeDistributedDense(RNNFormat format) {
        return new TimeDistributed(new DenseLayer.Builder().nOut(UNITS).activation(Activation.SIGMOID).build(), format);
    }

    /**
     * TimeDistributed(DenseLayer), the kind against DL4J: the kind's terms from the dense layer's rows and the
     * gradient at the wrapper output, as the library hands them; the loss of the real steps by a label mask. In
     * NCW also end to end through {@code BackPackNetwork.backward} (the batch checks type the wrapper's output as
     * its dense layer applied at every step).
     */
    @Test
    void timeDistributedDenseWithLabelMasks() {
        for (RNNFormat format : RNNFormat.values()) {
            MultiLayerNetwork net = network(WorkspaceMode.NONE, format, 61, timeDistributedDense(format),
                    perStepOutput(format));
            INDArray x = features(format, 62);
            INDArray y = perStepLabels(format, 63);
            String what = "TimeDistributed(DenseLayer) " + format;
            for (INDArray labelsMask : new INDArray[] {null, TAIL, HEAD}) {
                SimpleRnnTest.assertKindMatchesDl4j(net, 0, x, y, null, labelsMask,
                        SimpleRnnTest::outputLayerInputGradient, what + ", label mask " + labelsMask);
                if (format == RNNFormat.NCW) {
                    Reference.assertFirstOrderEqualsSingleSequencePasses(network(format, 61,
                            timeDistributedDense(format), perStepOutput(format)), x, y, null, labelsMask,
                            what + " end to end, label mask " + labelsMask);
                }
            }
        }
    }

    /**
     * A feature mask at a TimeDistributed layer: DL4J flattens it column-major (entry {@code t·N + n}) onto rows
     * ordered {@code n·T + t}, so its batch gradient is not the sum of the masked sequences' gradients. The
     * per-sequence terms follow DL4J: each gradient is that of the sequence's loss within the batch, which a DL4J
     * pass of the whole batch with the label mask restricted to the sequence gives; they sum to DL4J's gradient.
     * The kind is called as the library calls it, with the dense layer's {@code N·T} rows.
     */
    @Test
    void timeDistributedDenseWithAFeatureMaskFollowsDl4jsBatch() {
        MultiLayerNetwork net = network(WorkspaceMode.NONE, RNNFormat.NCW, 64, timeDistributedDense(RNNFormat.NCW),
                perStepOutput(RNNFormat.NCW));
        INDArray x = features(RNNFormat.NCW, 65);
        INDArray y = perStepLabels(RNNFormat.NCW, 66);
        Map<String, INDArray> withinBatch = sequenceLossesWithinBatch(net, x, y, TAIL, TAIL);
        Map<String, INDArray> alone = Reference.individualGradients(net, x, y, TAIL, TAIL);
        double gap = withinBatch.get("0_W").sub(alone.get("0_W")).amaxNumber().doubleValue();
        assertTrue(gap > 1e-3, "DL4J's TimeDistributed batch differs from its single-sequence passes (gap " + gap + ")");

        SimpleRnnTest.dl4jPass(net, x, y, TAIL, TAIL);
        Layer layer = net.getLayer(0);
        LayerDerivatives kind = LayerKinds.of(layer).orElseThrow();
        INDArray gradient = SimpleRnnTest.outputLayerInputGradient(net).div(N);
        FirstOrderTerms terms = kind.firstOrderOfRows(layer, layer.input(), gradient, false, LENGTH);
        FirstOrderTerms reductions = kind.firstOrderOfRows(layer, layer.input(), gradient, false, LENGTH);
        for (String param : List.of("W", "b")) {
            String where = "TimeDistributed(DenseLayer), feature mask, " + param;
            INDArray expected = withinBatch.get("0_" + param);
            INDArray g = terms.individualGradients().get(param);
            assertClose(net.gradient().getGradientFor("0_" + param).reshape(layer.getParam(param).shape()),
                    g.sum(0).muli(N), 1e-10, 1e-12, where + ": N Σ g_n = DL4J's batch gradient");
            assertClose(expected, g, 1e-10, 1e-12, where + ": g_n = gradient of sequence n's loss in DL4J's batch / N");
            assertClose(Reference.squaredNorms(expected), reductions.individualGradientSquaredNorms().get(param), 1e-10,
                    1e-12, where + ": ‖g_n‖²");
            assertClose(Reference.sumGradSquared(expected), reductions.sumGradSquared().get(param), 1e-10, 1e-12,
                    where + ": Σ g_n²");
            assertClose(Reference.variance(expected), reductions.variance().get(param), 1e-8, 1e-12,
                    where + ": variance");
            assertClose(Reference.dots(expected), reductions.individualGradientDots().get(param), 1e-10, 1e-12,
                    where + ": ⟨g_n, g_m⟩");
        }
    }

    /**
     * @return "layer_param" → {@code [N, *p]}: DL4J's gradient of sequence n's loss within the whole batch (the
     *     label mask zero on every other sequence) divided by N
     */
    private static Map<String, INDArray> sequenceLossesWithinBatch(MultiLayerNetwork net, INDArray x, INDArray y,
                                                                   INDArray featuresMask, INDArray labelsMask) {
        MultiLayerNetwork plain = net.clone();
        Map<String, List<INDArray>> rows = new LinkedHashMap<>();
        for (int n = 0; n < N; n++) {
            INDArray only = Nd4j.zeros(DataType.DOUBLE, labelsMask.shape());
            only.getRow(n).assign(labelsMask.getRow(n));
            SimpleRnnTest.dl4jPass(plain, x, y, featuresMask, only);
            plain.gradient().gradientForVariable().forEach((key, g) -> {
                long[] shape = plain.getParam(key).shape();
                long[] withBatch = new long[shape.length + 1];
                withBatch[0] = 1;
                System.arraycopy(shape, 0, withBatch, 1, shape.length);
                rows.computeIfAbsent(key, k -> new ArrayList<>()).add(g.dup('c').reshape(withBatch).div(N));
            });
        }
        Map<String, INDArray> out = new LinkedHashMap<>();
        rows.forEach((key, list) -> out.put(key, Nd4j.concat(0, list.toArray(new INDArray[0]))));
        return out;
    }

    /**
     * Two Bidirectional layers stacked: the lower one's output gradient comes through DL4J's backward step of the
     * upper one (MUL, whose gradients at its wrapped layers' outputs involve the other direction's output).
     */
    @Test
    void stackedBidirectionalLayers() {
        MultiLayerNetwork net = network(RNNFormat.NCW, 71, new Bidirectional(Mode.CONCAT, simpleRnn(RNNFormat.NCW)),
                new Bidirectional(Mode.MUL, new LSTM.Builder().nOut(UNITS).build()), perStepOutput(RNNFormat.NCW));
        assertWithMasks(net, features(RNNFormat.NCW, 72), perStepLabels(RNNFormat.NCW, 73), true,
                "Bidirectional(SimpleRnn) → Bidirectional(LSTM)");
    }

    private static String whyUnsupported(org.deeplearning4j.nn.conf.layers.Layer wrapper) {
        MultiLayerNetwork net = network(RNNFormat.NCW, 81, wrapper, perStepOutput(RNNFormat.NCW));
        return LayerKinds.whyUnsupported(net.getLayer(0));
    }

    private static void assertRefused(String reason, String expected) {
        assertNotNull(reason, "refused (" + expected + ")");
        assertTrue(reason.contains(expected), reason);
    }

    @Test
    void unsupportedWrappedConfigurationsAreRefusedByName() {
        assertRefused(whyUnsupported(new TimeDistributed(new ActivationLayer.Builder().activation(Activation.TANH)
                .build(), RNNFormat.NCW)), "TimeDistributed around ActivationLayer");
        assertRefused(whyUnsupported(new TimeDistributed(new DenseLayer.Builder().nOut(UNITS)
                .activation(Activation.SOFTMAX).build(), RNNFormat.NCW)), "softmax");
        assertRefused(whyUnsupported(new Bidirectional(new SimpleRnn.Builder().nOut(UNITS).hasLayerNorm(true).build())),
                "layer normalisation");
        assertRefused(whyUnsupported(new MaskZeroLayer(new SimpleRnn.Builder().nOut(UNITS).hasLayerNorm(true).build(),
                0)), "layer normalisation");
    }

    /**
     * The generalised Gauss-Newton extensions and the Hessian pass the wrappers (tested in
     * {@code RecurrentWrapperCurvatureTest}); Kronecker factors through them are refused by name.
     */
    @Test
    void kroneckerFactorsThroughWrappersAreRefusedByName() {
        MultiLayerNetwork net = network(RNNFormat.NCW, 91, new Bidirectional(Mode.ADD, simpleRnn(RNNFormat.NCW)),
                new MaskZeroLayer(simpleRnn(RNNFormat.NCW), 0), timeDistributedDense(RNNFormat.NCW),
                perStepOutput(RNNFormat.NCW));
        String[] names = {"Bidirectional", "SimpleRnn", "TimeDistributed"};
        for (int i = 0; i < names.length; i++) {
            Layer layer = net.getLayer(i);
            LayerDerivatives kind = LayerKinds.of(layer).orElseThrow();
            assertEquals(null, kind.unsupportedConfiguration(layer), names[i]);
            assertEquals(null, kind.secondOrderUnsupported(layer, false), names[i]);
            // the residuals inside the wrappers (RecurrentWrapperCurvatureTest checks their values)
            assertNull(kind.secondOrderUnsupported(layer, true), names[i]);
            assertNotNull(kind.noKroneckerFactors(layer), names[i]);
        }
    }
}
