// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.api.layers.RecurrentLayer;
import org.deeplearning4j.nn.conf.BackpropType;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Truncated backpropagation through time in a MultiLayerNetwork (LSTM → SimpleRnn → RnnOutputLayer, segments of 3,
 * 3 and 2 steps over 8, sequences of 8, 4 and 7 real steps), float64. DL4J 1.0.0-M2.1 runs each segment's forward pass
 * from the state carried over from the previous segment and takes the recurrent layers' standard backward step,
 * which recomputes their gates from a zero state; a segment's quantities are those of DL4J's segment gradient.
 * References: DL4J's own segment gradient of the batch and of each sequence run alone through the same segments
 * (per-sequence gradients), and, for the GGN diagonal, DL4J's segment backward operator read column by column
 * (the gradient of a mean-squared-error network whose output gradient is one unit vector at a time) with the
 * softmax cross-entropy Hessian of every unmasked step. Also: {@code fit} takes one step per segment, publishes
 * each segment's quantities and stays bit-identical to the plain network.
 */
class TruncatedBpttTest {

    static final int N = 3;
    static final int IN = 3;
    static final int CLASSES = 3;
    static final int T = 8;
    static final int SEGMENT = 3;
    private static final int[] LENGTHS = {8, 4, 7};
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

    private static MultiLayerNetwork network(LossFunction loss, Activation activation) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7)
                .dataType(DataType.DOUBLE).updater(new Sgd(0.1))
                .list(new LSTM.Builder().nOut(4).activation(Activation.TANH).build(),
                        new SimpleRnn.Builder().nOut(3).activation(Activation.TANH).build(),
                        new RnnOutputLayer.Builder(loss).activation(activation).nOut(CLASSES).build())
                .backpropType(BackpropType.TruncatedBPTT).tBPTTLength(SEGMENT)
                .setInputType(InputType.recurrent(IN)).build());
        net.init();
        TestNets.randomiseParameters(net, 11);
        return net;
    }

    static INDArray features() {
        return TestNets.features(DataType.DOUBLE, 3, N, IN, T);
    }

    static INDArray labels() {
        java.util.Random r = new java.util.Random(5);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, N, CLASSES, T);
        for (int n = 0; n < N; n++) {
            for (int t = 0; t < T; t++) {
                y.putScalar(new long[] {n, r.nextInt(CLASSES), t}, 1.0);
            }
        }
        return y;
    }

    static INDArray mask() {
        INDArray m = Nd4j.zeros(DataType.DOUBLE, N, T);
        for (int n = 0; n < N; n++) {
            m.get(NDArrayIndex.point(n), NDArrayIndex.interval(0, LENGTHS[n])).assign(1.0);
        }
        return m;
    }

    /** @return the steps of segment k of a series {@code [N, ·, T]} or a mask {@code [N, T]}, rows from..to */
    static INDArray segment(INDArray a, int k, int from, int to) {
        INDArrayIndex steps = NDArrayIndex.interval(k * SEGMENT, Math.min(T, (k + 1) * SEGMENT));
        INDArrayIndex rows = NDArrayIndex.interval(from, to);
        return (a.rank() == 2 ? a.get(rows, steps) : a.get(rows, NDArrayIndex.all(), steps)).dup();
    }

    static int segments() {
        return (T + SEGMENT - 1) / SEGMENT;
    }

    /**
     * @return DL4J's gradient of one segment step (from the network's carried state), summed over the batch as
     *     DL4J's computeGradientAndScore leaves it, key → copy
     */
    private static Map<String, INDArray> dl4jSegmentGradient(MultiLayerNetwork net, INDArray x, INDArray y,
                                                             INDArray labelMask) {
        net.setInput(x);
        net.setLabels(y);
        net.setLayerMaskArrays(null, labelMask);
        net.computeGradientAndScore();
        net.clearLayerMaskArrays();
        Map<String, INDArray> out = new LinkedHashMap<>();
        net.gradient().gradientForVariable().forEach((key, g) -> out.put(key, g.dup()));
        return out;
    }

    @Test
    void segmentQuantitiesDecomposeDl4jsSegmentGradientPerSequence() {
        MultiLayerNetwork plain = network(LossFunction.MCXENT, Activation.SOFTMAX);
        MultiLayerNetwork net = plain.clone();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        List<MultiLayerNetwork> singles = new ArrayList<>();
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
            Quantities q = bp.backward(xk, yk, null, mk, new BatchGrad(), new BatchL2Grad(), new Variance());
            for (int n = 0; n < N; n++) {
                Map<String, INDArray> single = dl4jSegmentGradient(singles.get(n), segment(x, k, n, n + 1),
                        segment(y, k, n, n + 1), segment(mask, k, n, n + 1));
                for (String key : batch.keySet()) {
                    // the batch's mean loss divides by N, the single sequence's by 1
                    assertClose(single.get(key).div(N), q.byKey(BatchGrad.class, key).get(NDArrayIndex.point(n)),
                            1e-10, 1e-13, "segment " + k + " sequence " + n + " " + key);
                }
            }
            for (String key : batch.keySet()) {
                INDArray individual = q.byKey(BatchGrad.class, key);
                // DL4J's gradient sums over the batch (its updater divides by N), the quantities are of the mean loss
                assertClose(batch.get(key).div(N), individual.sum(0), 1e-10, 1e-13, "segment " + k + " " + key);
                INDArray flat = individual.reshape(N, -1);
                assertClose(flat.mul(flat).sum(1), q.byKey(BatchL2Grad.class, key), 1e-10, 1e-15,
                        "segment " + k + " norms " + key);
            }
            for (int i = 0; i < 2; i++) {
                // the network carries the same state as the plain one into the next segment
                assertEquals(((RecurrentLayer) plain.getLayer(i)).rnnGetTBPTTState(),
                        ((RecurrentLayer) net.getLayer(i)).rnnGetTBPTTState(), "state after segment " + k);
            }
        }
    }

    /**
     * The GGN diagonal of a segment: {@code Σ_t J̃_tᵀ H_t J̃_t / N} per sequence, with {@code J̃} DL4J's segment
     * backward operator from the carried state, each row the gradient of a single-sequence mean-squared-error
     * network (same parameters, identity output) whose labels make the output gradient a unit vector.
     */
    @Test
    void segmentGgnIsDl4jsSegmentOperatorWithTheLossHessian() {
        MultiLayerNetwork net = network(LossFunction.MCXENT, Activation.SOFTMAX);
        MultiLayerNetwork ref = network(LossFunction.MSE, Activation.IDENTITY);
        ref.setParams(net.params());
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray x = features();
        INDArray y = labels();
        INDArray mask = mask();
        for (int k = 0; k < segments(); k++) {
            INDArray mk = segment(mask, k, 0, N);
            Quantities q = bp.backward(segment(x, k, 0, N), segment(y, k, 0, N), null, mk, new BatchDiagGGNExact(),
                    new DiagGGNExact());
            for (int n = 0; n < N; n++) {
                Map<String, INDArray> expected = segmentGgn(ref, x, k, n, mk.getRow(n));
                for (String key : expected.keySet()) {
                    assertClose(expected.get(key), q.byKey(BatchDiagGGNExact.class, key).get(NDArrayIndex.point(n)),
                            1e-8, 1e-12, "segment " + k + " sequence " + n + " " + key);
                }
            }
            for (String key : net.paramTable().keySet()) {
                assertClose(q.byKey(BatchDiagGGNExact.class, key).sum(0), q.byKey(DiagGGNExact.class, key), 1e-12,
                        1e-15, "segment " + k + " batch " + key);
            }
        }
    }

    /** @return sequence n's GGN diagonal in segment k, {@code J̃ᵀ H J̃ / N}, key → parameter-shaped */
    private static Map<String, INDArray> segmentGgn(MultiLayerNetwork ref, INDArray x, int k, int n, INDArray mask) {
        ref.rnnClearPreviousState();
        for (int j = 0; j < k; j++) {
            ref.rnnActivateUsingStoredState(segment(x, j, n, n + 1), true, true);
        }
        List<Map<String, INDArray>> carried = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            Map<String, INDArray> state = new HashMap<>();
            ((RecurrentLayer) ref.getLayer(i)).rnnGetTBPTTState().forEach((s, v) -> state.put(s, v.dup()));
            carried.add(state);
        }
        INDArray xk = segment(x, k, n, n + 1);
        List<INDArray> activations = ref.rnnActivateUsingStoredState(xk, true, false);
        INDArray z = activations.get(activations.size() - 1);             // [1, C, Tk]
        long steps = z.size(2);
        Map<String, INDArray> sums = new LinkedHashMap<>();
        for (int t = 0; t < steps; t++) {
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
                for (int i = 0; i < 2; i++) {
                    Map<String, INDArray> state = new HashMap<>();
                    carried.get(i).forEach((s, v) -> state.put(s, v.dup()));
                    ((RecurrentLayer) ref.getLayer(i)).rnnSetTBPTTState(state);
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

    @Test
    void fitTakesOneStepPerSegmentWithItsQuantitiesAndStaysBitIdentical() {
        MultiLayerNetwork plain = network(LossFunction.MCXENT, Activation.SOFTMAX);
        MultiLayerNetwork net = plain.clone();
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
        for (Quantities q : published) {
            assertEquals(N, q.batchSize());
            assertEquals(N, q.byKey(BatchL2Grad.class, "0_W").length());
        }
    }
}
