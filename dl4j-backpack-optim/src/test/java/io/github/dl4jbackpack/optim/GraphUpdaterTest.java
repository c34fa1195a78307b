// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.GradientVarianceListener;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.UnsupportedLayerException;
import io.github.dl4jbackpack.extensions.Extension;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.graph.ElementWiseVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.util.ModelSerializer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The curvature-preconditioned updaters and the gradient-variance listener on a residual
 * ComputationGraph: one step equals the step computed by hand, and a checkpoint resumes exactly.
 */
class GraphUpdaterTest {

    @BeforeAll
    static void float64() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    static Stream<PreconditionedUpdater> rules() {
        return Stream.of(DiagGGNUpdater.exact(0.1, 0.1), DiagGGNUpdater.monteCarlo(0.1, 0.1, 3),
                KroneckerUpdater.kflr(0.1, 0.1), KroneckerUpdater.kfac(0.1, 0.1, 2));
    }

    /** in → dense1 (tanh, L2) → dense2 (relu); add = dense1 + dense2 → out (softmax). */
    static ComputationGraph residual(IUpdater updater, long seed) {
        ComputationGraphConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(DataType.DOUBLE)
                .updater(updater)
                .graphBuilder()
                .addInputs("in")
                .addLayer("dense1", new DenseLayer.Builder().nOut(5).activation(Activation.TANH)
                        .l2(PreconditionedUpdaterTest.L2).build(), "in")
                .addLayer("dense2", new DenseLayer.Builder().nOut(5).activation(Activation.RELU).build(), "dense1")
                .addVertex("add", new ElementWiseVertex(ElementWiseVertex.Op.Add), "dense1", "dense2")
                .addLayer("out", new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX)
                        .build(), "add")
                .setOutputs("out")
                .setInputTypes(InputType.feedForward(4))
                .build();
        ComputationGraph graph = new ComputationGraph(conf);
        graph.init();
        return graph;
    }

    static INDArray features(long seed, int n) {
        PreconditionedUpdaterTest.seed(seed);
        return Nd4j.randn(DataType.DOUBLE, n, 4);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("rules")
    void oneStepEqualsTheStepComputedByHand(PreconditionedUpdater rule) {
        ComputationGraph graph = residual(rule, 3);
        ComputationGraph reference = graph.clone();
        INDArray x = features(4, 5);
        INDArray y = PreconditionedUpdaterTest.labels(5, 5);
        Nd4j.getRandom().setSeed(99);
        Quantities q = BackPackNetwork.extend(reference).backward(x, y,
                rule.requiredExtensions().toArray(new Extension<?>[0]));
        BackPackNetwork.extend(graph);
        Nd4j.getRandom().setSeed(99);
        graph.fit(new INDArray[] {x}, new INDArray[] {y});
        int checked = 0;
        for (String layer : List.of("dense1", "dense2", "out")) {
            for (String param : List.of("W", "b")) {
                String key = layer + "_" + param;
                INDArray theta = reference.getParam(key);
                INDArray gradient = reference.gradient().getGradientFor(key).div(x.size(0));
                double l2 = layer.equals("dense1") && param.equals("W") ? PreconditionedUpdaterTest.L2 : 0;
                INDArray expected = PreconditionedUpdaterTest.expectedStep(rule, q, layer, param, theta, gradient, l2);
                INDArray actual = graph.getParam(key);
                double scale = expected.sub(theta).amaxNumber().doubleValue();
                double diff = expected.sub(actual).amaxNumber().doubleValue();
                if (!(diff <= 1e-9 * scale)) {
                    fail(rule + " " + key + ": max |diff| " + diff + " vs step size " + scale);
                }
                checked++;
            }
        }
        assertEquals(6, checked);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("rules")
    void resumingFromACheckpointContinuesExactly(PreconditionedUpdater rule, @TempDir Path dir) throws Exception {
        ComputationGraph uninterrupted = residual(rule, 11);
        ComputationGraph interrupted = uninterrupted.clone();
        BackPackNetwork.extend(uninterrupted);
        BackPackNetwork.extend(interrupted);
        List<INDArray> xs = new ArrayList<>();
        List<INDArray> ys = new ArrayList<>();
        for (int step = 0; step < 6; step++) {
            xs.add(features(step, 6));
            ys.add(PreconditionedUpdaterTest.labels(step, 6));
        }
        for (int step = 0; step < 3; step++) {
            PreconditionedUpdaterTest.seed(step);
            uninterrupted.fit(new INDArray[] {xs.get(step)}, new INDArray[] {ys.get(step)});
            PreconditionedUpdaterTest.seed(step);
            interrupted.fit(new INDArray[] {xs.get(step)}, new INDArray[] {ys.get(step)});
        }
        File checkpoint = dir.resolve("graph.zip").toFile();
        ModelSerializer.writeModel(interrupted, checkpoint, true);
        ComputationGraph restored = ModelSerializer.restoreComputationGraph(checkpoint, true);
        assertEquals(rule, restored.getLayer("dense1").conf().getLayer().getUpdaterByParam("W"), "updater restored");
        assertArrayEquals(interrupted.params().data().asDouble(), restored.params().data().asDouble(), 0.0);
        BackPackNetwork.extend(restored);
        for (int step = 3; step < 6; step++) {
            PreconditionedUpdaterTest.seed(step);
            uninterrupted.fit(new INDArray[] {xs.get(step)}, new INDArray[] {ys.get(step)});
            PreconditionedUpdaterTest.seed(step);
            restored.fit(new INDArray[] {xs.get(step)}, new INDArray[] {ys.get(step)});
        }
        assertArrayEquals(uninterrupted.params().data().asDouble(), restored.params().data().asDouble(), 0.0);
    }

    @Test
    void kfraIsRefusedWhenTheGraphIsExtendedNamingTheFanOut() {
        ComputationGraph graph = residual(KroneckerUpdater.kfra(0.1, 0.1), 1);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class, () -> BackPackNetwork.extend(graph));
        assertEquals("dense1", e.layerName(), e.getMessage());
    }

    @Test
    void gradientVarianceListenerReportsEveryGraphLayerByName() {
        ComputationGraph graph = residual(new org.nd4j.linalg.learning.config.Sgd(0.1), 5);
        BackPackNetwork bp = BackPackNetwork.extend(graph);
        GradientVarianceListener listener = new GradientVarianceListener(bp, 1);
        graph.addListeners(listener);
        INDArray x = features(1, 8);
        INDArray y = PreconditionedUpdaterTest.labels(1, 8);
        graph.fit(new INDArray[] {x}, new INDArray[] {y});
        List<String> reported = new ArrayList<>();
        for (GradientVarianceListener.Statistics s : listener.lastReport()) {
            reported.add(s.layer() + "_" + s.param());
            assertTrue(Double.isFinite(s.signalToNoise()) && s.variance() >= 0, s.toString());
        }
        assertEquals(List.of("dense1_W", "dense1_b", "dense2_W", "dense2_b", "out_W", "out_b"), reported);
        ComputationGraph other = graph.clone();
        other.addListeners(listener);
        IllegalStateException wrong = assertThrows(IllegalStateException.class,
                () -> other.fit(new INDArray[] {x}, new INDArray[] {y}));
        assertTrue(wrong.getMessage().contains("created for another network"), wrong.getMessage());
        assertFalse(listener.lastReport().isEmpty());
    }
}
