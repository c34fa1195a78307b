// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.List;
import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * A softmax and a cross-entropy on probabilities in two layers ({@code Dense(softmax)} or
 * {@code ActivationLayer(softmax)}, then {@code LossLayer(identity, MCXENT)}, as Keras import and some
 * zoo models build classifiers) is the same function as one softmax output layer: every curvature
 * quantity equals that of the fused network with the same parameters, and against explicit Jacobians.
 */
class SplitSoftmaxTest {

    private static final List<Extension<?>> CURVATURE = List.of(new DiagGGNExact(), new BatchDiagGGNExact(),
            new DiagHessian(), new KFLR(), new KFRA(), new DiagGGNMC(3));

    private static MultiLayerNetwork net(Layer... layers) {
        return TestNets.build(DataType.DOUBLE, InputType.feedForward(4), layers);
    }

    @Test
    void splitSoftmaxCrossEntropyHasTheCurvatureOfTheFusedOutputLayer() {
        MultiLayerNetwork fused = net(new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build());
        MultiLayerNetwork dense = net(new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(3).activation(Activation.SOFTMAX).build(),
                new LossLayer.Builder(LossFunction.MCXENT).activation(Activation.IDENTITY).build());
        MultiLayerNetwork activation = net(new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(3).activation(Activation.IDENTITY).build(),
                new ActivationLayer.Builder().activation(Activation.SOFTMAX).build(),
                new LossLayer.Builder(LossFunction.NEGATIVELOGLIKELIHOOD).activation(Activation.IDENTITY).build());
        dense.setParams(fused.params());
        activation.setParams(fused.params());
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 6, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 6, 3);
        TestNets.seed(5);
        Quantities expected = BackPackNetwork.extend(fused).backward(x, y, CURVATURE.toArray(new Extension<?>[0]));
        for (MultiLayerNetwork split : List.of(dense, activation)) {
            TestNets.seed(5);
            Quantities q = BackPackNetwork.extend(split).backward(x, y, CURVATURE.toArray(new Extension<?>[0]));
            assertEquals(expected.score(), q.score(), 1e-12, "the same function");
            for (int layer : new int[] {0, 1}) {
                for (String p : List.of("W", "b")) {
                    for (Class<? extends Extension<INDArray>> e : List.of(DiagGGNExact.class, BatchDiagGGNExact.class,
                            DiagHessian.class, DiagGGNMC.class)) {
                        assertClose(expected.get(e, layer, p), q.get(e, layer, p), 1e-10, 1e-14,
                                e.getSimpleName() + " " + layer + p);
                    }
                    for (Class<? extends Extension<KroneckerFactors>> e : List.of(KFLR.class, KFRA.class)) {
                        assertClose(expected.get(e, layer, p).outputFactor(), q.get(e, layer, p).outputFactor(),
                                1e-10, 1e-14, e.getSimpleName() + " B " + layer + p);
                    }
                }
            }
            MultiLayerNetwork ref = net(new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                    new OutputLayer.Builder(LossFunction.L2).nOut(3).activation(Activation.IDENTITY).build());
            ref.setParams(fused.params());
            Map<String, INDArray> ggn = BruteForce.sumOverBatch(BruteForce.batchDiagGgn(BruteForce.jacobians(ref, x),
                    BruteForce.Loss.MCXENT));
            assertClose(ggn.get("1_W"), q.get(DiagGGNExact.class, 1, "W"), 1e-9, 1e-13, "GGN against Jacobians");
        }
    }
}
