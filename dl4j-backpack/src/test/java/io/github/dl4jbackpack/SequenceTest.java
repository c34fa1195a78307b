// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.graph.rnn.LastTimeStepVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.RnnLossLayer;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.LinkedHashMap;
import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Sequences of the layers without recurrence: dense layers applied at every step (DL4J's
 * {@code RnnToFeedForwardPreProcessor}), {@code RnnOutputLayer}, {@code RnnLossLayer}, global pooling
 * over time and {@code LastTimeStepVertex}, with masks of variable lengths aligned at the start and at
 * the end. Every first-order extension against loops of single-sequence DL4J passes (float64), the
 * masked tail against the shortened sequence, float32 against float64, training with masks, and bad
 * input refused before the network is touched.
 */
class SequenceTest {

    private static final int T = 5;
    private static final int[] LENGTHS = {5, 2, 4, 1};
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

    /** @return {@code [N, T]} with ones on the first (or, aligned at the end, the last) {@code lengths[n]} steps */
    static INDArray mask(boolean alignEnd, int... lengths) {
        INDArray m = Nd4j.zeros(DataType.DOUBLE, lengths.length, T);
        for (int n = 0; n < lengths.length; n++) {
            m.get(NDArrayIndex.point(n), alignEnd ? NDArrayIndex.interval(T - lengths[n], T)
                    : NDArrayIndex.interval(0, lengths[n])).assign(1.0);
        }
        return m;
    }

    /** @return one-hot labels {@code [N, classes, T]} */
    static INDArray stepLabels(long n, int classes, long seed) {
        java.util.Random r = new java.util.Random(seed);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, n, classes, T);
        for (int i = 0; i < n; i++) {
            for (int t = 0; t < T; t++) {
                y.putScalar(new long[] {i, r.nextInt(classes), t}, 1.0);
            }
        }
        return y;
    }

    /** Dense (tanh) and dense (sigmoid) at every step, then a softmax output at every step. */
    private static MultiLayerNetwork perStepNetwork(DataType type, RNNFormat format) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(4).dataType(type)
                .list(new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(),
                        new DenseLayer.Builder().nOut(3).activation(Activation.SIGMOID).hasBias(false).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(2)
                                .dataFormat(format).build())
                .setInputType(InputType.recurrent(3, format)).build());
        net.init();
        TestNets.randomiseParameters(net, 4);
        return net;
    }

    @Test
    void perStepOutputsEqualSingleSequencePasses() {
        MultiLayerNetwork net = perStepNetwork(DataType.DOUBLE, RNNFormat.NCW);
        INDArray x = TestNets.features(DataType.DOUBLE, 5, LENGTHS.length, 3, T);
        INDArray y = stepLabels(LENGTHS.length, 2, 6);
        Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, null, null, "no mask");
        for (boolean alignEnd : new boolean[] {false, true}) {
            INDArray m = mask(alignEnd, LENGTHS);
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, m, m, "masks, align end " + alignEnd);
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, null, m, "label mask only, align end "
                    + alignEnd);
        }
    }

    @Test
    void channelsLastSequencesEqualChannelsFirst() {
        MultiLayerNetwork ncw = perStepNetwork(DataType.DOUBLE, RNNFormat.NCW);
        MultiLayerNetwork nwc = perStepNetwork(DataType.DOUBLE, RNNFormat.NWC);
        nwc.setParams(ncw.params());
        INDArray x = TestNets.features(DataType.DOUBLE, 5, LENGTHS.length, 3, T);
        INDArray y = stepLabels(LENGTHS.length, 2, 6);
        INDArray m = mask(false, LENGTHS);
        Quantities a = BackPackNetwork.extend(ncw).backward(x, y, m, m, new BatchGrad(), new Variance());
        Quantities b = BackPackNetwork.extend(nwc).backward(x.permute(0, 2, 1).dup(), y.permute(0, 2, 1).dup(), m, m,
                new BatchGrad(), new Variance());
        for (String key : new String[] {"0_W", "0_b", "1_W", "2_W", "2_b"}) {
            assertClose(a.byKey(BatchGrad.class, key), b.byKey(BatchGrad.class, key), 1e-12, 1e-14, "NWC " + key);
            assertClose(a.byKey(Variance.class, key), b.byKey(Variance.class, key), 1e-12, 1e-14, "NWC variance " + key);
        }
        Reference.assertFirstOrderEqualsSingleSequencePasses(nwc, x.permute(0, 2, 1).dup(), y.permute(0, 2, 1).dup(),
                m, m, "NWC");
    }

    @Test
    void lossLayerAtEveryStep() {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(4)
                .dataType(DataType.DOUBLE)
                .list(new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(),
                        new DenseLayer.Builder().nOut(2).activation(Activation.IDENTITY).build(),
                        new RnnLossLayer.Builder(LossFunction.MSE).activation(Activation.IDENTITY).build())
                .setInputType(InputType.recurrent(3)).build());
        net.init();
        TestNets.randomiseParameters(net, 8);
        INDArray x = TestNets.features(DataType.DOUBLE, 9, LENGTHS.length, 3, T);
        INDArray y = TestNets.features(DataType.DOUBLE, 10, LENGTHS.length, 2, T);
        INDArray m = mask(false, LENGTHS);
        Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, m, m, "RnnLossLayer");
    }

    @Test
    void globalPoolingOverMaskedTime() {
        for (PoolingType pooling : new PoolingType[] {PoolingType.AVG, PoolingType.MAX, PoolingType.SUM,
                PoolingType.PNORM}) {
            MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(4)
                    .dataType(DataType.DOUBLE)
                    .list(new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(),
                            new GlobalPoolingLayer.Builder(pooling).pnorm(3).build(),
                            new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                    .setInputType(InputType.recurrent(3)).build());
            net.init();
            TestNets.randomiseParameters(net, 11);
            INDArray x = TestNets.features(DataType.DOUBLE, 12, LENGTHS.length, 3, T);
            INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 13, LENGTHS.length, 3);
            for (boolean alignEnd : new boolean[] {false, true}) {
                Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, mask(alignEnd, LENGTHS), null,
                        pooling + " pooling, align end " + alignEnd);
            }
        }
    }

    /** The usual sequence classifier: an LSTM read at each sequence's last real step, a softmax output. */
    @Test
    void lastTimeStepClassifier() {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(4)
                .dataType(DataType.DOUBLE)
                .list(new org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep(
                                new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(4).activation(Activation.TANH)
                                        .build()),
                        new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                .setInputType(InputType.recurrent(3)).build());
        net.init();
        TestNets.randomiseParameters(net, 21);
        INDArray x = TestNets.features(DataType.DOUBLE, 22, LENGTHS.length, 3, T);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 23, LENGTHS.length, 3);
        Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, null, null, "LastTimeStep(LSTM)");
        for (boolean alignEnd : new boolean[] {false, true}) {
            Reference.assertFirstOrderEqualsSingleSequencePasses(net, x, y, mask(alignEnd, LENGTHS), null,
                    "LastTimeStep(LSTM), align end " + alignEnd);
        }
    }

    @Test
    void maskedTailGivesTheShortenedSequence() {
        MultiLayerNetwork net = perStepNetwork(DataType.DOUBLE, RNNFormat.NCW);
        INDArray x = TestNets.features(DataType.DOUBLE, 5, LENGTHS.length, 3, T);
        INDArray y = stepLabels(LENGTHS.length, 2, 6);
        INDArray m = mask(false, LENGTHS);
        Quantities batch = BackPackNetwork.extend(net.clone()).backward(x, y, m, m, new BatchGrad(), new BatchL2Grad());
        for (int i = 0; i < LENGTHS.length; i++) {
            INDArray xs = x.get(NDArrayIndex.interval(i, i + 1), NDArrayIndex.all(),
                    NDArrayIndex.interval(0, LENGTHS[i])).dup();
            INDArray ys = y.get(NDArrayIndex.interval(i, i + 1), NDArrayIndex.all(),
                    NDArrayIndex.interval(0, LENGTHS[i])).dup();
            Quantities alone = BackPackNetwork.extend(net.clone()).backward(xs, ys, new BatchGrad(), new BatchL2Grad());
            for (String key : new String[] {"0_W", "0_b", "1_W", "2_W", "2_b"}) {
                // g_n of a batch of N carries 1/N; the sequence alone is a batch of one
                assertClose(alone.byKey(BatchGrad.class, key), Reference.example(batch.byKey(BatchGrad.class, key), i)
                        .muli(LENGTHS.length), 1e-10, 1e-13, "sequence " + i + " " + key);
                assertEquals(alone.byKey(BatchL2Grad.class, key).getDouble(0),
                        batch.byKey(BatchL2Grad.class, key).getDouble(i) * LENGTHS.length * LENGTHS.length,
                        1e-10 * Math.max(1, alone.byKey(BatchL2Grad.class, key).getDouble(0)), "norm " + i + key);
            }
        }
    }

    @Test
    void float32WithinToleranceOfFloat64() {
        MultiLayerNetwork wide = perStepNetwork(DataType.DOUBLE, RNNFormat.NCW);
        MultiLayerNetwork narrow = perStepNetwork(DataType.FLOAT, RNNFormat.NCW);
        narrow.setParams(wide.params().castTo(DataType.FLOAT));
        INDArray x = TestNets.features(DataType.DOUBLE, 5, LENGTHS.length, 3, T);
        INDArray y = stepLabels(LENGTHS.length, 2, 6);
        INDArray m = mask(false, LENGTHS);
        Quantities a = BackPackNetwork.extend(wide).backward(x, y, m, m, new BatchGrad(), new Variance());
        Quantities b = BackPackNetwork.extend(narrow).backward(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT),
                m.castTo(DataType.FLOAT), m.castTo(DataType.FLOAT), new BatchGrad(), new Variance());
        for (String key : new String[] {"0_W", "1_W", "2_W", "2_b"}) {
            assertClose(a.byKey(BatchGrad.class, key), b.byKey(BatchGrad.class, key), 1e-4, 1e-5, "float32 " + key);
            assertClose(a.byKey(Variance.class, key), b.byKey(Variance.class, key), 1e-3, 1e-5, "float32 var " + key);
        }
    }

    /**
     * A graph reading the last unmasked step of every sequence (the vertex on the input; recurrent layers
     * below it are tested with the recurrent kinds): per-sequence loop through DL4J's graph.
     */
    @Test
    void lastTimeStepVertexInAGraph() {
        ComputationGraph graph = new ComputationGraph(new NeuralNetConfiguration.Builder().seed(4)
                .dataType(DataType.DOUBLE).graphBuilder().addInputs("in")
                .addVertex("last", new LastTimeStepVertex("in"), "in")
                .addLayer("dense", new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(), "last")
                .addLayer("out", new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3)
                        .build(), "dense")
                .setOutputs("out").setInputTypes(InputType.recurrent(3)).build());
        graph.init();
        TestNets.seed(14);
        graph.params().assign(Nd4j.randn(DataType.DOUBLE, graph.params().shape()).muli(0.5));
        INDArray x = TestNets.features(DataType.DOUBLE, 15, LENGTHS.length, 3, T);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 16, LENGTHS.length, 3);
        for (boolean alignEnd : new boolean[] {false, true}) {
            INDArray m = mask(alignEnd, LENGTHS);
            Map<String, INDArray> loop = new LinkedHashMap<>();
            for (int i = 0; i < LENGTHS.length; i++) {
                ComputationGraph plain = graph.clone();
                plain.setLayerMaskArrays(new INDArray[] {Reference.example(m, i)}, null);
                plain.setInputs(Reference.example(x, i));
                plain.setLabels(Reference.example(y, i));
                plain.computeGradientAndScore();
                int n = i;
                plain.gradient().gradientForVariable().forEach((key, g) -> {
                    INDArray row = g.dup('c').reshape(1, g.length()).divi(LENGTHS.length);
                    loop.merge(key, row, (a, b) -> Nd4j.concat(0, a, b));
                });
            }
            Quantities q = BackPackNetwork.extend(graph.clone()).backward(new INDArray[] {x}, new INDArray[] {y},
                    new INDArray[] {m}, null, new BatchGrad(), new BatchL2Grad());
            for (Map.Entry<String, INDArray> e : loop.entrySet()) {
                INDArray g = q.byKey(BatchGrad.class, e.getKey());
                assertClose(e.getValue(), Reference.flat(g), 1e-10, 1e-13, "graph " + e.getKey() + " " + alignEnd);
                assertClose(Reference.squaredNorms(e.getValue()), q.byKey(BatchL2Grad.class, e.getKey()), 1e-10, 1e-13,
                        "graph norms " + e.getKey());
            }
        }
    }

    /**
     * Time-series vertices without parameters in a two-input graph: the sequence reversed
     * ({@code ReverseTimeSeriesVertex}, which honours the mask) beside a per-example vector repeated at every
     * step ({@code DuplicateToTimeSeriesVertex}), merged, a dense layer at every step, per-step outputs.
     */
    @Test
    void timeSeriesVerticesInAGraph() {
        ComputationGraph graph = new ComputationGraph(new NeuralNetConfiguration.Builder().seed(4)
                .dataType(DataType.DOUBLE).graphBuilder().addInputs("seq", "static")
                .addVertex("reversed", new org.deeplearning4j.nn.conf.graph.rnn.ReverseTimeSeriesVertex("seq"), "seq")
                .addVertex("repeated", new org.deeplearning4j.nn.conf.graph.rnn.DuplicateToTimeSeriesVertex("seq"),
                        "static")
                .addVertex("merged", new org.deeplearning4j.nn.conf.graph.MergeVertex(), "reversed", "repeated")
                .addLayer("dense", new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(), "merged")
                .addLayer("out", new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(2)
                        .build(), "dense")
                .setOutputs("out").setInputTypes(InputType.recurrent(3), InputType.feedForward(2)).build());
        graph.init();
        TestNets.seed(17);
        graph.params().assign(Nd4j.randn(DataType.DOUBLE, graph.params().shape()).muli(0.5));
        INDArray x = TestNets.features(DataType.DOUBLE, 18, LENGTHS.length, 3, T);
        INDArray v = TestNets.features(DataType.DOUBLE, 19, LENGTHS.length, 2);
        INDArray y = stepLabels(LENGTHS.length, 2, 20);
        INDArray m = mask(false, LENGTHS);
        Map<String, INDArray> loop = new LinkedHashMap<>();
        for (int i = 0; i < LENGTHS.length; i++) {
            ComputationGraph plain = graph.clone();
            plain.setLayerMaskArrays(new INDArray[] {Reference.example(m, i), null},
                    new INDArray[] {Reference.example(m, i)});
            plain.setInputs(Reference.example(x, i), Reference.example(v, i));
            plain.setLabels(Reference.example(y, i));
            plain.computeGradientAndScore();
            plain.gradient().gradientForVariable().forEach((key, g) -> loop.merge(key,
                    g.dup('c').reshape(1, g.length()).divi(LENGTHS.length), (a, b) -> Nd4j.concat(0, a, b)));
        }
        Quantities q = BackPackNetwork.extend(graph.clone()).backward(new INDArray[] {x, v}, new INDArray[] {y},
                new INDArray[] {m, null}, new INDArray[] {m}, new BatchGrad(), new Variance());
        for (Map.Entry<String, INDArray> e : loop.entrySet()) {
            assertClose(e.getValue(), Reference.flat(q.byKey(BatchGrad.class, e.getKey())), 1e-10, 1e-13,
                    "graph " + e.getKey());
            INDArray var = q.byKey(Variance.class, e.getKey());
            assertClose(Reference.variance(e.getValue()).reshape(var.shape()), var, 1e-8, 1e-12, "variance " + e.getKey());
        }
    }

    /** The gradient-noise listener on a sequence model trained with masked batches reports that batch's variance. */
    @Test
    void gradientVarianceListenerOnMaskedSequences() {
        MultiLayerNetwork net = perStepNetwork(DataType.DOUBLE, RNNFormat.NCW);
        MultiLayerNetwork twin = net.clone();
        INDArray x = TestNets.features(DataType.DOUBLE, 5, LENGTHS.length, 3, T);
        INDArray y = stepLabels(LENGTHS.length, 2, 6);
        INDArray m = mask(false, LENGTHS);
        Quantities expected = BackPackNetwork.extend(twin).backward(x, y, m, m, new Variance(), new BatchL2Grad());
        GradientVarianceListener listener = new GradientVarianceListener(BackPackNetwork.extend(net), 1);
        net.setListeners(listener);
        net.fit(new DataSet(x, y, m, m));
        for (GradientVarianceListener.Statistics s : listener.lastReport()) {
            double total = expected.get(Variance.class, s.layer(), s.param()).sumNumber().doubleValue()
                    * LENGTHS.length * LENGTHS.length;
            assertEquals(total, s.variance(), 1e-10 * total, s.layer() + "_" + s.param());
        }
        assertEquals(5, listener.lastReport().size(), "one row per parameter");
    }

    /** Training with masked DataSets and extensions enabled: each iteration's quantities are that batch's. */
    @Test
    void trainingWithMasksComputesEachIterationsQuantities() {
        MultiLayerNetwork net = perStepNetwork(DataType.DOUBLE, RNNFormat.NCW);
        MultiLayerNetwork twin = net.clone();
        INDArray x = TestNets.features(DataType.DOUBLE, 5, LENGTHS.length, 3, T);
        INDArray y = stepLabels(LENGTHS.length, 2, 6);
        INDArray m = mask(true, LENGTHS);
        DataSet batch = new DataSet(x, y, m, m);
        Quantities expected = BackPackNetwork.extend(twin).backward(batch, new BatchGrad());
        BackPackNetwork bp = BackPackNetwork.extend(net);
        bp.enable(new BatchGrad());
        net.fit(batch);
        Quantities seen = bp.latest().orElseThrow();
        for (String key : new String[] {"0_W", "1_W", "2_W", "2_b"}) {
            assertClose(expected.byKey(BatchGrad.class, key), seen.byKey(BatchGrad.class, key), 1e-12, 1e-14,
                    "fit " + key);
        }
    }

    @Test
    void badSequenceInputIsRefusedBeforeThePass() {
        MultiLayerNetwork net = perStepNetwork(DataType.DOUBLE, RNNFormat.NCW);
        INDArray params = net.params().dup();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray x = TestNets.features(DataType.DOUBLE, 5, LENGTHS.length, 3, T);
        INDArray y = stepLabels(LENGTHS.length, 2, 6);
        INDArray m = mask(false, LENGTHS);
        String wrongSteps = assertThrows(IllegalArgumentException.class, () -> bp.backward(x, y,
                Nd4j.ones(DataType.DOUBLE, LENGTHS.length, T + 1), m, new BatchGrad())).getMessage();
        assertTrue(wrongSteps.contains("feature mask 0") && wrongSteps.contains("T = " + T), wrongSteps);
        String wrongN = assertThrows(IllegalArgumentException.class, () -> bp.backward(x, y, m,
                Nd4j.ones(DataType.DOUBLE, 2, T), new BatchGrad())).getMessage();
        assertTrue(wrongN.contains("label mask 0") && wrongN.contains("N = " + LENGTHS.length), wrongN);
        INDArray shortLabels = y.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(0, T - 1)).dup();
        String wrongTime = assertThrows(IllegalArgumentException.class, () -> bp.backward(x, shortLabels,
                new BatchGrad())).getMessage();
        assertTrue(wrongTime.contains("label array 0") && wrongTime.contains("per-step labels"), wrongTime);
        String flatLabels = assertThrows(IllegalArgumentException.class, () -> bp.backward(x,
                Nd4j.zeros(DataType.DOUBLE, LENGTHS.length, 2), new BatchGrad())).getMessage();
        assertTrue(flatLabels.contains("[N, nOut, T]"), flatLabels);
        // KFRA's batch-averaged recursion over time steps: refused
        String curvature = assertThrows(IllegalArgumentException.class, () -> bp.backward(x, y, m, m,
                new io.github.dl4jbackpack.extensions.KFRA())).getMessage();
        assertTrue(curvature.contains("KFRA") && curvature.contains("KFLR"), curvature);
        assertEquals(params, net.params(), "the network is unchanged");

        // a network the curvature supports, given masks
        MultiLayerNetwork mlp = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(4)
                .dataType(DataType.DOUBLE).list(new DenseLayer.Builder().nIn(3).nOut(4).activation(Activation.TANH)
                        .build(), new OutputLayer.Builder(LossFunction.MSE).activation(Activation.IDENTITY).nOut(2)
                        .build()).build());
        mlp.init();
        INDArray labelMask = Nd4j.ones(DataType.DOUBLE, 4, 2);
        String masked = assertThrows(IllegalArgumentException.class, () -> BackPackNetwork.extend(mlp).backward(
                Nd4j.ones(DataType.DOUBLE, 4, 3), Nd4j.ones(DataType.DOUBLE, 4, 2), null, labelMask,
                new DiagGGNMC(), new BatchGrad())).getMessage();
        assertTrue(masked.contains("curvature extensions (DiagGGNMC(1))") && masked.contains("label mask"), masked);
    }
}
