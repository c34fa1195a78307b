// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.optim.DiagGGNUpdater;
import io.github.dl4jbackpack.optim.KroneckerUpdater;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.learning.config.Nesterovs;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Trains logistic regression on the UCI digits that ship with this module with each
 * curvature-preconditioned rule of {@code dl4j-backpack-optim} (DiagGGN exact and Monte Carlo,
 * KFAC, KFLR, KFRA) beside SGD with momentum 0.9 and Adam, and prints a comparison table.
 *
 * <p>Options: {@code --epochs E} (default 15), {@code --batch B} (128), {@code --seed S} (3).
 * Hyperparameters are fixed, reasonable settings for this problem, not the result of a search.
 */
public final class OptimizerComparison {

    private OptimizerComparison() {
    }

    /** One optimiser's result. */
    record Result(String optimizer, double trainLoss, double testAccuracy, double millisPerIteration) {
    }

    /** @return the optimisers compared, by display name */
    static Map<String, IUpdater> optimizers() {
        Map<String, IUpdater> m = new LinkedHashMap<>();
        m.put("SGD momentum 0.9 (α=0.1)", new Nesterovs(0.1, 0.9));
        m.put("Adam (α=0.01)", new Adam(0.01));
        m.put("DiagGGN exact (α=0.5, λ=0.01)", DiagGGNUpdater.exact(0.5, 0.01));
        m.put("DiagGGN MC-1 (α=0.5, λ=0.01)", DiagGGNUpdater.monteCarlo(0.5, 0.01, 1));
        m.put("KFAC-1 (α=0.5, λ=0.01)", KroneckerUpdater.kfac(0.5, 0.01, 1));
        m.put("KFLR (α=0.5, λ=0.01)", KroneckerUpdater.kflr(0.5, 0.01));
        m.put("KFRA (α=0.5, λ=0.01)", KroneckerUpdater.kfra(0.5, 0.01));
        return m;
    }

    static MultiLayerNetwork logisticRegression(IUpdater updater, long seed) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(DataType.FLOAT)
                .weightInit(WeightInit.XAVIER)
                .updater(updater)
                .list(new OutputLayer.Builder(LossFunction.MCXENT).nIn(Digits.SIDE * Digits.SIDE)
                        .nOut(Digits.CLASSES).activation(Activation.SOFTMAX).build())
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        return net;
    }

    /**
     * Runs the comparison.
     *
     * @param args see the class comment
     */
    public static void main(String[] args) {
        Map<String, String> opts = GradientNoiseDemo.options(args);
        run(Integer.parseInt(opts.getOrDefault("epochs", "15")), Integer.parseInt(opts.getOrDefault("batch", "128")),
                Long.parseLong(opts.getOrDefault("seed", "3")), System.out, System.err);
    }

    static List<Result> run(int epochs, int batch, long seed, PrintStream out, PrintStream progress) {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        DataSet all = Digits.load(DataType.FLOAT);
        all.shuffle(seed);
        int testSize = 297;
        int n = all.numExamples();
        INDArray features = all.getFeatures().dup('c').reshape(n, (long) Digits.SIDE * Digits.SIDE);
        INDArray testX = features.get(NDArrayIndex.interval(0, testSize));
        INDArray testY = all.getLabels().get(NDArrayIndex.interval(0, testSize));
        INDArray trainX = features.get(NDArrayIndex.interval(testSize, n));
        INDArray trainY = all.getLabels().get(NDArrayIndex.interval(testSize, n));
        int trainSize = n - testSize;
        int iterations = (trainSize + batch - 1) / batch;

        out.printf("Logistic regression on %d UCI digits (%d held out), batch %d, %d epochs.%n", trainSize, testSize,
                batch, epochs);
        List<Result> results = new ArrayList<>();
        for (Map.Entry<String, IUpdater> e : optimizers().entrySet()) {
            MultiLayerNetwork net = logisticRegression(e.getValue(), seed);
            BackPackNetwork.extend(net);
            Random random = new Random(seed);
            ProgressBar bar = new ProgressBar(progress, String.format("%-32s", e.getKey()), (long) epochs * iterations);
            long start = System.nanoTime();
            for (int epoch = 0; epoch < epochs; epoch++) {
                int[] order = Digits.shuffledIndices(trainSize, random);
                for (int it = 0; it < iterations; it++) {
                    int[] idx = Arrays.copyOfRange(order, it * batch, Math.min(trainSize, (it + 1) * batch));
                    net.fit(Nd4j.pullRows(trainX, 1, idx), Nd4j.pullRows(trainY, 1, idx));
                    bar.update((long) epoch * iterations + it + 1, String.format("loss %.4f", net.score()));
                }
            }
            double millis = (System.nanoTime() - start) / 1e6 / ((double) epochs * iterations);
            bar.finish();
            net.setInput(trainX);
            net.setLabels(trainY);
            net.computeGradientAndScore();
            double accuracy = net.output(testX).argMax(1).eq(testY.argMax(1)).castTo(DataType.FLOAT)
                    .meanNumber().doubleValue();
            results.add(new Result(e.getKey(), net.score(), accuracy, millis));
        }
        out.printf("%n%-32s %12s %14s %14s%n", "optimizer", "train loss", "test accuracy", "ms/iteration");
        for (Result r : results) {
            out.printf("%-32s %12.4f %14.3f %14.2f%n", r.optimizer(), r.trainLoss(), r.testAccuracy(),
                    r.millisPerIteration());
        }
        return results;
    }
}
