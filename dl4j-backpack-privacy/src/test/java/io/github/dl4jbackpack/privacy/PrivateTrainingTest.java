// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy;

import org.deeplearning4j.nn.conf.BackpropType;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DP-SGD steps against a loop of single-example passes through DL4J: each example's loss gradient computed
 * alone, clipped, summed and divided by the expected batch size, applied by plain SGD; the noise's scale and
 * independence; refusals.
 */
class PrivateTrainingTest {

    private static final double LR = 0.5;

    static MultiLayerNetwork mlp(DataType type, org.nd4j.linalg.learning.config.IUpdater updater, Layer... extra) {
        NeuralNetConfiguration.ListBuilder list = new NeuralNetConfiguration.Builder().seed(11).dataType(type)
                .weightInit(WeightInit.XAVIER).updater(updater).list();
        list.layer(new DenseLayer.Builder().nOut(7).activation(Activation.TANH).build());
        for (Layer l : extra) {
            list.layer(l);
        }
        list.layer(new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build());
        MultiLayerNetwork net = new MultiLayerNetwork(list.setInputType(InputType.feedForward(5)).build());
        net.init();
        return net;
    }

    static DataSet data(DataType type, int m, long seed, long... featureShape) {
        Random r = new Random(seed);
        long[] shape = featureShape.length == 0 ? new long[] {m, 5} : featureShape;
        long length = 1;
        for (long s : shape) {
            length *= s;
        }
        double[] x = new double[(int) length];
        for (int i = 0; i < x.length; i++) {
            x[i] = 2 * r.nextGaussian();
        }
        double[] y = new double[m * 3];
        for (int i = 0; i < m; i++) {
            y[i * 3 + r.nextInt(3)] = 1;
        }
        return new DataSet(Nd4j.createFromArray(x).reshape(shape).castTo(type),
                Nd4j.createFromArray(y).reshape(m, 3).castTo(type));
    }

    /** @return {@code ∇ℓ_n} of one example per parameter key, by DL4J on a clone */
    static Map<String, INDArray> exampleGradient(MultiLayerNetwork net, DataSet example) {
        MultiLayerNetwork clone = net.clone();
        clone.setInput(example.getFeatures());
        clone.setLabels(example.getLabels());
        clone.computeGradientAndScore();
        Map<String, INDArray> out = new LinkedHashMap<>();
        clone.gradient().gradientForVariable().forEach((k, v) -> out.put(k, v.dup()));
        return out;
    }

    /**
     * @return the SGD step {@code −lr·(Σ_n clip(∇ℓ_n))/B} per key from single-example passes, with flat clipping
     *     to C or per-layer thresholds (layer = key prefix)
     */
    static Map<String, INDArray> referenceStep(MultiLayerNetwork net, DataSet batch, Clipping clipping, double b,
                                               double[] clippedNorms) {
        Map<String, INDArray> sum = new LinkedHashMap<>();
        for (int n = 0; n < batch.numExamples(); n++) {
            Map<String, INDArray> g = exampleGradient(net, batch.get(n));
            Map<String, Double> layerSquares = new LinkedHashMap<>();
            g.forEach((k, v) -> layerSquares.merge(k.substring(0, k.lastIndexOf('_')),
                    Math.pow(v.norm2Number().doubleValue(), 2), Double::sum));
            double total = Math.sqrt(layerSquares.values().stream().mapToDouble(Double::doubleValue).sum());
            double clippedSquare = 0;
            for (Map.Entry<String, INDArray> e : g.entrySet()) {
                String layer = e.getKey().substring(0, e.getKey().lastIndexOf('_'));
                double norm = clipping.isPerLayer() ? Math.sqrt(layerSquares.get(layer)) : total;
                double c = clipping.isPerLayer() ? clipping.thresholds().get(layer) : clipping.norm();
                INDArray clipped = e.getValue().mul(Math.min(1.0, c / norm));
                clippedSquare += Math.pow(clipped.norm2Number().doubleValue(), 2);
                sum.merge(e.getKey(), clipped, INDArray::add);
            }
            clippedNorms[n] = Math.sqrt(clippedSquare);
        }
        Map<String, INDArray> step = new LinkedHashMap<>();
        sum.forEach((k, v) -> step.put(k, v.mul(-LR / b)));
        return step;
    }

    static Map<String, INDArray> change(Map<String, INDArray> before, Map<String, INDArray> after) {
        Map<String, INDArray> out = new LinkedHashMap<>();
        before.forEach((k, v) -> out.put(k, after.get(k).sub(v)));
        return out;
    }

    static Map<String, INDArray> params(org.deeplearning4j.nn.api.Model net) {
        Map<String, INDArray> out = new LinkedHashMap<>();
        net.paramTable().forEach((k, v) -> out.put(k, v.dup()));
        return out;
    }

    static void assertClose(Map<String, INDArray> expected, Map<String, INDArray> actual, double tol, String what) {
        assertEquals(expected.keySet(), actual.keySet(), what + ": keys");
        expected.forEach((k, e) -> {
            double scale = Math.max(e.amaxNumber().doubleValue(), 1e-300);
            double diff = e.castTo(DataType.DOUBLE).sub(actual.get(k).castTo(DataType.DOUBLE)).amaxNumber()
                    .doubleValue();
            assertTrue(diff <= tol * scale, what + " " + k + ": max |diff| " + diff + " vs scale " + scale);
        });
    }

    @Test
    void withoutNoiseAStepIsTheLoopsSumOfClippedGradientsOverTheExpectedBatchSize() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        // two hidden dense layers: the second's input gradient, from the step that skips DL4J's weight product,
        // reaches the first
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Sgd(LR),
                new DenseLayer.Builder().nOut(6).activation(Activation.RELU).build());
        DataSet data = data(DataType.DOUBLE, 40, 3);
        final double CLIP = 2.0;
        PrivateTraining dp = PrivateTraining.builder().clipping(Clipping.flat(CLIP)).noiseMultiplier(0)
                .expectedBatchSize(10).seed(5).build(net, data);
        int clipped = 0;
        int examples = 0;
        for (int step = 0; step < 3; step++) {
            DataSet batch = dp.iterator().next();
            double[] clippedNorms = new double[batch.numExamples()];
            Map<String, INDArray> expected = referenceStep(net, batch, Clipping.flat(CLIP), 10.0, clippedNorms);
            // each example's contribution as the library makes it: a private step on that example alone moves the
            // parameters by −lr·c_n∇ℓ_n/B, whose norm must be min(‖∇ℓ_n‖, C) ≤ C
            for (int n = 0; n < batch.numExamples(); n++) {
                MultiLayerNetwork alone = net.clone();
                PrivateTraining.builder().clipping(Clipping.flat(CLIP)).noiseMultiplier(0).sampleRate(0.25)
                        .acceptBatchesNotPoissonSampled().build(alone, data);
                INDArray start = alone.params().dup();
                alone.fit(batch.get(n));
                double contribution = alone.params().sub(start).norm2Number().doubleValue() * 10.0 / LR;
                assertTrue(contribution <= CLIP * (1 + 1e-12), "example " + n + " contributes norm " + contribution);
                assertEquals(clippedNorms[n], contribution, 1e-9 * Math.max(1, contribution), "example " + n);
            }
            Map<String, INDArray> before = params(net);
            net.fit(batch);
            assertClose(expected, change(before, params(net)), 1e-10, "step " + step);
            assertEquals(batch.numExamples(), dp.lastStep().batchSize());
            clipped += dp.lastStep().clipped();
            examples += batch.numExamples();
        }
        assertTrue(clipped > 0 && clipped < examples, "some but not all examples clipped: " + clipped + " of "
                + examples);
        assertEquals(3, dp.steps());
    }

    @Test
    void perLayerClippingBoundsEachLayersPart() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Sgd(LR),
                new DenseLayer.Builder().nOut(4).activation(Activation.RELU).build());
        DataSet data = data(DataType.DOUBLE, 30, 4);
        Clipping clipping = Clipping.perLayer(Map.of("0", 0.3, "1", 0.5, "2", 0.2));
        PrivateTraining dp = PrivateTraining.builder().clipping(clipping).noiseMultiplier(0).sampleRate(0.3)
                .seed(6).build(net, data);
        DataSet batch = dp.iterator().next();
        Map<String, INDArray> expected = referenceStep(net, batch, clipping, 0.3 * 30, new double[batch.numExamples()]);
        Map<String, INDArray> before = params(net);
        net.fit(batch);
        assertClose(expected, change(before, params(net)), 1e-10, "per-layer step");
        assertEquals(Math.sqrt(0.09 + 0.25 + 0.04), clipping.sensitivity(), 1e-15);
    }

    @Test
    void convolutionalNetworkAndFloat32() {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder().seed(3).dataType(DataType.FLOAT)
                .updater(new Sgd(LR)).list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.RELU).build())
                .layer(new SubsamplingLayer.Builder().kernelSize(2, 2).stride(2, 2).build())
                .layer(new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                .setInputType(InputType.convolutional(6, 6, 2)).build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        DataSet data = data(DataType.FLOAT, 20, 8, 20, 2, 6, 6);
        PrivateTraining dp = PrivateTraining.builder().clipping(Clipping.flat(0.5)).noiseMultiplier(0)
                .expectedBatchSize(8).seed(2).build(net, data);
        DataSet batch = dp.iterator().next();
        MultiLayerNetwork reference = net.convertDataType(DataType.DOUBLE);
        DataSet batch64 = new DataSet(batch.getFeatures().castTo(DataType.DOUBLE),
                batch.getLabels().castTo(DataType.DOUBLE));
        Map<String, INDArray> expected = referenceStep(reference, batch64, Clipping.flat(0.5), 8.0,
                new double[batch.numExamples()]);
        Map<String, INDArray> before = params(net);
        net.fit(batch);
        assertClose(expected, change(before, params(net)), 2e-4, "float32 convolutional step");
    }

    @Test
    void recurrentSequenceClassifierStep() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder().seed(5).dataType(DataType.DOUBLE)
                .updater(new Sgd(LR)).list()
                .layer(new org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep(
                        new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(4).activation(Activation.TANH)
                                .build()))
                .layer(new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build())
                .setInputType(InputType.recurrent(5)).build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        DataSet data = data(DataType.DOUBLE, 24, 25, 24, 5, 6);
        PrivateTraining dp = PrivateTraining.builder().clipping(Clipping.flat(0.3)).noiseMultiplier(0)
                .expectedBatchSize(8).seed(26).build(net, data);
        DataSet batch = dp.iterator().next();
        Map<String, INDArray> expected = referenceStep(net, batch, Clipping.flat(0.3), 8.0,
                new double[batch.numExamples()]);
        Map<String, INDArray> before = params(net);
        net.fit(batch);
        assertClose(expected, change(before, params(net)), 1e-10, "LSTM step");
    }

    @Test
    void computationGraphStep() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        ComputationGraphConfiguration conf = new NeuralNetConfiguration.Builder().seed(4).dataType(DataType.DOUBLE)
                .updater(new Sgd(LR)).graphBuilder().addInputs("in")
                .addLayer("hidden", new DenseLayer.Builder().nOut(6).activation(Activation.SIGMOID).build(), "in")
                .addLayer("out", new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX)
                        .nOut(3).build(), "hidden")
                .setOutputs("out").setInputTypes(InputType.feedForward(5)).build();
        ComputationGraph graph = new ComputationGraph(conf);
        graph.init();
        DataSet data = data(DataType.DOUBLE, 25, 9);
        PrivateTraining dp = PrivateTraining.builder().clipping(Clipping.flat(0.4)).noiseMultiplier(0)
                .expectedBatchSize(10).seed(8).build(graph, data);
        DataSet batch = dp.iterator().next();
        Map<String, INDArray> sum = new LinkedHashMap<>();
        for (int n = 0; n < batch.numExamples(); n++) {
            ComputationGraph clone = graph.clone();
            clone.setInputs(batch.get(n).getFeatures());
            clone.setLabels(batch.get(n).getLabels());
            clone.computeGradientAndScore();
            Map<String, INDArray> g = clone.gradient().gradientForVariable();
            double norm = Math.sqrt(g.values().stream().mapToDouble(v -> Math.pow(v.norm2Number().doubleValue(), 2))
                    .sum());
            g.forEach((k, v) -> sum.merge(k, v.mul(Math.min(1, 0.4 / norm) * -LR / 10.0), INDArray::add));
        }
        Map<String, INDArray> before = params(graph);
        graph.fit(batch);
        assertClose(sum, change(before, params(graph)), 1e-10, "graph step");
    }

    @Test
    void virtualStepsEqualOneLargeStep() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        MultiLayerNetwork whole = mlp(DataType.DOUBLE, new Adam(0.05));
        MultiLayerNetwork parts = whole.clone();
        DataSet data = data(DataType.DOUBLE, 60, 22);
        PrivateTraining one = PrivateTraining.builder().clipping(Clipping.flat(0.7)).noiseMultiplier(0)
                .expectedBatchSize(20).seed(23).build(whole, data);
        PrivateTraining virtual = PrivateTraining.builder().clipping(Clipping.flat(0.7)).noiseMultiplier(0)
                .expectedBatchSize(20).seed(23).physicalBatchSize(6).build(parts, data);
        for (int step = 0; step < 3; step++) {
            DataSet batch = one.iterator().next();
            DataSet last = virtual.iterator().next();
            assertTrue(batch.numExamples() > 6, "the sampled batch needs several parts: " + batch.numExamples());
            assertEquals(batch.numExamples() - 6 * ((batch.numExamples() - 1) / 6), last.numExamples());
            whole.fit(batch);
            parts.fit(last);
            assertEquals(batch.numExamples(), virtual.lastStep().batchSize());
            assertEquals(one.lastStep().clipped(), virtual.lastStep().clipped());
            assertClose(params(whole), params(parts), 1e-12, "after step " + step);
        }
        assertEquals(3, virtual.steps());
    }

    @Test
    void adaptiveClippingFollowsTheQuantileRuleComputedByHand() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Sgd(LR));
        DataSet data = data(DataType.DOUBLE, 40, 27);
        double gamma = 0.5;
        double eta = 0.3;
        PrivateTraining dp = PrivateTraining.builder().clipping(Clipping.adaptive(0.5, gamma, eta, 0))
                .noiseMultiplier(0).expectedBatchSize(10).seed(28).build(net, data);
        double c = 0.5;
        for (int step = 0; step < 4; step++) {
            assertEquals(c, dp.clipNorm(), 1e-12, "norm before step " + step);
            DataSet batch = dp.iterator().next();
            double[] clippedNorms = new double[batch.numExamples()];
            Map<String, INDArray> expected = referenceStep(net, batch, Clipping.flat(c), 10.0, clippedNorms);
            int unclipped = 0;
            for (int n = 0; n < batch.numExamples(); n++) {
                Map<String, INDArray> g = exampleGradient(net, batch.get(n));
                double norm = Math.sqrt(g.values().stream().mapToDouble(v -> Math.pow(v.norm2Number().doubleValue(),
                        2)).sum());
                unclipped += norm <= c ? 1 : 0;
            }
            Map<String, INDArray> before = params(net);
            net.fit(batch);
            assertClose(expected, change(before, params(net)), 1e-10, "step " + step + " with C = " + c);
            // without noise on the count: C ← C · exp(−η (unclipped / B − γ))
            c *= Math.exp(-eta * (unclipped / 10.0 - gamma));
        }
        assertEquals(c, dp.clipNorm(), 1e-12, "norm after the last step");
    }

    @Test
    void adaptiveClippingSplitsTheNoiseBetweenTheGradientAndTheCount() {
        // σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2): σ = 1, σ_b = 1 gives (1 − 1/4)^(−1/2) = 2/√3
        assertEquals(2 / Math.sqrt(3), Clipping.gradientNoiseMultiplier(1, 1), 1e-15);
        assertEquals(0, Clipping.gradientNoiseMultiplier(0, 0), 0);
        assertThrows(IllegalArgumentException.class, () -> Clipping.gradientNoiseMultiplier(1, 0.5));
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Sgd(LR));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PrivateTraining.builder()
                .clipping(Clipping.adaptive(1, 0.5, 0.2, 0.4)).noiseMultiplier(1).expectedBatchSize(5)
                .build(net, data(DataType.DOUBLE, 20, 29)));
        assertTrue(e.getMessage().contains("σ/2"), e.getMessage());
        assertTrue(net.getListeners().isEmpty(), "nothing installed");
        assertThrows(IllegalArgumentException.class, () -> Clipping.adaptive(1, 1.5, 0.2, 1));
        assertThrows(IllegalArgumentException.class, () -> Clipping.adaptive(1, 0.5, 0, 1));
    }

    @Test
    void adaptiveClippingsGradientNoiseIsSigmaDeltaTimesTheCurrentNorm() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        MultiLayerNetwork noisy = mlp(DataType.DOUBLE, new Sgd(1.0),
                new DenseLayer.Builder().nOut(100).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(100).activation(Activation.TANH).build());
        MultiLayerNetwork exact = noisy.clone();
        DataSet data = data(DataType.DOUBLE, 50, 30);
        PrivateTraining adaptive = PrivateTraining.builder().clipping(Clipping.adaptive(0.7, 0.5, 0.2, 1.0))
                .noiseMultiplier(1.3).expectedBatchSize(10).seed(31).build(noisy, data);
        PrivateTraining.builder().clipping(Clipping.flat(0.7)).noiseMultiplier(0).expectedBatchSize(10)
                .acceptBatchesNotPoissonSampled().build(exact, data);
        DataSet batch = adaptive.iterator().next();
        noisy.fit(batch);
        exact.fit(batch);
        double[] z = exact.params().sub(noisy.params()).muli(10).toDoubleVector();
        double square = 0;
        for (double v : z) {
            square += v * v;
        }
        double expected = Clipping.gradientNoiseMultiplier(1.3, 1.0) * 0.7;
        assertEquals(expected, Math.sqrt(square / z.length), 0.03 * expected, "σ_Δ·C₀");
        assertTrue(adaptive.clipNorm() != 0.7, "the norm adapted after the step");
    }

    @Test
    void theNoiseHasStandardDeviationSigmaTimesSensitivityAndIsFreshEachStep() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        MultiLayerNetwork noisy = mlp(DataType.DOUBLE, new Sgd(1.0),
                new DenseLayer.Builder().nOut(100).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(100).activation(Activation.TANH).build());
        MultiLayerNetwork exact = noisy.clone();
        DataSet data = data(DataType.DOUBLE, 50, 10);
        double sigma = 1.3;
        double c = 0.7;
        double b = 10;
        PrivateTraining withNoise = PrivateTraining.builder().clipping(Clipping.flat(c)).noiseMultiplier(sigma)
                .expectedBatchSize((long) b).seed(21).build(noisy, data);
        PrivateTraining without = PrivateTraining.builder().clipping(Clipping.flat(c)).noiseMultiplier(0)
                .expectedBatchSize((long) b).acceptBatchesNotPoissonSampled().build(exact, data);
        double[][] noise = new double[2][];
        for (int step = 0; step < 2; step++) {
            exact.setParams(noisy.params().dup());
            DataSet batch = withNoise.iterator().next();
            INDArray start = noisy.params().dup();
            noisy.fit(batch);
            exact.fit(batch);
            // θ_noisy − θ_exact = −lr·z/B
            noise[step] = exact.params().sub(noisy.params()).muli(b).toDoubleVector();
            assertTrue(start.sub(noisy.params()).amaxNumber().doubleValue() > 0);
        }
        for (double[] z : noise) {
            double mean = 0;
            double square = 0;
            for (double v : z) {
                mean += v;
                square += v * v;
            }
            mean /= z.length;
            double sd = Math.sqrt(square / z.length - mean * mean);
            // ~10,900 coordinates: the sample standard deviation is within 3% of σC with overwhelming probability
            assertEquals(sigma * c, sd, 0.03 * sigma * c, "noise standard deviation");
            assertEquals(0, mean, 4 * sigma * c / Math.sqrt(z.length), "noise mean");
        }
        double dot = 0;
        double n0 = 0;
        double n1 = 0;
        for (int i = 0; i < noise[0].length; i++) {
            dot += noise[0][i] * noise[1][i];
            n0 += noise[0][i] * noise[0][i];
            n1 += noise[1][i] * noise[1][i];
        }
        assertEquals(0, dot / Math.sqrt(n0 * n1), 4 / Math.sqrt(noise[0].length), "correlation of two steps' noise");
    }

    /**
     * The noise of step t+1 is drawn ahead, on another thread, during step t's update and step t+1's pass: a
     * seeded run's noise must still be the generator's sequence, step after step, parameter after parameter, as if
     * drawn when needed (and reproducible whatever the timing).
     */
    @Test
    void seededNoiseIsTheGeneratorsSequenceStepAfterStep() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        MultiLayerNetwork noisy = mlp(DataType.DOUBLE, new Sgd(1.0),
                new DenseLayer.Builder().nOut(30).activation(Activation.TANH).build());
        MultiLayerNetwork exact = noisy.clone();
        DataSet data = data(DataType.DOUBLE, 40, 10);
        double sd = 1.3 * 0.7;
        double b = 10;
        long seed = 77;
        PrivateTraining withNoise = PrivateTraining.builder().clipping(Clipping.flat(0.7)).noiseMultiplier(1.3)
                .expectedBatchSize((long) b).seed(seed).build(noisy, data);
        PrivateTraining.builder().clipping(Clipping.flat(0.7)).noiseMultiplier(0)
                .expectedBatchSize((long) b).acceptBatchesNotPoissonSampled().build(exact, data);
        java.util.SplittableRandom generator = new java.util.SplittableRandom(seed);
        for (int step = 0; step < 3; step++) {
            exact.setParams(noisy.params().dup());
            DataSet batch = withNoise.iterator().next();
            noisy.fit(batch);
            exact.fit(batch);
            double[] z = exact.params().sub(noisy.params()).muli(b).toDoubleVector();
            for (int i = 0; i < z.length; i++) {
                double expected = sd * generator.nextGaussian();
                assertEquals(expected, z[i], 1e-9 * (1 + Math.abs(expected)), "step " + step + ", coordinate " + i);
            }
        }
    }

    @Test
    void poissonBatchesHaveTheSampleRate() {
        DataSet data = data(DataType.DOUBLE, 200, 12);
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Sgd(LR));
        PrivateTraining dp = PrivateTraining.builder().clipping(Clipping.flat(1)).noiseMultiplier(1)
                .sampleRate(0.05).seed(13).build(net, data);
        PoissonSampling it = dp.iterator();
        assertEquals(20, it.stepsPerEpoch());
        int batches = 0;
        double sum = 0;
        double square = 0;
        for (int epoch = 0; epoch < 30; epoch++) {
            it.reset();
            while (it.hasNext()) {
                DataSet batch = it.next();
                double size = it.lastBatchEmpty() ? 0 : batch.numExamples();
                sum += size;
                square += size * size;
                batches++;
            }
        }
        assertEquals(600, batches);
        double mean = sum / batches;
        double variance = square / batches - mean * mean;
        // Binomial(200, 0.05): mean 10, variance 9.5; over 600 batches the mean is within ±0.6 (5 s.e.)
        assertEquals(10, mean, 0.65, "mean batch size");
        assertEquals(9.5, variance, 2.5, "variance of the batch size");
    }

    @Test
    void anEmptyBatchIsAStepWithNoiseAlone() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        DataSet data = data(DataType.DOUBLE, 2, 14);
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Sgd(LR));
        PrivateTraining dp = PrivateTraining.builder().clipping(Clipping.flat(1)).noiseMultiplier(0)
                .sampleRate(0.1).seed(15).build(net, data);
        int empty = 0;
        for (int step = 0; step < 10; step++) {
            DataSet batch = dp.iterator().next();
            Map<String, INDArray> before = params(net);
            int iteration = net.getIterationCount();
            net.fit(batch);
            assertEquals(iteration + 1, net.getIterationCount(), "an empty batch is an iteration");
            if (dp.iterator().lastBatchEmpty()) {
                empty++;
                assertEquals(0, dp.lastStep().batchSize());
                change(before, params(net)).forEach((k, v) -> assertEquals(0, v.amaxNumber().doubleValue(), 0.0,
                        "without noise an empty batch changes nothing: " + k));
            }
        }
        // P(empty) = 0.81 per step
        assertTrue(empty >= 4, "empty batches " + empty);
        assertEquals(10, dp.steps());
    }

    @Test
    void calibratedNoiseSpendsTheTargetEpsilon() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Adam(1e-2));
        DataSet data = data(DataType.DOUBLE, 40, 16);
        PrivateTraining dp = PrivateTraining.builder().clipping(Clipping.flat(1)).targetEpsilon(3, 1e-5, 2)
                .expectedBatchSize(10).seed(17).build(net, data);
        assertTrue(dp.noiseMultiplier() > 0);
        net.fit(dp.iterator(), 2);
        assertEquals(8, dp.steps());
        double epsilon = dp.epsilon(1e-5);
        assertTrue(epsilon <= 3 && epsilon >= 0.99 * 3, "ε after the planned epochs: " + epsilon);
    }

    @Test
    void batchesFromElsewhereAreRefusedBeforeTheUpdate() {
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Sgd(LR));
        DataSet data = data(DataType.DOUBLE, 20, 18);
        PrivateTraining.builder().clipping(Clipping.flat(1)).noiseMultiplier(1).expectedBatchSize(5).build(net, data);
        Map<String, INDArray> before = params(net);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> net.fit(data));
        assertTrue(e.getMessage().contains("Poisson"), e.getMessage());
        assertClose(before, params(net), 0, "parameters after a refused step");
    }

    @Test
    void settingsThatVoidTheGuaranteeAreRefusedInOneMessage() {
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Sgd(LR), new BatchNormalization.Builder().build());
        DataSet data = data(DataType.DOUBLE, 20, 19);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PrivateTraining.builder()
                .clipping(Clipping.flat(1)).noiseMultiplier(-1).expectedBatchSize(50).build(net, data));
        for (String part : List.of("layer 1 (BatchNormalization)", "noise multiplier -1", "sample rate 2.5")) {
            assertTrue(e.getMessage().contains(part), "names " + part + ": " + e.getMessage());
        }
        assertTrue(net.getListeners().isEmpty(), "nothing installed");
        assertThrows(IllegalArgumentException.class, () -> Clipping.flat(0));
        assertThrows(IllegalArgumentException.class, () -> Clipping.flat(Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> Clipping.perLayer(Map.of("0", -1.0)));
        IllegalArgumentException none = assertThrows(IllegalArgumentException.class,
                () -> PrivateTraining.builder().build(mlp(DataType.DOUBLE, new Sgd(LR)), data));
        assertTrue(none.getMessage().contains("no clipping") && none.getMessage().contains("no noise"),
                none.getMessage());
        MultiLayerConfiguration tbptt = new NeuralNetConfiguration.Builder().list()
                .layer(new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nIn(5).nOut(4).build())
                .layer(new org.deeplearning4j.nn.conf.layers.RnnOutputLayer.Builder(LossFunction.MCXENT)
                        .activation(Activation.SOFTMAX).nIn(4).nOut(3).build())
                .backpropType(BackpropType.TruncatedBPTT).tBPTTLength(3).build();
        MultiLayerNetwork recurrent = new MultiLayerNetwork(tbptt);
        recurrent.init();
        IllegalArgumentException t = assertThrows(IllegalArgumentException.class, () -> PrivateTraining.builder()
                .clipping(Clipping.flat(1)).noiseMultiplier(1).sampleRate(0.1).build(recurrent, data));
        assertTrue(t.getMessage().contains("truncated BPTT"), t.getMessage());
    }

    @Test
    void perLayerThresholdsMustNameExactlyTheLayersWithParameters() {
        MultiLayerNetwork net = mlp(DataType.DOUBLE, new Sgd(LR));
        DataSet data = data(DataType.DOUBLE, 20, 20);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PrivateTraining.builder()
                .clipping(Clipping.perLayer(Map.of("0", 1.0, "7", 1.0))).noiseMultiplier(1).expectedBatchSize(5)
                .build(net, data));
        assertTrue(e.getMessage().contains("missing [1]") && e.getMessage().contains("unknown [7]"), e.getMessage());
        assertTrue(net.getListeners().isEmpty(), "nothing installed");
    }
}
