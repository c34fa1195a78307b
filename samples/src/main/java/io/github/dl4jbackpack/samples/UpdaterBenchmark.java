// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.optim.DiagGGNUpdater;
import io.github.dl4jbackpack.optim.KroneckerUpdater;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.learning.config.IUpdater;

import java.io.PrintStream;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Times training steps ({@code fit} on one batch: forward, backward, the updater, the parameter update) of a
 * DeepOBS network with Adam and with the curvature-preconditioned updaters, the paper's rule (curvature and
 * inverses every step) and the amortised one (curvature every few steps, a moving average, inverses every many
 * steps), and reports each rule's mean step over a run of steps beside Adam's, measured in the same run.
 *
 * <pre>
 * --problem logreg|2c2d|3c3d|allcnnc   (default 2c2d)
 * --batch N                            (default 128)
 * --steps S --warmup W                 (default 100 and 3: the mean of S timed steps after W untimed ones)
 * --rules a,b,...                      (default adam,kfac-amortised,diag-mc-amortised; also kfac, kflr, diag-mc)
 * --curvature-interval T --decay ρ --inverse-interval T   (the amortised rules; default 10, 0.95, 100)
 * --csv FILE
 * </pre>
 *
 * <p>Synthetic inputs of the right shape, float32, learning rate 1e-3 and damping 1e-2 for every rule (the step's
 * cost does not depend on them). A step's time includes, in the steps where they happen, the curvature's
 * backward-pass work and the inversion of the factors: the mean over a multiple of the inverse interval is the
 * amortised cost; the slowest step is one that inverts.
 */
public final class UpdaterBenchmark {

    private UpdaterBenchmark() {
    }

    /**
     * One rule's steps.
     *
     * @param problem the network
     * @param rule the rule
     * @param batch N
     * @param steps timed steps
     * @param meanMillis their mean
     * @param medianMillis their median
     * @param maxMillis the slowest
     * @param ratioToAdam {@code meanMillis} over Adam's mean in the same run (NaN without Adam)
     * @param machine where it ran
     */
    public record Row(String problem, String rule, long batch, int steps, double meanMillis, double medianMillis,
                      double maxMillis, double ratioToAdam, Benchmark.Machine machine) {
        static final String CSV_HEADER = "problem,rule,batch,steps,mean_ms,median_ms,max_ms,ratio_to_adam,omp_threads,"
                + "cores,cpu,backend,blas";

        String csv() {
            return String.format(Locale.ROOT, "%s,%s,%d,%d,%.3f,%.3f,%.3f,%.3f,%d,%d,%s,%s,%s", problem, rule, batch,
                    steps, meanMillis, medianMillis, maxMillis, ratioToAdam, machine.ompThreads(), machine.cores(),
                    machine.cpu().replace(',', ';'), machine.backend().replace(',', ';'),
                    machine.blas().replace(',', ';'));
        }
    }

    /**
     * The settings of a run.
     *
     * @param batch N
     * @param steps timed steps per rule
     * @param warmup untimed steps before them
     * @param curvatureInterval the amortised rules' curvature interval
     * @param decay their moving-average decay
     * @param inverseInterval the amortised Kronecker rule's inverse interval
     */
    record Settings(long batch, int steps, int warmup, int curvatureInterval, double decay, int inverseInterval) {
    }

    public static void main(String[] args) {
        Map<String, String> opts = GradientNoiseDemo.options(args);
        DeepObsNetworks problem = DeepObsNetworks.of(opts.getOrDefault("problem", "2c2d"));
        Settings settings = new Settings(Long.parseLong(opts.getOrDefault("batch", "128")),
                Integer.parseInt(opts.getOrDefault("steps", "100")), Integer.parseInt(opts.getOrDefault("warmup", "3")),
                Integer.parseInt(opts.getOrDefault("curvature-interval", "10")),
                Double.parseDouble(opts.getOrDefault("decay", "0.95")),
                Integer.parseInt(opts.getOrDefault("inverse-interval", "100")));
        List<String> rules = Arrays.asList(opts.getOrDefault("rules", "adam,kfac-amortised,diag-mc-amortised")
                .split(","));
        List<Row> rows = run(problem, settings, rules, System.out, System.err);
        if (opts.containsKey("csv")) {
            writeCsv(rows, Paths.get(opts.get("csv")));
        }
    }

    /**
     * @param rule a rule's name on the command line
     * @param settings the amortised rules' settings
     * @return its DL4J updater
     */
    static IUpdater updater(String rule, Settings settings) {
        switch (rule) {
            case "adam":
                return new Adam(1e-3);
            case "kfac":
                return KroneckerUpdater.kfac(1e-3, 1e-2, 1);
            case "kflr":
                return KroneckerUpdater.kflr(1e-3, 1e-2);
            case "diag-mc":
                return DiagGGNUpdater.monteCarlo(1e-3, 1e-2, 1);
            case "kfac-amortised":
                return KroneckerUpdater.kfac(1e-3, 1e-2, 1).withCurvatureInterval(settings.curvatureInterval())
                        .withCurvatureDecay(settings.decay()).withInverseInterval(settings.inverseInterval());
            case "diag-mc-amortised":
                return DiagGGNUpdater.monteCarlo(1e-3, 1e-2, 1).withCurvatureInterval(settings.curvatureInterval())
                        .withCurvatureDecay(settings.decay());
            default:
                throw new IllegalArgumentException("unknown rule " + rule
                        + " (adam, kfac, kflr, diag-mc, kfac-amortised, diag-mc-amortised)");
        }
    }

    static List<Row> run(DeepObsNetworks problem, Settings settings, List<String> rules, PrintStream out,
                         PrintStream progress) {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        Nd4j.getRandom().setSeed(17);
        INDArray x = Nd4j.rand(DataType.FLOAT, problem.inputShape(settings.batch()));
        INDArray y = Nd4j.zeros(DataType.FLOAT, settings.batch(), problem.classes());
        for (int i = 0; i < settings.batch(); i++) {
            y.putScalar(i, i % problem.classes(), 1.0);
        }
        Benchmark.Machine machine = Benchmark.Machine.current();
        out.printf("%s (%,d parameters), batch %d, float32, %d warm-up and %d timed steps per rule; amortised rules: "
                        + "curvature every %d steps, decay %s, inverses every %d steps%n", problem.shortName(),
                problem.parameters(), settings.batch(), settings.warmup(), settings.steps(),
                settings.curvatureInterval(), settings.decay(), settings.inverseInterval());
        out.printf("machine: %s%n", machine);
        ProgressBar bar = new ProgressBar(progress, String.format("%-8s", problem.shortName()),
                (long) rules.size() * (settings.warmup() + settings.steps()));
        long done = 0;
        List<double[]> times = new ArrayList<>();
        for (String rule : rules) {
            MultiLayerNetwork net = problem.build(DataType.FLOAT, updater(rule, settings), 1);
            BackPackNetwork.extend(net);
            double[] millis = new double[settings.steps()];
            for (int step = 0; step < settings.warmup() + settings.steps(); step++) {
                long start = System.nanoTime();
                net.fit(x, y);
                double elapsed = (System.nanoTime() - start) / 1e6;
                if (step >= settings.warmup()) {
                    millis[step - settings.warmup()] = elapsed;
                }
                bar.update(++done, rule);
            }
            times.add(millis);
        }
        bar.finish();
        int adam = rules.indexOf("adam");
        double adamMean = adam < 0 ? Double.NaN : Arrays.stream(times.get(adam)).average().orElse(Double.NaN);
        List<Row> rows = new ArrayList<>();
        out.printf("%-20s %10s %10s %10s %8s%n", "rule", "mean ms", "median ms", "max ms", "× Adam");
        for (int i = 0; i < rules.size(); i++) {
            double[] t = times.get(i);
            double mean = Arrays.stream(t).average().orElse(Double.NaN);
            Row row = new Row(problem.shortName(), rules.get(i), settings.batch(), t.length, mean,
                    Benchmark.median(t), Arrays.stream(t).max().orElse(Double.NaN), mean / adamMean, machine);
            rows.add(row);
            out.printf(Locale.ROOT, "%-20s %10.1f %10.1f %10.1f %8.2f%n", row.rule(), row.meanMillis(),
                    row.medianMillis(), row.maxMillis(), row.ratioToAdam());
        }
        return rows;
    }

    static void writeCsv(List<Row> rows, Path file) {
        CsvFiles.write(file, Row.CSV_HEADER, rows.stream().map(Row::csv).toList());
    }
}
