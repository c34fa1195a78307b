// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Variance in float32 where {@code SGS/N − mean²} cancels catastrophically: a mean gradient 10⁴
 * times its spread, identical examples, a batch of one. The reference is the two-pass variance of
 * per-example gradients computed by DL4J in float64 on the same parameters and data.
 */
class VarianceAccuracyTest {

    /** dense (tanh) → conv-free MLP with MSE targets around 10⁴ (biases' gradients ≈ 10⁴ ± 1). */
    static MultiLayerNetwork regression(DataType type) {
        MultiLayerNetwork net = TestNets.build(type, InputType.feedForward(3),
                new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(),
                new OutputLayer.Builder(LossFunction.MSE).nOut(2).activation(Activation.IDENTITY).build());
        return net;
    }

    @Test
    void largeMeanGradientDoesNotCancel() {
        MultiLayerNetwork single = regression(DataType.FLOAT);
        MultiLayerNetwork dbl = regression(DataType.DOUBLE);
        dbl.setParams(single.params().castTo(DataType.DOUBLE));
        long n = 16;
        INDArray x = TestNets.features(DataType.FLOAT, 3, n, 3);
        INDArray y = TestNets.features(DataType.FLOAT, 4, n, 2).addi(1e4f);
        Map<String, INDArray> g = Reference.individualGradients(dbl, x.castTo(DataType.DOUBLE), y.castTo(DataType.DOUBLE));
        Quantities q = BackPackNetwork.extend(single).backward(x, y, new Variance());
        for (String key : g.keySet()) {
            String[] lp = key.split("_");
            INDArray expected = Reference.variance(g.get(key));
            INDArray actual = q.get(Variance.class, Integer.parseInt(lp[0]), lp[1]);
            assertTrue(actual.minNumber().doubleValue() >= 0, key + ": negative variance " + actual);
            // float32 gradients of size 1e4·(spread) carry errors of ~1e-3 of the spread: the variance is good
            // to about 1 %, where SGS/N − mean² was off by orders of magnitude
            assertClose(expected, actual.castTo(DataType.DOUBLE), 2e-2, 1e-3, "float32 variance " + key);
        }
    }

    @Test
    void identicalExamplesAndSingleExamplesHaveZeroVariance() {
        MultiLayerNetwork net = TestNets.build(DataType.FLOAT, InputType.convolutional(6, 6, 2),
                new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(5).activation(Activation.SIGMOID).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build());
        INDArray one = TestNets.features(DataType.FLOAT, 5, 1, 2, 6, 6);
        INDArray label = TestNets.labels(DataType.FLOAT, LossFunction.MCXENT, 6, 1, 3);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        for (int copies : new int[] {1, 16}) {
            INDArray x = Nd4j.concat(0, java.util.Collections.nCopies(copies, one).toArray(new INDArray[0]));
            INDArray y = Nd4j.concat(0, java.util.Collections.nCopies(copies, label).toArray(new INDArray[0]));
            Quantities q = bp.backward(x, y, new Variance(), new BatchL2Grad());
            for (int layer : q.layers(Variance.class)) {
                for (String p : q.params(Variance.class, layer)) {
                    INDArray v = q.get(Variance.class, layer, p);
                    double norm2 = q.get(BatchL2Grad.class, layer, p).getDouble(0);
                    assertTrue(v.minNumber().doubleValue() >= 0, copies + " copies, layer " + layer + p + ": " + v);
                    // only round-off of the batch mean remains (SGS/N − mean² left ~1e-7 of the squared
                    // gradient, with either sign)
                    assertTrue(v.sumNumber().doubleValue() <= 1e-12 * norm2 * copies * copies, copies + " copies, layer "
                            + layer + p + ": variance " + v.sumNumber() + " vs squared gradient " + norm2);
                }
            }
        }
    }

    @Test
    void signalToNoiseIsFiniteAndCappedWhenTheVarianceVanishes() {
        assertEquals(0.0, GradientVarianceListener.Statistics.signalToNoise(0, 0, 0x1.0p-23), 0.0);
        assertEquals(0x1.0p23, GradientVarianceListener.Statistics.signalToNoise(2.5, 0, 0x1.0p-23), 0.0);
        assertEquals(4.0, GradientVarianceListener.Statistics.signalToNoise(2.0, 0.5, 0x1.0p-23), 0.0);
    }
}
