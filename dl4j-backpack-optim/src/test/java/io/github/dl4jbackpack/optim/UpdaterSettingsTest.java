// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.BackPackNetwork;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Settings that would destroy a network are refused when the updater is configured, and curvature
 * that vanishes (dead units, all-zero inputs, saturated outputs) gives a defined step, never NaN.
 */
class UpdaterSettingsTest {

    @BeforeAll
    static void float64() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    static MultiLayerNetwork network(IUpdater updater) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder().seed(1).dataType(DataType.DOUBLE)
                .updater(updater)
                .list(new DenseLayer.Builder().nOut(4).activation(Activation.RELU).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.feedForward(3)).build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        return net;
    }

    @Test
    void invalidSettingsAreRefusedWhenConfigured() {
        for (double bad : new double[] {Double.NaN, Double.POSITIVE_INFINITY, -0.1}) {
            IllegalArgumentException lr = assertThrows(IllegalArgumentException.class,
                    () -> DiagGGNUpdater.exact(bad, 0.1));
            assertTrue(lr.getMessage().contains("learning rate"), lr.getMessage());
            assertThrows(IllegalArgumentException.class, () -> KroneckerUpdater.kflr(bad, 0.1));
            IllegalArgumentException damping = assertThrows(IllegalArgumentException.class,
                    () -> KroneckerUpdater.kfac(0.1, bad, 1));
            assertTrue(damping.getMessage().contains("damping"), damping.getMessage());
        }
        assertThrows(IllegalArgumentException.class, () -> DiagGGNUpdater.exact(0.1, 0.1).setLrAndSchedule(Double.NaN,
                null));
    }

    /** A dead ReLU unit (bias −100) and an input column that is always 0: no curvature there. */
    private static void killUnitAndColumn(MultiLayerNetwork net) {
        INDArray b = net.getParam("0_b").dup();
        b.putScalar(1, -100.0);
        net.setParam("0_b", b);
    }

    private static INDArray inputsWithZeroColumn(int n) {
        INDArray x = Nd4j.rand(DataType.DOUBLE, n, 3).subi(0.5);
        x.getColumn(2).assign(0.0);
        return x;
    }

    private static INDArray labels(int n) {
        INDArray y = Nd4j.zeros(DataType.DOUBLE, n, 3);
        for (int i = 0; i < n; i++) {
            y.putScalar(i, i % 3, 1.0);
        }
        return y;
    }

    @Test
    void zeroDampingOnDirectionsWithoutCurvatureGivesNoStepThereNotNaN() {
        for (PreconditionedUpdater rule : List.of(DiagGGNUpdater.exact(0.1, 0), KroneckerUpdater.kflr(0.1, 0))) {
            MultiLayerNetwork net = network(rule);
            killUnitAndColumn(net);
            BackPackNetwork.extend(net);
            INDArray before = net.params().dup();
            double deadBias = net.getParam("0_b").getDouble(1);
            net.fit(inputsWithZeroColumn(6), labels(6));
            INDArray after = net.params();
            assertEquals(0, after.isNaN().castTo(DataType.INT).sumNumber().intValue(), rule + " produced NaN: " + after);
            assertEquals(0, after.isInfinite().castTo(DataType.INT).sumNumber().intValue(), rule + ": " + after);
            assertEquals(deadBias, net.getParam("0_b").getDouble(1), 0.0,
                    rule + ": the dead unit's bias has no curvature and no gradient, so no step");
            assertTrue(after.sub(before).amaxNumber().doubleValue() > 0, rule + " took no step at all");
        }
    }

    @Test
    void factorsWithoutCurvatureDoNotBreakPiDamping() {
        for (PreconditionedUpdater rule : List.of(KroneckerUpdater.kflr(0.1, 1e-2), KroneckerUpdater.kfac(0.1, 1e-2, 1),
                KroneckerUpdater.kflr(0.1, 0))) {
            MultiLayerNetwork net = network(rule);
            BackPackNetwork.extend(net);
            net.fit(Nd4j.zeros(DataType.DOUBLE, 5, 3), labels(5));     // all-zero batch: A = 0
            net.getParam("1_b").assign(Nd4j.createFromArray(60.0, -60.0, -60.0));
            net.fit(inputsWithZeroColumn(5), labels(5));               // saturated softmax: B ≈ 0
            INDArray p = net.params();
            assertEquals(0, p.isNaN().castTo(DataType.INT).sumNumber().intValue(), rule + ": " + p);
            assertEquals(0, p.isInfinite().castTo(DataType.INT).sumNumber().intValue(), rule + ": " + p);
        }
        assertEquals(1.0, KroneckerPreconditioner.piDamping(0, 0.3), 0.0);
        assertEquals(1.0, KroneckerPreconditioner.piDamping(0.3, 0), 0.0);
        assertEquals(2.0, KroneckerPreconditioner.piDamping(0.4, 0.1), 1e-15);
    }
}
