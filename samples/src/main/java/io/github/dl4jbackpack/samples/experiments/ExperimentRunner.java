// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import io.github.dl4jbackpack.samples.ProgressBar;
import io.github.dl4jbackpack.samples.data.DataSource;
import io.github.dl4jbackpack.samples.data.ImageDataSet;
import org.nd4j.linalg.api.buffer.DataType;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Runs a {@link Preset} by the DeepOBS protocol: for every problem and optimiser, each grid point
 * with the first seed, the best by final validation accuracy re-run with the other seeds, and the
 * median and quartiles per epoch over those seeds. Finished runs are stored ({@link RunStore}) and
 * reused, so an interrupted experiment continues. Writes into the output directory:
 * <ul>
 *   <li>{@code runs/<problem>/<setting>_seed<s>.csv}: every run's per-epoch metrics,</li>
 *   <li>{@code grid_<problem>.csv}: the final metrics of every grid run,</li>
 *   <li>{@code summary_<problem>.csv}: quartiles per optimiser, epoch and metric,</li>
 *   <li>{@code best_settings.csv}: the chosen settings (the paper's Table 3) and final medians,</li>
 *   <li>{@code <problem>.png}: the four-panel figure.</li>
 * </ul>
 */
public final class ExperimentRunner {

    /** Seed of the train/validation split and of the evaluation subsets (fixed across runs). */
    static final long DATA_SEED = 20_200_101L;

    private ExperimentRunner() {
    }

    /**
     * The chosen setting of one optimiser on one problem and how its re-runs ended.
     *
     * @param problem the DeepOBS problem name
     * @param setting the best grid setting
     * @param alphaInterior whether α is an interior grid point
     * @param lambdaInterior whether λ is an interior grid point (false for the baselines)
     * @param gridValidAccuracy the final validation accuracy of the grid run that won
     * @param seeds the re-runs
     */
    public record Best(String problem, Setting setting, boolean alphaInterior, boolean lambdaInterior,
                       double gridValidAccuracy, List<RunResult> seeds) {

        /**
         * @param metric a metric
         * @return its median over the seeds after the last epoch
         */
        public double finalMedian(EpochMetrics.Metric metric) {
            return Protocol.quartiles(seeds.stream().mapToDouble(r -> metric.of(r.last())).toArray())[1];
        }
    }

    /**
     * What a call did.
     *
     * @param best the chosen settings, per problem and optimiser
     * @param trained runs trained in this call
     * @param reused stored runs reused
     * @param skippedProblems problems whose data was missing
     */
    public record Report(List<Best> best, int trained, int reused, List<String> skippedProblems) {
    }

    /**
     * Runs the preset.
     *
     * @param preset what to run
     * @param dataDir the data directory ({@link DataSource})
     * @param outDir where runs, CSV files and plots go
     * @param out where the results table is printed
     * @param progress where the progress bar is drawn
     * @return the chosen settings and counts
     */
    public static Report run(Preset preset, Path dataDir, Path outDir, PrintStream out, PrintStream progress) {
        return run(preset, dataDir, outDir, out, progress, 1);
    }

    /**
     * Runs the preset with several runs at a time: the grid runs of one optimiser, then its re-runs with the other
     * seeds. With more than one job each run trains in a Java process of its own ({@link RunProcess}: ND4J
     * 1.0.0-M2.1 is not safe with networks trained on several threads of one process), started again from its seed
     * should the process die; the results are those of one run at a time. Give each run one OpenMP thread
     * ({@code OMP_NUM_THREADS=1}) when the runs fill the cores.
     *
     * @param preset what to run
     * @param dataDir the data directory ({@link DataSource})
     * @param outDir where runs, CSV files and plots go
     * @param out where the results table is printed
     * @param progress where the progress bar is drawn
     * @param jobs how many runs at a time (at least 1; 1 trains in this process)
     * @return the chosen settings and counts
     */
    public static Report run(Preset preset, Path dataDir, Path outDir, PrintStream out, PrintStream progress,
                             int jobs) {
        if (jobs < 1) {
            throw new IllegalArgumentException("at least one run at a time, got " + jobs);
        }
        RunStore store = new RunStore(outDir);
        Map<ProblemPlan, Trainer.Data> data = new LinkedHashMap<>();
        List<String> skipped = new ArrayList<>();
        long total = 0;
        for (ProblemPlan plan : preset.plans()) {
            DataSource source = plan.problem().dataSource();
            if (!source.available(dataDir)) {
                String why = "skipping " + plan.problem().deepObsName() + ": " + source + " data not found under "
                        + dataDir.resolve(source.directory());
                out.println(why);
                skipped.add(plan.problem().deepObsName());
                continue;
            }
            Trainer.Data d = load(plan, source.load(dataDir));
            data.put(plan, d);
            total += (long) plan.runCount() * plan.epochs() * batches(d.train().size(), plan.batch());
        }
        Progress bar = new Progress(new ProgressBar(progress, "experiments", total));
        ExecutorService pool = Executors.newFixedThreadPool(jobs, r -> {
            Thread t = new Thread(r, "experiment-run");
            t.setDaemon(true);
            return t;
        });
        try {
            Trainers trainers = jobs == 1 ? Trainers.inThisProcess() : Trainers.inProcesses(new RunProcess(), dataDir, outDir);
            return runPlans(preset, data, skipped, outDir, store, bar, pool, out, trainers);
        } finally {
            pool.shutdownNow();
        }
    }

    private static Report runPlans(Preset preset, Map<ProblemPlan, Trainer.Data> data, List<String> skipped,
                                   Path outDir, RunStore store, Progress bar, ExecutorService pool, PrintStream out,
                                   Trainers trainers) {
        List<Best> best = new ArrayList<>();
        // A problem may have several plans (e.g. a smaller grid for expensive optimisers): its files
        // collect all of them.
        Map<String, List<RunResult>> gridRuns = new LinkedHashMap<>();
        Map<String, Map<String, List<Protocol.Quartiles>>> curves = new LinkedHashMap<>();
        Map<String, List<Best>> bestByProblem = new LinkedHashMap<>();
        for (Map.Entry<ProblemPlan, Trainer.Data> e : data.entrySet()) {
            ProblemPlan plan = e.getKey();
            Trainer.Data d = e.getValue();
            String problem = plan.problem().deepObsName();
            long perRun = (long) plan.epochs() * batches(d.train().size(), plan.batch());
            for (Optimizer optimizer : plan.optimizers()) {
                List<Callable<RunResult>> gridTasks = new ArrayList<>();
                for (Setting s : plan.grid(optimizer)) {
                    gridTasks.add(() -> runOrLoad(store, plan, d, s, plan.seeds()[0], bar, perRun, trainers));
                }
                List<RunResult> grid = all(pool, gridTasks);
                gridRuns.computeIfAbsent(problem, k -> new ArrayList<>()).addAll(grid);
                RunResult winner = Protocol.best(grid);
                List<Callable<RunResult>> reruns = new ArrayList<>();
                for (int i = 1; i < plan.seeds().length; i++) {
                    long seed = plan.seeds()[i];
                    reruns.add(() -> runOrLoad(store, plan, d, winner.setting(), seed, bar, perRun, trainers));
                }
                List<RunResult> seeds = new ArrayList<>();
                seeds.add(winner);
                seeds.addAll(all(pool, reruns));
                Setting s = winner.setting();
                Best b = new Best(problem, s, Protocol.interior(s.alpha(), optimizer.curvature() ? plan.alphas()
                        : plan.rates()), optimizer.curvature() && Protocol.interior(s.lambda(), plan.lambdas()),
                        winner.last().validAccuracy(), seeds);
                bestByProblem.computeIfAbsent(problem, k -> new ArrayList<>()).add(b);
                curves.computeIfAbsent(problem, k -> new LinkedHashMap<>()).put(optimizer.label() + " (" + seeds.size()
                        + " seeds)", Protocol.summarize(seeds));
            }
        }
        for (Map.Entry<String, List<Best>> e : bestByProblem.entrySet()) {
            String problem = e.getKey();
            best.addAll(e.getValue());
            writeGrid(gridRuns.get(problem), outDir.resolve("grid_" + problem + ".csv"));
            writeSummary(e.getValue(), outDir.resolve("summary_" + problem + ".csv"));
            Plots.figure(problem + " (" + preset.name() + " preset; median and dashed quartiles over seeds)",
                    curves.get(problem), outDir.resolve(problem + ".png"));
        }
        bar.finish();
        writeBest(best, outDir.resolve("best_settings.csv"));
        printTable(best, out);
        out.printf("%d runs trained, %d reused from %s%n", bar.trained.get(), bar.reused.get(), outDir.resolve("runs"));
        return new Report(best, bar.trained.get(), bar.reused.get(), skipped);
    }

    /** The progress bar and counts that concurrent runs share. */
    private static final class Progress {
        private final ProgressBar bar;
        private final AtomicLong iterations = new AtomicLong();
        private final AtomicInteger trained = new AtomicInteger();
        private final AtomicInteger reused = new AtomicInteger();

        Progress(ProgressBar bar) {
            this.bar = bar;
        }

        /**
         * @param iterations iterations done since the last call
         * @param status what the bar says
         */
        synchronized void add(long iterations, String status) {
            bar.update(this.iterations.addAndGet(iterations), status);
        }

        synchronized void finish() {
            bar.finish();
        }
    }

    /** @return the results of the tasks, in their order, run on the pool */
    private static List<RunResult> all(ExecutorService pool, List<Callable<RunResult>> tasks) {
        List<RunResult> results = new ArrayList<>();
        try {
            for (Future<RunResult> f : pool.invokeAll(tasks)) {
                results.add(f.get());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while runs were training", e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) {
                throw r;
            }
            throw new IllegalStateException(e.getCause());
        }
        return results;
    }

    static Trainer.Data load(ProblemPlan plan, DataSource.TrainTest tt) {
        ImageDataSet all = ImageDataSet.of(tt.train(), DataType.FLOAT);
        ImageDataSet.Split split = all.split(plan.validationSize(), DATA_SEED);
        ImageDataSet train = plan.trainSize() > 0 ? split.train().sample(plan.trainSize(), DATA_SEED + 1) : split.train();
        ImageDataSet test = ImageDataSet.of(tt.test(), DataType.FLOAT);
        int eval = plan.evalSize() > 0 ? plan.evalSize() : Integer.MAX_VALUE;
        boolean flat = plan.problem().flatInput();
        return new Trainer.Data(train, train.sample(eval, DATA_SEED + 2).toDataSet(flat),
                split.validation().sample(eval, DATA_SEED + 3).toDataSet(flat), test.sample(eval, DATA_SEED + 4)
                .toDataSet(flat));
    }

    /** Where a run trains: in this process, or in one of its own. */
    private interface Trainers {
        RunResult train(ProblemPlan plan, Trainer.Data d, Setting s, long seed, Trainer.Progress progress);

        static Trainers inThisProcess() {
            return Trainer::train;
        }

        static Trainers inProcesses(RunProcess processes, Path dataDir, Path outDir) {
            return (plan, d, s, seed, progress) -> processes.train(plan, s, seed, dataDir, outDir, progress);
        }
    }

    private static RunResult runOrLoad(RunStore store, ProblemPlan plan, Trainer.Data d, Setting s, long seed,
                                       Progress bar, long perRun, Trainers trainers) {
        String problem = plan.problem().deepObsName();
        Optional<RunResult> stored = store.load(problem, s, seed, plan.config());
        if (stored.isPresent()) {
            bar.reused.incrementAndGet();
            bar.add(perRun, status(problem, s, seed, "stored"));
            return stored.get();
        }
        long[] counted = {0};
        RunResult r = trainers.train(plan, d, s, seed, (it, epoch, loss) -> {
            bar.add(it - counted[0], status(problem, s, seed, String.format(Locale.ROOT, "epoch %d/%d loss %.4f",
                    epoch, plan.epochs(), loss)));
            counted[0] = it;
        });
        store.save(r);
        bar.trained.incrementAndGet();
        // a run that diverged stopped early: the bar counts its remaining iterations as done
        bar.add(perRun - counted[0], status(problem, s, seed, r.status().equals(RunResult.OK)
                ? String.format(Locale.ROOT, "valid acc %.4f", r.last().validAccuracy()) : r.status()));
        return r;
    }

    private static String status(String problem, Setting s, long seed, String what) {
        String text = problem + " " + s.optimizer().label() + " " + s.describe() + " seed " + seed + ": " + what;
        return String.format("%-90.90s", text);
    }

    private static int batches(int examples, int batch) {
        return (examples + batch - 1) / batch;
    }

    private static void writeGrid(List<RunResult> runs, Path file) {
        StringBuilder sb = new StringBuilder("optimizer,alpha,lambda,seed,status,final_valid_accuracy,final_valid_loss,"
                + "final_test_accuracy,final_train_loss,seconds\n");
        for (RunResult r : runs) {
            EpochMetrics m = r.last();
            sb.append(String.format(Locale.ROOT, "%s,%s,%s,%d,%s,%.4f,%.4f,%.4f,%.4f,%.1f%n", r.setting().optimizer().id(),
                    r.setting().alpha(), r.setting().lambda(), r.seed(), r.status().replace(',', ';'), m.validAccuracy(),
                    m.validLoss(), m.testAccuracy(), m.trainLoss(), r.seconds()));
        }
        write(file, sb.toString());
    }

    private static void writeSummary(List<Best> best, Path file) {
        StringBuilder sb = new StringBuilder("optimizer,alpha,lambda,epoch,metric,q1,median,q3,runs\n");
        for (Best b : best) {
            for (Protocol.Quartiles q : Protocol.summarize(b.seeds())) {
                sb.append(String.format(Locale.ROOT, "%s,%s,%s,%d,%s,%.5f,%.5f,%.5f,%d%n", b.setting().optimizer().id(),
                        b.setting().alpha(), b.setting().lambda(), q.epoch(), q.metric().column(), q.q1(), q.median(),
                        q.q3(), q.runs()));
            }
        }
        write(file, sb.toString());
    }

    private static void writeBest(List<Best> best, Path file) {
        StringBuilder sb = new StringBuilder("problem,optimizer,alpha,alpha_interior,lambda,lambda_interior,"
                + "grid_valid_accuracy,seeds,median_train_loss,median_train_accuracy,median_test_loss,"
                + "median_test_accuracy,median_seconds\n");
        for (Best b : best) {
            double seconds = Protocol.quartiles(b.seeds().stream().mapToDouble(RunResult::seconds).toArray())[1];
            sb.append(String.format(Locale.ROOT, "%s,%s,%s,%b,%s,%b,%.4f,%d,%.4f,%.4f,%.4f,%.4f,%.1f%n", b.problem(),
                    b.setting().optimizer().id(), b.setting().alpha(), b.alphaInterior(), b.setting().lambda(),
                    b.lambdaInterior(), b.gridValidAccuracy(), b.seeds().size(),
                    b.finalMedian(EpochMetrics.Metric.TRAIN_LOSS), b.finalMedian(EpochMetrics.Metric.TRAIN_ACCURACY),
                    b.finalMedian(EpochMetrics.Metric.TEST_LOSS), b.finalMedian(EpochMetrics.Metric.TEST_ACCURACY),
                    seconds));
        }
        write(file, sb.toString());
    }

    private static void printTable(List<Best> best, PrintStream out) {
        out.printf("%n| problem | optimizer | best setting | grid valid acc | seeds | final train loss | "
                + "final test loss | final test acc |%n|---|---|---|---:|---:|---:|---:|---:|%n");
        for (Best b : best) {
            out.printf(Locale.ROOT, "| %s | %s | %s%s | %.4f | %d | %.4f | %.4f | %.4f |%n", b.problem(),
                    b.setting().optimizer().label(), b.setting().describe(), b.alphaInterior() ? "" : " (α on edge)",
                    b.gridValidAccuracy(), b.seeds().size(), b.finalMedian(EpochMetrics.Metric.TRAIN_LOSS),
                    b.finalMedian(EpochMetrics.Metric.TEST_LOSS), b.finalMedian(EpochMetrics.Metric.TEST_ACCURACY));
        }
    }

    private static void write(Path file, String text) {
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
            Files.writeString(file, text, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file, e);
        }
    }
}
