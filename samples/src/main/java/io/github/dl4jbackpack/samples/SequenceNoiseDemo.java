// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.GradientVarianceListener;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.io.PrintStream;
import java.util.Arrays;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

/**
 * Per-sequence gradient norms and gradient noise of an LSTM classifier on variable-length sequences
 * with masks. The sequences are the UCI digits that ship with this module read as pen-like strokes:
 * each 8×8 image becomes the sequence of its pixel columns from left to right (8 values per step), with
 * the blank columns at both ends dropped, so sequences have 2 to 8 steps; they are padded at the end and
 * masked. The network is an LSTM read at each sequence's last real step ({@code LastTimeStep}) and a
 * softmax output; {@link GradientVarianceListener} reports after each epoch, per layer and parameter, the
 * total variance of the per-sequence gradients, the mean gradient's norm, their signal-to-noise ratio and
 * quantiles of the per-sequence gradient norms, all from the training passes themselves.
 *
 * <p>Options: {@code --epochs E} (default 10), {@code --batch B} (64), {@code --seed S} (7),
 * {@code --units U} (32), {@code --limit N} (use only the first N training sequences).
 */
public final class SequenceNoiseDemo {

    private SequenceNoiseDemo() {
    }

    /** The digits as masked column sequences. */
    record Sequences(INDArray features, INDArray labels, INDArray mask) {

        /** @return the sequences at the given indices */
        Sequences rows(int[] indices) {
            return new Sequences(Nd4j.pullRows(features.reshape(features.size(0), features.size(1) * features.size(2)),
                    1, indices).reshape(indices.length, features.size(1), features.size(2)),
                    Nd4j.pullRows(labels, 1, indices), Nd4j.pullRows(mask, 1, indices));
        }

        /** @return the sequences {@code [from, to)} */
        Sequences range(int from, int to) {
            return new Sequences(features.get(NDArrayIndex.interval(from, to)).dup(),
                    labels.get(NDArrayIndex.interval(from, to)).dup(), mask.get(NDArrayIndex.interval(from, to)).dup());
        }

        int size() {
            return (int) features.size(0);
        }
    }

    /**
     * @param digits the images {@code [n, 1, 8, 8]} and labels
     * @return each image's non-blank pixel columns from left to right as steps, {@code [n, 8, 8]}, padded at
     *     the end, with the mask {@code [n, 8]} of real steps
     */
    static Sequences columnSequences(DataSet digits) {
        INDArray images = digits.getFeatures();
        int n = (int) images.size(0);
        int side = Digits.SIDE;
        INDArray x = Nd4j.zeros(images.dataType(), n, side, side);
        INDArray mask = Nd4j.zeros(images.dataType(), n, side);
        for (int i = 0; i < n; i++) {
            INDArray image = images.get(NDArrayIndex.point(i), NDArrayIndex.point(0), NDArrayIndex.all(),
                    NDArrayIndex.all());
            INDArray columnSums = image.sum(0);
            int first = 0;
            while (first < side - 1 && columnSums.getDouble(first) == 0) {
                first++;
            }
            int last = side - 1;
            while (last > first && columnSums.getDouble(last) == 0) {
                last--;
            }
            for (int c = first; c <= last; c++) {
                x.get(NDArrayIndex.point(i), NDArrayIndex.all(), NDArrayIndex.point(c - first))
                        .assign(image.get(NDArrayIndex.all(), NDArrayIndex.point(c)));
                mask.putScalar(i, c - first, 1.0);
            }
        }
        return new Sequences(x, digits.getLabels(), mask);
    }

    static MultiLayerNetwork network(long seed, int units) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(DataType.FLOAT)
                .weightInit(WeightInit.XAVIER)
                .updater(new Adam(1e-2))
                .list(new LastTimeStep(new LSTM.Builder().nOut(units).activation(Activation.TANH).build()),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(Digits.CLASSES)
                                .activation(Activation.SOFTMAX).build())
                .setInputType(InputType.recurrent(Digits.SIDE))
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
        Map<String, String> opts = GradientNoiseDemo.options(args);
        run(Integer.parseInt(opts.getOrDefault("epochs", "10")), Integer.parseInt(opts.getOrDefault("batch", "64")),
                Long.parseLong(opts.getOrDefault("seed", "7")), Integer.parseInt(opts.getOrDefault("units", "32")),
                Integer.parseInt(opts.getOrDefault("limit", "0")), System.out, System.err);
    }

    /**
     * @return the test accuracy after the last epoch
     */
    static double run(int epochs, int batch, long seed, int units, int limit, PrintStream out, PrintStream progress) {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        DataSet digits = Digits.load(DataType.FLOAT);
        digits.shuffle(seed);
        Sequences all = columnSequences(digits);
        int testSize = 297;
        Sequences test = all.range(0, testSize);
        Sequences train = all.range(testSize, limit > 0 ? Math.min(all.size(), testSize + limit) : all.size());

        MultiLayerNetwork net = network(seed, units);
        GradientVarianceListener listener = new GradientVarianceListener(BackPackNetwork.extend(net), 1);
        net.addListeners(listener);
        Map<String, GradientNoiseDemo.EpochAverage> stats = new TreeMap<>();
        int[] lengths = train.mask().sum(1).toIntVector();
        out.printf("Training an LSTM (%d units) on %d digits read as sequences of pixel columns (%d to %d steps, "
                + "padded and masked; %d held out), batch %d, %d epochs.%n", units, train.size(),
                Arrays.stream(lengths).min().orElse(0), Arrays.stream(lengths).max().orElse(0), testSize, batch, epochs);
        out.println("Per layer and parameter, from the training iterations' own backward passes (per-sequence loss "
                + "gradients ∇ℓ_n), averaged over the epoch:");
        out.println("  variance = Σ Var_n(∇ℓ_n), |grad| = ‖∇L‖, SNR = ‖∇L‖² / variance, "
                + "q10/q50/q90 = quantiles of ‖∇ℓ_n‖");
        Random random = new Random(seed);
        double accuracy = 0;
        for (int epoch = 1; epoch <= epochs; epoch++) {
            stats.clear();
            int[] order = Digits.shuffledIndices(train.size(), random);
            int iterations = (train.size() + batch - 1) / batch;
            ProgressBar bar = new ProgressBar(progress, String.format("epoch %d/%d", epoch, epochs), iterations);
            double lossSum = 0;
            for (int it = 0; it < iterations; it++) {
                Sequences b = train.rows(Arrays.copyOfRange(order, it * batch, Math.min(train.size(), (it + 1) * batch)));
                net.fit(new DataSet(b.features(), b.labels(), b.mask(), null));
                for (GradientVarianceListener.Statistics s : listener.lastReport()) {
                    stats.computeIfAbsent(s.layer() + " " + s.param(), k -> new GradientNoiseDemo.EpochAverage()).add(s);
                }
                lossSum += net.score();
                bar.update(it + 1, String.format("loss %.4f", lossSum / (it + 1)));
            }
            bar.finish();
            accuracy = accuracy(net, test);
            out.printf("%nepoch %d: mean training loss %.4f, test accuracy %.3f%n", epoch, lossSum / iterations,
                    accuracy);
            out.printf("  %-5s %-5s %-13s %11s %11s %9s %10s %10s %10s%n", "layer", "param", "type", "variance",
                    "|grad|", "SNR", "q10", "q50", "q90");
            for (Map.Entry<String, GradientNoiseDemo.EpochAverage> e : stats.entrySet()) {
                String[] key = e.getKey().split(" ");
                GradientNoiseDemo.EpochAverage a = e.getValue();
                String type = net.getLayerWiseConfigurations().getConf(Integer.parseInt(key[0])).getLayer().getClass()
                        .getSimpleName();
                out.printf("  %-5s %-5s %-13s %11.4e %11.4e %9.4f %10.4f %10.4f %10.4f%n", key[0], key[1], type,
                        a.mean(0), a.mean(1), a.mean(2), a.mean(3), a.mean(4), a.mean(5));
            }
        }
        return accuracy;
    }

    private static double accuracy(MultiLayerNetwork net, Sequences test) {
        INDArray predicted = net.output(test.features(), false, test.mask(), null).argMax(1);
        INDArray actual = test.labels().argMax(1);
        return predicted.eq(actual).castTo(DataType.FLOAT).meanNumber().doubleValue();
    }
}
