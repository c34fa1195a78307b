// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.privacy.Clipping;
import io.github.dl4jbackpack.privacy.PrivateTraining;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Sgd;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Times DP-SGD training steps ({@code fit} on one batch with {@link PrivateTraining}: per-example norms and
 * clipped sums from the extended pass, noise, the SGD update) against plain SGD steps of the same network,
 * interleaved step by step in one JVM so that both see the same machine state, and reports the peak resident
 * memory of the process (Linux' {@code VmHWM}): run one mode per JVM to compare memory.
 *
 * <pre>
 * --problem logreg|mlp|2c2d|3c3d|allcnnc   (default 3c3d)
 * --batch N                                (default 128)
 * --steps S --warmup W                     (default 30 and 3)
 * --mode both|sgd|dp-sgd                   (default both: interleaved; one mode alone for its peak memory)
 * --csv FILE
 * </pre>
 *
 * Synthetic float32 inputs, flat clipping to 1, noise multiplier 1 (the cost does not depend on them). The private
 * steps take the fixed batch as the Poisson-sampled one ({@code acceptBatchesNotPoissonSampled}), so both modes
 * see the same N.
 */
public final class PrivacyBenchmark {

    private PrivacyBenchmark() {
    }

    /**
     * One mode's steps.
     *
     * @param problem the network
     * @param mode {@code sgd} or {@code dp-sgd}
     * @param batch N
     * @param steps timed steps
     * @param minMillis the fastest
     * @param medianMillis the median
     * @param maxMillis the slowest
     * @param ratio the median over SGD's median in the same run (NaN without SGD)
     * @param peakRssMb the process's peak resident memory at the end of the run, MB (NaN where unknown)
     * @param machine where it ran
     */
    public record Row(String problem, String mode, long batch, int steps, double minMillis, double medianMillis,
                      double maxMillis, double ratio, double peakRssMb, Benchmark.Machine machine) {
        static final String CSV_HEADER = "problem,mode,batch,steps,min_ms,median_ms,max_ms,ratio_to_sgd,peak_rss_mb,"
                + "omp_threads,cores,cpu,backend,blas";

        String csv() {
            return String.format(Locale.ROOT, "%s,%s,%d,%d,%.3f,%.3f,%.3f,%.3f,%.0f,%d,%d,%s,%s,%s", problem, mode,
                    batch, steps, minMillis, medianMillis, maxMillis, ratio, peakRssMb, machine.ompThreads(),
                    machine.cores(), machine.cpu().replace(',', ';'), machine.backend().replace(',', ';'),
                    machine.blas().replace(',', ';'));
        }
    }

    /**
     * Runs the benchmark.
     *
     * @param args see the class comment
     */
    public static void main(String[] args) {
        Map<String, String> opts = GradientNoiseDemo.options(args);
        DeepObsNetworks problem = DeepObsNetworks.of(opts.getOrDefault("problem", "3c3d"));
        String mode = opts.getOrDefault("mode", "both");
        List<String> modes = mode.equals("both") ? List.of("sgd", "dp-sgd") : List.of(mode);
        List<Row> rows = run(problem, Long.parseLong(opts.getOrDefault("batch", "128")),
                Integer.parseInt(opts.getOrDefault("steps", "30")), Integer.parseInt(opts.getOrDefault("warmup", "3")),
                modes, System.out, System.err);
        if (opts.containsKey("csv")) {
            writeCsv(rows, Paths.get(opts.get("csv")));
        }
    }

    static List<Row> run(DeepObsNetworks problem, long batch, int steps, int warmup, List<String> modes,
                         PrintStream out, PrintStream progress) {
        for (String m : modes) {
            if (!m.equals("sgd") && !m.equals("dp-sgd")) {
                throw new IllegalArgumentException("unknown mode " + m + " (sgd, dp-sgd, both)");
            }
        }
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        Nd4j.getRandom().setSeed(17);
        INDArray x = Nd4j.rand(DataType.FLOAT, problem.inputShape(batch));
        INDArray y = Nd4j.zeros(DataType.FLOAT, batch, problem.classes());
        for (int i = 0; i < batch; i++) {
            y.putScalar(i, i % problem.classes(), 1.0);
        }
        DataSet data = new DataSet(x, y);
        List<MultiLayerNetwork> nets = new ArrayList<>();
        for (String m : modes) {
            MultiLayerNetwork net = problem.build(DataType.FLOAT, new Sgd(1e-3), 1);
            if (m.equals("dp-sgd")) {
                PrivateTraining.builder().clipping(Clipping.flat(1.0)).noiseMultiplier(1.0).sampleRate(1.0)
                        .acceptBatchesNotPoissonSampled().build(net, data);
            }
            nets.add(net);
        }
        Benchmark.Machine machine = Benchmark.Machine.current();
        out.printf("%s (%,d parameters), batch %d, float32, %d warm-up and %d timed steps per mode, interleaved%n",
                problem.shortName(), problem.parameters(), batch, warmup, steps);
        out.printf("machine: %s%n", machine);
        ProgressBar bar = new ProgressBar(progress, String.format("%-8s", problem.shortName()),
                (long) modes.size() * (warmup + steps));
        double[][] millis = new double[modes.size()][steps];
        long done = 0;
        for (int step = 0; step < warmup + steps; step++) {
            for (int i = 0; i < modes.size(); i++) {
                long start = System.nanoTime();
                nets.get(i).fit(x, y);
                double elapsed = (System.nanoTime() - start) / 1e6;
                if (step >= warmup) {
                    millis[i][step - warmup] = elapsed;
                }
                bar.update(++done, modes.get(i));
            }
        }
        bar.finish();
        double peak = peakRssMb();
        int sgd = modes.indexOf("sgd");
        double sgdMedian = sgd < 0 ? Double.NaN : Benchmark.median(millis[sgd]);
        List<Row> rows = new ArrayList<>();
        out.printf("%-8s %10s %10s %10s %8s %12s%n", "mode", "min ms", "median ms", "max ms", "× SGD", "peak RSS MB");
        for (int i = 0; i < modes.size(); i++) {
            double[] t = millis[i];
            double median = Benchmark.median(t);
            Row row = new Row(problem.shortName(), modes.get(i), batch, steps, Arrays.stream(t).min().orElse(Double.NaN),
                    median, Arrays.stream(t).max().orElse(Double.NaN), median / sgdMedian, peak, machine);
            rows.add(row);
            out.printf(Locale.ROOT, "%-8s %10.1f %10.1f %10.1f %8.2f %12.0f%n", row.mode(), row.minMillis(),
                    row.medianMillis(), row.maxMillis(), row.ratio(), row.peakRssMb());
        }
        return rows;
    }

    /** @return the process's peak resident set size from {@code /proc/self/status}, MB, or NaN */
    static double peakRssMb() {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024.0;
                }
            }
        } catch (IOException | RuntimeException e) {
            return Double.NaN;
        }
        return Double.NaN;
    }

    static void writeCsv(List<Row> rows, Path file) {
        CsvFiles.write(file, Row.CSV_HEADER, rows.stream().map(Row::csv).toList());
    }
}
