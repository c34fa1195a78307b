// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import io.github.dl4jbackpack.internal.layers.FirstOrderTerms;
import io.github.dl4jbackpack.internal.layers.LstmDerivatives;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.layers.IOutputLayer;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.layers.BaseRecurrentLayer;
import org.deeplearning4j.nn.conf.layers.GravesLSTM;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.weightnoise.DropConnect;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Map;
import java.util.Random;
import java.util.function.Supplier;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * The per-sequence first-order terms of DL4J's recurrent layers ({@link LstmDerivatives}: LSTM and
 * GravesLSTM), called directly on the layer of an [LSTM, RnnOutputLayer] network with the gradient at its
 * output taken from DL4J's own output layer: N times the sum of the per-sequence gradients equals DL4J's
 * batch gradient of the recurrent layer, each sequence's gradient equals DL4J's gradient of that
 * sequence run alone (same mask row) divided by N, and every reduction equals its definition applied to
 * the individual gradients; over masks (none, a masked tail, a masked head), lengths (T = 1), activations
 * (gate activations other than the sigmoid), data formats (NCW, NWC), input dropout, a stored
 * {@code rnnTimeStep} state and a mask set on the layer itself. End to end, every first-order extension
 * of networks with LSTM and GravesLSTM layers (stacked, NWC, pooled over time) against single-sequence
 * passes; curvature extensions and unsupported configurations refused by reason.
 */
class RecurrentLayersTest {

    private static final int N = 3;
    private static final int N_IN = 3;
    private static final int UNITS = 4;
    private static final int CLASSES = 3;
    private static final int T = 5;
    private static final int[] LENGTHS = {5, 3, 2};

    @BeforeAll
    static void doublePrecision() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    /** A recurrent layer setting: its configuration, the data format and the mask alignment. */
    record Case(String name, Supplier<BaseRecurrentLayer> layer, int steps, Masking masking) {
        @Override
        public String toString() {
            return name;
        }
    }

    /** How the sequences are masked. */
    enum Masking {
        /** No masks: every sequence has T steps. */
        NONE,
        /** Features and labels masked after each sequence's length ({@code ALIGN_START} padding). */
        TAIL,
        /** Features and labels masked before each sequence's last {@code length} steps ({@code ALIGN_END}). */
        HEAD
    }

    private static LSTM.Builder lstm() {
        return new LSTM.Builder().nIn(N_IN).nOut(UNITS);
    }

    private static GravesLSTM.Builder graves() {
        return new GravesLSTM.Builder().nIn(N_IN).nOut(UNITS);
    }

    static Stream<Case> cases() {
        Stream.Builder<Case> cases = Stream.builder();
        for (Masking masking : Masking.values()) {
            cases.add(new Case("LSTM tanh, " + masking, () -> lstm().activation(Activation.TANH).build(), T, masking));
            cases.add(new Case("GravesLSTM tanh, " + masking, () -> graves().activation(Activation.TANH).build(), T,
                    masking));
            cases.add(new Case("LSTM softsign, hard-sigmoid gates, " + masking, () -> lstm()
                    .activation(Activation.SOFTSIGN).gateActivationFunction(Activation.HARDSIGMOID).build(), T, masking));
            cases.add(new Case("GravesLSTM softsign, hard-sigmoid gates, " + masking, () -> graves()
                    .activation(Activation.SOFTSIGN).gateActivationFunction(Activation.HARDSIGMOID).build(), T, masking));
            cases.add(new Case("LSTM NWC, " + masking, () -> lstm().dataFormat(RNNFormat.NWC).build(), T, masking));
            cases.add(new Case("GravesLSTM NWC, " + masking, () -> graves().dataFormat(RNNFormat.NWC).build(), T,
                    masking));
        }
        cases.add(new Case("LSTM T=1", () -> lstm().build(), 1, Masking.NONE));
        cases.add(new Case("GravesLSTM T=1", () -> graves().build(), 1, Masking.NONE));
        return cases.build();
    }

    private static MultiLayerNetwork network(BaseRecurrentLayer recurrent, long seed) {
        RnnOutputLayer.Builder output = new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX)
                .nIn(UNITS).nOut(CLASSES);
        if (recurrent.getRnnDataFormat() == RNNFormat.NWC) {
            output.dataFormat(RNNFormat.NWC);
        }
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(seed)
                .dataType(DataType.DOUBLE).list(recurrent, output.build()).build());
        net.init();
        TestNets.randomiseParameters(net, seed);
        return net;
    }

    /** @return the {@code [N, T]} mask of the given lengths, or null */
    private static INDArray mask(Masking masking, int steps, int... lengths) {
        if (masking == Masking.NONE) {
            return null;
        }
        INDArray m = Nd4j.zeros(DataType.DOUBLE, lengths.length, steps);
        for (int n = 0; n < lengths.length; n++) {
            int length = Math.min(lengths[n], steps);
            long from = masking == Masking.TAIL ? 0 : steps - length;
            if (length > 0) {
                m.get(NDArrayIndex.point(n), NDArrayIndex.interval(from, from + length)).assign(1.0);
            }
        }
        return m;
    }

    /** @return one-hot labels {@code [N, classes, T]} (NCW) */
    private static INDArray labels(long n, int steps, long seed) {
        Random r = new Random(seed);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, n, CLASSES, steps);
        for (int i = 0; i < n; i++) {
            for (int t = 0; t < steps; t++) {
                y.putScalar(new long[] {i, r.nextInt(CLASSES), t}, 1.0);
            }
        }
        return y;
    }

    private static boolean nwc(MultiLayerNetwork net) {
        return ((BaseRecurrentLayer) net.getLayer(0).conf().getLayer()).getRnnDataFormat() == RNNFormat.NWC;
    }

    /** @return NCW {@code [N, C, T]} data in the network's format */
    private static INDArray inFormat(MultiLayerNetwork net, INDArray ncw) {
        return nwc(net) ? ncw.permute(0, 2, 1).dup('c') : ncw;
    }

    /** @return DL4J's batch gradient (summed over sequences) of the recurrent layer, by parameter name */
    private static Map<String, INDArray> dl4jGradient(MultiLayerNetwork net, INDArray x, INDArray y,
                                                      INDArray featuresMask, INDArray labelsMask, INDArray storedState) {
        MultiLayerNetwork copy = net.clone();
        if (storedState != null) {
            copy.rnnTimeStep(storedState);
        }
        copy.setInput(x);
        copy.setLabels(y);
        copy.setLayerMaskArrays(featuresMask, labelsMask);
        copy.computeGradientAndScore();
        Map<String, INDArray> out = new java.util.LinkedHashMap<>();
        copy.getLayer(0).paramTable().keySet().forEach(p -> out.put(p, copy.gradient().getGradientFor("0_" + p).dup()));
        return out;
    }

    /**
     * The recurrent layer's terms, from the layer after a training-mode forward step and the gradient of
     * the mean loss at its output, computed by DL4J's output layer; the layers get their masks from the
     * network's {@code setLayerMaskArrays}, as in a training pass (DL4J does not hand the features mask to a
     * recurrent layer), unless a mask is set on the recurrent layer itself.
     *
     * @param layerMask null, or the mask to set on the recurrent layer directly
     * @return the terms and the gradient at the recurrent layer's output (summed loss)
     */
    private static Object[] pass(MultiLayerNetwork net, INDArray x, INDArray y, INDArray featuresMask,
                                 INDArray labelsMask, INDArray layerMask) {
        LayerWorkspaceMgr workspaces = LayerWorkspaceMgr.noWorkspaces();
        net.setLayerMaskArrays(featuresMask, labelsMask);
        Layer recurrent = net.getLayer(0);
        Layer output = net.getLayer(1);
        if (layerMask != null) {
            recurrent.setMaskArray(layerMask);
        }
        recurrent.setInput(x, workspaces);
        INDArray h = recurrent.activate(true, workspaces);
        output.setInput(h, workspaces);
        ((IOutputLayer) output).setLabels(y);
        INDArray epsilon = output.backpropGradient(null, workspaces).getSecond();
        FirstOrderTerms terms = new LstmDerivatives().firstOrder(recurrent, recurrent.input(), epsilon.div(x.size(0)));
        return new Object[] {terms, epsilon};
    }

    private static FirstOrderTerms terms(MultiLayerNetwork net, INDArray x, INDArray y, INDArray featuresMask,
                                         INDArray labelsMask) {
        return (FirstOrderTerms) pass(net, x, y, featuresMask, labelsMask, null)[0];
    }

    private static INDArray row(INDArray a, long n) {
        return a == null ? null : Reference.example(a, n);
    }

    /**
     * Asserts the terms of the network's recurrent layer against DL4J: the batch gradient, the gradients of
     * each sequence alone, and the reductions.
     */
    private static void assertAgainstDl4j(MultiLayerNetwork net, INDArray x, INDArray y, INDArray featuresMask,
                                          INDArray labelsMask, INDArray storedState, String what) {
        long n = x.size(0);
        MultiLayerNetwork copy = net.clone();
        copy.initGradientsView();
        if (storedState != null) {
            copy.rnnTimeStep(storedState);
        }
        Map<String, INDArray> individual = terms(copy, x, y, featuresMask, labelsMask)
                .individualGradients();
        Map<String, INDArray> batch = dl4jGradient(net, x, y, featuresMask, labelsMask, storedState);
        for (String p : new String[] {LstmDerivatives.W, LstmDerivatives.B}) {
            assertNotEquals(0.0, individual.get(p).amaxNumber().doubleValue(), what + ": " + p + " is zero");
        }
        batch.forEach((p, g) -> assertClose(g, individual.get(p).sum(0).muli(n).reshape(g.shape()), 1e-10, 1e-13,
                what + ": N·Σ_n g_n(" + p + ") = DL4J's batch gradient"));
        for (long i = 0; i < n; i++) {
            long example = i;
            Map<String, INDArray> alone = dl4jGradient(net, row(x, i), row(y, i), row(featuresMask, i),
                    row(labelsMask, i), storedState == null ? null : row(storedState, i));
            alone.forEach((p, g) -> assertClose(g.div(n), Reference.example(individual.get(p), example)
                    .reshape(g.shape()), 1e-10, 1e-13, what + ": g_" + example + "(" + p + ") = DL4J's gradient of "
                    + "sequence " + example + " alone / N"));
        }
        // the reductions on their own (without the individual gradients), then from them
        FirstOrderTerms fresh = terms(copy, x, y, featuresMask, labelsMask);
        assertReductions(fresh, individual, what + " (reductions alone)");
        assertReductions(fresh, fresh.individualGradients(), what + " (reductions after the individual gradients)");
    }

    private static void assertReductions(FirstOrderTerms terms, Map<String, INDArray> individual, String what) {
        individual.forEach((p, g) -> {
            assertClose(Reference.squaredNorms(g), terms.individualGradientSquaredNorms().get(p), 1e-10, 1e-13,
                    what + ": squared norms of " + p);
            assertClose(Reference.sumGradSquared(g), terms.sumGradSquared().get(p), 1e-10, 1e-13,
                    what + ": sum of squared gradients of " + p);
            assertClose(Reference.variance(g), terms.variance().get(p), 1e-8, 1e-12, what + ": variance of " + p);
            assertClose(Reference.dots(g), terms.individualGradientDots().get(p), 1e-10, 1e-13,
                    what + ": dot products of " + p);
        });
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void perSequenceGradientsMatchDl4j(Case c) {
        MultiLayerNetwork net = network(c.layer().get(), 11);
        INDArray x = inFormat(net, TestNets.features(DataType.DOUBLE, 12, N, N_IN, c.steps()));
        INDArray y = inFormat(net, labels(N, c.steps(), 13));
        INDArray m = mask(c.masking(), c.steps(), LENGTHS);
        assertAgainstDl4j(net, x, y, m, m, null, c.name());
    }

    @Test
    void parameterShapesAreDl4js() {
        for (BaseRecurrentLayer conf : new BaseRecurrentLayer[] {lstm().build(), graves().build()}) {
            MultiLayerNetwork net = network(conf, 3);
            net.initGradientsView();
            INDArray x = TestNets.features(DataType.DOUBLE, 4, N, N_IN, T);
            Map<String, INDArray> g = terms(net, x, labels(N, T, 5), null, null)
                    .individualGradients();
            net.getLayer(0).paramTable().forEach((p, value) -> {
                long[] expected = new long[value.rank() + 1];
                expected[0] = N;
                System.arraycopy(value.shape(), 0, expected, 1, value.rank());
                org.junit.jupiter.api.Assertions.assertArrayEquals(expected, g.get(p).shape(),
                        conf.getClass().getSimpleName() + " " + p);
            });
        }
    }

    /** A state stored by {@code rnnTimeStep} does not enter a training pass: both start from zero. */
    @Test
    void storedStateDoesNotEnterTheTrainingPass() {
        for (BaseRecurrentLayer conf : new BaseRecurrentLayer[] {lstm().build(), graves().build()}) {
            MultiLayerNetwork net = network(conf, 21);
            INDArray x = TestNets.features(DataType.DOUBLE, 22, N, N_IN, T);
            INDArray state = TestNets.features(DataType.DOUBLE, 23, N, N_IN, 2).muli(3);
            INDArray m = mask(Masking.TAIL, T, LENGTHS);
            assertAgainstDl4j(net, x, labels(N, T, 24), m, m, state, conf.getClass().getSimpleName() + " after rnnTimeStep");
        }
    }

    /**
     * Input dropout: the layer's {@code input()} is the input after dropout, and the terms of the pass
     * equal DL4J's own backward step of that pass (the dropout masks of separate passes differ, so the
     * reference is the layer's {@code backpropGradient} in the same pass).
     */
    @Test
    void inputDropoutIsThePassesOwn() {
        for (BaseRecurrentLayer conf : new BaseRecurrentLayer[] {lstm().dropOut(0.6).build(),
                graves().dropOut(0.6).build()}) {
            MultiLayerNetwork net = network(conf, 31);
            net.initGradientsView();
            INDArray x = TestNets.features(DataType.DOUBLE, 32, N, N_IN, T);
            INDArray y = labels(N, T, 33);
            INDArray m = mask(Masking.TAIL, T, LENGTHS);
            Layer recurrent = net.getLayer(0);
            Map<String, INDArray> individual = terms(net, x, y, m, m).individualGradients();
            assertNotEquals(0.0, recurrent.input().sub(x).amaxNumber().doubleValue(), "dropout applied");
            LayerWorkspaceMgr workspaces = LayerWorkspaceMgr.noWorkspaces();
            INDArray epsilon = net.getLayer(1).backpropGradient(null, workspaces).getSecond();
            Map<String, INDArray> dl4j = recurrent.backpropGradient(epsilon, workspaces).getFirst().gradientForVariable();
            dl4j.forEach((p, g) -> assertClose(g, individual.get(p).sum(0).muli(N).reshape(g.shape()), 1e-10, 1e-13,
                    conf.getClass().getSimpleName() + " with dropout: N·Σ_n g_n(" + p + ") = DL4J's gradient"));
        }
    }

    /**
     * A mask set on the recurrent layer itself (DL4J's wrappers do; networks do not) resets the state at
     * masked steps: against DL4J's own backward step of the layer, for the batch and for each sequence
     * alone with its gradient at the output.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("layerMaskCases")
    void layerMaskMatchesDl4jsBackwardStep(Case c) {
        MultiLayerNetwork net = network(c.layer().get(), 51);
        INDArray x = inFormat(net, TestNets.features(DataType.DOUBLE, 52, N, N_IN, T));
        INDArray y = inFormat(net, labels(N, T, 53));
        INDArray m = mask(c.masking(), T, LENGTHS);
        MultiLayerNetwork copy = net.clone();
        copy.initGradientsView();
        Object[] pass = pass(copy, x, y, m, m, m);
        Map<String, INDArray> individual = ((FirstOrderTerms) pass[0]).individualGradients();
        INDArray epsilon = (INDArray) pass[1];
        LayerWorkspaceMgr workspaces = LayerWorkspaceMgr.noWorkspaces();
        Layer recurrent = copy.getLayer(0);
        recurrent.backpropGradient(epsilon, workspaces).getFirst().gradientForVariable().forEach((p, g) ->
                assertClose(g, individual.get(p).sum(0).muli(N).reshape(g.shape()), 1e-10, 1e-13,
                        c.name() + ": N·Σ_n g_n(" + p + ") = DL4J's backward step"));
        for (long i = 0; i < N; i++) {
            long example = i;
            recurrent.setMaskArray(row(m, i));
            recurrent.setInput(row(x, i), workspaces);
            recurrent.activate(true, workspaces);
            recurrent.backpropGradient(row(epsilon, i), workspaces).getFirst().gradientForVariable().forEach((p, g) ->
                    assertClose(g.div(N), Reference.example(individual.get(p), example).reshape(g.shape()), 1e-10,
                            1e-13, c.name() + ": g_" + example + "(" + p + ") = DL4J's backward step of the sequence / N"));
        }
    }

    static Stream<Case> layerMaskCases() {
        return Stream.of(Masking.TAIL, Masking.HEAD).flatMap(masking -> Stream.of(
                new Case("LSTM, layer mask " + masking, () -> lstm().build(), T, masking),
                new Case("GravesLSTM, layer mask " + masking, () -> graves().build(), T, masking),
                new Case("LSTM NWC hard-sigmoid gates, layer mask " + masking, () -> lstm().dataFormat(RNNFormat.NWC)
                        .gateActivationFunction(Activation.HARDSIGMOID).build(), T, masking),
                new Case("GravesLSTM NWC hard-sigmoid gates, layer mask " + masking, () -> graves()
                        .dataFormat(RNNFormat.NWC).gateActivationFunction(Activation.HARDSIGMOID).build(), T, masking)));
    }

    /**
     * What DL4J does with a features mask in a network: the recurrent layer never receives it (its
     * {@code feedForwardMaskArray} passes it on without keeping it), so masked steps run like real ones and
     * only the output layer's mask removes them; a sequence padded at its head (ALIGN_END) therefore does
     * not give the shortened sequence's gradient, while one padded at its tail does.
     */
    @Test
    void networksDoNotMaskTheRecurrentLayer() {
        for (BaseRecurrentLayer conf : new BaseRecurrentLayer[] {lstm().build(), graves().build()}) {
            String what = conf.getClass().getSimpleName();
            MultiLayerNetwork net = network(conf, 61);
            INDArray x = TestNets.features(DataType.DOUBLE, 62, 1, N_IN, T);
            INDArray y = labels(1, T, 63);
            INDArray head = mask(Masking.HEAD, T, 2);
            MultiLayerNetwork copy = net.clone();
            copy.setLayerMaskArrays(head, head);
            assertNull(copy.getLayer(0).getMaskArray(), what + " has no mask in a network");
            assertNotNull(copy.getLayer(1).getMaskArray(), "the output layer has its mask");
            INDArray shortened = dl4jGradient(net, x.get(NDArrayIndex.all(), NDArrayIndex.all(),
                    NDArrayIndex.interval(T - 2, T)).dup(), y.get(NDArrayIndex.all(), NDArrayIndex.all(),
                    NDArrayIndex.interval(T - 2, T)).dup(), null, null, null).get(LstmDerivatives.W);
            INDArray padded = dl4jGradient(net, x, y, head, head, null).get(LstmDerivatives.W);
            assertNotEquals(0.0, padded.sub(shortened).amaxNumber().doubleValue(), 1e-6,
                    what + ": head padding is not the shortened sequence");
        }
    }

    /** @return an initialised float64 network over {@code nIn = 3} sequences, random parameters */
    private static MultiLayerNetwork sequenceNetwork(RNNFormat format, long seed,
                                                     org.deeplearning4j.nn.conf.layers.Layer... layers) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(seed)
                .dataType(DataType.DOUBLE).list(layers).setInputType(
                        org.deeplearning4j.nn.conf.inputs.InputType.recurrent(N_IN, format)).build());
        net.init();
        TestNets.randomiseParameters(net, seed);
        return net;
    }

    private static RnnOutputLayer classifier(RNNFormat format) {
        return new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(CLASSES)
                .dataFormat(format).build();
    }

    /** Every first-order extension through the library, against single-sequence passes, over masks. */
    private static void assertEndToEnd(MultiLayerNetwork net, RNNFormat format, String what) {
        INDArray x = TestNets.features(DataType.DOUBLE, 71, N, N_IN, T);
        INDArray y = labels(N, T, 72);
        if (format == RNNFormat.NWC) {
            x = x.permute(0, 2, 1).dup('c');
            y = y.permute(0, 2, 1).dup('c');
        }
        Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, null, null, what + ", no mask");
        for (Masking masking : new Masking[] {Masking.TAIL, Masking.HEAD}) {
            INDArray m = mask(masking, T, LENGTHS);
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, m, m, what + ", masks " + masking);
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, null, m, what + ", label mask " + masking);
        }
    }

    @Test
    void lstmClassifierEndToEnd() {
        assertEndToEnd(sequenceNetwork(RNNFormat.NCW, 81, new LSTM.Builder().nOut(UNITS).build(),
                classifier(RNNFormat.NCW)), RNNFormat.NCW, "LSTM");
    }

    @Test
    void stackedLstmsEndToEnd() {
        assertEndToEnd(sequenceNetwork(RNNFormat.NCW, 82, new LSTM.Builder().nOut(UNITS).build(),
                new LSTM.Builder().nOut(UNITS - 1).activation(Activation.SOFTSIGN).build(), classifier(RNNFormat.NCW)),
                RNNFormat.NCW, "LSTM, LSTM");
    }

    /**
     * Three LSTMs whose gradients come from DL4J's own backward step (sigmoid gates: tanh and softsign) or from
     * the library's back-propagation through time (hard-sigmoid gates), in both workspace modes (DL4J hands its
     * forward values over as copies in one and as views of each step's gate array in the other): every
     * first-order extension against single-sequence passes.
     */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.EnumSource(org.deeplearning4j.nn.conf.WorkspaceMode.class)
    void lstmGradientsReadFromDl4jsStepInEveryWorkspaceMode(org.deeplearning4j.nn.conf.WorkspaceMode mode) {
        assertEndToEnd(threeLstms(DataType.DOUBLE, mode), RNNFormat.NCW, "three LSTMs, " + mode);
    }

    /** The same network in float32, within tolerance of float64, every first-order extension. */
    @Test
    void lstmGradientsReadFromDl4jsStepInFloat32() {
        MultiLayerNetwork wide = threeLstms(DataType.DOUBLE, org.deeplearning4j.nn.conf.WorkspaceMode.ENABLED);
        MultiLayerNetwork narrow = threeLstms(DataType.FLOAT, org.deeplearning4j.nn.conf.WorkspaceMode.ENABLED);
        narrow.setParams(wide.params().castTo(DataType.FLOAT));
        INDArray x = TestNets.features(DataType.DOUBLE, 71, N, N_IN, T);
        INDArray y = labels(N, T, 72);
        INDArray m = mask(Masking.TAIL, T, LENGTHS);
        Extension<?>[] extensions = {new BatchGrad(), new BatchL2Grad(), new SumGradSquared(), new Variance(),
                new BatchDotGrad()};
        Quantities a = BackPackNetwork.extend(wide).backward(x, y, null, m, extensions);
        Quantities b = BackPackNetwork.extend(narrow).backward(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT),
                null, m.castTo(DataType.FLOAT), extensions);
        java.util.List<Class<? extends Extension<INDArray>>> kinds = java.util.List.of(BatchGrad.class,
                BatchL2Grad.class, SumGradSquared.class, Variance.class, BatchDotGrad.class);
        for (String key : wide.paramTable().keySet()) {
            for (Class<? extends Extension<INDArray>> kind : kinds) {
                assertClose(a.byKey(kind, key), b.byKey(kind, key), 1e-3, 1e-6,
                        "float32 " + kind.getSimpleName() + " " + key);
            }
        }
    }

    private static MultiLayerNetwork threeLstms(DataType type, org.deeplearning4j.nn.conf.WorkspaceMode mode) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(86).dataType(type)
                .trainingWorkspaceMode(mode).inferenceWorkspaceMode(mode)
                .list(new LSTM.Builder().nOut(UNITS).build(),
                        new LSTM.Builder().nOut(UNITS + 1).activation(Activation.SOFTSIGN).build(),
                        new LSTM.Builder().nOut(UNITS).gateActivationFunction(Activation.HARDSIGMOID).build(),
                        classifier(RNNFormat.NCW))
                .setInputType(org.deeplearning4j.nn.conf.inputs.InputType.recurrent(N_IN, RNNFormat.NCW)).build());
        net.init();
        TestNets.randomiseParameters(net, 86);
        return net;
    }

    @Test
    void gravesLstmEndToEnd() {
        assertEndToEnd(sequenceNetwork(RNNFormat.NCW, 83, new GravesLSTM.Builder().nOut(UNITS).build(),
                new LSTM.Builder().nOut(UNITS).gateActivationFunction(Activation.HARDSIGMOID).build(),
                classifier(RNNFormat.NCW)), RNNFormat.NCW, "GravesLSTM, LSTM");
    }

    @Test
    void channelsLastLstmEndToEnd() {
        assertEndToEnd(sequenceNetwork(RNNFormat.NWC, 84, new LSTM.Builder().nOut(UNITS).dataFormat(RNNFormat.NWC)
                        .build(), new GravesLSTM.Builder().nOut(UNITS).dataFormat(RNNFormat.NWC).build(),
                classifier(RNNFormat.NWC)), RNNFormat.NWC, "NWC LSTM, GravesLSTM");
    }

    /** A sequence classifier: LSTM, average pooling over the masked time axis, one label per sequence. */
    @Test
    void pooledSequenceClassifierEndToEnd() {
        MultiLayerNetwork net = sequenceNetwork(RNNFormat.NCW, 85, new LSTM.Builder().nOut(UNITS).build(),
                new org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer.Builder(
                        org.deeplearning4j.nn.conf.layers.PoolingType.AVG).build(),
                new org.deeplearning4j.nn.conf.layers.OutputLayer.Builder(LossFunction.MCXENT)
                        .activation(Activation.SOFTMAX).nOut(CLASSES).build());
        INDArray x = TestNets.features(DataType.DOUBLE, 86, N, N_IN, T);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 87, N, CLASSES);
        for (Masking masking : new Masking[] {Masking.TAIL, Masking.HEAD}) {
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, mask(masking, T, LENGTHS), null,
                    "LSTM, average pooling, " + masking);
        }
    }

    /**
     * {@code LastTimeStep} around LSTM and GravesLSTM, through the library's LastTimeStep kind: DL4J's wrapper
     * hands the features mask to the recurrent layer itself, so masked steps reset the state (the replay's
     * layer-mask path, in a network): against DL4J's batch gradient and its single-sequence gradients.
     */
    @Test
    void lastTimeStepHandsTheMaskToTheRecurrentLayer() {
        LayerWorkspaceMgr workspaces = LayerWorkspaceMgr.noWorkspaces();
        for (BaseRecurrentLayer recurrent : new BaseRecurrentLayer[] {new LSTM.Builder().nOut(UNITS).build(),
                new GravesLSTM.Builder().nOut(UNITS).build()}) {
            MultiLayerNetwork net = sequenceNetwork(RNNFormat.NCW, 88,
                    new org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep(recurrent),
                    new org.deeplearning4j.nn.conf.layers.OutputLayer.Builder(LossFunction.MCXENT)
                            .activation(Activation.SOFTMAX).nOut(CLASSES).build());
            INDArray x = TestNets.features(DataType.DOUBLE, 89, N, N_IN, T);
            INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 90, N, CLASSES);
            for (Masking masking : new Masking[] {Masking.TAIL, Masking.HEAD}) {
                String what = "LastTimeStep(" + recurrent.getClass().getSimpleName() + "), " + masking;
                INDArray m = mask(masking, T, LENGTHS);
                MultiLayerNetwork copy = net.clone();
                copy.initGradientsView();
                copy.setLayerMaskArrays(m, null);
                Layer wrapper = copy.getLayer(0);
                assertNotNull(wrapper.getMaskArray(), what + ": the recurrent layer has the mask");
                wrapper.setInput(x, workspaces);
                Layer output = copy.getLayer(1);
                output.setInput(wrapper.activate(true, workspaces), workspaces);
                ((IOutputLayer) output).setLabels(y);
                INDArray epsilon = output.backpropGradient(null, workspaces).getSecond();
                Map<String, INDArray> individual = io.github.dl4jbackpack.internal.layers.LayerKinds.of(wrapper)
                        .orElseThrow().firstOrder(wrapper, wrapper.input(), epsilon.div(N)).individualGradients();
                dl4jGradient(net, x, y, m, null, null).forEach((p, g) -> assertClose(g,
                        individual.get(p).sum(0).muli(N).reshape(g.shape()), 1e-10, 1e-13,
                        what + ": N·Σ_n g_n(" + p + ") = DL4J's batch gradient"));
                for (long i = 0; i < N; i++) {
                    long example = i;
                    dl4jGradient(net, row(x, i), row(y, i), row(m, i), null, null).forEach((p, g) -> assertClose(
                            g.div(N), Reference.example(individual.get(p), example).reshape(g.shape()), 1e-10, 1e-13,
                            what + ": g_" + example + "(" + p + ") = DL4J's gradient of the sequence alone / N"));
                }
            }
        }
    }

    /** Through the library: curvature extensions and unsupported configurations are refused by reason. */
    @Test
    void libraryRefusesByReason() {
        MultiLayerNetwork net = sequenceNetwork(RNNFormat.NCW, 91, new LSTM.Builder().nOut(UNITS).build(),
                classifier(RNNFormat.NCW));
        INDArray x = TestNets.features(DataType.DOUBLE, 92, N, N_IN, T);
        INDArray y = labels(N, T, 93);
        UnsupportedLayerException kronecker = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(net).backward(x, y, new io.github.dl4jbackpack.extensions.KFAC()));
        org.junit.jupiter.api.Assertions.assertTrue(kronecker.getMessage().contains("recurrent"),
                kronecker.getMessage());
        MultiLayerNetwork noisy = sequenceNetwork(RNNFormat.NCW, 94, new LSTM.Builder().nOut(UNITS)
                .weightNoise(new DropConnect(0.5)).build(), classifier(RNNFormat.NCW));
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(noisy).backward(x, y, new io.github.dl4jbackpack.extensions.BatchGrad()));
        org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().contains("weight noise"), e.getMessage());
    }

    @Test
    void refusesWhatItDoesNotImplement() {
        LstmDerivatives kind = new LstmDerivatives();
        Layer plain = network(lstm().build(), 41).getLayer(0);
        assertNull(kind.unsupportedConfiguration(plain));
        assertNull(kind.unsupportedConfiguration(network(graves().dropOut(0.5).build(), 41).getLayer(0)));
        assertNotNull(kind.unsupportedConfiguration(network(lstm().weightNoise(new DropConnect(0.5)).build(), 41)
                .getLayer(0)));
        assertNotNull(kind.unsupportedConfiguration(network(lstm().dataFormat(RNNFormat.NWC).dropOut(0.5).build(), 41)
                .getLayer(0)));
        assertNotNull(kind.unsupportedConfiguration(network(graves().activation(Activation.RRELU).build(), 41)
                .getLayer(0)));
        assertNull(kind.secondOrderUnsupported(plain, false));
        assertNull(kind.secondOrderUnsupported(plain, true));
        // the precise GELU's derivative is not that of its value: no Hessian
        Layer precise = network(lstm().activation(new org.nd4j.linalg.activations.impl.ActivationGELU(true)).build(), 41)
                .getLayer(0);
        assertNull(kind.secondOrderUnsupported(precise, false));
        assertNotNull(kind.secondOrderUnsupported(precise, true));
        assertNotNull(kind.noKroneckerFactors(plain));
    }
}
