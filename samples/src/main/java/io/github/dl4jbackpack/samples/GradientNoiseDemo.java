// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.GradientVarianceListener;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.io.PrintStream;
import java.util.Arrays;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

/**
 * The main demo: trains a small CNN on the UCI digits that ship with this module and, from the
 * same backward passes that train it (through {@link GradientVarianceListener}), reports per layer
 * and parameter after each epoch the gradient noise of training: the total variance of per-example
 * gradients, the norm of the mean gradient, their signal-to-noise ratio and quantiles of
 * per-example gradient norms.
 *
 * <p>Options: {@code --epochs E} (default 10), {@code --batch B} (64), {@code --seed S} (7),
 * {@code --limit N} (use only the first N training examples).
 */
public final class GradientNoiseDemo {

    private GradientNoiseDemo() {
    }

    /** Per-parameter statistics of the listener's reports, averaged over the iterations of one epoch. */
    static final class EpochAverage {
        private final double[] sums = new double[6];
        private int reports;

        void add(GradientVarianceListener.Statistics s) {
            double[] values = {s.variance(), s.gradientNorm(), s.signalToNoise(), s.normQ10(), s.normQ50(), s.normQ90()};
            for (int i = 0; i < values.length; i++) {
                sums[i] += values[i];
            }
            reports++;
        }

        double mean(int i) {
            return sums[i] / reports;
        }
    }

    static MultiLayerNetwork network(long seed) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(DataType.FLOAT)
                .weightInit(WeightInit.XAVIER)
                .updater(new Adam(3e-3))
                .list(new ConvolutionLayer.Builder(3, 3).convolutionMode(ConvolutionMode.Same).nOut(8)
                                .activation(Activation.RELU).build(),
                        new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                        new ConvolutionLayer.Builder(3, 3).convolutionMode(ConvolutionMode.Same).nOut(16)
                                .activation(Activation.RELU).build(),
                        new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                        new DenseLayer.Builder().nOut(32).activation(Activation.RELU).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(Digits.CLASSES)
                                .activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(Digits.SIDE, Digits.SIDE, 1))
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        return net;
    }

    /**
     * Runs the demo.
     *
     * @param args see the class comment
     */
    public static void main(String[] args) {
        Map<String, String> opts = options(args);
        int epochs = Integer.parseInt(opts.getOrDefault("epochs", "10"));
        int batch = Integer.parseInt(opts.getOrDefault("batch", "64"));
        long seed = Long.parseLong(opts.getOrDefault("seed", "7"));
        run(epochs, batch, seed, Integer.parseInt(opts.getOrDefault("limit", "0")), System.out, System.err);
    }

    /**
     * @return the test accuracy after the last epoch
     */
    static double run(int epochs, int batch, long seed, int limit, PrintStream out, PrintStream progress) {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        DataSet all = Digits.load(DataType.FLOAT);
        all.shuffle(seed);
        int testSize = 297;
        DataSet test = new DataSet(all.getFeatures().get(org.nd4j.linalg.indexing.NDArrayIndex.interval(0, testSize)),
                all.getLabels().get(org.nd4j.linalg.indexing.NDArrayIndex.interval(0, testSize)));
        int trainEnd = limit > 0 ? Math.min(all.numExamples(), testSize + limit) : all.numExamples();
        INDArray trainX = all.getFeatures().get(org.nd4j.linalg.indexing.NDArrayIndex.interval(testSize, trainEnd))
                .dup('c').reshape(trainEnd - testSize, (long) Digits.SIDE * Digits.SIDE);
        INDArray trainY = all.getLabels().get(org.nd4j.linalg.indexing.NDArrayIndex.interval(testSize, trainEnd));
        int trainSize = (int) trainX.size(0);

        MultiLayerNetwork net = network(seed);
        GradientVarianceListener listener = new GradientVarianceListener(BackPackNetwork.extend(net), 1);
        net.addListeners(listener);
        Map<String, EpochAverage> stats = new TreeMap<>();

        out.printf("Training a CNN on %d UCI digits (%d held out), batch %d, %d epochs.%n", trainSize, testSize, batch,
                epochs);
        out.println("Per layer and parameter, from the training iterations' own backward passes (per-example loss "
                + "gradients ∇ℓ_n), averaged over the epoch:");
        out.println("  variance = Σ Var_n(∇ℓ_n), |grad| = ‖∇L‖, SNR = ‖∇L‖² / variance, "
                + "q10/q50/q90 = quantiles of ‖∇ℓ_n‖");
        Random random = new Random(seed);
        double accuracy = 0;
        for (int epoch = 1; epoch <= epochs; epoch++) {
            stats.clear();
            int[] order = Digits.shuffledIndices(trainSize, random);
            int iterations = (trainSize + batch - 1) / batch;
            ProgressBar bar = new ProgressBar(progress, String.format("epoch %d/%d", epoch, epochs), iterations);
            double lossSum = 0;
            for (int it = 0; it < iterations; it++) {
                int[] idx = Arrays.copyOfRange(order, it * batch, Math.min(trainSize, (it + 1) * batch));
                INDArray x = Nd4j.pullRows(trainX, 1, idx);
                INDArray y = Nd4j.pullRows(trainY, 1, idx);
                net.fit(x.reshape(idx.length, 1, Digits.SIDE, Digits.SIDE), y);
                for (GradientVarianceListener.Statistics s : listener.lastReport()) {
                    stats.computeIfAbsent(s.layer() + " " + s.param(), k -> new EpochAverage()).add(s);
                }
                lossSum += net.score();
                bar.update(it + 1, String.format("loss %.4f", lossSum / (it + 1)));
            }
            bar.finish();
            accuracy = accuracy(net, test);
            out.printf("%nepoch %d: mean training loss %.4f, test accuracy %.3f%n", epoch, lossSum / iterations,
                    accuracy);
            out.printf("  %-5s %-5s %-17s %11s %11s %9s %10s %10s %10s%n", "layer", "param", "type", "variance",
                    "|grad|", "SNR", "q10", "q50", "q90");
            for (Map.Entry<String, EpochAverage> e : stats.entrySet()) {
                String[] key = e.getKey().split(" ");
                EpochAverage a = e.getValue();
                String type = net.getLayerWiseConfigurations().getConf(Integer.parseInt(key[0])).getLayer().getClass()
                        .getSimpleName();
                out.printf("  %-5s %-5s %-17s %11.4e %11.4e %9.4f %10.4f %10.4f %10.4f%n", key[0], key[1], type,
                        a.mean(0), a.mean(1), a.mean(2), a.mean(3), a.mean(4), a.mean(5));
            }
        }
        return accuracy;
    }

    private static double accuracy(MultiLayerNetwork net, DataSet test) {
        INDArray predicted = net.output(test.getFeatures()).argMax(1);
        INDArray actual = test.getLabels().argMax(1);
        return predicted.eq(actual).castTo(DataType.FLOAT).meanNumber().doubleValue();
    }

    static Map<String, String> options(String[] args) {
        Map<String, String> opts = new TreeMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                throw new IllegalArgumentException("expected --name value pairs, got " + Arrays.toString(args));
            }
            opts.put(args[i].substring(2), args[++i]);
        }
        return opts;
    }
}
