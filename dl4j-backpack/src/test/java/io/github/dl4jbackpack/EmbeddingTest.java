// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.EmbeddingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DL4J's feed-forward {@code EmbeddingLayer} (input: one row index per example): every first-order
 * extension against a loop of single-example DL4J passes, float64, with and without bias, with repeated
 * indices in the batch (so that examples share rows); only the used rows of an example's gradient are
 * nonzero; Kronecker factors refused by name (the curvature diagonals are tested in
 * {@code EmbeddingCurvatureTest}).
 */
class EmbeddingTest {

    private static final int VOCABULARY = 7;

    /** Built without an input type: DL4J's shape inference would set the embedding's nIn to 1. */
    private static MultiLayerNetwork network(boolean bias) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(3)
                .dataType(DataType.DOUBLE).list(
                        new EmbeddingLayer.Builder().nIn(VOCABULARY).nOut(4).hasBias(bias).activation(Activation.TANH)
                                .build(),
                        new DenseLayer.Builder().nIn(4).nOut(5).activation(Activation.SIGMOID).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(5).nOut(3)
                                .build())
                .build());
        net.init();
        TestNets.randomiseParameters(net, 3);
        return net;
    }

    /** @return indices 3, 0, 3, 6, 1 as {@code [N, 1]} (row 3 used twice) */
    private static INDArray indices() {
        return Nd4j.create(new double[][] {{3}, {0}, {3}, {6}, {1}});
    }

    @Test
    void firstOrderEqualsSingleExamplePasses() {
        for (boolean bias : new boolean[] {true, false}) {
            MultiLayerNetwork net = network(bias);
            INDArray x = indices();
            INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, x.size(0), 3);
            Reference.assertFirstOrderEqualsSingleExamplePasses(net, x, y, "embedding, bias " + bias);
            INDArray g = BackPackNetwork.extend(net).backward(x, y, new BatchGrad()).byKey(BatchGrad.class, "0_W");
            for (int n = 0; n < x.size(0); n++) {
                for (int row = 0; row < VOCABULARY; row++) {
                    double norm = g.slice(n).getRow(row).norm2Number().doubleValue();
                    assertEquals(row == x.getInt(n, 0), norm > 0, "example " + n + " row " + row);
                }
            }
        }
    }

    @Test
    void kroneckerFactorsAreRefusedNamingTheLayer() {
        MultiLayerNetwork net = network(true);
        INDArray x = indices();
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, x.size(0), 3);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(net).backward(x, y, new io.github.dl4jbackpack.extensions.KFAC()));
        assertEquals("0", e.layerName(), e.getMessage());
        assertTrue(e.getMessage().contains("Kronecker factors of embeddings"), e.getMessage());
        BackPackNetwork.extend(net).backward(x, y, new BatchL2Grad());
    }
}
