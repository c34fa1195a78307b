// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.Convolution1DLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.List;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Kronecker factors of weights shared over time steps, in the "expand" setting (every step an example of
 * its own: {@code A = (1/(N·T)) Σ_n Σ_t x_nt xₙₜᵀ}, {@code B = Σ_n Σ_v Σ_t s_nvt s_nvtᵀ}), float64. Without
 * recurrence a per-step network's steps are independent, so its factors follow from those of the plain
 * feed-forward network (dense layers, output layer) on each step's data, which the feed-forward path
 * computes and other tests check: {@code B} is the sum of the steps' {@code B} (with a label mask, each
 * step's over its unmasked sequences, times their share of the batch) and {@code A} the mean of the
 * steps' {@code A} (DL4J zeroes a dense layer's outputs at feature-masked steps, which then add zero rows to the
 * next layer's {@code A}). Monte Carlo factors converge to the exact ones; KFRA and recurrent layers are
 * refused.
 */
class SequenceKroneckerTest {

    private static final int N = 4;
    private static final int T = 3;
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

    /** Dense (tanh) at every step, then a softmax at every step. */
    private static MultiLayerNetwork perStep() {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(2)
                .dataType(DataType.DOUBLE)
                .list(new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                .setInputType(InputType.recurrent(2, T)).build());
        net.init();
        TestNets.randomiseParameters(net, 2);
        return net;
    }

    /** The same layers on rows: the network of one step. */
    private static MultiLayerNetwork perRow(MultiLayerNetwork sequences) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(2)
                .dataType(DataType.DOUBLE)
                .list(new DenseLayer.Builder().nIn(2).nOut(4).activation(Activation.TANH).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(4).nOut(3).build())
                .build());
        net.init();
        net.setParams(sequences.params());
        return net;
    }

    private static INDArray labels() {
        java.util.Random r = new java.util.Random(3);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, N, 3, T);
        for (int n = 0; n < N; n++) {
            for (int t = 0; t < T; t++) {
                y.putScalar(new long[] {n, r.nextInt(3), t}, 1.0);
            }
        }
        return y;
    }

    private static INDArray step(INDArray series, int t, List<Integer> rows) {
        INDArray all = series.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t));
        INDArray out = Nd4j.create(DataType.DOUBLE, rows.size(), series.size(1));
        for (int i = 0; i < rows.size(); i++) {
            out.putRow(i, all.getRow(rows.get(i)));
        }
        return out;
    }

    @Test
    void factorsOfStepsSharingWeightsAreThoseOfTheStepsAsExamples() {
        MultiLayerNetwork net = perStep();
        INDArray x = TestNets.features(DataType.DOUBLE, 5, N, 2, T);
        INDArray y = labels();
        INDArray mask = Nd4j.create(new double[][] {{1, 1, 1}, {1, 1, 0}, {1, 0, 0}, {1, 1, 1}});
        for (INDArray m : new INDArray[] {null, mask}) {
            Quantities q = BackPackNetwork.extend(net).backward(x, y, m, m, new KFLR());
            for (String layer : new String[] {"0", "1"}) {
                INDArray a = Nd4j.zeros(DataType.DOUBLE, layer.equals("0") ? 2 : 4, layer.equals("0") ? 2 : 4);
                INDArray b = Nd4j.zeros(DataType.DOUBLE, layer.equals("0") ? 4 : 3, layer.equals("0") ? 4 : 3);
                for (int t = 0; t < T; t++) {
                    List<Integer> all = new ArrayList<>();
                    List<Integer> real = new ArrayList<>();
                    for (int n = 0; n < N; n++) {
                        all.add(n);
                        if (m == null || m.getDouble(n, t) != 0) {
                            real.add(n);
                        }
                    }
                    // A over every step DL4J runs: the features of every sequence at layer 0; at layer 1 the
                    // dense outputs, which DL4J zeroes where the feature mask is 0; B over the unmasked steps
                    KroneckerFactors kAll = BackPackNetwork.extend(perRow(net)).backward(step(x, t, all),
                            step(y, t, all), new KFLR()).get(KFLR.class, layer, "W");
                    KroneckerFactors kReal = BackPackNetwork.extend(perRow(net)).backward(step(x, t, real),
                            step(y, t, real), new KFLR()).get(KFLR.class, layer, "W");
                    a.addi(layer.equals("0") ? kAll.inputFactor().orElseThrow().div(T)
                            : kReal.inputFactor().orElseThrow().mul((double) real.size() / (N * T)));
                    b.addi(kReal.outputFactor().mul((double) real.size() / N));
                }
                KroneckerFactors k = q.get(KFLR.class, layer, "W");
                String what = (m == null ? "" : "masked ") + "layer " + layer;
                assertClose(a, k.inputFactor().orElseThrow(), 1e-10, 1e-13, what + " A");
                assertClose(b, k.outputFactor(), 1e-10, 1e-13, what + " B");
                assertClose(b, q.get(KFLR.class, layer, "b").outputFactor(), 1e-10, 1e-13, what + " bias B");
            }
        }
    }

    /** A 1D convolution (kernel k, Same mode, given activation), then a softmax at every step. */
    private static MultiLayerNetwork convolution(int kernel, Activation activation) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(2)
                .dataType(DataType.DOUBLE)
                .list(new Convolution1DLayer.Builder(kernel).nOut(4).convolutionMode(ConvolutionMode.Same)
                                .activation(activation).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                .setInputType(InputType.recurrent(2, T)).build());
        net.init();
        TestNets.randomiseParameters(net, 2);
        return net;
    }

    /** A 1D convolution of kernel 1 is the dense layer at every step: the same parameters give the same factors. */
    @Test
    void convolutionOfKernelOneHasTheFactorsOfTheDenseLayerAtEveryStep() {
        MultiLayerNetwork dense = perStep();
        MultiLayerNetwork conv = convolution(1, Activation.TANH);
        // DL4J reads the convolution's W [nOut, nIn, 1, 1] as the row-major [nIn, nOut] matrix (and keeps its
        // bias first in the parameter vector)
        for (String key : new String[] {"0_W", "0_b", "1_W", "1_b"}) {
            conv.setParam(key, dense.getParam(key).dup('c').reshape('c', conv.getParam(key).shape()));
        }
        INDArray x = TestNets.features(DataType.DOUBLE, 5, N, 2, T);
        assertClose(dense.output(x), conv.output(x), 1e-12, 1e-14, "the same function");
        INDArray mask = Nd4j.create(new double[][] {{1, 1, 1}, {1, 1, 0}, {1, 0, 0}, {1, 1, 1}});
        Quantities d = BackPackNetwork.extend(dense).backward(x, labels(), mask, mask, new KFLR());
        Quantities c = BackPackNetwork.extend(conv).backward(x, labels(), mask, mask, new KFLR());
        for (String key : new String[] {"W", "b"}) {
            KroneckerFactors kd = d.get(KFLR.class, "0", key);
            KroneckerFactors kc = c.get(KFLR.class, "0", key);
            assertClose(kd.outputFactor(), kc.outputFactor(), 1e-12, 1e-14, "B of " + key);
            if (key.equals("W")) {
                assertClose(kd.inputFactor().orElseThrow(), kc.inputFactor().orElseThrow(), 1e-12, 1e-14, "A");
                assertClose(kd.factors().get(0), kc.factors().get(0), 1e-12, 1e-14, "the Kronecker order");
            }
        }
    }

    /**
     * A 1D convolution of kernel 3 right below the per-step softmax: {@code A} from the windows unfolded here,
     * {@code B = (1/N) Σ_n Σ_t m_nt W_out H(z_nt) W_outᵀ} from DL4J's predictions.
     */
    @Test
    void convolutionFactorsFollowTheirDefinitions() {
        MultiLayerNetwork net = convolution(3, Activation.IDENTITY);
        INDArray x = TestNets.features(DataType.DOUBLE, 5, N, 2, T);
        INDArray mask = Nd4j.create(new double[][] {{1, 1, 1}, {1, 1, 0}, {1, 0, 0}, {1, 1, 1}});
        INDArray p = net.output(x);
        INDArray wOut = net.getParam("1_W");
        INDArray b = Nd4j.zeros(DataType.DOUBLE, 4, 4);
        INDArray a = Nd4j.zeros(DataType.DOUBLE, 6, 6);
        for (int n = 0; n < N; n++) {
            for (int t = 0; t < T; t++) {
                INDArray pt = p.get(NDArrayIndex.point(n), NDArrayIndex.all(), NDArrayIndex.point(t)).reshape(3, 1);
                INDArray h = Nd4j.diag(pt.reshape(3)).sub(pt.mmul(pt.transpose()));
                b.addi(wOut.mmul(h).mmul(wOut.transpose()).muli(mask.getDouble(n, t) / N));
                // the window of step t in Same mode: steps t−1, t, t+1 (zero outside), tap-major
                INDArray window = Nd4j.zeros(DataType.DOUBLE, 6, 1);
                for (int j = 0; j < 3; j++) {
                    int at = t + j - 1;
                    for (int ch = 0; at >= 0 && at < T && ch < 2; ch++) {
                        window.putScalar(j * 2 + ch, 0, x.getDouble(n, ch, at));
                    }
                }
                a.addi(window.mmul(window.transpose()).divi(N * T));
            }
        }
        KroneckerFactors k = BackPackNetwork.extend(net).backward(x, labels(), mask, mask, new KFLR())
                .get(KFLR.class, "0", "W");
        assertClose(a, k.inputFactor().orElseThrow(), 1e-12, 1e-14, "A");
        assertClose(b, k.outputFactor(), 1e-10, 1e-13, "B");
    }

    @Test
    void sampledFactorsConvergeToTheExactOnes() {
        MultiLayerNetwork net = perStep();
        INDArray x = TestNets.features(DataType.DOUBLE, 5, N, 2, T);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities exact = bp.backward(x, labels(), new KFLR());
        Nd4j.getRandom().setSeed(7);
        Quantities mc = bp.backward(x, labels(), new KFAC(4000));
        for (String layer : new String[] {"0", "1"}) {
            INDArray e = exact.get(KFLR.class, layer, "W").outputFactor();
            double error = mc.get(KFAC.class, layer, "W").outputFactor().sub(e).norm2Number().doubleValue();
            assertTrue(error <= 0.1 * e.norm2Number().doubleValue(), "layer " + layer + ": " + error);
        }
    }

    @Test
    void kfraAndRecurrentLayersAreRefused() {
        MultiLayerNetwork net = perStep();
        INDArray x = TestNets.features(DataType.DOUBLE, 5, N, 2, T);
        String kfra = assertThrows(IllegalArgumentException.class,
                () -> BackPackNetwork.extend(net).backward(x, labels(), new KFRA())).getMessage();
        assertTrue(kfra.contains("KFRA") && kfra.contains("KFLR"), kfra);
        MultiLayerNetwork recurrent = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(2)
                .dataType(DataType.DOUBLE)
                .list(new LSTM.Builder().nOut(4).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                .setInputType(InputType.recurrent(2, T)).build());
        recurrent.init();
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(recurrent).backward(x, labels(), new KFLR()));
        assertTrue(e.getMessage().contains("\"0\" (LSTM)") && e.getMessage().contains("Kronecker"), e.getMessage());
    }
}
