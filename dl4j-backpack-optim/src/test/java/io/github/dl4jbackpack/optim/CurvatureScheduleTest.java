// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.util.ModelSerializer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Sgd;

import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Curvature intervals, moving averages and inverse intervals of the preconditioned updaters: a run of steps
 * against the same steps computed by hand from each iteration's curvature (read from a separate network at the
 * same parameters), which iterations compute curvature at all, a checkpoint taken mid-interval resuming exactly,
 * and the settings through JSON.
 */
class CurvatureScheduleTest {

    private static final int STEPS = 7;

    @BeforeAll
    static void float64() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    static Stream<PreconditionedUpdater> scheduledRules() {
        return Stream.of(DiagGGNUpdater.exact(0.1, 0.1).withCurvatureInterval(2).withCurvatureDecay(0.5),
                KroneckerUpdater.kflr(0.1, 0.1).withCurvatureInterval(2).withCurvatureDecay(0.5).withInverseInterval(3),
                KroneckerUpdater.kflr(0.1, 0.1).withCurvatureInterval(3).withInverseInterval(2),
                KroneckerUpdater.kflr(0.1, 0.1).withCurvatureDecay(0.75));
    }

    /** What the hand computation keeps per parameter: the averaged curvature and the factors last inverted. */
    private static final class HandState {
        INDArray[] average;
        INDArray[] inverted;
        boolean changed;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("scheduledRules")
    void stepsFollowTheDefinitionOfIntervalsAndAverages(PreconditionedUpdater rule) {
        MultiLayerNetwork net = PreconditionedUpdaterTest.network(rule, 3);
        MultiLayerNetwork probe = PreconditionedUpdaterTest.network(new Sgd(0.1), 3);
        BackPackNetwork extended = BackPackNetwork.extend(net);
        List<Integer> curvatureIterations = new ArrayList<>();
        extended.addQuantitiesListener(q -> curvatureIterations.add(net.getIterationCount()));
        BackPackNetwork probing = BackPackNetwork.extend(probe);
        boolean kronecker = rule instanceof KroneckerUpdater;
        int inverseInterval = kronecker ? ((KroneckerUpdater) rule).getInverseInterval() : 1;
        double decay = rule.getCurvatureDecay();
        double alpha = rule.getLearningRate(0, 0);
        double lambda = rule.getDamping();
        Map<String, HandState> hand = new HashMap<>();
        List<Integer> expectedIterations = new ArrayList<>();

        for (int i = 0; i < STEPS; i++) {
            INDArray x = PreconditionedUpdaterTest.features(10 + i, 5);
            INDArray y = PreconditionedUpdaterTest.labels(20 + i, 5);
            probe.setParams(net.params().dup());
            Quantities q = probing.backward(x, y, kronecker ? new KFLR() : new DiagGGNExact());
            boolean curvatureIteration = i % rule.getCurvatureInterval() == 0;
            if (curvatureIteration) {
                expectedIterations.add(i);
            }
            Map<String, INDArray> expected = new HashMap<>();
            for (int layer : new int[] {0, 2, 3}) {
                for (String param : probe.getLayer(layer).paramTable().keySet()) {
                    String key = layer + "_" + param;
                    HandState s = hand.computeIfAbsent(key, k -> new HandState());
                    if (curvatureIteration) {
                        INDArray[] fresh = kronecker ? factors(q.get(KFLR.class, String.valueOf(layer), param))
                                : new INDArray[] {q.get(DiagGGNExact.class, String.valueOf(layer), param)};
                        if (s.average == null) {
                            s.average = fresh;
                        } else {
                            for (int f = 0; f < fresh.length; f++) {
                                s.average[f] = s.average[f].mul(decay).add(fresh[f].mul(1 - decay));
                            }
                        }
                        s.changed = true;
                    }
                    if (s.inverted == null || i % inverseInterval == 0 && s.changed) {
                        s.inverted = s.average.clone();
                        s.changed = false;
                    }
                    INDArray theta = probe.getParam(key);
                    double l2 = layer != 3 && param.equals("W") ? PreconditionedUpdaterTest.L2 : 0;
                    INDArray g = probe.gradient().getGradientFor(key).div(x.size(0)).add(theta.mul(l2));
                    INDArray direction = kronecker ? kroneckerDirection(s.inverted, theta, g, lambda + l2)
                            : g.div(s.average[0].add(lambda + l2));
                    expected.put(key, theta.sub(direction.muli(alpha)));
                }
            }
            net.fit(x, y);
            for (Map.Entry<String, INDArray> e : expected.entrySet()) {
                INDArray actual = net.getParam(e.getKey());
                INDArray before = probe.getParam(e.getKey());
                double scale = e.getValue().sub(before).amaxNumber().doubleValue();
                assertEquals(0.0, e.getValue().sub(actual).amaxNumber().doubleValue(), 1e-9 * scale,
                        rule + ", iteration " + i + ", " + e.getKey());
            }
        }
        assertEquals(expectedIterations, curvatureIterations,
                rule + ": the iterations whose extended pass computed curvature");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("scheduledRules")
    void aFloat32NetworkFollowsTheFloat64StepsWithinFloat32Accuracy(PreconditionedUpdater rule) {
        MultiLayerNetwork doubles = PreconditionedUpdaterTest.network(rule, 4);
        INDArray start = doubles.params().dup();
        MultiLayerNetwork floats = doubles.convertDataType(DataType.FLOAT);
        BackPackNetwork.extend(doubles);
        BackPackNetwork.extend(floats);
        for (int i = 0; i < 5; i++) {
            INDArray x = PreconditionedUpdaterTest.features(30 + i, 5);
            INDArray y = PreconditionedUpdaterTest.labels(40 + i, 5);
            doubles.fit(x, y);
            floats.fit(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT));
        }
        double moved = doubles.params().sub(start).amaxNumber().doubleValue();
        double apart = doubles.params().sub(floats.params().castTo(DataType.DOUBLE)).amaxNumber().doubleValue();
        assertTrue(moved > 1e-3, rule + " moved " + moved);
        assertTrue(apart < 1e-3 * moved, rule + ": float32 " + apart + " apart after steps of " + moved);
    }

    /** @return a Kronecker curvature's factors in the state's order, {@code [B]} or {@code [A, B]} */
    static INDArray[] factors(KroneckerFactors k) {
        return k.inputFactor().isEmpty() ? new INDArray[] {k.outputFactor()}
                : new INDArray[] {k.inputFactor().get(), k.outputFactor()};
    }

    /** @return the π-damped Kronecker step from the given factors, by an explicit Kronecker product and a solve */
    static INDArray kroneckerDirection(INDArray[] factors, INDArray theta, INDArray g, double total) {
        INDArray matrix;
        if (factors.length == 1) {
            matrix = factors[0].add(Nd4j.eye(factors[0].rows()).muli(total));
        } else {
            INDArray a = factors[0];
            INDArray b = factors[1];
            double pi = Math.sqrt((Nd4j.diag(a).sumNumber().doubleValue() / a.rows())
                    / (Nd4j.diag(b).sumNumber().doubleValue() / b.rows()));
            double d = Math.sqrt(total);
            INDArray dampedA = a.add(Nd4j.eye(a.rows()).muli(pi * d));
            INDArray dampedB = b.add(Nd4j.eye(b.rows()).muli(d / pi));
            matrix = theta.rank() == 2 ? PreconditionedUpdaterTest.kron(dampedA, dampedB)
                    : PreconditionedUpdaterTest.kron(dampedB, dampedA);
        }
        INDArray direction = PreconditionedUpdaterTest.solve(matrix, g.dup('c').reshape(g.length()));
        return direction.reshape('c', theta.shape());
    }

    @Test
    void aUsersExtensionsRunInEveryIterationTheRulesCurvatureOnlyInItsOwn() {
        PreconditionedUpdater rule = KroneckerUpdater.kflr(0.1, 0.1).withCurvatureInterval(3);
        MultiLayerNetwork net = PreconditionedUpdaterTest.network(rule, 2);
        MultiLayerNetwork sameRuleEveryIteration = PreconditionedUpdaterTest.network(rule, 2);
        BackPackNetwork extended = BackPackNetwork.extend(net);
        extended.enable(new Variance());
        BackPackNetwork.extend(sameRuleEveryIteration);
        List<Integer> withCurvature = new ArrayList<>();
        List<Integer> withVariance = new ArrayList<>();
        extended.addQuantitiesListener(q -> {
            if (q.contains(KFLR.class)) {
                withCurvature.add(net.getIterationCount());
            }
            if (q.contains(Variance.class)) {
                withVariance.add(net.getIterationCount());
            }
        });
        for (int i = 0; i < 7; i++) {
            net.fit(PreconditionedUpdaterTest.features(i, 5), PreconditionedUpdaterTest.labels(i, 5));
            sameRuleEveryIteration.fit(PreconditionedUpdaterTest.features(i, 5), PreconditionedUpdaterTest.labels(i, 5));
        }
        assertEquals(List.of(0, 1, 2, 3, 4, 5, 6), withVariance);
        assertEquals(List.of(0, 3, 6), withCurvature);
        // the passes computing Variance alone leave the rule's averaged curvature as it was
        assertArrayEquals(sameRuleEveryIteration.params().data().asDouble(), net.params().data().asDouble(), 0.0);
    }

    static Stream<PreconditionedUpdater> checkpointedRules() {
        return Stream.of(KroneckerUpdater.kflr(0.1, 0.1).withCurvatureInterval(2).withCurvatureDecay(0.9)
                        .withInverseInterval(3),
                // no average: the dense layer's input factor stays a square root with low-rank inverses
                KroneckerUpdater.kflr(0.1, 0.1).withCurvatureInterval(2).withInverseInterval(3),
                DiagGGNUpdater.exact(0.1, 0.1).withCurvatureInterval(3).withCurvatureDecay(0.5));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("checkpointedRules")
    void aCheckpointMidIntervalResumesExactly(PreconditionedUpdater rule, @TempDir Path dir) throws Exception {
        MultiLayerNetwork uninterrupted = PreconditionedUpdaterTest.network(rule, 5);
        MultiLayerNetwork interrupted = uninterrupted.clone();
        BackPackNetwork.extend(uninterrupted);
        BackPackNetwork.extend(interrupted);
        for (int i = 0; i < 4; i++) {
            uninterrupted.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
            interrupted.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
        }
        // iteration 4 comes next: mid-interval for the averaged curvature and for the cached inverses
        File file = dir.resolve("net.zip").toFile();
        ModelSerializer.writeModel(interrupted, file, true);
        CurvatureUpdaterState.save(interrupted, file);
        MultiLayerNetwork restored = ModelSerializer.restoreMultiLayerNetwork(file, true);
        assertTrue(CurvatureUpdaterState.restore(restored, file));
        BackPackNetwork.extend(restored);

        MultiLayerNetwork withoutState = ModelSerializer.restoreMultiLayerNetwork(file, true);
        BackPackNetwork.extend(withoutState);
        for (int i = 4; i < 8; i++) {
            uninterrupted.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
            restored.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
            withoutState.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
        }
        assertEquals(8, restored.getIterationCount());
        assertArrayEquals(uninterrupted.params().data().asDouble(), restored.params().data().asDouble(), 0.0,
                rule + ": resumed with the saved state");
        // the test can tell: without the state the averages restart, and the trajectory differs
        assertTrue(uninterrupted.params().sub(withoutState.params()).amaxNumber().doubleValue() > 1e-8,
                rule + ": without the state the run should differ");
    }

    @Test
    void aGraphCheckpointResumesExactly(@TempDir Path dir) throws Exception {
        PreconditionedUpdater rule = KroneckerUpdater.kflr(0.1, 0.1).withCurvatureInterval(2).withCurvatureDecay(0.8)
                .withInverseInterval(3);
        ComputationGraph uninterrupted = GraphUpdaterTest.residual(rule, 7);
        ComputationGraph interrupted = uninterrupted.clone();
        BackPackNetwork.extend(uninterrupted);
        BackPackNetwork.extend(interrupted);
        for (int i = 0; i < 3; i++) {
            fit(uninterrupted, i);
            fit(interrupted, i);
        }
        File file = dir.resolve("graph.zip").toFile();
        ModelSerializer.writeModel(interrupted, file, true);
        CurvatureUpdaterState.save(interrupted, file);
        ComputationGraph restored = ModelSerializer.restoreComputationGraph(file, true);
        assertTrue(CurvatureUpdaterState.restore(restored, file));
        BackPackNetwork.extend(restored);
        for (int i = 3; i < 6; i++) {
            fit(uninterrupted, i);
            fit(restored, i);
        }
        assertArrayEquals(uninterrupted.params().data().asDouble(), restored.params().data().asDouble(), 0.0);
    }

    private static void fit(ComputationGraph graph, int batch) {
        graph.fit(new INDArray[] {GraphUpdaterTest.features(batch, 6)},
                new INDArray[] {PreconditionedUpdaterTest.labels(batch, 6)});
    }

    @Test
    void stateThatDoesNotFitTheNetworkIsRefused(@TempDir Path dir) throws Exception {
        MultiLayerNetwork net = PreconditionedUpdaterTest.network(KroneckerUpdater.kflr(0.1, 0.1)
                .withCurvatureInterval(2), 1);
        BackPackNetwork.extend(net);
        net.fit(PreconditionedUpdaterTest.features(1, 4), PreconditionedUpdaterTest.labels(1, 4));
        File file = dir.resolve("net.zip").toFile();
        ModelSerializer.writeModel(net, file, true);
        assertFalse(CurvatureUpdaterState.restore(net, file), "no state saved yet");
        CurvatureUpdaterState.save(net, file);
        MultiLayerNetwork other = UpdaterSettingsTest.network(KroneckerUpdater.kflr(0.1, 0.1));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CurvatureUpdaterState.restore(other, file));
        assertTrue(e.getMessage().contains("another configuration"), e.getMessage());
    }

    @Test
    void settingsRoundTripThroughJsonAndBadOnesAreRefused() {
        List<PreconditionedUpdater> rules = List.of(
                KroneckerUpdater.kfac(0.05, 1e-2, 2).withCurvatureInterval(10).withCurvatureDecay(0.95)
                        .withInverseInterval(100),
                KroneckerUpdater.kflr(0.3, 1).withInverseInterval(5),
                DiagGGNUpdater.exact(0.1, 1e-3).withCurvatureInterval(4).withCurvatureDecay(0.5),
                DiagGGNUpdater.monteCarlo(0.2, 1e-4, 3).withCurvatureDecay(0.99));
        for (PreconditionedUpdater u : rules) {
            MultiLayerConfiguration conf = PreconditionedUpdaterTest.network(u, 1).getLayerWiseConfigurations();
            MultiLayerConfiguration back = MultiLayerConfiguration.fromJson(conf.toJson());
            PreconditionedUpdater read = (PreconditionedUpdater) back.getConf(2).getLayer().getUpdaterByParam("W");
            assertEquals(u, read, u + ": through JSON");
            assertEquals(u.getCurvatureInterval(), read.getCurvatureInterval());
            assertEquals(u.getCurvatureDecay(), read.getCurvatureDecay(), 0.0);
            assertEquals(u, u.clone());
        }
        assertEquals(100, ((KroneckerUpdater) MultiLayerConfiguration.fromJson(PreconditionedUpdaterTest.network(
                rules.get(0), 1).getLayerWiseConfigurations().toJson()).getConf(2).getLayer().getUpdaterByParam("W"))
                .getInverseInterval());
        assertFalse(rules.get(1).equals(KroneckerUpdater.kflr(0.3, 1)), "the inverse interval is part of equality");
        KroneckerUpdater defaults = KroneckerUpdater.kflr(0.1, 0.1);
        assertEquals(1, defaults.getCurvatureInterval());
        assertEquals(0.0, defaults.getCurvatureDecay(), 0.0);
        assertEquals(1, defaults.getInverseInterval());
        assertThrows(IllegalArgumentException.class, () -> defaults.withCurvatureInterval(0));
        assertThrows(IllegalArgumentException.class, () -> defaults.withInverseInterval(0));
        for (double bad : new double[] {-0.1, 1.0, Double.NaN}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> defaults.withCurvatureDecay(bad));
            assertTrue(e.getMessage().contains("decay"), e.getMessage());
        }
    }
}
