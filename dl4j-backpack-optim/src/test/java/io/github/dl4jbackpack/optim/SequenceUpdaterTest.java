// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.UnsupportedLayerException;
import io.github.dl4jbackpack.extensions.Extension;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The diagonal GGN updater on a sequence network (LSTM, per-step softmax, sequences of variable length
 * with masks), trained with DL4J's {@code fit} on masked {@code DataSet}s: one step equals the step computed
 * by hand from the library's quantities of the same masked batch, training lowers the loss; the Kronecker
 * updaters take the same step on dense layers at every step (factors in the "expand" setting) and are refused
 * by name on recurrent layers, whose Kronecker factors are not implemented.
 */
class SequenceUpdaterTest {

    private static final int N = 6;
    private static final int T = 5;

    @BeforeAll
    static void float64() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    static MultiLayerNetwork network(IUpdater updater, long seed) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(seed)
                .dataType(DataType.DOUBLE).updater(updater)
                .list(new LSTM.Builder().nOut(4).activation(Activation.TANH).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                .setInputType(InputType.recurrent(2, T)).build());
        net.init();
        return net;
    }

    /** @return a batch of sequences of lengths 1…T (masked at the tail), with per-step one-hot labels */
    static DataSet batch(long seed) {
        PreconditionedUpdaterTest.seed(seed);
        INDArray x = Nd4j.randn(DataType.DOUBLE, N, 2, T);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, N, 3, T);
        INDArray mask = Nd4j.zeros(DataType.DOUBLE, N, T);
        java.util.Random r = new java.util.Random(seed);
        for (int n = 0; n < N; n++) {
            mask.get(NDArrayIndex.point(n), NDArrayIndex.interval(0, 1 + n % T)).assign(1.0);
            for (int t = 0; t < T; t++) {
                y.putScalar(new long[] {n, r.nextInt(3), t}, 1.0);
            }
        }
        return new DataSet(x, y, mask, mask);
    }

    @Test
    void oneStepOnMaskedSequencesEqualsTheStepComputedByHand() {
        for (PreconditionedUpdater rule : new PreconditionedUpdater[] {DiagGGNUpdater.exact(0.1, 0.1),
                DiagGGNUpdater.monteCarlo(0.1, 0.1, 2)}) {
            MultiLayerNetwork net = network(rule, 3);
            MultiLayerNetwork reference = net.clone();
            DataSet data = batch(4);
            Nd4j.getRandom().setSeed(99);
            Quantities q = BackPackNetwork.extend(reference).backward(data,
                    rule.requiredExtensions().toArray(new Extension<?>[0]));
            BackPackNetwork.extend(net);
            Nd4j.getRandom().setSeed(99);
            net.fit(data);
            for (int layer = 0; layer < 2; layer++) {
                for (String param : reference.getLayer(layer).paramTable().keySet()) {
                    INDArray theta = reference.getParam(layer + "_" + param);
                    INDArray gradient = reference.gradient().getGradientFor(layer + "_" + param).div(N);
                    INDArray expected;
                    if (theta.rank() == 4) {
                        // DL4J computes with a 1D convolution's weight [nOut, nIn, k, 1] as the row-major
                        // [k·nIn, nOut] matrix of the same memory, which its factors A ⊗ B are over
                        long[] matrix = {theta.length() / theta.size(0), theta.size(0)};
                        INDArray step = PreconditionedUpdaterTest.expectedStep(rule, q, String.valueOf(layer), param,
                                theta.dup('c').reshape('c', matrix), gradient.dup('c').reshape('c', matrix), 0);
                        expected = step.dup('c').reshape('c', theta.shape());
                    } else {
                        expected = PreconditionedUpdaterTest.expectedStep(rule, q, String.valueOf(layer), param, theta,
                                gradient, 0);
                    }
                    INDArray actual = net.getParam(layer + "_" + param);
                    double scale = expected.sub(theta).amaxNumber().doubleValue();
                    double diff = expected.sub(actual).amaxNumber().doubleValue();
                    if (!(diff <= 1e-9 * scale)) {
                        fail(rule + " layer " + layer + " " + param + ": max |diff| " + diff + " vs step " + scale);
                    }
                }
            }
        }
    }

    /** Dense (tanh) at every step, then a softmax at every step: Kronecker factors in the "expand" setting. */
    static MultiLayerNetwork perStepNetwork(IUpdater updater, long seed) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(seed)
                .dataType(DataType.DOUBLE).updater(updater)
                .list(new org.deeplearning4j.nn.conf.layers.DenseLayer.Builder().nOut(4).activation(Activation.TANH)
                                .build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                .setInputType(InputType.recurrent(2, T)).build());
        net.init();
        return net;
    }

    /** A 1D convolution (k = 2, causal), then a softmax at every step: its weight shared over the steps. */
    static MultiLayerNetwork convolutionNetwork(IUpdater updater, long seed) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(seed)
                .dataType(DataType.DOUBLE).updater(updater)
                .list(new org.deeplearning4j.nn.conf.layers.Convolution1DLayer.Builder(2).nOut(3)
                                .convolutionMode(org.deeplearning4j.nn.conf.ConvolutionMode.Causal)
                                .activation(Activation.TANH).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                .setInputType(InputType.recurrent(2, T)).build());
        net.init();
        return net;
    }

    @Test
    void kroneckerStepOnSequencesOfDenseLayersEqualsTheStepComputedByHand() {
        kroneckerStepEqualsTheStepComputedByHand(SequenceUpdaterTest::perStepNetwork);
    }

    @Test
    void kroneckerStepOnSequencesOfOneDimensionalConvolutionsEqualsTheStepComputedByHand() {
        kroneckerStepEqualsTheStepComputedByHand(SequenceUpdaterTest::convolutionNetwork);
    }

    private static void kroneckerStepEqualsTheStepComputedByHand(
            java.util.function.BiFunction<IUpdater, Long, MultiLayerNetwork> build) {
        for (PreconditionedUpdater rule : new PreconditionedUpdater[] {KroneckerUpdater.kflr(0.1, 0.1),
                KroneckerUpdater.kfac(0.1, 0.1, 2)}) {
            MultiLayerNetwork net = build.apply(rule, 3L);
            MultiLayerNetwork reference = net.clone();
            DataSet data = batch(4);
            Nd4j.getRandom().setSeed(99);
            Quantities q = BackPackNetwork.extend(reference).backward(data,
                    rule.requiredExtensions().toArray(new Extension<?>[0]));
            BackPackNetwork.extend(net);
            Nd4j.getRandom().setSeed(99);
            net.fit(data);
            for (int layer = 0; layer < 2; layer++) {
                for (String param : reference.getLayer(layer).paramTable().keySet()) {
                    INDArray theta = reference.getParam(layer + "_" + param);
                    // (DL4J hands a 1D convolution's weight gradient as [nOut, nIn, k], its parameter [nOut, nIn, k, 1])
                    INDArray gradient = reference.gradient().getGradientFor(layer + "_" + param).div(N)
                            .reshape('c', theta.shape());
                    INDArray expected;
                    if (theta.rank() == 4) {
                        // DL4J computes with a 1D convolution's weight [nOut, nIn, k, 1] as the row-major
                        // [k·nIn, nOut] matrix of the same memory, which its factors A ⊗ B are over
                        long[] matrix = {theta.length() / theta.size(0), theta.size(0)};
                        INDArray step = PreconditionedUpdaterTest.expectedStep(rule, q, String.valueOf(layer), param,
                                theta.dup('c').reshape('c', matrix), gradient.dup('c').reshape('c', matrix), 0);
                        expected = step.dup('c').reshape('c', theta.shape());
                    } else {
                        expected = PreconditionedUpdaterTest.expectedStep(rule, q, String.valueOf(layer), param, theta,
                                gradient, 0);
                    }
                    INDArray actual = net.getParam(layer + "_" + param);
                    double scale = expected.sub(theta).amaxNumber().doubleValue();
                    double diff = expected.sub(actual).amaxNumber().doubleValue();
                    if (!(diff <= 1e-9 * scale)) {
                        fail(rule + " layer " + layer + " " + param + ": max |diff| " + diff + " vs step " + scale);
                    }
                }
            }
        }
    }

    @Test
    void trainingOnMaskedSequencesLowersTheLoss() {
        MultiLayerNetwork net = network(DiagGGNUpdater.monteCarlo(0.2, 0.05, 1), 7);
        BackPackNetwork.extend(net);
        DataSet data = batch(8);
        double before = net.score(data, false);
        for (int i = 0; i < 20; i++) {
            net.fit(data);
        }
        double after = net.score(data, false);
        assertTrue(after < 0.8 * before, "loss " + before + " → " + after);
    }

    @Test
    void kroneckerUpdatersAreRefusedByName() {
        MultiLayerNetwork net = network(KroneckerUpdater.kfac(0.1, 0.1, 1), 5);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class, () -> {
            BackPackNetwork.extend(net);
            net.fit(batch(6));
        });
        assertTrue(e.getMessage().contains("LSTM") && e.getMessage().contains("Kronecker"), e.getMessage());
    }
}
