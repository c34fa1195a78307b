// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * What DL4J 1.0.0-M2.1 computes for masked sequences, which the sequence support (docs/math.md,
 * "Sequences and weight sharing") relies on: with a label mask, an {@code RnnOutputLayer}'s score is
 * the masked sum of the per-step losses over steps and sequences divided by the number of sequences N
 * (not by the number of unmasked steps); the batch gradient is the sum of the gradients of each
 * sequence run alone with its own mask; and a sequence whose tail is masked gives exactly the score
 * and gradient of the shortened sequence.
 */
class Dl4jSequenceFactsTest {

    private static final int T = 5;
    private static final int[] LENGTHS = {5, 3, 2};

    private static MultiLayerNetwork network() {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(5)
                .dataType(DataType.DOUBLE).list(
                        new LSTM.Builder().nIn(3).nOut(4).activation(Activation.TANH).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(4).nOut(2)
                                .build())
                .build());
        net.init();
        TestNets.randomiseParameters(net, 5);
        return net;
    }

    private static INDArray mask(int... lengths) {
        INDArray m = Nd4j.zeros(DataType.DOUBLE, lengths.length, T);
        for (int n = 0; n < lengths.length; n++) {
            m.get(NDArrayIndex.point(n), NDArrayIndex.interval(0, lengths[n])).assign(1.0);
        }
        return m;
    }

    /** @return {score, gradient (summed over the batch, as DL4J keeps it)} */
    private static Object[] scoreAndGradient(MultiLayerNetwork net, INDArray x, INDArray y, INDArray mask) {
        MultiLayerNetwork copy = net.clone();
        copy.setInput(x);
        copy.setLabels(y);
        copy.setLayerMaskArrays(mask, mask);
        copy.computeGradientAndScore();
        return new Object[] {copy.score(), copy.gradient().gradient().dup()};
    }

    @Test
    void maskedScoresAndGradientsDecomposeBySequence() {
        MultiLayerNetwork net = network();
        long n = LENGTHS.length;
        INDArray x = TestNets.features(DataType.DOUBLE, 7, n, 3, T);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, n, 2, T);
        for (int i = 0; i < n; i++) {
            for (int t = 0; t < T; t++) {
                y.putScalar(new long[] {i, (i + t) % 2, t}, 1.0);
            }
        }
        INDArray mask = mask(LENGTHS);
        Object[] batch = scoreAndGradient(net, x, y, mask);

        // the per-step losses from DL4J's own output, masked and summed, over N
        INDArray p = net.output(x, false, mask, mask);
        double sum = 0;
        for (int i = 0; i < n; i++) {
            for (int t = 0; t < LENGTHS[i]; t++) {
                for (int k = 0; k < 2; k++) {
                    sum -= y.getDouble(i, k, t) * Math.log(p.getDouble(i, k, t));
                }
            }
        }
        assertEquals(sum / n, (double) batch[0], 1e-10, "score = masked sum over steps and sequences / N");

        INDArray summed = null;
        for (int i = 0; i < n; i++) {
            INDArray xi = x.get(NDArrayIndex.interval(i, i + 1), NDArrayIndex.all(), NDArrayIndex.all()).dup();
            INDArray yi = y.get(NDArrayIndex.interval(i, i + 1), NDArrayIndex.all(), NDArrayIndex.all()).dup();
            Object[] alone = scoreAndGradient(net, xi, yi, mask(LENGTHS[i]));
            summed = summed == null ? ((INDArray) alone[1]).dup() : summed.addi((INDArray) alone[1]);
            // the masked tail changes nothing: the shortened sequence without a mask gives the same
            int len = LENGTHS[i];
            INDArray xs = xi.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(0, len)).dup();
            INDArray ys = yi.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(0, len)).dup();
            MultiLayerNetwork copy = net.clone();
            copy.setInput(xs);
            copy.setLabels(ys);
            copy.computeGradientAndScore();
            assertEquals(copy.score(), (double) alone[0], 1e-12, "sequence " + i + " score, masked vs shortened");
            assertClose(copy.gradient().gradient(), (INDArray) alone[1], 1e-10, 1e-13,
                    "sequence " + i + " gradient, masked vs shortened");
        }
        assertClose(summed, (INDArray) batch[1], 1e-10, 1e-13, "batch gradient = sum of the sequences' gradients");
    }
}
