// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.privacy.Clipping;
import io.github.dl4jbackpack.privacy.PrivateTraining;
import io.github.dl4jbackpack.samples.data.DataSource;
import io.github.dl4jbackpack.samples.data.ImageDataSet;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.markers.SeriesMarkers;
import org.nd4j.evaluation.classification.Evaluation;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Differentially private training on MNIST (docs/privacy.md): the same network trained without privacy and with
 * DP-SGD for each target ε at δ = 1e-5, printing test accuracy and the ε spent after every epoch, with a plot of
 * accuracy against ε.
 *
 * <pre>
 * scripts/fetch-data.sh
 * mvn -q compile exec:java -pl samples -am -Dsample=PrivateMnist -Dexec.args="--data data"
 * </pre>
 *
 * Options: {@code --data DIR} (default {@code data}), {@code --epochs} (10), {@code --batch} expected batch size
 * (256), {@code --clip} C (1.0), {@code --lr} SGD learning rate of the non-private run (0.5), {@code --private-lr}
 * that of the private runs (default: the same), {@code --epsilons} (1,3,8), {@code --delta}
 * (1e-5), {@code --hidden} units of the hidden layer (256), {@code --limit} training examples (0: all 60,000),
 * {@code --seed} (7; fixes initialisation, sampling and noise, with the warning that goes with it), {@code --csv}
 * and {@code --plot} output files (default {@code results/private-mnist.csv}, {@code results/private-mnist.png}).
 */
public final class PrivateMnist {

    private PrivateMnist() {
    }

    /** The settings of a run of the sample. */
    record Settings(int epochs, int batch, double clip, double learningRate, double privateLearningRate,
                    double[] epsilons, double delta, int hidden, int limit, long seed) {
    }

    /**
     * One epoch of one run.
     *
     * @param run "non-private" or "ε = …"
     * @param epoch 1, 2, ...
     * @param epsilon ε spent so far (0 for the non-private run)
     * @param testAccuracy accuracy on the 10,000 test images
     * @param seconds wall time of the epoch
     */
    record Row(String run, int epoch, double epsilon, double testAccuracy, double seconds) {
        String csv() {
            return String.format(Locale.ROOT, "%s,%d,%.6f,%.4f,%.2f", run, epoch, epsilon, testAccuracy, seconds);
        }
    }

    /**
     * Runs the sample.
     *
     * @param args see the class comment
     */
    public static void main(String[] args) {
        Map<String, String> opts = GradientNoiseDemo.options(args);
        Settings s = new Settings(Integer.parseInt(opts.getOrDefault("epochs", "10")),
                Integer.parseInt(opts.getOrDefault("batch", "256")), Double.parseDouble(opts.getOrDefault("clip", "1.0")),
                Double.parseDouble(opts.getOrDefault("lr", "0.5")),
                Double.parseDouble(opts.getOrDefault("private-lr", opts.getOrDefault("lr", "0.5"))),
                Arrays.stream(opts.getOrDefault("epsilons", "1,3,8").split(",")).mapToDouble(Double::parseDouble)
                        .toArray(), Double.parseDouble(opts.getOrDefault("delta", "1e-5")),
                Integer.parseInt(opts.getOrDefault("hidden", "256")), Integer.parseInt(opts.getOrDefault("limit", "0")),
                Long.parseLong(opts.getOrDefault("seed", "7")));
        DataSource.TrainTest mnist = DataSource.MNIST.load(Paths.get(opts.getOrDefault("data", "data")));
        ImageDataSet train = ImageDataSet.of(mnist.train(), DataType.FLOAT);
        if (s.limit() > 0) {
            train = train.sample(s.limit(), s.seed());
        }
        List<Row> rows = run(s, train, ImageDataSet.of(mnist.test(), DataType.FLOAT), System.out, System.err);
        Path csv = Paths.get(opts.getOrDefault("csv", "results/private-mnist.csv"));
        writeCsv(rows, csv);
        Path plot = Paths.get(opts.getOrDefault("plot", "results/private-mnist.png"));
        plot(rows, s, plot);
        System.out.println("wrote " + csv + " and " + plot);
    }

    static MultiLayerNetwork network(Settings s, double learningRate) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(s.seed())
                .dataType(DataType.FLOAT)
                .weightInit(WeightInit.XAVIER)
                .updater(new Sgd(learningRate))
                .list(new DenseLayer.Builder().nOut(s.hidden()).activation(Activation.RELU).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(10).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.feedForward(784))
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        return net;
    }

    /**
     * @param s the settings
     * @param train the training examples, flat
     * @param test the test examples, flat
     * @param out where the table goes
     * @param progress where the progress bars go
     * @return one row per run and epoch
     */
    static List<Row> run(Settings s, ImageDataSet train, ImageDataSet test, PrintStream out, PrintStream progress) {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        out.printf(Locale.ROOT, "MNIST, %d training and %d test images; MLP 784-%d-10 (ReLU), SGD lr %s (private "
                        + "runs %s), expected batch %d, %d epochs; DP-SGD: flat clipping to %s, δ = %s%n", train.size(),
                test.size(), s.hidden(), s.learningRate(), s.privateLearningRate(), s.batch(), s.epochs(), s.clip(),
                s.delta());
        List<Row> rows = new ArrayList<>();
        rows.addAll(train(s, Double.NaN, train, test, out, progress));
        for (double epsilon : s.epsilons()) {
            rows.addAll(train(s, epsilon, train, test, out, progress));
        }
        return rows;
    }

    private static List<Row> train(Settings s, double targetEpsilon, ImageDataSet train, ImageDataSet test,
                                   PrintStream out, PrintStream progress) {
        boolean isPrivate = !Double.isNaN(targetEpsilon);
        String name = isPrivate ? String.format(Locale.ROOT, "ε = %s", targetEpsilon) : "non-private";
        MultiLayerNetwork net = network(s, isPrivate ? s.privateLearningRate() : s.learningRate());
        PrivateTraining dp = null;
        DataSetIterator batches = null;
        if (isPrivate) {
            dp = PrivateTraining.builder().clipping(Clipping.flat(s.clip()))
                    .targetEpsilon(targetEpsilon, s.delta(), s.epochs()).expectedBatchSize(s.batch()).seed(s.seed())
                    .build(net, train.toDataSet(true));
            batches = dp.iterator();
            out.printf(Locale.ROOT, "%s: noise multiplier σ = %.4f, sample rate %.5f, %d steps per epoch%n", name,
                    dp.noiseMultiplier(), dp.sampleRate(), dp.iterator().stepsPerEpoch());
        }
        List<Row> rows = new ArrayList<>();
        for (int epoch = 1; epoch <= s.epochs(); epoch++) {
            long start = System.nanoTime();
            if (isPrivate) {
                batches.reset();
            } else {
                batches = train.iterator(s.batch(), true, s.seed() + epoch);
            }
            long steps = isPrivate ? dp.iterator().stepsPerEpoch() : (train.size() + s.batch() - 1) / s.batch();
            ProgressBar bar = new ProgressBar(progress, String.format(Locale.ROOT, "%-12s epoch %d/%d", name, epoch,
                    s.epochs()), steps);
            long done = 0;
            while (batches.hasNext()) {
                net.fit(batches.next());
                bar.update(++done, "");
            }
            bar.finish();
            double seconds = (System.nanoTime() - start) / 1e9;
            Evaluation eval = net.evaluate(test.iterator(1000, true, 0));
            double epsilon = isPrivate ? dp.epsilon(s.delta()) : 0;
            Row row = new Row(name, epoch, epsilon, eval.accuracy(), seconds);
            rows.add(row);
            out.printf(Locale.ROOT, "%-12s epoch %2d: test accuracy %.4f, ε spent %s (%.1f s)%n", name, epoch,
                    row.testAccuracy(), isPrivate ? String.format(Locale.ROOT, "%.3f", epsilon) : "-", seconds);
        }
        return rows;
    }

    static void writeCsv(List<Row> rows, Path file) {
        CsvFiles.write(file, "run,epoch,epsilon,test_accuracy,seconds", rows.stream().map(Row::csv).toList());
    }

    /** Test accuracy against the ε spent, one curve per target (a point per epoch), the non-private final accuracy as a line. */
    static void plot(List<Row> rows, Settings s, Path file) {
        XYChart chart = new XYChartBuilder().width(720).height(480)
                .title(String.format(Locale.ROOT, "DP-SGD on MNIST (δ = %s, C = %s, expected batch %d)", s.delta(),
                        s.clip(), s.batch()))
                .xAxisTitle("ε spent").yAxisTitle("test accuracy").build();
        chart.getStyler().setLegendPosition(Styler.LegendPosition.OutsideS);
        double maxEpsilon = Arrays.stream(s.epsilons()).max().orElse(1);
        double nonPrivate = rows.stream().filter(r -> r.run().equals("non-private")).mapToDouble(Row::testAccuracy)
                .reduce((a, b) -> b).orElse(Double.NaN);
        if (!Double.isNaN(nonPrivate)) {
            XYSeries line = chart.addSeries("non-private (final)", new double[] {0, maxEpsilon},
                    new double[] {nonPrivate, nonPrivate});
            line.setMarker(SeriesMarkers.NONE);
        }
        for (double target : s.epsilons()) {
            String name = String.format(Locale.ROOT, "ε = %s", target);
            List<Row> run = rows.stream().filter(r -> r.run().equals(name)).toList();
            if (!run.isEmpty()) {
                chart.addSeries("target " + name, run.stream().mapToDouble(Row::epsilon).toArray(),
                        run.stream().mapToDouble(Row::testAccuracy).toArray());
            }
        }
        try {
            if (file.toAbsolutePath().getParent() != null) {
                Files.createDirectories(file.toAbsolutePath().getParent());
            }
            BitmapEncoder.saveBitmap(chart, file.toString(), BitmapEncoder.BitmapFormat.PNG);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file, e);
        }
    }
}
