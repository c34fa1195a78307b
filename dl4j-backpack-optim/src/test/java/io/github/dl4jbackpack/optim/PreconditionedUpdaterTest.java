// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
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
import org.nd4j.linalg.schedule.ExponentialSchedule;
import org.nd4j.linalg.schedule.ScheduleType;

import java.io.File;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** The curvature-preconditioned updaters, each rule against the same step computed by hand. */
class PreconditionedUpdaterTest {

    static final double L2 = 0.05;

    @BeforeAll
    static void float64() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    static Stream<PreconditionedUpdater> rules() {
        return Stream.of(DiagGGNUpdater.exact(0.1, 0.1), DiagGGNUpdater.monteCarlo(0.1, 0.1, 3),
                KroneckerUpdater.kflr(0.1, 0.1), KroneckerUpdater.kfac(0.1, 0.1, 2), KroneckerUpdater.kfra(0.1, 0.1));
    }

    /** A small CNN: conv (with L2) → max pool → dense (with L2) → softmax; one updater for all layers. */
    static MultiLayerNetwork network(IUpdater updater, long seed) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(DataType.DOUBLE)
                .updater(updater)
                .list(new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.TANH).l2(L2).build(),
                        new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                        new DenseLayer.Builder().nOut(5).activation(Activation.SIGMOID).l2(L2).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(6, 6, 2))
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        return net;
    }

    /** Seeds ND4J reproducibly: {@code setSeed(0)} does not reproduce draws in ND4J 1.0.0-M2.1. */
    static void seed(long seed) {
        Nd4j.getRandom().setSeed(seed + 1_000_003L);
    }

    static INDArray features(long seed, int n) {
        seed(seed);
        return Nd4j.randn(DataType.DOUBLE, n, 2, 6, 6);
    }

    static INDArray labels(long seed, int n) {
        INDArray y = Nd4j.zeros(DataType.DOUBLE, n, 3);
        java.util.Random r = new java.util.Random(seed);
        for (int i = 0; i < n; i++) {
            y.putScalar(i, r.nextInt(3), 1.0);
        }
        return y;
    }

    /** @return {@code X ⊗ Y} by its definition, entry by entry */
    static INDArray kron(INDArray x, INDArray y) {
        INDArray out = Nd4j.create(DataType.DOUBLE, x.rows() * y.rows(), x.columns() * y.columns());
        for (int i = 0; i < x.rows(); i++) {
            for (int j = 0; j < x.columns(); j++) {
                for (int k = 0; k < y.rows(); k++) {
                    for (int l = 0; l < y.columns(); l++) {
                        out.putScalar(i * y.rows() + k, j * y.columns() + l, x.getDouble(i, j) * y.getDouble(k, l));
                    }
                }
            }
        }
        return out;
    }

    /** @return {@code M⁻¹ v} by Gauss-Jordan elimination with partial pivoting, in plain Java */
    static INDArray solve(INDArray m, INDArray v) {
        int n = (int) v.length();
        double[][] a = new double[n][n + 1];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                a[i][j] = m.getDouble(i, j);
            }
            a[i][n] = v.getDouble(i);
        }
        for (int col = 0; col < n; col++) {
            int pivot = col;
            for (int r = col + 1; r < n; r++) {
                if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) {
                    pivot = r;
                }
            }
            double[] t = a[col];
            a[col] = a[pivot];
            a[pivot] = t;
            for (int r = 0; r < n; r++) {
                if (r != col) {
                    double f = a[r][col] / a[col][col];
                    for (int c = col; c <= n; c++) {
                        a[r][c] -= f * a[col][c];
                    }
                }
            }
        }
        double[] x = new double[n];
        for (int i = 0; i < n; i++) {
            x[i] = a[i][n] / a[i][i];
        }
        return Nd4j.createFromArray(x);
    }

    /** The expected new value of one parameter after one step, from the iteration's quantities. */
    @SuppressWarnings("unchecked")
    static INDArray expectedStep(PreconditionedUpdater rule, Quantities q, String layer, String param, INDArray theta,
                                 INDArray gradient, double l2) {
        double alpha = rule.getLearningRate(0, 0);
        double lambda = rule.getDamping();
        INDArray g = gradient.add(theta.mul(l2));
        Extension<?> e = rule.requiredExtensions().get(0);
        if (rule instanceof DiagGGNUpdater) {
            INDArray diag = q.get((Class<? extends Extension<INDArray>>) e.getClass(), layer, param);
            return theta.sub(g.div(diag.add(lambda + l2)).muli(alpha));
        }
        KroneckerFactors k = q.get((Class<? extends Extension<KroneckerFactors>>) e.getClass(), layer, param);
        INDArray matrix;
        if (k.inputFactor().isEmpty()) {
            matrix = k.outputFactor().add(Nd4j.eye(k.outputFactor().rows()).muli(lambda + l2));
        } else {
            INDArray a = k.inputFactor().get();
            INDArray b = k.outputFactor();
            double pi = Math.sqrt((Nd4j.diag(a).sumNumber().doubleValue() / a.rows())
                    / (Nd4j.diag(b).sumNumber().doubleValue() / b.rows()));
            double d = Math.sqrt(lambda + l2);
            INDArray dampedA = a.add(Nd4j.eye(a.rows()).muli(pi * d));
            INDArray dampedB = b.add(Nd4j.eye(b.rows()).muli(d / pi));
            matrix = theta.rank() == 2 ? kron(dampedA, dampedB) : kron(dampedB, dampedA);
        }
        INDArray direction = solve(matrix, g.dup('c').reshape(g.length()));
        return theta.sub(direction.reshape('c', theta.shape()).muli(alpha));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("rules")
    void oneStepEqualsTheStepComputedByHand(PreconditionedUpdater rule) {
        MultiLayerNetwork net = network(rule, 3);
        MultiLayerNetwork reference = net.clone();
        INDArray x = features(4, 5);
        INDArray y = labels(5, 5);

        BackPackNetwork ref = BackPackNetwork.extend(reference);
        Nd4j.getRandom().setSeed(99);
        Quantities q = ref.backward(x, y, rule.requiredExtensions().toArray(new Extension<?>[0]));

        BackPackNetwork.extend(net);
        Nd4j.getRandom().setSeed(99);
        net.fit(x, y);

        int checked = 0;
        for (int layer : new int[] {0, 2, 3}) {
            for (String param : reference.getLayer(layer).paramTable().keySet()) {
                INDArray theta = reference.getParam(layer + "_" + param);
                INDArray gradient = reference.gradient().getGradientFor(layer + "_" + param).div(x.size(0));
                double l2 = layer != 3 && param.equals("W") ? L2 : 0;   // DL4J's l2() leaves biases alone
                INDArray expected = expectedStep(rule, q, String.valueOf(layer), param, theta, gradient, l2);
                INDArray actual = net.getParam(layer + "_" + param);
                double scale = expected.sub(theta).amaxNumber().doubleValue();
                double diff = expected.sub(actual).amaxNumber().doubleValue();
                if (!(diff <= 1e-9 * scale)) {
                    fail(rule + " layer " + layer + " " + param + ": max |diff| " + diff + " vs step size " + scale);
                }
                checked++;
            }
        }
        assertEquals(6, checked);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("rules")
    void trainingLowersTheLoss(PreconditionedUpdater rule) {
        MultiLayerNetwork net = network(rule, 7);
        BackPackNetwork.extend(net);
        INDArray x = features(8, 24);
        INDArray y = labels(9, 24);
        net.setInput(x);
        net.setLabels(y);
        net.computeGradientAndScore();
        double before = net.score();
        for (int i = 0; i < 15; i++) {
            net.fit(x, y);
        }
        net.setInput(x);
        net.setLabels(y);
        net.computeGradientAndScore();
        assertTrue(net.score() < 0.8 * before, rule + ": loss " + before + " → " + net.score());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("rules")
    void resumingFromACheckpointContinuesExactly(PreconditionedUpdater rule, @TempDir Path dir) throws Exception {
        MultiLayerNetwork uninterrupted = network(rule, 11);
        MultiLayerNetwork interrupted = uninterrupted.clone();
        BackPackNetwork.extend(uninterrupted);
        BackPackNetwork.extend(interrupted);
        List<INDArray> xs = new java.util.ArrayList<>();
        List<INDArray> ys = new java.util.ArrayList<>();
        for (int step = 0; step < 6; step++) {
            xs.add(features(step, 6));
            ys.add(labels(step, 6));
        }
        for (int step = 0; step < 3; step++) {
            seed(step);
            uninterrupted.fit(xs.get(step), ys.get(step));
            seed(step);
            interrupted.fit(xs.get(step), ys.get(step));
        }
        assertArrayEquals(uninterrupted.params().data().asDouble(), interrupted.params().data().asDouble(), 0.0,
                "identical before the checkpoint");
        File checkpoint = dir.resolve("checkpoint.zip").toFile();
        ModelSerializer.writeModel(interrupted, checkpoint, true);
        MultiLayerNetwork restored = ModelSerializer.restoreMultiLayerNetwork(checkpoint, true);
        assertEquals(rule, restored.getLayer(0).conf().getLayer().getUpdaterByParam("W"), "updater restored");
        assertArrayEquals(interrupted.params().data().asDouble(), restored.params().data().asDouble(), 0.0,
                "restored parameters");
        assertEquals(interrupted.getIterationCount(), restored.getIterationCount(), "iteration count");
        BackPackNetwork.extend(restored);
        for (int step = 3; step < 6; step++) {
            seed(step);
            uninterrupted.fit(xs.get(step), ys.get(step));
            seed(step);
            restored.fit(xs.get(step), ys.get(step));
        }
        assertArrayEquals(uninterrupted.params().data().asDouble(), restored.params().data().asDouble(), 0.0);
    }

    @Test
    void perLayerUpdatersMixWithOrdinaryOnes() {
        KroneckerUpdater kflr = KroneckerUpdater.kflr(0.1, 0.1);
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(4)
                .dataType(DataType.DOUBLE)
                .updater(new org.nd4j.linalg.learning.config.Sgd(0.05))
                .list(new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.TANH).build(),
                        new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                        new DenseLayer.Builder().nOut(5).activation(Activation.SIGMOID).updater(kflr).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(6, 6, 2))
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        MultiLayerNetwork reference = net.clone();
        INDArray x = features(6, 5);
        INDArray y = labels(6, 5);
        Quantities q = BackPackNetwork.extend(reference).backward(x, y, new io.github.dl4jbackpack.extensions.KFLR());
        BackPackNetwork.extend(net);
        net.fit(x, y);
        for (int layer : new int[] {0, 2, 3}) {
            for (String param : reference.getLayer(layer).paramTable().keySet()) {
                INDArray theta = reference.getParam(layer + "_" + param);
                INDArray gradient = reference.gradient().getGradientFor(layer + "_" + param).div(x.size(0));
                INDArray expected = layer == 2 ? expectedStep(kflr, q, String.valueOf(layer), param, theta, gradient, 0)
                        : theta.sub(gradient.mul(0.05));
                INDArray actual = net.getParam(layer + "_" + param);
                assertEquals(0.0, expected.sub(actual).amaxNumber().doubleValue(),
                        1e-10 * expected.sub(theta).amaxNumber().doubleValue(), "layer " + layer + " " + param);
            }
        }
    }

    @Test
    void configurationsRoundTripThroughJson() {
        List<IUpdater> updaters = List.of(DiagGGNUpdater.exact(0.1, 1e-3), DiagGGNUpdater.monteCarlo(0.2, 1e-4, 5),
                KroneckerUpdater.kfac(0.05, 1e-2, 2), KroneckerUpdater.kflr(0.3, 10), KroneckerUpdater.kfra(1, 1),
                DiagGGNUpdater.exact(new ExponentialSchedule(ScheduleType.ITERATION, 0.1, 0.9), 1e-3));
        for (IUpdater u : updaters) {
            MultiLayerConfiguration conf = network(u, 1).getLayerWiseConfigurations();
            MultiLayerConfiguration back = MultiLayerConfiguration.fromJson(conf.toJson());
            assertEquals(conf, back, u + ": configuration");
            assertEquals(u, back.getConf(2).getLayer().getUpdaterByParam("W"), u + ": updater");
            assertEquals(u, u.clone());
        }
        assertTrue(!DiagGGNUpdater.exact(0.1, 1e-3).equals(DiagGGNUpdater.monteCarlo(0.1, 1e-3, 1)));
    }

    @Test
    void withoutTheWrapperTheFirstStepSaysWhatToDo() {
        MultiLayerNetwork net = network(KroneckerUpdater.kflr(0.1, 1e-2), 1);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> net.fit(features(1, 4), labels(1, 4)));
        assertTrue(e.getMessage().contains("BackPackNetwork.extend(net)"), e.getMessage());
    }

    @Test
    void learningRateScheduleIsFollowed() {
        ExponentialSchedule schedule = new ExponentialSchedule(ScheduleType.ITERATION, 0.2, 0.5);
        MultiLayerNetwork scheduled = network(DiagGGNUpdater.exact(schedule, 1e-2), 2);
        MultiLayerNetwork fixed = network(DiagGGNUpdater.exact(0.1, 1e-2), 2);
        BackPackNetwork.extend(scheduled);
        BackPackNetwork.extend(fixed);
        INDArray x = features(3, 4);
        INDArray y = labels(3, 4);
        scheduled.fit(x, y);       // iteration 0: α = 0.2
        fixed.fit(x, y);
        INDArray start = network(DiagGGNUpdater.exact(0.1, 1e-2), 2).params();
        // the scheduled step of 0.2 is twice the fixed step of 0.1 from the same start
        INDArray scheduledStep = scheduled.params().sub(start);
        INDArray fixedStep = fixed.params().sub(start);
        assertArrayEquals(fixedStep.mul(2).data().asDouble(), scheduledStep.data().asDouble(), 1e-12);
        assertEquals(0.1, DiagGGNUpdater.exact(schedule, 1e-2).getLearningRate(1, 0), 1e-15);
    }

    @Test
    void invalidSettingsAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> DiagGGNUpdater.exact(0.1, -1));
        assertThrows(IllegalArgumentException.class, () -> DiagGGNUpdater.monteCarlo(0.1, 1e-3, 0));
        assertThrows(IllegalArgumentException.class, () -> KroneckerUpdater.kfac(0.1, 1e-3, 0));
    }
}
