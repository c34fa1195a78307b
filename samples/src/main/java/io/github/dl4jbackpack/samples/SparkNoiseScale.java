// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import io.github.dl4jbackpack.samples.data.DataSource;
import io.github.dl4jbackpack.samples.data.ImageDataSet;
import io.github.dl4jbackpack.spark.DatasetQuantities;
import io.github.dl4jbackpack.spark.SparkQuantities;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;

import java.io.PrintStream;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The gradient noise scale and the Fisher diagonal (the Monte Carlo GGN diagonal, which for a softmax output is the
 * Fisher's) of DeepOBS's MNIST MLP over the whole MNIST training set, computed on Spark with {@code local[1]} and
 * {@code local[2]}, beside the same quantities computed on one machine without Spark (a loop over the same
 * batches, the noise scale there from {@code SumGradSquared} instead of Spark's pairwise merge of
 * {@code Variance}). The network is first trained for an epoch with Adam, so that the quantities are those of a
 * network in training rather than at its initialisation. Prints a table of times and values and writes it as CSV.
 *
 * <pre>
 * scripts/fetch-data.sh
 * mvn -q compile exec:java -pl samples -am -Dsample=SparkNoiseScale -Dexec.args="--data data --partitions 8"
 * </pre>
 *
 * Options: {@code --data DIR}, {@code --examples N} (0: all 60,000), {@code --batch B} (128), {@code --partitions P}
 * (8), {@code --train-epochs E} (1), {@code --seed S} (7), {@code --masters local[1],local[2]},
 * {@code --csv FILE} (results/spark-noise-scale.csv).
 */
public final class SparkNoiseScale {

    private SparkNoiseScale() {
    }

    /**
     * The sample's settings.
     *
     * @param examples training examples used (0: all)
     * @param batch the mini-batch size
     * @param partitions the RDD's partitions
     * @param trainEpochs epochs of Adam before the quantities are computed
     * @param seed weights, shuffling and Monte Carlo seed
     * @param masters the Spark masters to run on
     */
    public record Settings(int examples, int batch, int partitions, int trainEpochs, long seed, List<String> masters) {
    }

    /**
     * One way of computing the quantities.
     *
     * @param where "one machine" or the Spark master
     * @param seconds the computation's wall time (the network's restoration on the executors included)
     * @param examples M
     * @param noiseScale the gradient noise scale B
     * @param fisherTrace the sum of the Fisher diagonal over all parameters
     * @param fisherDifference ‖F − F₁‖ / ‖F₁‖ against the one-machine Fisher diagonal F₁ (Monte Carlo draws differ)
     */
    public record Row(String where, double seconds, long examples, double noiseScale, double fisherTrace,
                      double fisherDifference) {
    }

    /**
     * @param args the options above
     */
    public static void main(String[] args) {
        Map<String, String> opts = GradientNoiseDemo.options(args);
        Settings s = new Settings(Integer.parseInt(opts.getOrDefault("examples", "0")),
                Integer.parseInt(opts.getOrDefault("batch", "128")),
                Integer.parseInt(opts.getOrDefault("partitions", "8")),
                Integer.parseInt(opts.getOrDefault("train-epochs", "1")), Long.parseLong(opts.getOrDefault("seed", "7")),
                List.of(opts.getOrDefault("masters", "local[1],local[2]").split(",")));
        ImageDataSet train = ImageDataSet.of(DataSource.MNIST.load(Paths.get(opts.getOrDefault("data", "data")))
                .train(), DataType.FLOAT);
        if (s.examples() > 0) {
            train = train.sample(s.examples(), s.seed());
        }
        List<Row> rows = run(s, train, System.out, System.err);
        Path csv = Paths.get(opts.getOrDefault("csv", "results/spark-noise-scale.csv"));
        writeCsv(rows, csv);
        System.out.println("wrote " + csv);
    }

    /**
     * @param s the settings
     * @param train the training set
     * @param out where the table goes
     * @param progress where the progress bars go
     * @return one row for the computation on one machine, then one per Spark master
     */
    public static List<Row> run(Settings s, ImageDataSet train, PrintStream out, PrintStream progress) {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        MultiLayerNetwork net = DeepObsNetworks.MLP.build(DataType.FLOAT, new Adam(1e-3), s.seed());
        for (int epoch = 1; epoch <= s.trainEpochs(); epoch++) {
            DataSetIterator it = train.iterator(s.batch(), true, s.seed() + epoch);
            ProgressBar bar = new ProgressBar(progress, "training epoch " + epoch, (train.size() + s.batch() - 1)
                    / s.batch());
            int step = 0;
            while (it.hasNext()) {
                net.fit(it.next());
                bar.update(++step, String.format(Locale.ROOT, "loss %.4f", net.score()));
            }
            bar.finish();
        }
        List<DataSet> records = records(train.toDataSet(true), s.batch());
        List<Row> rows = new ArrayList<>();
        Map<String, INDArray> reference = new LinkedHashMap<>();
        rows.add(oneMachine(net, records, s, reference, progress));
        for (String master : s.masters()) {
            rows.add(onSpark(net, records, s, master, reference));
        }
        out.printf(Locale.ROOT, "%-12s %10s %8s %14s %14s %16s%n", "where", "seconds", "M", "noise scale B",
                "tr Fisher", "Fisher vs 1 mach.");
        for (Row r : rows) {
            out.printf(Locale.ROOT, "%-12s %10.1f %8d %14.2f %14.6f %16.4f%n", r.where(), r.seconds(), r.examples(),
                    r.noiseScale(), r.fisherTrace(), r.fisherDifference());
        }
        return rows;
    }

    /** @return the data set cut into records of {@code size} examples, as a data set arrives in an RDD */
    private static List<DataSet> records(DataSet all, int size) {
        List<DataSet> records = new ArrayList<>();
        int n = all.numExamples();
        for (int from = 0; from < n; from += size) {
            records.add((DataSet) all.getRange(from, Math.min(n, from + size)));
        }
        return records;
    }

    /**
     * The same quantities without Spark: every batch through the extended network in turn; the noise scale from
     * {@code Σ_n ∇ℓ_n²} and the mean gradient, {@code tr Σ = Σ ∇ℓ_n² / M − ‖μ‖²} (in float64).
     */
    private static Row oneMachine(MultiLayerNetwork original, List<DataSet> batches, Settings s,
                                  Map<String, INDArray> fisher, PrintStream progress) {
        MultiLayerNetwork net = original.clone();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Nd4j.getRandom().setSeed(s.seed() + 1_000_003L);
        long start = System.nanoTime();
        long m = 0;
        double squaredGradients = 0;
        INDArray gradientSum = null;
        ProgressBar bar = new ProgressBar(progress, "one machine", batches.size());
        for (DataSet batch : batches) {
            long n = batch.numExamples();
            // every array of the loop is closed when used: ND4J would free them only at a garbage collection
            try (Quantities q = bp.backward(batch, new DiagGGNMC(1), new SumGradSquared())) {
                for (String key : q.keys(DiagGGNMC.class)) {
                    INDArray mc = q.byKey(DiagGGNMC.class, key);
                    INDArray f = mc.castTo(DataType.DOUBLE).muli(n);
                    mc.close();
                    fisher.merge(key, f, (sum, add) -> {
                        sum.addi(add);
                        add.close();
                        return sum;
                    });
                    INDArray sgs = q.byKey(SumGradSquared.class, key);
                    squaredGradients += sgs.sumNumber().doubleValue() * n * n;
                    sgs.close();
                }
            }
            INDArray g = net.gradient().gradient().castTo(DataType.DOUBLE);
            if (gradientSum == null) {
                gradientSum = g.dup();
            } else {
                gradientSum.addi(g);
            }
            g.close();
            m += n;
            bar.update(m / s.batch(), "");
        }
        bar.finish();
        double seconds = (System.nanoTime() - start) / 1e9;
        double finalM = m;
        fisher.replaceAll((k, v) -> v.divi(finalM));
        INDArray mean = gradientSum.divi(m);
        double meanSquared = mean.mul(mean).sumNumber().doubleValue();
        double noiseScale = (squaredGradients / m - meanSquared) / meanSquared;
        BackPackNetwork.releaseThreadMemory();
        return new Row("one machine", seconds, m, noiseScale, trace(fisher), 0);
    }

    private static Row onSpark(MultiLayerNetwork net, List<DataSet> records, Settings s, String master,
                               Map<String, INDArray> reference) {
        SparkConf conf = new SparkConf().setMaster(master).setAppName("SparkNoiseScale")
                .set("spark.ui.enabled", "false").set("spark.driver.host", "127.0.0.1");
        try (JavaSparkContext sc = new JavaSparkContext(conf)) {
            JavaRDD<DataSet> data = sc.parallelize(records, s.partitions()).cache();
            data.count();
            long start = System.nanoTime();
            DatasetQuantities q = SparkQuantities.of(net).batchSize(s.batch()).seed(s.seed())
                    .extensions(new DiagGGNMC(1), new Variance()).compute(data);
            double seconds = (System.nanoTime() - start) / 1e9;
            Map<String, INDArray> fisher = new LinkedHashMap<>();
            double difference = 0;
            double norm = 0;
            for (String key : q.asQuantities().keys(DiagGGNMC.class)) {
                INDArray f = q.asQuantities().byKey(DiagGGNMC.class, key);
                fisher.put(key, f);
                difference += Math.pow(f.sub(reference.get(key)).norm2Number().doubleValue(), 2);
                norm += Math.pow(reference.get(key).norm2Number().doubleValue(), 2);
            }
            return new Row(master, seconds, q.size(), q.gradientNoiseScale(), trace(fisher),
                    Math.sqrt(difference / norm));
        }
    }

    private static double trace(Map<String, INDArray> diagonal) {
        double t = 0;
        for (INDArray d : diagonal.values()) {
            t += d.sumNumber().doubleValue();
        }
        return t;
    }

    /**
     * @param rows the results
     * @param file the CSV file
     */
    public static void writeCsv(List<Row> rows, Path file) {
        List<String> lines = new ArrayList<>();
        for (Row r : rows) {
            lines.add(String.format(Locale.ROOT, "%s,%.3f,%d,%.6f,%.8f,%.6f", r.where(), r.seconds(), r.examples(),
                    r.noiseScale(), r.fisherTrace(), r.fisherDifference()));
        }
        CsvFiles.write(file, "where,seconds,examples,noise_scale,fisher_trace,fisher_relative_difference", lines);
    }
}
