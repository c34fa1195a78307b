// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.CenterLossOutputLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Map;
import java.util.Set;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DL4J's {@code CenterLossOutputLayer} (as in FaceNetNN4Small2 and InceptionResNetV1): the first-order
 * quantities of its {@code W} and {@code b} and of the layers below (whose gradient includes the centre
 * term) against a loop of single-example DL4J passes, float64; the class centres get none; the
 * network's gradient is DL4J's; second order is refused naming the layer.
 */
class CenterLossOutputTest {

    private static MultiLayerNetwork network() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.feedForward(4),
                new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                new CenterLossOutputLayer.Builder().lossFunction(LossFunction.MCXENT).activation(Activation.SOFTMAX)
                        .nOut(3).alpha(0.3).lambda(0.7).build());
        // centres away from zero, so that the centre term matters for the layers below
        net.getLayer(1).getParam("cL").assign(TestNets.features(DataType.DOUBLE, 9, 3, 5));
        return net;
    }

    @Test
    void firstOrderQuantitiesEqualSingleExamplePasses() {
        MultiLayerNetwork net = network();
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 6, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, 6, 3);
        Map<String, INDArray> loop = Reference.individualGradients(net, x, y);
        MultiLayerNetwork plain = net.clone();
        plain.setInput(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new BatchGrad(), new BatchL2Grad(),
                new SumGradSquared(), new Variance(), new BatchDotGrad());
        assertEquals(Set.of("0_W", "0_b", "1_W", "1_b"), q.keys(BatchGrad.class), "no quantities for the centres");
        assertEquals(plain.score(), q.score(), 1e-12);
        for (String key : q.keys(BatchGrad.class)) {
            INDArray g = loop.get(key);
            assertClose(g, q.byKey(BatchGrad.class, key), 1e-10, 1e-13, "BatchGrad " + key);
            assertClose(Reference.squaredNorms(g), q.byKey(BatchL2Grad.class, key), 1e-10, 1e-13, "BatchL2Grad " + key);
            assertClose(g.mul(g).sum(0), q.byKey(SumGradSquared.class, key), 1e-10, 1e-13, "SumGradSquared " + key);
            // the mean gradient is DL4J's own
            assertClose(plain.gradient().getGradientFor(key).div(x.size(0)), g.sum(0), 1e-10, 1e-13,
                    "DL4J's gradient " + key);
        }
        // the centre term reaches the layer below: without it its gradients would differ
        MultiLayerNetwork noCentres = network();
        noCentres.setParams(net.params());
        noCentres.getLayer(1).getParam("cL").assign(0.0);
        Map<String, INDArray> without = Reference.individualGradients(noCentres, x, y);
        assertTrue(without.get("0_W").sub(loop.get("0_W")).amaxNumber().doubleValue() > 1e-3);
    }

    @Test
    void secondOrderIsRefusedNamingTheLayer() {
        MultiLayerNetwork net = network();
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 6, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, 6, 3);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact()));
        assertEquals("1", e.layerName(), e.getMessage());
        assertTrue(e.getMessage().contains("centre-loss"), e.getMessage());
    }
}
