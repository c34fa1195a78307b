// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagGGNMC;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.graph.rnn.ReverseTimeSeriesVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional;
import org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.conf.layers.recurrent.TimeDistributed;
import org.deeplearning4j.nn.conf.layers.util.MaskZeroLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Supplier;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The generalised Gauss-Newton diagonals through DL4J's recurrent wrappers ({@code MaskZeroLayer},
 * {@code Bidirectional} in every mode, {@code TimeDistributed(DenseLayer)}) and the graph's
 * {@code ReverseTimeSeriesVertex}, float64, per sequence, against the reference of {@code SequenceCurvatureTest}:
 * the Jacobian of the network output w.r.t. every parameter by central differences of DL4J's forward pass, and
 * the softmax cross-entropy Hessian of every unmasked step written out ({@code G_n = J_nᵀ H_n J_n / N}). Also
 * float32 against float64, Monte Carlo columns against the exact diagonal, and the Hessian refused by name.
 */
class RecurrentWrapperCurvatureTest {

    private static final int T = 5;
    private static final int N = 3;
    private static final int IN = 3;
    private static final int CLASSES = 3;
    private static final int[] LENGTHS = {5, 2, 4};
    private DataType before;

    @BeforeEach
    void doublePrecision() {
        before = Nd4j.defaultFloatingPointType();
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    @AfterEach
    void restore() {
        Nd4j.setDefaultDataTypes(before, before);
    }

    /** Networks with a wrapper, each ending in a softmax RnnOutputLayer. */
    enum Wrapper {
        MASK_ZERO_LSTM, MASK_ZERO_SIMPLE_RNN, BIDIRECTIONAL_CONCAT, BIDIRECTIONAL_ADD, BIDIRECTIONAL_MUL,
        BIDIRECTIONAL_AVERAGE_NWC, BIDIRECTIONAL_SIMPLE_RNN_ADD, BIDIRECTIONAL_CONCAT_NWC, TIME_DISTRIBUTED,
        TIME_DISTRIBUTED_NWC;

        RNNFormat format() {
            return name().endsWith("NWC") ? RNNFormat.NWC : RNNFormat.NCW;
        }

        /** @return whether the padded steps of the features are zero (what MaskZeroLayer masks) */
        boolean zeroPadded() {
            return name().startsWith("MASK_ZERO");
        }

        Layer[] layers(LossFunction loss, Activation activation) {
            RNNFormat f = format();
            LSTM lstm = new LSTM.Builder().nOut(4).activation(Activation.TANH).dataFormat(f).build();
            Layer out = new RnnOutputLayer.Builder(loss).activation(activation).nOut(CLASSES).dataFormat(f).build();
            switch (this) {
                case MASK_ZERO_LSTM:
                    return new Layer[] {new MaskZeroLayer(lstm, 0.0), out};
                case MASK_ZERO_SIMPLE_RNN:
                    return new Layer[] {new MaskZeroLayer(new SimpleRnn.Builder().nOut(4).activation(Activation.TANH)
                            .build(), 0.0), out};
                case BIDIRECTIONAL_CONCAT_NWC:
                    return new Layer[] {new LSTM.Builder().nOut(3).activation(Activation.TANH).dataFormat(f).build(),
                            new Bidirectional(Bidirectional.Mode.CONCAT, lstm), out};
                case BIDIRECTIONAL_CONCAT:
                    return new Layer[] {new Bidirectional(Bidirectional.Mode.CONCAT, lstm), out};
                case BIDIRECTIONAL_ADD:
                    return new Layer[] {new Bidirectional(Bidirectional.Mode.ADD, lstm), out};
                case BIDIRECTIONAL_MUL:
                    // after a layer, so that the columns pass the wrapper down to it
                    return new Layer[] {new SimpleRnn.Builder().nOut(3).activation(Activation.TANH).build(),
                            new Bidirectional(Bidirectional.Mode.MUL, lstm), out};
                case BIDIRECTIONAL_AVERAGE_NWC:
                    return new Layer[] {new Bidirectional(Bidirectional.Mode.AVERAGE, lstm), out};
                case BIDIRECTIONAL_SIMPLE_RNN_ADD:
                    return new Layer[] {new LSTM.Builder().nOut(3).activation(Activation.TANH).build(),
                            new Bidirectional(Bidirectional.Mode.ADD, new SimpleRnn.Builder().nOut(4)
                            .activation(Activation.TANH).build()), out};
                case TIME_DISTRIBUTED:
                case TIME_DISTRIBUTED_NWC:
                    return new Layer[] {lstm, new TimeDistributed(new DenseLayer.Builder().nOut(3)
                            .activation(Activation.SOFTPLUS).build(), f), out};
                default:
                    throw new IllegalStateException();
            }
        }

        MultiLayerNetwork build(DataType type, LossFunction loss, Activation activation) {
            MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7).dataType(type)
                    .list(layers(loss, activation)).setInputType(InputType.recurrent(IN, T, format())).build());
            net.init();
            TestNets.randomiseParameters(net, 11);
            return net;
        }

        MultiLayerNetwork build(DataType type) {
            return build(type, LossFunction.MCXENT, Activation.SOFTMAX);
        }

        /** @return NCW features {@code [N, IN, T]}, zero at the padded steps where the wrapper masks zeros */
        INDArray featuresNcw() {
            INDArray x = TestNets.features(DataType.DOUBLE, 3, N, IN, T);
            if (zeroPadded()) {
                for (int n = 0; n < N; n++) {
                    x.get(NDArrayIndex.point(n), NDArrayIndex.all(), NDArrayIndex.interval(LENGTHS[n], T)).assign(0);
                }
            }
            return x;
        }
    }

    /** @return the tail mask of {@link #LENGTHS}, {@code [N, T]} */
    private static INDArray mask() {
        INDArray m = Nd4j.zeros(DataType.DOUBLE, N, T);
        for (int n = 0; n < N; n++) {
            m.get(NDArrayIndex.point(n), NDArrayIndex.interval(0, LENGTHS[n])).assign(1.0);
        }
        return m;
    }

    /** @return one-hot labels at every step, NCW {@code [N, C, T]} */
    private static INDArray labelsNcw() {
        java.util.Random r = new java.util.Random(5);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, N, CLASSES, T);
        for (int n = 0; n < N; n++) {
            for (int t = 0; t < T; t++) {
                y.putScalar(new long[] {n, r.nextInt(CLASSES), t}, 1.0);
            }
        }
        return y;
    }

    private static INDArray layout(INDArray ncw, RNNFormat format) {
        return format == RNNFormat.NWC ? ncw.permute(0, 2, 1).dup() : ncw;
    }

    /**
     * @param ref the network with an identity output and an L2 loss
     * @param outputNcw its output for the batch, NCW {@code [N, C, T]}
     * @param labelMask {@code [N, T]}, or null
     * @return {@code J_nᵀ H_n J_n / N} diagonals per sequence, key → {@code [N, *shape]}
     */
    static Map<String, INDArray> referenceGgn(Model ref, Supplier<INDArray> outputNcw, INDArray labelMask) {
        BruteForce.Jacobians jac = BatchNormalizationTest.jacobians(ref,
                () -> outputNcw.get().dup('c').reshape('c', N, CLASSES * T));
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (String key : jac.shapes.keySet()) {
            INDArray perExample = Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(N, jac.shapes.get(key)));
            for (int n = 0; n < N; n++) {
                INDArray h = Nd4j.zeros(DataType.DOUBLE, CLASSES * T, CLASSES * T);
                for (int t = 0; t < T; t++) {
                    double weight = labelMask == null ? 1.0 : labelMask.getDouble(n, t);
                    double[] logits = new double[CLASSES];
                    for (int i = 0; i < CLASSES; i++) {
                        logits[i] = jac.z[n][i * T + t];
                    }
                    double[][] block = BruteForce.Loss.MCXENT.hessian(logits);
                    for (int i = 0; i < CLASSES; i++) {
                        for (int j = 0; j < CLASSES; j++) {
                            h.putScalar(i * T + t, j * T + t, weight * block[i][j]);
                        }
                    }
                }
                INDArray j = jac.j.get(n).get(key);
                perExample.get(NDArrayIndex.point(n)).assign(j.mul(h.mmul(j)).sum(0).divi(N)
                        .reshape('c', jac.shapes.get(key)));
            }
            out.put(key, perExample);
        }
        return out;
    }

    /**
     * Without masks and with a feature and label mask (MaskZeroLayer: its own mask from the zero-padded steps,
     * and the label mask), against the Jacobian reference.
     */
    @ParameterizedTest
    @EnumSource(Wrapper.class)
    void ggnDiagonalsEqualTheJacobianReference(Wrapper w) {
        MultiLayerNetwork net = w.build(DataType.DOUBLE);
        MultiLayerNetwork ref = w.build(DataType.DOUBLE, LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        RNNFormat f = w.format();
        INDArray x = layout(w.featuresNcw(), f);
        INDArray y = layout(labelsNcw(), f);
        INDArray[] featureMasks = w.zeroPadded() ? new INDArray[] {null} : new INDArray[] {null, mask()};
        for (INDArray featureMask : featureMasks) {
            for (INDArray labelMask : new INDArray[] {null, mask()}) {
                if (w.zeroPadded() && labelMask == null) {
                    // DL4J's LSTM backward step is not the derivative of its masked forward step where masked
                    // steps carry a gradient (docs/math.md#sequences): the padded steps' labels are masked
                    continue;
                }
                Map<String, INDArray> expected = referenceGgn(ref, () -> {
                    INDArray out = ref.output(x, false, featureMask, labelMask);
                    return f == RNNFormat.NWC ? out.permute(0, 2, 1) : out;
                }, labelMask);
                Quantities q = BackPackNetwork.extend(net).backward(x, y, featureMask, labelMask,
                        new DiagGGNExact(), new BatchDiagGGNExact());
                for (String key : expected.keySet()) {
                    String what = w + (featureMask == null ? "" : " feature mask")
                            + (labelMask == null ? "" : " label mask") + " " + key;
                    assertClose(expected.get(key), q.byKey(BatchDiagGGNExact.class, key), 1e-6, 1e-9,
                            what + " per sequence");
                    assertClose(expected.get(key).sum(0), q.byKey(DiagGGNExact.class, key), 1e-6, 1e-9, what);
                }
            }
        }
    }

    /**
     * The Hessian diagonal through MaskZeroLayer around SimpleRnn (the residual inside the wrapped recurrence,
     * with the wrapper's own mask): against five-point differences of DL4J's score, per batch and per sequence.
     */
    @Test
    void hessianThroughMaskZeroSimpleRnnEqualsFiniteDifferences() {
        Wrapper w = Wrapper.MASK_ZERO_SIMPLE_RNN;
        MultiLayerNetwork net = w.build(DataType.DOUBLE);
        MultiLayerNetwork plain = net.clone();
        INDArray x = w.featuresNcw();
        INDArray y = labelsNcw();
        INDArray mask = mask();
        Quantities q = BackPackNetwork.extend(net).backward(x, y, null, mask, new DiagHessian(),
                new BatchDiagHessian());
        org.nd4j.linalg.dataset.DataSet data = new org.nd4j.linalg.dataset.DataSet(x, y, null, mask);
        Map<String, INDArray> expected = BatchNormalizationTest.hessianDiagonal(plain, () -> plain.score(data, false));
        for (String key : expected.keySet()) {
            assertClose(expected.get(key), q.byKey(DiagHessian.class, key), 1e-4, 1e-6, "MaskZero Hessian " + key);
        }
        for (int n = 0; n < N; n++) {
            org.nd4j.linalg.dataset.DataSet one = new org.nd4j.linalg.dataset.DataSet(Reference.example(x, n),
                    Reference.example(y, n), null, Reference.example(mask, n));
            Map<String, INDArray> single = BatchNormalizationTest.hessianDiagonal(plain, () -> plain.score(one, false));
            for (String key : single.keySet()) {
                assertClose(single.get(key).div(N), q.byKey(BatchDiagHessian.class, key).get(NDArrayIndex.point(n)),
                        1e-4, 1e-6, "MaskZero sequence " + n + " Hessian " + key);
            }
        }
    }

    /**
     * The Hessian diagonal through Bidirectional (every mode; NCW and NWC; each layer's residual for its share of
     * the gradient, the backward layer's input columns reversed back; MUL's product through both layers to the
     * SimpleRnn below) and TimeDistributed (its dense layer's activation at every step, NCW and NWC), with a label
     * mask, and with a feature mask too around SimpleRnn: against differences of DL4J's gradient, per batch and per
     * sequence.
     */
    @ParameterizedTest
    @EnumSource(value = Wrapper.class, names = {"BIDIRECTIONAL_SIMPLE_RNN_ADD", "BIDIRECTIONAL_CONCAT",
            "BIDIRECTIONAL_AVERAGE_NWC", "BIDIRECTIONAL_CONCAT_NWC", "BIDIRECTIONAL_MUL", "TIME_DISTRIBUTED",
            "TIME_DISTRIBUTED_NWC"})
    void hessianThroughWrappersEqualsFiniteDifferences(Wrapper w) {
        MultiLayerNetwork net = w.build(DataType.DOUBLE);
        MultiLayerNetwork plain = net.clone();
        RNNFormat f = w.format();
        INDArray x = layout(w.featuresNcw(), f);
        INDArray y = layout(labelsNcw(), f);
        INDArray mask = mask();
        INDArray featureMask = w == Wrapper.BIDIRECTIONAL_SIMPLE_RNN_ADD ? mask : null;
        Quantities q = BackPackNetwork.extend(net).backward(x, y, featureMask, mask, new DiagHessian(),
                new BatchDiagHessian());
        Map<String, INDArray> expected = SequenceCurvatureTest.gradientDifferences(plain,
                new org.nd4j.linalg.dataset.DataSet(x, y, featureMask, mask));
        for (String key : expected.keySet()) {
            assertClose(expected.get(key), q.byKey(DiagHessian.class, key), 1e-4, 1e-6, w + " Hessian " + key);
            assertClose(q.byKey(DiagHessian.class, key), q.byKey(BatchDiagHessian.class, key).sum(0), 1e-10, 1e-12,
                    "per-sequence Hessians sum to the batch's " + key);
        }
        // one sequence against its own differences (the shortest, most padded one; each costs a full set of them)
        for (int n : SequenceCurvatureTest.CHECKED_SEQUENCES) {
            Map<String, INDArray> single = SequenceCurvatureTest.gradientDifferences(plain,
                    new org.nd4j.linalg.dataset.DataSet(Reference.example(x, n), Reference.example(y, n),
                            featureMask == null ? null : Reference.example(featureMask, n), Reference.example(mask, n)));
            for (String key : single.keySet()) {
                assertClose(single.get(key).div(N), q.byKey(BatchDiagHessian.class, key).get(NDArrayIndex.point(n)),
                        1e-4, 1e-6, w + " sequence " + n + " Hessian " + key);
            }
        }
    }

    /** An LSTM under the feature mask the wrapper hands it, or under MaskZeroLayer's own mask: refused by name. */
    @Test
    void hessianThroughMaskedLstmIsRefused() {
        INDArray x = Wrapper.BIDIRECTIONAL_CONCAT.featuresNcw();
        INDArray y = labelsNcw();
        MultiLayerNetwork concat = Wrapper.BIDIRECTIONAL_CONCAT.build(DataType.DOUBLE);
        INDArray before = concat.params().dup();
        IllegalArgumentException masked = assertThrows(IllegalArgumentException.class,
                () -> BackPackNetwork.extend(concat).backward(x, y, mask(), mask(), new BatchDiagHessian()));
        assertTrue(masked.getMessage().contains("Bidirectional") && masked.getMessage().contains("feature mask"),
                masked.getMessage());
        assertClose(before, concat.params(), 0, 0, "parameters untouched");
        MultiLayerNetwork maskZero = Wrapper.MASK_ZERO_LSTM.build(DataType.DOUBLE);
        UnsupportedLayerException always = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(maskZero).backward(Wrapper.MASK_ZERO_LSTM.featuresNcw(), y, null, mask(),
                        new DiagHessian()));
        assertTrue(always.getMessage().contains("MaskZero") && always.getMessage().contains("mask"),
                always.getMessage());
    }

    @ParameterizedTest
    @EnumSource(value = Wrapper.class, names = {"MASK_ZERO_LSTM", "BIDIRECTIONAL_MUL", "BIDIRECTIONAL_AVERAGE_NWC",
            "TIME_DISTRIBUTED_NWC"})
    void float32AgreesWithFloat64(Wrapper w) {
        MultiLayerNetwork net = w.build(DataType.DOUBLE);
        MultiLayerNetwork single = w.build(DataType.FLOAT);
        single.setParams(net.params().castTo(DataType.FLOAT));
        INDArray x = layout(w.featuresNcw(), w.format());
        INDArray y = layout(labelsNcw(), w.format());
        INDArray mask = mask();
        // the Hessian too where it goes through the wrapper (not an LSTM under MaskZeroLayer's mask)
        boolean hessian = w != Wrapper.MASK_ZERO_LSTM;
        Quantities q64 = BackPackNetwork.extend(net).backward(x, y, null, mask, hessian
                ? new Extension[] {new BatchDiagGGNExact(), new BatchDiagHessian()} : new Extension[] {new BatchDiagGGNExact()});
        Quantities q32 = BackPackNetwork.extend(single).backward(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT),
                null, mask.castTo(DataType.FLOAT), hessian ? new Extension[] {new BatchDiagGGNExact(),
                        new BatchDiagHessian()} : new Extension[] {new BatchDiagGGNExact()});
        for (String key : net.paramTable().keySet()) {
            assertClose(q64.byKey(BatchDiagGGNExact.class, key), q32.byKey(BatchDiagGGNExact.class, key)
                    .castTo(DataType.DOUBLE), 1e-4, 1e-6, w + " float32 " + key);
            if (hessian) {
                assertClose(q64.byKey(BatchDiagHessian.class, key), q32.byKey(BatchDiagHessian.class, key)
                        .castTo(DataType.DOUBLE), 1e-4, 1e-6, w + " float32 Hessian " + key);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = Wrapper.class, names = {"BIDIRECTIONAL_CONCAT", "TIME_DISTRIBUTED"})
    void sampledColumnsConvergeToTheExactDiagonal(Wrapper w) {
        MultiLayerNetwork net = w.build(DataType.DOUBLE);
        INDArray x = layout(w.featuresNcw(), w.format());
        INDArray y = layout(labelsNcw(), w.format());
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities exact = bp.backward(x, y, null, mask(), new BatchDiagGGNExact());
        Nd4j.getRandom().setSeed(42);
        Quantities mc = bp.backward(x, y, null, mask(), new BatchDiagGGNMC(4000));
        for (String key : net.paramTable().keySet()) {
            INDArray e = exact.byKey(BatchDiagGGNExact.class, key);
            double error = mc.byKey(BatchDiagGGNMC.class, key).sub(e).norm2Number().doubleValue();
            assertTrue(error <= 0.15 * e.norm2Number().doubleValue(), w + " " + key + ": " + error);
        }
    }

    /**
     * @param named whether the vertex names the input whose mask it reverses by (else whole arrays are reversed)
     * @return input → LSTM → ReverseTimeSeriesVertex → LSTM → RnnOutputLayer
     */
    private static ComputationGraph reversingGraph(boolean named, LossFunction loss, Activation activation) {
        ComputationGraphConfiguration conf = new NeuralNetConfiguration.Builder().seed(3).dataType(DataType.DOUBLE)
                .graphBuilder().addInputs("seq")
                .addLayer("lstm", new LSTM.Builder().nIn(IN).nOut(4).activation(Activation.TANH).build(), "seq")
                .addVertex("reversed", new ReverseTimeSeriesVertex(named ? "seq" : null), "lstm")
                .addLayer("rnn", new SimpleRnn.Builder().nIn(4).nOut(3).activation(Activation.TANH).build(),
                        "reversed")
                // without setInputTypes DL4J leaves the output's layout unset and its own backward step fails
                .addLayer("out", new RnnOutputLayer.Builder(loss).activation(activation).nIn(3).nOut(CLASSES)
                        .dataFormat(RNNFormat.NCW).build(), "rnn")
                .setOutputs("out").build();
        ComputationGraph g = new ComputationGraph(conf);
        g.init();
        Nd4j.getRandom().setSeed(13);
        g.setParams(Nd4j.randn(DataType.DOUBLE, 1, g.numParams()).muli(0.6));
        return g;
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void reverseTimeSeriesVertexEqualsTheJacobianReference(boolean named) {
        ComputationGraph net = reversingGraph(named, LossFunction.MCXENT, Activation.SOFTMAX);
        ComputationGraph ref = reversingGraph(named, LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        INDArray x = Wrapper.BIDIRECTIONAL_ADD.featuresNcw();
        INDArray[] masks = {mask()};
        INDArray[] labelMasks = {mask()};
        Map<String, INDArray> expected = referenceGgn(ref, () -> ref.output(false, new INDArray[] {x}, masks,
                labelMasks)[0], mask());
        Quantities q = BackPackNetwork.extend(net).backward(new INDArray[] {x}, new INDArray[] {labelsNcw()}, masks,
                labelMasks, new BatchDiagGGNExact());
        for (String key : expected.keySet()) {
            String layer = key.substring(0, key.lastIndexOf('_'));
            String param = key.substring(key.lastIndexOf('_') + 1);
            assertClose(expected.get(key), q.get(BatchDiagGGNExact.class, layer, param), 1e-6, 1e-9,
                    (named ? "masked reversal " : "whole reversal ") + key);
        }
    }

    /**
     * Refused by name before the pass, the network unchanged: a wrapped layer with input dropout (its input
     * Jacobian would need the dropout mask of the wrapped layer).
     */
    @Test
    void wrappedInputDropoutIsRefusedByName() {
        Layer[][] networks = {
                {new Bidirectional(Bidirectional.Mode.ADD, new LSTM.Builder().nOut(4).dropOut(0.8).build()),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES)
                                .build()},
                {new LSTM.Builder().nOut(4).build(), new TimeDistributed(new DenseLayer.Builder().nOut(3).dropOut(0.8)
                        .activation(Activation.TANH).build(), RNNFormat.NCW),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES)
                                .build()}};
        for (Layer[] layers : networks) {
            MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7)
                    .dataType(DataType.DOUBLE).list(layers).setInputType(InputType.recurrent(IN, T)).build());
            net.init();
            INDArray before = net.params().dup();
            UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class, () -> BackPackNetwork
                    .extend(net).backward(Wrapper.BIDIRECTIONAL_ADD.featuresNcw(), labelsNcw(), new DiagGGNExact()));
            assertTrue(e.getMessage().contains("input dropout"), e.getMessage());
            assertClose(before, net.params(), 0, 0, "parameters untouched");
        }
    }

    /** DL4J's precise GELU has no consistent second derivative: its Hessian inside TimeDistributed is refused. */
    @Test
    void theHessianOfAnInconsistentActivationInTimeDistributedIsRefusedByName() {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7)
                .dataType(DataType.DOUBLE).list(new LSTM.Builder().nOut(4).build(), new TimeDistributed(
                        new DenseLayer.Builder().nOut(3).activation(new org.nd4j.linalg.activations.impl
                                .ActivationGELU(true)).build(), RNNFormat.NCW),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES)
                                .build()).setInputType(InputType.recurrent(IN, T)).build());
        net.init();
        INDArray before = net.params().dup();
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class, () -> BackPackNetwork.extend(net)
                .backward(Wrapper.TIME_DISTRIBUTED.featuresNcw(), labelsNcw(), new DiagHessian()));
        assertTrue(e.getMessage().contains("TimeDistributed") && e.getMessage().contains("GELU"), e.getMessage());
        assertClose(before, net.params(), 0, 0, "parameters untouched");
        BackPackNetwork.extend(net).backward(Wrapper.TIME_DISTRIBUTED.featuresNcw(), labelsNcw(), new DiagGGNExact());
    }
}
