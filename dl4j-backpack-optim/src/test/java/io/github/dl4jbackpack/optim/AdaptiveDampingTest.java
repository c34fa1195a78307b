// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.KFLR;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.util.ModelSerializer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Sgd;

import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Levenberg–Marquardt damping of the preconditioned updaters: each iteration's λ against the rule computed by hand
 * from DL4J's own scores of the batch before and after the step, the step actually taken and the curvature read
 * from a separate network at the same parameters (the curvature of the rule's last curvature iteration); the step using the adapted λ; the model's scaling (ρ → 1 for
 * small steps); a checkpoint resuming exactly; the settings through JSON; and the listener's absence refused.
 */
class AdaptiveDampingTest {

    @BeforeAll
    static void float64() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    /** The hand computation of one run: λ after each adaptation, and the ratios. */
    private record Run(List<Double> dampings, List<Double> ratios) {
    }

    /**
     * Trains with the rule and checks every iteration against the definition: the step {@code −α (C + λ + η)⁻¹ g}
     * with the current λ (diagonal) or the π-damped Kronecker step, {@code ρ = ΔL / (gᵀδ + ½ δᵀ(C + η)δ)} with δ the
     * parameters' actual change, and λ updated by ω when ρ leaves [1/4, 3/4].
     */
    private static Run trainAndCompare(PreconditionedUpdater rule, int steps) {
        MultiLayerNetwork net = PreconditionedUpdaterTest.network(rule, 3);
        MultiLayerNetwork probe = PreconditionedUpdaterTest.network(new Sgd(0.1), 3);
        BackPackNetwork.extend(net);
        DampingAdaptation listener = new DampingAdaptation();
        net.addListeners(listener);
        BackPackNetwork probing = BackPackNetwork.extend(probe);
        boolean kronecker = rule instanceof KroneckerUpdater;
        double alpha = rule.getLearningRate(0, 0);
        double omega = rule.getDampingFactor();
        double lambda = rule.getDamping();
        List<Double> dampings = new ArrayList<>();
        List<Double> ratios = new ArrayList<>();
        Map<String, INDArray[]> latest = new HashMap<>();
        for (int i = 0; i < steps; i++) {
            INDArray x = PreconditionedUpdaterTest.features(10 + i, 5);
            INDArray y = PreconditionedUpdaterTest.labels(20 + i, 5);
            DataSet batch = new DataSet(x, y);
            probe.setParams(net.params().dup());
            double before = probe.score(batch, false);
            Quantities q = probing.backward(x, y, kronecker ? new KFLR() : new DiagGGNExact());
            INDArray thetaBefore = net.params().dup();
            net.fit(x, y);
            double predicted = 0;
            for (int layer : new int[] {0, 2, 3}) {
                for (String param : probe.getLayer(layer).paramTable().keySet()) {
                    String key = layer + "_" + param;
                    INDArray theta = probe.getParam(key);
                    double l2 = layer != 3 && param.equals("W") ? PreconditionedUpdaterTest.L2 : 0;
                    INDArray g = probe.gradient().getGradientFor(key).div(x.size(0)).add(theta.mul(l2));
                    if (i % rule.getCurvatureInterval() == 0) {
                        latest.put(key, kronecker
                                ? CurvatureScheduleTest.factors(q.get(KFLR.class, String.valueOf(layer), param))
                                : new INDArray[] {q.get(DiagGGNExact.class, String.valueOf(layer), param)});
                    }
                    INDArray[] curvature = latest.get(key);
                    INDArray expectedStep = (kronecker
                            ? CurvatureScheduleTest.kroneckerDirection(curvature, theta, g, lambda + l2)
                            : g.div(curvature[0].add(lambda + l2))).muli(-alpha);
                    INDArray delta = net.getParam(key).sub(theta);
                    double scale = expectedStep.amaxNumber().doubleValue();
                    assertEquals(0.0, expectedStep.sub(delta).amaxNumber().doubleValue(), 1e-9 * scale + 1e-30,
                            rule + ", iteration " + i + ", " + key + ": the step with λ = " + lambda);
                    double quadratic = kronecker ? kroneckerQuadratic(curvature, theta, delta)
                            : curvature[0].mul(delta).mul(delta).sumNumber().doubleValue();
                    predicted += g.mul(delta).sumNumber().doubleValue()
                            + 0.5 * (quadratic + l2 * delta.mul(delta).sumNumber().doubleValue());
                }
            }
            assertTrue(net.params().sub(thetaBefore).amaxNumber().doubleValue() > 0);
            if (i % rule.getDampingInterval() == 0) {
                probe.setParams(net.params().dup());
                double ratio = predicted < 0 ? (probe.score(batch, false) - before) / predicted : Double.NaN;
                String what = rule + ", iteration " + i + ": reduction ratio (predicted change " + predicted + ")";
                if (Double.isNaN(ratio)) {
                    assertTrue(Double.isNaN(listener.lastReductionRatio()), what);
                } else {
                    assertEquals(ratio, listener.lastReductionRatio(), 1e-9 * Math.max(1, Math.abs(ratio)), what);
                }
                if (Double.isNaN(ratio) || ratio < 0.25) {
                    lambda = lambda / omega;
                } else if (ratio > 0.75) {
                    lambda = lambda * omega;
                }
                assertEquals(lambda, listener.damping(), 1e-12 * lambda, rule + ", iteration " + i + ": λ");
                ratios.add(ratio);
                dampings.add(lambda);
            }
        }
        return new Run(dampings, ratios);
    }

    /** @return {@code δᵀ (A ⊗ B) δ} (or {@code δᵀ B δ}) by an explicit Kronecker product, in the weight's arrangement */
    private static double kroneckerQuadratic(INDArray[] factors, INDArray theta, INDArray delta) {
        INDArray matrix = factors.length == 1 ? factors[0]
                : theta.rank() == 2 ? PreconditionedUpdaterTest.kron(factors[0], factors[1])
                : PreconditionedUpdaterTest.kron(factors[1], factors[0]);
        INDArray d = delta.dup('c').reshape('c', delta.length(), 1);
        return d.transpose().mmul(matrix).mmul(d).getDouble(0);
    }

    @Test
    void smallStepsMatchTheQuadraticModelAndLowerTheDamping() {
        // with a small step the loss changes as the model predicts (ρ ≈ 1): the model's scaling (the ½, the mean
        // over the batch, the L2 terms) agrees with DL4J's score
        Run run = trainAndCompare(DiagGGNUpdater.exact(0.02, 0.5).withAdaptiveDamping(1, 0.5), 4);
        for (double ratio : run.ratios()) {
            assertEquals(1.0, ratio, 0.1, "ρ of small steps " + run.ratios());
        }
        assertEquals(List.of(0.25, 0.125, 0.0625, 0.03125), run.dampings());
    }

    @Test
    void stepsThatOvershootRaiseTheDamping() {
        Run run = trainAndCompare(DiagGGNUpdater.exact(8, 1e-3).withAdaptiveDamping(1, 0.5), 4);
        assertEquals(List.of(2e-3, 4e-3, 8e-3, 1.6e-2), run.dampings(), "ratios " + run.ratios());
    }

    @Test
    void kroneckerStepsUseTheAdaptedDampingInTheirInverses() {
        Run run = trainAndCompare(KroneckerUpdater.kflr(0.1, 0.1).withAdaptiveDamping(2), 6);
        assertEquals(3, run.dampings().size(), "adapted in iterations 0, 2 and 4");
        assertNotEquals(0.1, run.dampings().get(0), "the damping should have moved: " + run);
    }

    @Test
    void cachedInversesAreRecomputedWhenTheDampingChangesBetweenCurvatureIterations() {
        // curvature every 4 iterations, inverses every iteration: in iterations 1–3 the factors are unchanged and
        // only the adapted λ makes the cached inverses stale
        Run run = trainAndCompare(KroneckerUpdater.kflr(0.1, 0.1).withAdaptiveDamping(1, 0.5)
                .withCurvatureInterval(4), 4);
        assertEquals(4, run.dampings().stream().distinct().count(), "λ changed in every iteration: " + run);
    }

    @Test
    void graphsAdaptTheirDampingFromTheirOutputLayersLabels() {
        ComputationGraph graph = GraphUpdaterTest.residual(KroneckerUpdater.kflr(0.01, 1.0).withAdaptiveDamping(1,
                0.5), 2);
        BackPackNetwork.extend(graph);
        DampingAdaptation listener = new DampingAdaptation();
        graph.addListeners(listener);
        for (int i = 0; i < 3; i++) {
            graph.fit(new INDArray[] {GraphUpdaterTest.features(i, 6)},
                    new INDArray[] {PreconditionedUpdaterTest.labels(i, 6)});
            assertEquals(1.0, listener.lastReductionRatio(), 0.1, "a small step's ρ, iteration " + i);
        }
        assertEquals(0.125, listener.damping(), 1e-15);
    }

    @Test
    void withoutTheListenerOrWithTwoTheFirstAdaptationFailsAndSaysWhy() {
        MultiLayerNetwork net = PreconditionedUpdaterTest.network(KroneckerUpdater.kflr(0.1, 0.1)
                .withAdaptiveDamping(3), 1);
        BackPackNetwork.extend(net);
        INDArray before = net.params().dup();
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> net.fit(PreconditionedUpdaterTest.features(1, 4), PreconditionedUpdaterTest.labels(1, 4)));
        assertTrue(e.getMessage().contains("net.addListeners(new DampingAdaptation())"), e.getMessage());
        assertArrayEquals(before.data().asDouble(), net.params().data().asDouble(), 0.0, "no step was taken");

        MultiLayerNetwork twice = PreconditionedUpdaterTest.network(KroneckerUpdater.kflr(0.1, 0.1)
                .withAdaptiveDamping(3), 1);
        BackPackNetwork.extend(twice);
        twice.addListeners(new DampingAdaptation(), new DampingAdaptation());
        IllegalStateException two = assertThrows(IllegalStateException.class,
                () -> twice.fit(PreconditionedUpdaterTest.features(1, 4), PreconditionedUpdaterTest.labels(1, 4)));
        assertTrue(two.getMessage().contains("one listener per network"), two.getMessage());
    }

    @Test
    void aCheckpointResumesWithTheAdaptedDamping(@TempDir Path dir) throws Exception {
        PreconditionedUpdater rule = KroneckerUpdater.kflr(0.3, 0.1).withAdaptiveDamping(1, 0.5)
                .withCurvatureInterval(2).withInverseInterval(2);
        MultiLayerNetwork uninterrupted = PreconditionedUpdaterTest.network(rule, 5);
        MultiLayerNetwork interrupted = uninterrupted.clone();
        BackPackNetwork.extend(uninterrupted);
        BackPackNetwork.extend(interrupted);
        DampingAdaptation uninterruptedListener = new DampingAdaptation();
        uninterrupted.addListeners(uninterruptedListener);
        interrupted.addListeners(new DampingAdaptation());
        for (int i = 0; i < 3; i++) {
            uninterrupted.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
            interrupted.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
        }
        assertNotEquals(0.1, uninterruptedListener.damping(), "λ should have moved before the checkpoint");
        File file = dir.resolve("net.zip").toFile();
        ModelSerializer.writeModel(interrupted, file, true);
        CurvatureUpdaterState.save(interrupted, file);
        MultiLayerNetwork restored = ModelSerializer.restoreMultiLayerNetwork(file, true);
        assertTrue(CurvatureUpdaterState.restore(restored, file));
        BackPackNetwork.extend(restored);
        restored.addListeners(new DampingAdaptation());
        MultiLayerNetwork withoutState = ModelSerializer.restoreMultiLayerNetwork(file, true);
        BackPackNetwork.extend(withoutState);
        withoutState.addListeners(new DampingAdaptation());
        for (int i = 3; i < 7; i++) {
            uninterrupted.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
            restored.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
            withoutState.fit(PreconditionedUpdaterTest.features(i, 6), PreconditionedUpdaterTest.labels(i, 6));
        }
        assertArrayEquals(uninterrupted.params().data().asDouble(), restored.params().data().asDouble(), 0.0);
        assertTrue(uninterrupted.params().sub(withoutState.params()).amaxNumber().doubleValue() > 1e-8,
                "without the state λ restarts and the run should differ");
    }

    @Test
    void aFloat32NetworkAdaptsAsTheFloat64One() {
        PreconditionedUpdater rule = KroneckerUpdater.kflr(0.5, 0.1).withAdaptiveDamping(1, 0.5);
        MultiLayerNetwork doubles = PreconditionedUpdaterTest.network(rule, 4);
        MultiLayerNetwork floats = doubles.convertDataType(DataType.FLOAT);
        BackPackNetwork.extend(doubles);
        BackPackNetwork.extend(floats);
        DampingAdaptation doubleListener = new DampingAdaptation();
        DampingAdaptation floatListener = new DampingAdaptation();
        doubles.addListeners(doubleListener);
        floats.addListeners(floatListener);
        for (int i = 0; i < 5; i++) {
            INDArray x = PreconditionedUpdaterTest.features(30 + i, 5);
            INDArray y = PreconditionedUpdaterTest.labels(40 + i, 5);
            doubles.fit(x, y);
            floats.fit(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT));
            assertEquals(doubleListener.lastReductionRatio(), floatListener.lastReductionRatio(), 1e-2,
                    "iteration " + i);
            assertEquals(doubleListener.damping(), floatListener.damping(), 0.0, "iteration " + i);
        }
    }

    @Test
    void settingsRoundTripThroughJsonAndBadOnesAreRefused() {
        List<PreconditionedUpdater> rules = List.of(KroneckerUpdater.kfac(0.05, 1e-2, 2).withAdaptiveDamping(5),
                KroneckerUpdater.kflr(0.3, 1).withAdaptiveDamping(2, 0.7).withInverseInterval(4),
                DiagGGNUpdater.exact(0.1, 1e-3).withAdaptiveDamping(1, 0.5).withCurvatureDecay(0.5));
        for (PreconditionedUpdater u : rules) {
            MultiLayerConfiguration conf = PreconditionedUpdaterTest.network(u, 1).getLayerWiseConfigurations();
            PreconditionedUpdater read = (PreconditionedUpdater) MultiLayerConfiguration.fromJson(conf.toJson())
                    .getConf(2).getLayer().getUpdaterByParam("W");
            assertEquals(u, read, u + ": through JSON");
            assertEquals(u.getDampingInterval(), read.getDampingInterval());
            assertEquals(u.getDampingFactor(), read.getDampingFactor(), 0.0);
            assertEquals(u, u.clone());
        }
        assertEquals(Math.pow(0.95, 5), rules.get(0).getDampingFactor(), 1e-15, "Martens & Grosse's ω = (19/20)^T");
        KroneckerUpdater fixed = KroneckerUpdater.kflr(0.3, 1);
        assertEquals(0, fixed.getDampingInterval());
        assertFalse(fixed.equals(fixed.withAdaptiveDamping(2)), "the adaptation is part of equality");
        assertThrows(IllegalArgumentException.class, () -> fixed.withAdaptiveDamping(0));
        for (double bad : new double[] {0, 1, -0.5, Double.NaN}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> fixed.withAdaptiveDamping(2, bad));
            assertTrue(e.getMessage().contains("ω"), e.getMessage());
        }
        IllegalArgumentException zero = assertThrows(IllegalArgumentException.class,
                () -> KroneckerUpdater.kflr(0.1, 0).withAdaptiveDamping(2));
        assertTrue(zero.getMessage().contains("λ"), zero.getMessage());
    }
}
