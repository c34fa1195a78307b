// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import org.deeplearning4j.nn.api.layers.RecurrentLayer;
import org.deeplearning4j.nn.conf.BackpropType;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.GravesLSTM;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;
import static io.github.dl4jbackpack.TruncatedBpttTest.CLASSES;
import static io.github.dl4jbackpack.TruncatedBpttTest.IN;
import static io.github.dl4jbackpack.TruncatedBpttTest.N;
import static io.github.dl4jbackpack.TruncatedBpttTest.SEGMENT;
import static io.github.dl4jbackpack.TruncatedBpttTest.features;
import static io.github.dl4jbackpack.TruncatedBpttTest.labels;
import static io.github.dl4jbackpack.TruncatedBpttTest.mask;
import static io.github.dl4jbackpack.TruncatedBpttTest.segment;
import static io.github.dl4jbackpack.TruncatedBpttTest.segments;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Truncated backpropagation through time in a ComputationGraph (LSTM → GravesLSTM → RnnOutputLayer, segments of
 * 3, 3 and 2 steps), float64. As in a MultiLayerNetwork, DL4J 1.0.0-M2.1's graph runs a segment's forward pass
 * from the carried state and then takes the recurrent layers' standard backward step (its
 * {@code computeGradientAndScore} never asks for their truncated one, so {@code tbpttBackLength}, 2 here, has no
 * effect on training). Between segments the tests carry the state as DL4J's {@code fit} does (the stored state
 * becomes the previous state). References as in {@code TruncatedBpttTest}: DL4J's segment gradients of the batch
 * and of each sequence alone, and DL4J's segment backward operator read column by column for the GGN; and
 * {@code fit} with extensions stays bit-identical to the plain graph with one set of quantities per segment.
 */
class GraphTruncatedBpttTest {

    private static final String[] RECURRENT = {"lstm", "graves"};
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

    private static ComputationGraph graph(LossFunction loss, Activation activation) {
        ComputationGraph g = new ComputationGraph(new NeuralNetConfiguration.Builder().seed(7)
                .dataType(DataType.DOUBLE).updater(new Sgd(0.1)).graphBuilder()
                .addInputs("in")
                .addLayer("lstm", new LSTM.Builder().nOut(4).activation(Activation.TANH).build(), "in")
                .addLayer(RECURRENT[1], new GravesLSTM.Builder().nOut(3).activation(Activation.TANH).build(), "lstm")
                .addLayer("out", new RnnOutputLayer.Builder(loss).activation(activation).nOut(CLASSES)
                        .dataFormat(RNNFormat.NCW).build(), RECURRENT[1])
                .setOutputs("out").setInputTypes(InputType.recurrent(IN))
                .backpropType(BackpropType.TruncatedBPTT).tBPTTForwardLength(SEGMENT).tBPTTBackwardLength(2).build());
        g.init();
        Nd4j.getRandom().setSeed(13);
        g.setParams(Nd4j.randn(DataType.DOUBLE, 1, g.numParams()).muli(0.6));
        return g;
    }

    /** Carries the state into the next segment as DL4J's fit does: the stored state becomes the previous one. */
    private static void carryState(ComputationGraph g) {
        for (String name : RECURRENT) {
            g.rnnSetPreviousState(name, ((RecurrentLayer) g.getLayer(name)).rnnGetTBPTTState());
        }
    }

    /** @return DL4J's segment gradient (summed over the batch), key → copy; then the state is carried */
    private static Map<String, INDArray> dl4jSegmentGradient(ComputationGraph g, INDArray x, INDArray y,
                                                             INDArray labelMask) {
        g.setInputs(x);
        g.setLabels(y);
        g.setLayerMaskArrays(null, labelMask == null ? null : new INDArray[] {labelMask});
        g.computeGradientAndScore();
        g.clearLayerMaskArrays();
        Map<String, INDArray> out = new LinkedHashMap<>();
        g.gradient().gradientForVariable().forEach((key, value) -> out.put(key, value.dup()));
        return out;
    }

    @Test
    void segmentQuantitiesDecomposeDl4jsSegmentGradientPerSequence() {
        ComputationGraph plain = graph(LossFunction.MCXENT, Activation.SOFTMAX);
        ComputationGraph net = plain.clone();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        List<ComputationGraph> singles = new ArrayList<>();
        for (int n = 0; n < N; n++) {
            singles.add(plain.clone());
        }
        INDArray x = features();
        INDArray y = labels();
        INDArray mask = mask();
        for (int k = 0; k < segments(); k++) {
            INDArray xk = segment(x, k, 0, N);
            INDArray yk = segment(y, k, 0, N);
            INDArray mk = segment(mask, k, 0, N);
            Map<String, INDArray> batch = dl4jSegmentGradient(plain, xk, yk, mk);
            carryState(plain);
            Quantities q = bp.backward(new INDArray[] {xk}, new INDArray[] {yk}, null, new INDArray[] {mk},
                    new BatchGrad(), new BatchL2Grad());
            carryState(net);
            for (int n = 0; n < N; n++) {
                Map<String, INDArray> single = dl4jSegmentGradient(singles.get(n), segment(x, k, n, n + 1),
                        segment(y, k, n, n + 1), segment(mask, k, n, n + 1));
                carryState(singles.get(n));
                for (String key : batch.keySet()) {
                    assertClose(single.get(key).div(N), q.byKey(BatchGrad.class, key).get(NDArrayIndex.point(n)),
                            1e-10, 1e-13, "segment " + k + " sequence " + n + " " + key);
                }
            }
            for (String key : batch.keySet()) {
                INDArray individual = q.byKey(BatchGrad.class, key);
                assertClose(batch.get(key).div(N), individual.sum(0), 1e-10, 1e-13, "segment " + k + " " + key);
                INDArray flat = individual.reshape(N, -1);
                assertClose(flat.mul(flat).sum(1), q.byKey(BatchL2Grad.class, key), 1e-10, 1e-15,
                        "segment " + k + " norms " + key);
            }
        }
    }

    @Test
    void segmentGgnIsDl4jsSegmentOperatorWithTheLossHessian() {
        ComputationGraph net = graph(LossFunction.MCXENT, Activation.SOFTMAX);
        ComputationGraph ref = graph(LossFunction.MSE, Activation.IDENTITY);
        ref.setParams(net.params());
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray x = features();
        INDArray y = labels();
        INDArray mask = mask();
        for (int k = 0; k < segments(); k++) {
            INDArray mk = segment(mask, k, 0, N);
            Quantities q = bp.backward(new INDArray[] {segment(x, k, 0, N)}, new INDArray[] {segment(y, k, 0, N)}, null,
                    new INDArray[] {mk}, new BatchDiagGGNExact(), new DiagGGNExact());
            carryState(net);
            for (int n = 0; n < N; n++) {
                Map<String, INDArray> expected = segmentGgn(ref, x, k, n, mk.getRow(n));
                for (String key : expected.keySet()) {
                    String layer = key.substring(0, key.lastIndexOf('_'));
                    String param = key.substring(key.lastIndexOf('_') + 1);
                    assertClose(expected.get(key), q.get(BatchDiagGGNExact.class, layer, param)
                            .get(NDArrayIndex.point(n)), 1e-8, 1e-12, "segment " + k + " sequence " + n + " " + key);
                }
            }
        }
    }

    /** @return sequence n's GGN diagonal in segment k, {@code J̃ᵀ H J̃ / N}, key → parameter-shaped */
    private static Map<String, INDArray> segmentGgn(ComputationGraph ref, INDArray x, int k, int n, INDArray mask) {
        ref.rnnClearPreviousState();
        for (int j = 0; j < k; j++) {
            ref.rnnActivateUsingStoredState(new INDArray[] {segment(x, j, n, n + 1)}, true, true);
            carryState(ref);
        }
        List<Map<String, INDArray>> previous = new ArrayList<>();
        List<Map<String, INDArray>> stored = new ArrayList<>();
        for (String name : RECURRENT) {
            previous.add(copy(ref.rnnGetPreviousState(name)));
            stored.add(copy(((RecurrentLayer) ref.getLayer(name)).rnnGetTBPTTState()));
        }
        INDArray xk = segment(x, k, n, n + 1);
        INDArray z = ref.rnnActivateUsingStoredState(new INDArray[] {xk}, true, false).get("out");   // [1, C, Tk]
        Map<String, INDArray> sums = new LinkedHashMap<>();
        for (int t = 0; t < z.size(2); t++) {
            if (mask.getDouble(t) == 0) {
                continue;
            }
            double[] logits = new double[CLASSES];
            for (int c = 0; c < CLASSES; c++) {
                logits[c] = z.getDouble(0, c, t);
            }
            double[][] h = BruteForce.Loss.MCXENT.hessian(logits);
            List<Map<String, INDArray>> rows = new ArrayList<>();
            for (int c = 0; c < CLASSES; c++) {
                for (int i = 0; i < RECURRENT.length; i++) {
                    ref.rnnSetPreviousState(RECURRENT[i], copy(previous.get(i)));
                    ((RecurrentLayer) ref.getLayer(RECURRENT[i])).rnnSetTBPTTState(copy(stored.get(i)));
                }
                // MSE's output gradient is 2 (z − y) / C: these labels make it the unit vector at (c, t)
                INDArray labels = z.dup();
                labels.putScalar(new long[] {0, c, t}, z.getDouble(0, c, t) - CLASSES / 2.0);
                rows.add(dl4jSegmentGradient(ref, xk, labels, null));
            }
            for (String key : rows.get(0).keySet()) {
                INDArray sum = sums.computeIfAbsent(key, s -> Nd4j.zeros(DataType.DOUBLE, rows.get(0).get(s).shape()));
                for (int a = 0; a < CLASSES; a++) {
                    for (int b = 0; b < CLASSES; b++) {
                        sum.addi(rows.get(a).get(key).mul(rows.get(b).get(key)).muli(h[a][b] / N));
                    }
                }
            }
        }
        return sums;
    }

    private static Map<String, INDArray> copy(Map<String, INDArray> state) {
        Map<String, INDArray> out = new HashMap<>();
        state.forEach((key, value) -> out.put(key, value.dup()));
        return out;
    }

    @Test
    void fitWithExtensionsTakesOneStepPerSegmentAndStaysBitIdentical() {
        ComputationGraph plain = graph(LossFunction.MCXENT, Activation.SOFTMAX);
        ComputationGraph net = plain.clone();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        List<Quantities> published = new ArrayList<>();
        bp.addQuantitiesListener(published::add);
        bp.enable(new BatchL2Grad());
        DataSet data = new DataSet(features(), labels(), mask(), mask());
        for (int epoch = 0; epoch < 2; epoch++) {
            plain.fit(data);
            net.fit(data);
            assertEquals(plain.params(), net.params(), "parameters after epoch " + epoch);
            assertEquals(plain.score(), net.score(), 0.0, "score after epoch " + epoch);
        }
        assertEquals(2 * segments(), published.size(), "one set of quantities per segment");
    }
}
