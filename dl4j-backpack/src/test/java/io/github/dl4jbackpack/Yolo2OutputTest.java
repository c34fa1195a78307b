// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.objdetect.Yolo2OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DL4J's {@code Yolo2OutputLayer} (TinyYOLO, YOLO2): first-order extensions of the layers below it
 * through DL4J's own gradient, against a loop of single-example DL4J passes (float64); second order
 * refused by name, its loss Hessian not being implemented.
 */
class Yolo2OutputTest {

    private static final int BOXES = 2;
    private static final int CLASSES = 3;

    private static MultiLayerNetwork network() {
        return TestNets.build(DataType.DOUBLE, InputType.convolutional(4, 4, 2),
                new ConvolutionLayer.Builder(1, 1).nOut(BOXES * (5 + CLASSES)).activation(Activation.IDENTITY).build(),
                new Yolo2OutputLayer.Builder().boundingBoxPriors(Nd4j.create(new double[][] {{1, 1}, {2, 1.5}}))
                        .build());
    }

    /** @return labels {@code [N, 4 + C, H, W]}: one object per example, its box corners and class */
    private static INDArray labels(long n) {
        INDArray y = Nd4j.zeros(DataType.DOUBLE, n, 4 + CLASSES, 4, 4);
        for (int i = 0; i < n; i++) {
            int cell = i % 4;
            y.putScalar(new long[] {i, 0, cell, cell}, cell + 0.1);        // x1
            y.putScalar(new long[] {i, 1, cell, cell}, cell + 0.2);        // y1
            y.putScalar(new long[] {i, 2, cell, cell}, cell + 0.9);        // x2
            y.putScalar(new long[] {i, 3, cell, cell}, cell + 0.7);        // y2
            y.putScalar(new long[] {i, 4 + i % CLASSES, cell, cell}, 1.0);
        }
        return y;
    }

    @Test
    void firstOrderEqualsSingleExamplePassesAndSecondOrderIsRefused() {
        MultiLayerNetwork net = network();
        INDArray x = TestNets.features(DataType.DOUBLE, 5, 4, 2, 4, 4);
        INDArray y = labels(4);
        Map<String, INDArray> loop = Reference.individualGradients(net, x, y);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities q = bp.backward(x, y, new BatchGrad(), new BatchL2Grad());
        for (String key : new String[] {"0_W", "0_b"}) {
            assertClose(loop.get(key), q.byKey(BatchGrad.class, key), 1e-10, 1e-13, "BatchGrad " + key);
            assertClose(Reference.squaredNorms(loop.get(key)), q.byKey(BatchL2Grad.class, key), 1e-10, 1e-13,
                    "BatchL2Grad " + key);
        }
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> bp.backward(x, y, new DiagGGNExact()));
        assertEquals("1", e.layerName(), e.getMessage());
        assertTrue(e.getMessage().contains("no implemented loss Hessian"), e.getMessage());
    }
}
