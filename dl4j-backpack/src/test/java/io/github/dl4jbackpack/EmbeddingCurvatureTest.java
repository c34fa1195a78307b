// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.EmbeddingLayer;
import org.deeplearning4j.nn.conf.layers.EmbeddingSequenceLayer;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;

/**
 * Curvature through embeddings (float64): {@code EmbeddingSequenceLayer} before an LSTM with per-step softmax
 * outputs and masks (NCW and NWC), an embedding straight into per-step outputs (where the Hessian is
 * supported too), and the feed-forward {@code EmbeddingLayer}. The GGN diagonals against
 * {@code J_nᵀ H_n J_n / N} with the Jacobian by central differences of DL4J's output (a sequence's repeated
 * and unused rows included), the Hessian diagonals against five-point differences of DL4J's score.
 */
class EmbeddingCurvatureTest {

    private static final int VOCABULARY = 9;
    private static final int T = 5;
    private static final int N = 4;
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

    enum Case {
        SEQUENCE_LSTM_NCW, SEQUENCE_LSTM_NWC, SEQUENCE_PER_STEP, FEED_FORWARD;

        boolean perStep() {
            return this != FEED_FORWARD;
        }

        RNNFormat format() {
            return this == SEQUENCE_LSTM_NWC ? RNNFormat.NWC : RNNFormat.NCW;
        }

        boolean recurrent() {
            return this == SEQUENCE_LSTM_NCW || this == SEQUENCE_LSTM_NWC;
        }

        MultiLayerNetwork build(LossFunction loss, Activation activation) {
            NeuralNetConfiguration.ListBuilder list = new NeuralNetConfiguration.Builder().seed(3)
                    .dataType(DataType.DOUBLE).list();
            if (this == FEED_FORWARD) {
                list.layer(new EmbeddingLayer.Builder().nIn(VOCABULARY).nOut(3).activation(Activation.TANH).build())
                        .layer(new DenseLayer.Builder().nIn(3).nOut(4).activation(Activation.SIGMOID).build())
                        .layer(new OutputLayer.Builder(loss).activation(activation).nIn(4).nOut(3).build());
            } else if (recurrent()) {
                list.layer(new EmbeddingSequenceLayer.Builder().nIn(VOCABULARY).nOut(3).inputLength(T).hasBias(true)
                                .outputDataFormat(format()).activation(Activation.TANH).build())
                        .layer(new LSTM.Builder().nIn(3).nOut(4).activation(Activation.TANH).dataFormat(format())
                                .build())
                        .layer(new RnnOutputLayer.Builder(loss).activation(activation).nIn(4).nOut(3)
                                .dataFormat(format()).build());
            } else {
                list.layer(new EmbeddingSequenceLayer.Builder().nIn(VOCABULARY).nOut(3).inputLength(T)
                                .activation(Activation.SOFTSIGN).build())
                        .layer(new RnnOutputLayer.Builder(loss).activation(activation).nIn(3).nOut(3)
                                .dataFormat(RNNFormat.NCW).build());
            }
            MultiLayerNetwork net = new MultiLayerNetwork(list.build());
            net.init();
            TestNets.randomiseParameters(net, 9);
            return net;
        }

        /** @return indices with repeats within a sequence and rows nobody uses */
        INDArray features() {
            if (this == FEED_FORWARD) {
                return Nd4j.create(new double[][] {{3}, {7}, {3}, {0}});
            }
            return Nd4j.create(new double[][] {{3, 7, 3, 0, 3}, {7, 1, 1, 5, 0}, {2, 3, 8, 2, 0}, {3, 7, 7, 0, 0}});
        }

        INDArray labels() {
            java.util.Random r = new java.util.Random(4);
            long steps = perStep() ? T : 1;
            INDArray y = Nd4j.zeros(DataType.DOUBLE, N, 3, steps);
            for (int n = 0; n < N; n++) {
                for (int t = 0; t < steps; t++) {
                    y.putScalar(new long[] {n, r.nextInt(3), t}, 1.0);
                }
            }
            if (!perStep()) {
                return y.reshape('c', N, 3);
            }
            return format() == RNNFormat.NWC ? y.permute(0, 2, 1).dup() : y;
        }

        INDArray mask() {
            return perStep() ? Nd4j.create(new double[][] {{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}, {1, 1, 1, 1, 0},
                    {1, 0, 0, 0, 0}}) : null;
        }
    }

    /** @return {@code ∇²ℓ} of one sequence's flattened output: softmax blocks per (unmasked) step */
    private static INDArray lossHessian(Case c, double[] z, INDArray mask) {
        int steps = c.perStep() ? T : 1;
        INDArray h = Nd4j.zeros(DataType.DOUBLE, 3 * steps, 3 * steps);
        boolean nwc = c.format() == RNNFormat.NWC;
        for (int t = 0; t < steps; t++) {
            double weight = mask == null ? 1.0 : mask.getDouble(t);
            double[] vector = new double[3];
            for (int i = 0; i < 3; i++) {
                vector[i] = z[nwc ? t * 3 + i : i * steps + t];
            }
            double[][] block = BruteForce.Loss.MCXENT.hessian(vector);
            for (int i = 0; i < 3; i++) {
                for (int j = 0; j < 3; j++) {
                    h.putScalar(nwc ? t * 3 + i : i * steps + t, nwc ? t * 3 + j : j * steps + t, weight * block[i][j]);
                }
            }
        }
        return h;
    }

    @ParameterizedTest
    @EnumSource(Case.class)
    void ggnDiagonalsEqualTheJacobianReference(Case c) {
        MultiLayerNetwork net = c.build(LossFunction.MCXENT, Activation.SOFTMAX);
        MultiLayerNetwork ref = c.build(LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        INDArray x = c.features();
        INDArray mask = c.mask();
        int outputs = c.perStep() ? 3 * T : 3;
        BruteForce.Jacobians jac = BatchNormalizationTest.jacobians(ref,
                () -> ref.output(x, false, mask, mask).dup('c').reshape('c', N, outputs));
        Quantities q = BackPackNetwork.extend(net).backward(x, c.labels(), mask, mask, new DiagGGNExact(),
                new BatchDiagGGNExact());
        for (String key : jac.shapes.keySet()) {
            INDArray expected = Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(N, jac.shapes.get(key)));
            for (int n = 0; n < N; n++) {
                INDArray j = jac.j.get(n).get(key);
                INDArray h = lossHessian(c, jac.z[n], mask == null ? null : mask.getRow(n));
                expected.get(NDArrayIndex.point(n)).assign(j.mul(h.mmul(j)).sum(0).divi(N)
                        .reshape('c', jac.shapes.get(key)));
            }
            assertClose(expected, q.byKey(BatchDiagGGNExact.class, key), 1e-6, 1e-9, c + " per sequence " + key);
            assertClose(expected.sum(0), q.byKey(DiagGGNExact.class, key), 1e-6, 1e-9, c + " " + key);
        }
    }

    @ParameterizedTest
    @EnumSource(value = Case.class, names = {"SEQUENCE_PER_STEP", "FEED_FORWARD"})
    void hessianDiagonalsEqualFiniteDifferences(Case c) {
        MultiLayerNetwork net = c.build(LossFunction.MCXENT, Activation.SOFTMAX);
        MultiLayerNetwork plain = net.clone();
        INDArray x = c.features();
        INDArray y = c.labels();
        INDArray mask = c.mask();
        Quantities q = BackPackNetwork.extend(net).backward(x, y, mask, mask, new DiagHessian(),
                new BatchDiagHessian());
        DataSet data = new DataSet(x, y, mask, mask);
        Map<String, INDArray> expected = BatchNormalizationTest.hessianDiagonal(plain, () -> plain.score(data, false));
        for (String key : expected.keySet()) {
            assertClose(expected.get(key), q.byKey(DiagHessian.class, key), 1e-4, 1e-6, c + " Hessian " + key);
            assertClose(q.byKey(DiagHessian.class, key), q.byKey(BatchDiagHessian.class, key).sum(0), 1e-10, 1e-12,
                    c + " per-sequence Hessians sum to the batch's " + key);
        }
    }
}
