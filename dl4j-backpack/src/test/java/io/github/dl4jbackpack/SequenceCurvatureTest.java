// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.KFAC;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.graph.MergeVertex;
import org.deeplearning4j.nn.conf.graph.rnn.DuplicateToTimeSeriesVertex;
import org.deeplearning4j.nn.conf.graph.rnn.LastTimeStepVertex;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.layers.Convolution1DLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.GravesLSTM;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.Subsampling1DLayer;
import org.deeplearning4j.nn.conf.layers.RnnLossLayer;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep;
import org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.LinkedHashMap;
import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The generalised Gauss-Newton diagonals on sequence networks (recurrent layers, per-step losses with label
 * masks, pooling over masked time), float64, against a reference built from DL4J's forward pass alone:
 * per sequence, the Jacobian of the network output w.r.t. every parameter by central differences, and the
 * loss Hessian of every unmasked step written out ({@code G_n = J_nᵀ H_n J_n / N}, H block-diagonal over the
 * steps with the masks' weights). Also: a masked tail gives the quantities of the shortened sequence, Monte
 * Carlo columns converge to the exact diagonal, float32 agrees with float64, and what is not implemented
 * on sequences is refused before the network is touched.
 */
class SequenceCurvatureTest {

    private static final int T = 5;
    private static final int N = 3;
    private static final int[] LENGTHS = {5, 2, 4};
    /** The sequence whose Hessian is checked against its own differences: the shortest of {@link #LENGTHS}. */
    static final int[] CHECKED_SEQUENCES = {1};
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

    /** Networks, their loss and whether the loss is per step, and the masks they are tested with. */
    enum Case {
        LSTM_SOFTMAX_PER_STEP(BruteForce.Loss.MCXENT, 3, true, RNNFormat.NCW, false, false),
        GRAVES_MSE_ALIGN_END(BruteForce.Loss.MSE, 2, true, RNNFormat.NCW, true, false),
        LSTM_SIGMOID_NWC(BruteForce.Loss.XENT, 2, true, RNNFormat.NWC, false, false),
        TWO_LSTMS_RNN_LOSS_LAYER(BruteForce.Loss.XENT, 2, true, RNNFormat.NCW, false, false),
        LSTM_AVERAGE_POOLING(BruteForce.Loss.MCXENT, 3, false, RNNFormat.NCW, false, false),
        LSTM_MAX_POOLING_DENSE(BruteForce.Loss.MCXENT, 3, false, RNNFormat.NCW, true, false),
        SIMPLE_RNN_PER_STEP(BruteForce.Loss.MCXENT, 3, true, RNNFormat.NCW, true, false),
        LAST_STEP_LSTM_DENSE(BruteForce.Loss.MCXENT, 3, false, RNNFormat.NCW, false, true),
        LAST_STEP_SIMPLE_RNN_ALIGN_END(BruteForce.Loss.MSE, 2, false, RNNFormat.NCW, true, true),
        DENSE_OVER_TIME(BruteForce.Loss.MCXENT, 3, true, RNNFormat.NCW, false, false),
        LSTM_DENSE_OVER_TIME_ALIGN_END(BruteForce.Loss.MSE, 2, true, RNNFormat.NCW, true, false),
        CONVOLUTIONS_1D(BruteForce.Loss.MCXENT, 3, true, RNNFormat.NCW, false, false),
        CONVOLUTION_1D_LSTM_POOLING(BruteForce.Loss.XENT, 2, false, RNNFormat.NCW, true, false),
        CONVOLUTION_1D_MAX_POOLING_1D(BruteForce.Loss.MCXENT, 3, true, RNNFormat.NCW, true, false),
        SIMPLE_RNNS_OVER_DENSE(BruteForce.Loss.MSE, 2, true, RNNFormat.NCW, false, false),
        SIMPLE_RNNS_NWC_ALIGN_END(BruteForce.Loss.XENT, 2, true, RNNFormat.NWC, true, false),
        CONVOLUTION_1D_SIMPLE_RNN_POOLING(BruteForce.Loss.MCXENT, 3, false, RNNFormat.NCW, false, false),
        GRAVES_OVER_DENSE(BruteForce.Loss.MCXENT, 3, true, RNNFormat.NCW, false, false),
        CONVOLUTION_1D_PNORM_POOLING_1D(BruteForce.Loss.MCXENT, 3, true, RNNFormat.NCW, false, false),
        SIMPLE_RNN_PNORM_POOLING_ALIGN_END(BruteForce.Loss.MCXENT, 3, false, RNNFormat.NCW, true, false);

        final BruteForce.Loss loss;
        final int classes;
        final boolean perStep;
        final RNNFormat format;
        final boolean alignEnd;
        final boolean lastStep;

        Case(BruteForce.Loss loss, int classes, boolean perStep, RNNFormat format, boolean alignEnd, boolean lastStep) {
            this.loss = loss;
            this.classes = classes;
            this.perStep = perStep;
            this.format = format;
            this.alignEnd = alignEnd;
            this.lastStep = lastStep;
        }

        Layer[] layers(LossFunction function, Activation activation) {
            switch (this) {
                case LSTM_SOFTMAX_PER_STEP:
                case LSTM_SIGMOID_NWC:
                    return new Layer[] {new LSTM.Builder().nOut(4).activation(Activation.TANH).dataFormat(format).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).dataFormat(format)
                                    .build()};
                case GRAVES_MSE_ALIGN_END:
                    return new Layer[] {new GravesLSTM.Builder().nOut(4).activation(Activation.TANH).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case TWO_LSTMS_RNN_LOSS_LAYER:
                    return new Layer[] {new LSTM.Builder().nOut(3).activation(Activation.TANH).build(),
                            new LSTM.Builder().nOut(classes).activation(Activation.IDENTITY)
                                    .gateActivationFunction(Activation.HARDSIGMOID).build(),
                            new RnnLossLayer.Builder(function).activation(activation).build()};
                case LSTM_AVERAGE_POOLING:
                    return new Layer[] {new LSTM.Builder().nOut(4).activation(Activation.SOFTSIGN).build(),
                            new GlobalPoolingLayer.Builder(PoolingType.AVG).build(),
                            new OutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case LSTM_MAX_POOLING_DENSE:
                    return new Layer[] {new LSTM.Builder().nOut(4).activation(Activation.TANH).build(),
                            new GlobalPoolingLayer.Builder(PoolingType.MAX).build(),
                            new DenseLayer.Builder().nOut(3).activation(Activation.TANH).build(),
                            new OutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case SIMPLE_RNN_PER_STEP:
                    return new Layer[] {new SimpleRnn.Builder().nOut(4).activation(Activation.TANH).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case LAST_STEP_LSTM_DENSE:
                    return new Layer[] {new LastTimeStep(new LSTM.Builder().nOut(4).activation(Activation.TANH).build()),
                            new DenseLayer.Builder().nOut(3).activation(Activation.SIGMOID).build(),
                            new OutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case LAST_STEP_SIMPLE_RNN_ALIGN_END:
                    return new Layer[] {new LastTimeStep(new SimpleRnn.Builder().nOut(4).activation(Activation.TANH)
                            .build()),
                            new OutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case DENSE_OVER_TIME:
                    // dense layers at every step (DL4J's RnnToFeedForward/FeedForwardToRnn preprocessors)
                    return new Layer[] {new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(),
                            new DenseLayer.Builder().nOut(3).activation(Activation.SIGMOID).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case LSTM_DENSE_OVER_TIME_ALIGN_END:
                    return new Layer[] {new LSTM.Builder().nOut(4).activation(Activation.TANH).build(),
                            new DenseLayer.Builder().nOut(3).activation(Activation.SOFTPLUS).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case CONVOLUTIONS_1D:
                    return new Layer[] {new Convolution1DLayer.Builder(3).nOut(4).convolutionMode(ConvolutionMode.Same)
                            .activation(Activation.TANH).build(),
                            new Convolution1DLayer.Builder(2).nOut(3).dilation(2)
                                    .convolutionMode(ConvolutionMode.Causal).activation(Activation.SOFTPLUS).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case CONVOLUTION_1D_LSTM_POOLING:
                    return new Layer[] {new Convolution1DLayer.Builder(2).nOut(3).convolutionMode(ConvolutionMode.Causal)
                            .activation(Activation.RELU).build(),
                            new LSTM.Builder().nOut(4).activation(Activation.TANH).build(),
                            new GlobalPoolingLayer.Builder(PoolingType.AVG).build(),
                            new OutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case CONVOLUTION_1D_MAX_POOLING_1D:
                    return new Layer[] {new Convolution1DLayer.Builder(2).nOut(4).convolutionMode(ConvolutionMode.Same)
                            .activation(Activation.TANH).build(),
                            new Subsampling1DLayer.Builder(org.deeplearning4j.nn.conf.layers.SubsamplingLayer.PoolingType.MAX, 2, 1).convolutionMode(ConvolutionMode.Same)
                                    .build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case SIMPLE_RNNS_OVER_DENSE:
                    return new Layer[] {new DenseLayer.Builder().nOut(3).activation(Activation.TANH).build(),
                            new SimpleRnn.Builder().nOut(4).activation(Activation.TANH).build(),
                            new SimpleRnn.Builder().nOut(3).activation(Activation.SOFTSIGN).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case SIMPLE_RNNS_NWC_ALIGN_END:
                    return new Layer[] {new SimpleRnn.Builder().nOut(3).activation(Activation.SIGMOID)
                            .dataFormat(format).build(),
                            new SimpleRnn.Builder().nOut(4).activation(Activation.RELU).dataFormat(format).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).dataFormat(format)
                                    .build()};
                case CONVOLUTION_1D_SIMPLE_RNN_POOLING:
                    return new Layer[] {new Convolution1DLayer.Builder(2).nOut(3).convolutionMode(ConvolutionMode.Causal)
                            .activation(Activation.SOFTPLUS).build(),
                            new SimpleRnn.Builder().nOut(4).activation(Activation.TANH).build(),
                            new GlobalPoolingLayer.Builder(PoolingType.AVG).build(),
                            new OutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case GRAVES_OVER_DENSE:
                    return new Layer[] {new DenseLayer.Builder().nOut(3).activation(Activation.TANH).build(),
                            new GravesLSTM.Builder().nOut(4).activation(Activation.TANH).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case CONVOLUTION_1D_PNORM_POOLING_1D:
                    return new Layer[] {new Convolution1DLayer.Builder(2).nOut(3).convolutionMode(ConvolutionMode.Same)
                            .activation(Activation.TANH).build(),
                            new Subsampling1DLayer.Builder(org.deeplearning4j.nn.conf.layers.SubsamplingLayer.PoolingType
                                    .PNORM, 2, 1).pnorm(3).convolutionMode(ConvolutionMode.Same).build(),
                            new RnnOutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                case SIMPLE_RNN_PNORM_POOLING_ALIGN_END:
                    return new Layer[] {new SimpleRnn.Builder().nOut(4).activation(Activation.TANH).build(),
                            new GlobalPoolingLayer.Builder(PoolingType.PNORM).pnorm(2).build(),
                            new OutputLayer.Builder(function).activation(activation).nOut(classes).build()};
                default:
                    throw new IllegalStateException();
            }
        }

        MultiLayerNetwork build(DataType type, LossFunction function, Activation activation) {
            MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7).dataType(type)
                    .list(layers(function, activation)).setInputType(InputType.recurrent(3, T, format)).build());
            net.init();
            TestNets.randomiseParameters(net, 11);
            return net;
        }

        MultiLayerNetwork build(DataType type) {
            return build(type, loss.function, loss.activation);
        }

        /** @return the same network with the output z itself (identity, L2), for the Jacobians */
        MultiLayerNetwork reference(MultiLayerNetwork net) {
            MultiLayerNetwork ref = build(DataType.DOUBLE, LossFunction.L2, Activation.IDENTITY);
            ref.setParams(net.params().castTo(DataType.DOUBLE));
            return ref;
        }

        INDArray features() {
            INDArray x = TestNets.features(DataType.DOUBLE, 3, N, 3, T);
            return format == RNNFormat.NWC ? x.permute(0, 2, 1).dup() : x;
        }

        INDArray mask() {
            INDArray m = Nd4j.zeros(DataType.DOUBLE, N, T);
            for (int n = 0; n < N; n++) {
                m.get(NDArrayIndex.point(n), alignEnd ? NDArrayIndex.interval(T - LENGTHS[n], T)
                        : NDArrayIndex.interval(0, LENGTHS[n])).assign(1.0);
            }
            return m;
        }

        /** @return labels per step ({@code [N, C, T]}, NWC {@code [N, T, C]}) or per sequence ({@code [N, C]}) */
        INDArray labels() {
            java.util.Random r = new java.util.Random(5);
            long steps = perStep ? T : 1;
            INDArray y = Nd4j.zeros(DataType.DOUBLE, N, classes, steps);
            for (int n = 0; n < N; n++) {
                for (int t = 0; t < steps; t++) {
                    if (loss == BruteForce.Loss.MCXENT) {
                        y.putScalar(new long[] {n, r.nextInt(classes), t}, 1.0);
                    } else {
                        for (int c = 0; c < classes; c++) {
                            y.putScalar(new long[] {n, c, t}, loss == BruteForce.Loss.XENT ? (r.nextBoolean() ? 1 : 0)
                                    : r.nextGaussian());
                        }
                    }
                }
            }
            if (!perStep) {
                return y.reshape('c', N, classes);
            }
            return format == RNNFormat.NWC ? y.permute(0, 2, 1).dup() : y;
        }
    }

    /**
     * @return {@code J_nᵀ H_n J_n / N} diagonals per sequence, key → {@code [N, *shape]}, from central
     *     differences of the reference's output and the written-out loss Hessians of the unmasked steps
     */
    static Map<String, INDArray> referenceGgn(Case c, MultiLayerNetwork ref, INDArray x, INDArray mask) {
        int outputs = c.perStep ? c.classes * T : c.classes;
        BruteForce.Jacobians jac = BatchNormalizationTest.jacobians(ref,
                () -> ref.output(x, false, mask, c.perStep ? mask : null).dup('c').reshape('c', N, outputs));
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (String key : jac.shapes.keySet()) {
            INDArray perExample = Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(N, jac.shapes.get(key)));
            for (int n = 0; n < N; n++) {
                INDArray j = jac.j.get(n).get(key);
                INDArray h = lossHessian(c, jac.z[n], mask == null ? null : mask.getRow(n));
                perExample.get(NDArrayIndex.point(n)).assign(j.mul(h.mmul(j)).sum(0).divi(N)
                        .reshape('c', jac.shapes.get(key)));
            }
            out.put(key, perExample);
        }
        return out;
    }

    /** @return the loss Hessian of one sequence over its flattened output, blocks {@code m_t H(z_t)} per step */
    private static INDArray lossHessian(Case c, double[] z, INDArray mask) {
        int k = c.classes;
        if (!c.perStep) {
            return Nd4j.create(c.loss.hessian(z));
        }
        INDArray h = Nd4j.zeros(DataType.DOUBLE, k * T, k * T);
        boolean nwc = c.format == RNNFormat.NWC;
        for (int t = 0; t < T; t++) {
            double weight = mask == null ? 1.0 : mask.getDouble(t);
            double[] vector = new double[k];
            for (int i = 0; i < k; i++) {
                vector[i] = z[nwc ? t * k + i : i * T + t];
            }
            double[][] block = c.loss.hessian(vector);
            for (int i = 0; i < k; i++) {
                for (int j = 0; j < k; j++) {
                    h.putScalar(nwc ? t * k + i : i * T + t, nwc ? t * k + j : j * T + t, weight * block[i][j]);
                }
            }
        }
        return h;
    }

    @ParameterizedTest
    @EnumSource(Case.class)
    void ggnDiagonalsEqualTheJacobianReference(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        MultiLayerNetwork ref = c.reference(net);
        INDArray x = c.features();
        INDArray y = c.labels();
        for (INDArray mask : new INDArray[] {null, c.mask()}) {
            Map<String, INDArray> expected = referenceGgn(c, ref, x, mask);
            Quantities q = BackPackNetwork.extend(net).backward(x, y, mask, c.perStep ? mask : null,
                    new DiagGGNExact(), new BatchDiagGGNExact());
            for (String key : expected.keySet()) {
                String what = c + (mask == null ? "" : " masked") + " " + key;
                assertClose(expected.get(key), q.byKey(BatchDiagGGNExact.class, key), 1e-6, 1e-9, what + " per sequence");
                assertClose(expected.get(key).sum(0), q.byKey(DiagGGNExact.class, key), 1e-6, 1e-9, what);
            }
        }
    }

    /**
     * The 1D resizing layers between a 1D convolution and per-step outputs (T = 5 → 4 → 8 → 5 → 6 → 3 steps), with
     * a label mask: the GGN diagonals against the Jacobian reference.
     */
    @Test
    void oneDimensionalResizingLayersEqualTheJacobianReference() {
        java.util.function.BiFunction<LossFunction, Activation, MultiLayerNetwork> build = (loss, activation) -> {
            MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7)
                    .dataType(DataType.DOUBLE)
                    .list(new Convolution1DLayer.Builder(2).nOut(3).activation(Activation.TANH).build(),
                            new org.deeplearning4j.nn.conf.layers.Upsampling1D.Builder(2).build(),
                            new org.deeplearning4j.nn.conf.layers.convolutional.Cropping1D.Builder(2, 1).build(),
                            new org.deeplearning4j.nn.conf.layers.ZeroPadding1DLayer.Builder(0, 1).build(),
                            new Subsampling1DLayer.Builder(org.deeplearning4j.nn.conf.layers.SubsamplingLayer.PoolingType.AVG, 2, 2).build(),
                            new RnnOutputLayer.Builder(loss).activation(activation).nOut(3).build())
                    .setInputType(InputType.recurrent(3, T)).build());
            net.init();
            TestNets.randomiseParameters(net, 11);
            return net;
        };
        MultiLayerNetwork net = build.apply(LossFunction.MCXENT, Activation.SOFTMAX);
        MultiLayerNetwork ref = build.apply(LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        INDArray x = TestNets.features(DataType.DOUBLE, 3, N, 3, T);
        long steps = ref.output(x).size(2);
        INDArray mask = Nd4j.ones(DataType.DOUBLE, N, steps);
        mask.putScalar(1, steps - 1, 0.0);
        mask.putScalar(2, 0, 0.0);
        java.util.Random r = new java.util.Random(5);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, N, 3, steps);
        for (int n = 0; n < N; n++) {
            for (int t = 0; t < steps; t++) {
                y.putScalar(new long[] {n, r.nextInt(3), t}, 1.0);
            }
        }
        BruteForce.Jacobians jac = BatchNormalizationTest.jacobians(ref,
                () -> ref.output(x, false, null, mask).dup('c').reshape('c', N, 3 * steps));
        Quantities q = BackPackNetwork.extend(net).backward(x, y, null, mask, new BatchDiagGGNExact());
        for (String key : jac.shapes.keySet()) {
            INDArray expected = Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(N, jac.shapes.get(key)));
            for (int n = 0; n < N; n++) {
                INDArray h = Nd4j.zeros(DataType.DOUBLE, 3 * steps, 3 * steps);
                for (int t = 0; t < steps; t++) {
                    double[] vector = new double[3];
                    for (int i = 0; i < 3; i++) {
                        vector[i] = jac.z[n][(int) (i * steps + t)];
                    }
                    double[][] block = BruteForce.Loss.MCXENT.hessian(vector);
                    for (int i = 0; i < 3; i++) {
                        for (int j = 0; j < 3; j++) {
                            h.putScalar(i * steps + t, j * steps + t, mask.getDouble(n, t) * block[i][j]);
                        }
                    }
                }
                INDArray j = jac.j.get(n).get(key);
                expected.get(NDArrayIndex.point(n)).assign(j.mul(h.mmul(j)).sum(0).divi(N)
                        .reshape('c', jac.shapes.get(key)));
            }
            assertClose(expected, q.byKey(BatchDiagGGNExact.class, key), 1e-6, 1e-9, "1D resizing " + key);
        }
    }

    /**
     * A feature mask without a label mask: DL4J zeroes the dense layers' outputs at the masked steps, whose
     * labels still count (the output layer sees zero inputs there), so the dense layers' parameters get
     * nothing from those steps and the output layer's bias does. Likewise through a 1D max pooling layer
     * (with masked heads, its window at a masked step reaches a real step).
     */
    @ParameterizedTest
    @EnumSource(value = Case.class, names = {"DENSE_OVER_TIME", "CONVOLUTION_1D_MAX_POOLING_1D"})
    void aFeatureMaskAloneZeroesTheDenseOutputsAtMaskedSteps(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        MultiLayerNetwork ref = c.reference(net);
        INDArray x = c.features();
        INDArray mask = c.mask();
        BruteForce.Jacobians jac = BatchNormalizationTest.jacobians(ref,
                () -> ref.output(x, false, mask, null).dup('c').reshape('c', N, c.classes * T));
        Quantities q = BackPackNetwork.extend(net).backward(x, c.labels(), mask, null, new BatchDiagGGNExact());
        for (String key : jac.shapes.keySet()) {
            INDArray expected = Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(N, jac.shapes.get(key)));
            for (int n = 0; n < N; n++) {
                INDArray j = jac.j.get(n).get(key);
                expected.get(NDArrayIndex.point(n)).assign(j.mul(lossHessian(c, jac.z[n], null).mmul(j)).sum(0).divi(N)
                        .reshape('c', jac.shapes.get(key)));
            }
            assertClose(expected, q.byKey(BatchDiagGGNExact.class, key), 1e-6, 1e-9, "feature mask only " + key);
        }
    }

    /**
     * Central differences of DL4J's own gradient of the masked score, one parameter at a time,
     * {@code H_kk ≈ (g_k(θ + h e_k) − g_k(θ − h e_k)) / 2h}: with {@code h = 1e-5} the rounding error
     * ({@code ε_mach |g| / h}) and the truncation error ({@code h² |∂⁴L| / 6}) stay near {@code 1e-11}, where
     * second differences of the score round to {@code 3e-8} (as large as the smallest recurrent-weight
     * diagonals), and the step is too short to cross the kinks of ReLU or softsign.
     *
     * @param plain a plain float64 network (its parameters are perturbed and restored exactly)
     * @param data the batch with its masks
     * @return key → the diagonal of the Hessian of the score (the mean of the sequences' losses)
     */
    static Map<String, INDArray> gradientDifferences(MultiLayerNetwork plain, org.nd4j.linalg.dataset.DataSet data) {
        double h = 1e-5;
        Map<String, INDArray> out = new java.util.LinkedHashMap<>();
        for (String key : plain.paramTable().keySet()) {
            INDArray param = plain.getParam(key);
            INDArray d = Nd4j.create(DataType.DOUBLE, param.shape());
            org.nd4j.linalg.api.iter.NdIndexIterator it = new org.nd4j.linalg.api.iter.NdIndexIterator('c',
                    param.shape());
            while (it.hasNext()) {
                long[] idx = it.next();
                double original = param.getDouble(idx);
                param.putScalar(idx, original + h);
                double plus = gradientElement(plain, data, key, idx);
                param.putScalar(idx, original - h);
                double minus = gradientElement(plain, data, key, idx);
                param.putScalar(idx, original);
                // DL4J's gradient is of the summed loss; the score is the mean
                d.putScalar(idx, (plus - minus) / (2 * h) / data.numExamples());
            }
            out.put(key, d);
        }
        return out;
    }

    private static double gradientElement(MultiLayerNetwork plain, org.nd4j.linalg.dataset.DataSet data, String key,
                                          long[] idx) {
        plain.setInput(data.getFeatures());
        plain.setLabels(data.getLabels());
        plain.setLayerMaskArrays(data.getFeaturesMaskArray(), data.getLabelsMaskArray());
        plain.computeGradientAndScore();
        return plain.gradient().getGradientFor(key).getDouble(idx);
    }

    /**
     * The Hessian diagonal on sequences, through dense layers over time, 1D convolutions, p-norm pooling over time
     * (Subsampling1DLayer; GlobalPoolingLayer over the masked steps) and recurrent layers (the residual inside the
     * recurrence: the activations at every step and the products), stacked so that columns started inside a layer
     * go on through the layers below: against differences of DL4J's gradient of the masked score, and per
     * sequence against the single sequence's.
     */
    @ParameterizedTest
    @EnumSource(value = Case.class, names = {"DENSE_OVER_TIME", "CONVOLUTIONS_1D", "SIMPLE_RNN_PER_STEP",
            "SIMPLE_RNNS_OVER_DENSE", "SIMPLE_RNNS_NWC_ALIGN_END", "CONVOLUTION_1D_SIMPLE_RNN_POOLING",
            "LAST_STEP_SIMPLE_RNN_ALIGN_END", "LSTM_SOFTMAX_PER_STEP", "LSTM_SIGMOID_NWC", "TWO_LSTMS_RNN_LOSS_LAYER",
            "LSTM_AVERAGE_POOLING", "LSTM_MAX_POOLING_DENSE", "LSTM_DENSE_OVER_TIME_ALIGN_END",
            "CONVOLUTION_1D_LSTM_POOLING", "GRAVES_MSE_ALIGN_END", "GRAVES_OVER_DENSE", "CONVOLUTION_1D_PNORM_POOLING_1D",
            "SIMPLE_RNN_PNORM_POOLING_ALIGN_END"})
    void hessianDiagonalEqualsFiniteDifferences(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        MultiLayerNetwork plain = net.clone();
        INDArray x = c.features();
        INDArray y = c.labels();
        INDArray mask = c.mask();
        INDArray labelMask = c.perStep ? mask : null;
        Quantities q = BackPackNetwork.extend(net).backward(x, y, mask, labelMask, new DiagHessian(),
                new io.github.dl4jbackpack.extensions.BatchDiagHessian());
        org.nd4j.linalg.dataset.DataSet data = new org.nd4j.linalg.dataset.DataSet(x, y, mask, labelMask);
        Map<String, INDArray> expected = gradientDifferences(plain, data);
        for (String key : expected.keySet()) {
            assertClose(expected.get(key), q.byKey(DiagHessian.class, key), 1e-4, 1e-6, c + " Hessian " + key);
            assertClose(q.byKey(DiagHessian.class, key), q.byKey(io.github.dl4jbackpack.extensions.BatchDiagHessian
                    .class, key).sum(0), 1e-10, 1e-12, "per-sequence Hessians sum to the batch's " + key);
        }
        // the per-sequence values sum to the batch's (above); one sequence against its own differences, the
        // shortest, most padded one (each sequence costs a full set of differences)
        for (int n : CHECKED_SEQUENCES) {
            org.nd4j.linalg.dataset.DataSet one = new org.nd4j.linalg.dataset.DataSet(Reference.example(x, n),
                    Reference.example(y, n), Reference.example(mask, n), labelMask == null ? null : Reference.example(mask, n));
            Map<String, INDArray> single = gradientDifferences(plain, one);
            for (String key : single.keySet()) {
                assertClose(single.get(key).div(N), q.byKey(io.github.dl4jbackpack.extensions.BatchDiagHessian.class,
                        key).get(NDArrayIndex.point(n)), 1e-4, 1e-6, c + " sequence " + n + " Hessian " + key);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = Case.class, names = {"LSTM_SOFTMAX_PER_STEP", "LSTM_MAX_POOLING_DENSE",
            "LAST_STEP_SIMPLE_RNN_ALIGN_END"})
    void sampledColumnsConvergeToTheExactDiagonal(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        INDArray x = c.features();
        INDArray y = c.labels();
        INDArray mask = c.mask();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities exact = bp.backward(x, y, mask, c.perStep ? mask : null, new BatchDiagGGNExact());
        Nd4j.getRandom().setSeed(42);
        Quantities mc = bp.backward(x, y, mask, c.perStep ? mask : null, new DiagGGNMC(4000), new BatchDiagGGNMC(4000));
        for (String key : net.paramTable().keySet()) {
            INDArray e = exact.byKey(BatchDiagGGNExact.class, key);
            double error = mc.byKey(DiagGGNMC.class, key).sub(e.sum(0)).norm2Number().doubleValue();
            assertTrue(error <= 0.1 * e.sum(0).norm2Number().doubleValue(), c + " " + key + ": " + error);
            double perSequence = mc.byKey(BatchDiagGGNMC.class, key).sub(e).norm2Number().doubleValue();
            assertTrue(perSequence <= 0.15 * e.norm2Number().doubleValue(), c + " per sequence " + key + ": "
                    + perSequence);
        }
    }

    /** Steps masked at the tail change nothing: each sequence's diagonal is that of the shortened sequence. */
    @ParameterizedTest
    @EnumSource(value = Case.class, names = {"LSTM_SOFTMAX_PER_STEP", "LSTM_AVERAGE_POOLING",
            "LAST_STEP_LSTM_DENSE", "DENSE_OVER_TIME"})
    void aMaskedTailGivesTheShortenedSequence(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        INDArray x = c.features();
        INDArray y = c.labels();
        INDArray mask = c.mask();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities q = bp.backward(x, y, mask, c.perStep ? mask : null, new BatchDiagGGNExact());
        for (int n = 0; n < N; n++) {
            INDArray xn = x.get(NDArrayIndex.interval(n, n + 1), NDArrayIndex.all(), NDArrayIndex.interval(0, LENGTHS[n]))
                    .dup();
            INDArray yn = c.perStep ? y.get(NDArrayIndex.interval(n, n + 1), NDArrayIndex.all(),
                    NDArrayIndex.interval(0, LENGTHS[n])).dup() : y.get(NDArrayIndex.interval(n, n + 1)).dup();
            Quantities single = bp.backward(xn, yn, new BatchDiagGGNExact());
            for (String key : net.paramTable().keySet()) {
                // the batch divides by N, the single sequence by 1
                assertClose(single.byKey(BatchDiagGGNExact.class, key).get(NDArrayIndex.point(0)),
                        q.byKey(BatchDiagGGNExact.class, key).get(NDArrayIndex.point(n)).mul(N), 1e-9, 1e-12,
                        c + " sequence " + n + " " + key);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = Case.class, names = {"GRAVES_MSE_ALIGN_END", "LSTM_MAX_POOLING_DENSE", "SIMPLE_RNN_PER_STEP",
            "CONVOLUTIONS_1D", "SIMPLE_RNNS_OVER_DENSE"})
    void float32AgreesWithFloat64(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        MultiLayerNetwork single = c.build(DataType.FLOAT);
        single.setParams(net.params().castTo(DataType.FLOAT));
        INDArray x = c.features();
        INDArray y = c.labels();
        INDArray mask = c.mask();
        INDArray labelMask = c.perStep ? mask : null;
        io.github.dl4jbackpack.extensions.Extension[] extensions = {new BatchDiagGGNExact(),
            new io.github.dl4jbackpack.extensions.BatchDiagHessian()};
        Quantities q64 = BackPackNetwork.extend(net).backward(x, y, mask, labelMask, extensions);
        Quantities q32 = BackPackNetwork.extend(single).backward(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT),
                mask.castTo(DataType.FLOAT), labelMask == null ? null : labelMask.castTo(DataType.FLOAT), extensions);
        for (String key : net.paramTable().keySet()) {
            assertClose(q64.byKey(BatchDiagGGNExact.class, key), q32.byKey(BatchDiagGGNExact.class, key)
                    .castTo(DataType.DOUBLE), 1e-4, 1e-6, c + " float32 " + key);
            assertClose(q64.byKey(io.github.dl4jbackpack.extensions.BatchDiagHessian.class, key),
                    q32.byKey(io.github.dl4jbackpack.extensions.BatchDiagHessian.class, key)
                            .castTo(DataType.DOUBLE), 1e-4, 1e-6, c + " float32 Hessian " + key);
        }
    }

    /**
     * @param perStep per-step output (after a merge with a static input copied to every step) or a
     *     classifier of the last step
     * @return a graph with LastTimeStepVertex, or with DuplicateToTimeSeriesVertex and MergeVertex
     */
    private static ComputationGraph graph(boolean perStep, LossFunction loss, Activation activation) {
        ComputationGraphConfiguration.GraphBuilder b = new NeuralNetConfiguration.Builder().seed(3)
                .dataType(DataType.DOUBLE).graphBuilder();
        if (perStep) {
            b.addInputs("seq", "static")
                    .addVertex("dup", new DuplicateToTimeSeriesVertex("seq"), "static")
                    .addVertex("merge", new MergeVertex(), "seq", "dup")
                    .addLayer("lstm", new LSTM.Builder().nIn(5).nOut(4).activation(Activation.TANH).build(), "merge")
                    // without setInputTypes DL4J leaves the output's layout unset and its own backward step fails
                    .addLayer("out", new RnnOutputLayer.Builder(loss).activation(activation).nIn(4).nOut(3)
                            .dataFormat(RNNFormat.NCW).build(), "lstm")
                    .setOutputs("out");
        } else {
            b.addInputs("seq")
                    .addLayer("lstm", new LSTM.Builder().nIn(3).nOut(4).activation(Activation.TANH).build(), "seq")
                    .addVertex("last", new LastTimeStepVertex("seq"), "lstm")
                    .addLayer("dense", new DenseLayer.Builder().nIn(4).nOut(3).activation(Activation.SIGMOID).build(),
                            "last")
                    .addLayer("out", new OutputLayer.Builder(loss).activation(activation).nIn(3).nOut(3).build(),
                            "dense")
                    .setOutputs("out");
        }
        ComputationGraph g = new ComputationGraph(b.build());
        g.init();
        Nd4j.getRandom().setSeed(13);
        g.setParams(Nd4j.randn(DataType.DOUBLE, 1, g.numParams()).muli(0.6));
        return g;
    }

    @ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
    void graphVerticesOverTimeEqualTheJacobianReference(boolean perStep) {
        ComputationGraph net = graph(perStep, LossFunction.MCXENT, Activation.SOFTMAX);
        ComputationGraph ref = graph(perStep, LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        Case c = perStep ? Case.LSTM_SOFTMAX_PER_STEP : Case.LSTM_AVERAGE_POOLING;
        INDArray mask = Case.LSTM_SOFTMAX_PER_STEP.mask();
        INDArray[] x = perStep ? new INDArray[] {c.features(), TestNets.features(DataType.DOUBLE, 8, N, 2)}
                : new INDArray[] {c.features()};
        INDArray[] masks = perStep ? new INDArray[] {mask, null} : new INDArray[] {mask};
        INDArray[] labelMasks = new INDArray[] {perStep ? mask : null};
        int outputs = perStep ? 3 * T : 3;
        BruteForce.Jacobians jac = BatchNormalizationTest.jacobians(ref,
                () -> ref.output(false, x, masks, labelMasks)[0].dup('c').reshape('c', N, outputs));
        Quantities q = BackPackNetwork.extend(net).backward(x, new INDArray[] {c.labels()}, masks, labelMasks,
                new DiagGGNExact(), new BatchDiagGGNExact());
        for (String key : jac.shapes.keySet()) {
            INDArray expected = Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(N, jac.shapes.get(key)));
            for (int n = 0; n < N; n++) {
                INDArray j = jac.j.get(n).get(key);
                INDArray h = lossHessian(c, jac.z[n], perStep ? mask.getRow(n) : null);
                expected.get(NDArrayIndex.point(n)).assign(j.mul(h.mmul(j)).sum(0).divi(N)
                        .reshape('c', jac.shapes.get(key)));
            }
            String layer = key.substring(0, key.lastIndexOf('_'));
            String param = key.substring(key.lastIndexOf('_') + 1);
            assertClose(expected, q.get(BatchDiagGGNExact.class, layer, param), 1e-6, 1e-9, "graph " + key);
            assertClose(expected.sum(0), q.get(DiagGGNExact.class, layer, param), 1e-6, 1e-9, "graph sum " + key);
        }
    }

    @Test
    void whatIsNotImplementedOnSequencesIsRefusedByName() {
        MultiLayerNetwork net = Case.LSTM_SOFTMAX_PER_STEP.build(DataType.DOUBLE);
        INDArray x = Case.LSTM_SOFTMAX_PER_STEP.features();
        INDArray y = Case.LSTM_SOFTMAX_PER_STEP.labels();
        INDArray before = net.params().dup();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        UnsupportedLayerException kfac = assertThrows(UnsupportedLayerException.class,
                () -> bp.backward(x, y, new KFAC()));
        assertTrue(kfac.getMessage().contains("Kronecker"), kfac.getMessage());
        assertClose(before, net.params(), 0, 0, "parameters untouched");

        // the Hessian through an LSTM that sees the feature mask (handed to it by LastTimeStep)
        MultiLayerNetwork lastStep = Case.LAST_STEP_LSTM_DENSE.build(DataType.DOUBLE);
        INDArray lastStepBefore = lastStep.params().dup();
        IllegalArgumentException masked = assertThrows(IllegalArgumentException.class,
                () -> BackPackNetwork.extend(lastStep).backward(Case.LAST_STEP_LSTM_DENSE.features(),
                        Case.LAST_STEP_LSTM_DENSE.labels(), Case.LAST_STEP_LSTM_DENSE.mask(), null, new DiagHessian()));
        assertTrue(masked.getMessage().contains("LastTimeStep") && masked.getMessage().contains("feature mask")
                && masked.getMessage().contains("DiagGGNExact"), masked.getMessage());
        assertClose(lastStepBefore, lastStep.params(), 0, 0, "parameters untouched");
    }

    /**
     * LastTimeStep around an LSTM on a batch without a feature mask (the LSTM sees none): the Hessian against
     * differences of DL4J's gradient, per batch and per sequence.
     */
    @Test
    void hessianThroughLastTimeStepLstmWithoutMask() {
        Case c = Case.LAST_STEP_LSTM_DENSE;
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        MultiLayerNetwork plain = net.clone();
        INDArray x = c.features();
        INDArray y = c.labels();
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagHessian(),
                new io.github.dl4jbackpack.extensions.BatchDiagHessian());
        Map<String, INDArray> expected = gradientDifferences(plain, new org.nd4j.linalg.dataset.DataSet(x, y));
        for (String key : expected.keySet()) {
            assertClose(expected.get(key), q.byKey(DiagHessian.class, key), 1e-4, 1e-6, "LastTimeStep LSTM " + key);
        }
        Map<String, INDArray> single = gradientDifferences(plain, new org.nd4j.linalg.dataset.DataSet(
                Reference.example(x, 1), Reference.example(y, 1)));
        for (String key : single.keySet()) {
            assertClose(single.get(key).div(N), q.byKey(io.github.dl4jbackpack.extensions.BatchDiagHessian.class, key)
                    .get(NDArrayIndex.point(1)), 1e-4, 1e-6, "LastTimeStep LSTM sequence 1 " + key);
        }
    }
}
