// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.BatchNormStatistics;
import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import org.bytedeco.javacpp.Pointer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategoryChartBuilder;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * Times one forward and backward pass of the paper's DeepOBS networks with each extension, against
 * the plain DL4J gradient measured in the same run (the paper's Fig. 3, 6, 8, 9), on synthetic
 * inputs of the right shape.
 *
 * <pre>
 * --problem logreg|2c2d|3c3d|allcnnc|resnet-bn|lstm   (default 3c3d)
 * --batch N                            (default 128)
 * --reps R --warmup W                  (default 5 and 2; the median of R timed passes is reported)
 * --methods a,b,...                    (default all: gradient, wrapped, the extensions, loop)
 * --max-seconds S                      (a method whose first pass takes longer is timed once, that pass's peak memory reported; default 300)
 * --budget-mb M                        (the curvature memory budget; default 2048)
 * --bn-statistics batch|running|batch-as-constants   (resnet-bn: the statistics of every extension pass;
 *                                      default running for first order, batch for curvature)
 * --csv FILE --plot FILE.png
 * </pre>
 *
 * <p>Methods: {@code gradient} (the unwrapped network), {@code wrapped} (extended, no extension),
 * each extension alone, and {@code loop} (per-example gradients by a loop of single-example passes
 * through DL4J; not for {@code resnet-bn}). {@code resnet-bn} is {@link ResidualNetwork}, a
 * ComputationGraph with batch normalisation: its first-order methods run with
 * {@code BatchNormStatistics.RUNNING} (per-example quantities need it), its second-order methods
 * with the batch's statistics, unless {@code --bn-statistics} names one for all of them (its rows are then
 * named {@code resnet-bn/<statistics>}), and its {@code gradient} is DL4J's training-mode gradient. {@code lstm}
 * is the sequence classifier of {@link #sequence}. Peak memory is the peak resident memory of the whole
 * process (Java heap and ND4J's off-heap buffers, which ND4J's own counters do not track) during a
 * method's timed passes: on Linux the kernel's high-water mark, reset after a garbage collection before
 * each method; elsewhere the largest of samples taken every 2 ms.
 *
 * <p>Ratios are robust to a machine whose speed drifts (other load, frequency scaling, the allocator's
 * state): each timed pass of a method follows a timed pass of the plain gradient, and the method's ratio
 * is its median over the median of those gradient passes, so both are measured under the same conditions.
 * Each row reports the minimum, median and maximum of its passes; the header and every CSV row record what
 * makes figures comparable: the CPU model, the cores, ND4J's backend, its BLAS and the OpenMP threads.
 */
public final class Benchmark {

    /**
     * All methods, in the order they run and appear in the tables: from light to heavy in memory,
     * because memory the C library keeps after a heavy method would count in later methods' peaks.
     */
    public static final List<String> METHODS = List.of("gradient", "wrapped", "BatchL2Grad", "SumGradSquared",
            "Variance", "BatchDotGrad", "BatchGrad", "loop", "DiagGGNMC", "KFAC", "DiagGGNExact", "DiagHessian",
            "KFLR", "BatchDiagGGNExact", "KFRA");

    private Benchmark() {
    }

    /**
     * One measured method.
     *
     * @param problem the network
     * @param method the method
     * @param batch N
     * @param minMillis the fastest timed pass
     * @param medianMillis the median timed pass
     * @param maxMillis the slowest timed pass
     * @param gradientMillis the median of the plain gradient's passes interleaved with this method's
     * @param ratioToGradient {@code medianMillis / gradientMillis}
     * @param pairedRatio the median over the timed passes of each pass's time over that of the gradient pass just
     *     before it: robust to the machine's speed drifting during a run (NaN where the method was timed once)
     * @param peakMegabytes the process's peak resident memory during the timed passes
     * @param machine where it ran
     * @param note empty, or why the method failed
     */
    public record Row(String problem, String method, long batch, double minMillis, double medianMillis,
                      double maxMillis, double gradientMillis, double ratioToGradient, double pairedRatio,
                      double peakMegabytes, Machine machine, String note) {
        static final String CSV_HEADER = "problem,method,batch,min_ms,median_ms,max_ms,gradient_median_ms,"
                + "ratio_to_gradient,paired_ratio_median,peak_mb,omp_threads,cores,cpu,backend,blas,note";

        String csv() {
            return String.format(Locale.ROOT, "%s,%s,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.1f,%d,%d,%s,%s,%s,%s", problem,
                    method, batch, minMillis, medianMillis, maxMillis, gradientMillis, ratioToGradient, pairedRatio,
                    peakMegabytes,
                    machine.ompThreads(), machine.cores(), clean(machine.cpu()), clean(machine.backend()),
                    clean(machine.blas()), clean(note));
        }

        private static String clean(String value) {
            return value.replace(',', ';');
        }
    }

    /**
     * What makes timings comparable.
     *
     * @param cpu the CPU model
     * @param cores the cores the JVM sees
     * @param ompThreads the OpenMP threads ND4J's native operations use
     * @param backend ND4J's backend
     * @param blas the BLAS library behind it
     */
    public record Machine(String cpu, int cores, int ompThreads, String backend, String blas) {

        /** @return this machine */
        static Machine current() {
            java.util.Properties info = Nd4j.getExecutioner().getEnvironmentInformation();
            String blas = String.valueOf(info.getOrDefault("blas.vendor", "unknown"));
            // the ND4J build: the default one, or the AVX2 / AVX-512 / oneDNN one chosen with
            // -Djavacpp.platform.extension=-avx2 (its jar on the class path)
            String build = System.getProperty("javacpp.platform.extension", "");
            // how idle OpenMP threads wait changes the time of code that alternates ND4J's and BLAS's threads
            String wait = System.getenv("OMP_WAIT_POLICY");
            return new Machine(cpuModel(), Runtime.getRuntime().availableProcessors(),
                    Nd4j.getEnvironment().maxMasterThreads(), Nd4j.getBackend().getClass().getSimpleName()
                    + (build.isEmpty() ? "" : " (" + build.substring(1) + " build)")
                    + (wait == null || wait.isEmpty() ? "" : " (OMP_WAIT_POLICY=" + wait + ")"), blas);
        }

        private static String cpuModel() {
            try {
                Path cpuinfo = Paths.get("/proc/cpuinfo");
                if (Files.isReadable(cpuinfo)) {
                    for (String line : Files.readAllLines(cpuinfo, StandardCharsets.UTF_8)) {
                        if (line.startsWith("model name")) {
                            return line.substring(line.indexOf(':') + 1).trim();
                        }
                    }
                }
            } catch (IOException | UncheckedIOException e) {
                return System.getProperty("os.arch");
            }
            return System.getProperty("os.arch");
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "%s, %d cores, %d OpenMP threads, ND4J %s, BLAS %s", cpu, cores,
                    ompThreads, backend, blas);
        }
    }

    /**
     * Runs the benchmark.
     *
     * @param args see the class comment
     */
    public static void main(String[] args) {
        Map<String, String> opts = GradientNoiseDemo.options(args);
        String name = opts.getOrDefault("problem", "3c3d");
        long batch = Long.parseLong(opts.getOrDefault("batch", "128"));
        int reps = Integer.parseInt(opts.getOrDefault("reps", "5"));
        int warmup = Integer.parseInt(opts.getOrDefault("warmup", "2"));
        double maxSeconds = Double.parseDouble(opts.getOrDefault("max-seconds", "300"));
        List<String> methods = opts.containsKey("methods") ? Arrays.asList(opts.get("methods").split(",")) : METHODS;
        long budget = Long.parseLong(opts.getOrDefault("budget-mb", "2048")) << 20;
        BatchNormStatistics statistics = opts.containsKey("bn-statistics")
                ? BatchNormStatistics.valueOf(opts.get("bn-statistics").toUpperCase(Locale.ROOT).replace('-', '_'))
                : null;
        Subject subject = name.equalsIgnoreCase(RESNET_BN) ? residual(batch, budget, statistics)
                : name.equalsIgnoreCase(LSTM) ? sequence(batch, budget)
                : deepObs(DeepObsNetworks.of(name), batch, budget);
        List<Row> rows = run(subject, batch, reps, warmup, maxSeconds, methods, System.out, System.err);
        if (opts.containsKey("csv")) {
            writeCsv(rows, Paths.get(opts.get("csv")));
        }
        if (opts.containsKey("plot")) {
            plot(rows, Paths.get(opts.get("plot")));
        }
    }

    static Extension<?> extension(String method) {
        switch (method) {
            case "BatchGrad": return new BatchGrad();
            case "BatchL2Grad": return new BatchL2Grad();
            case "SumGradSquared": return new SumGradSquared();
            case "Variance": return new Variance();
            case "BatchDotGrad": return new BatchDotGrad();
            case "DiagGGNExact": return new DiagGGNExact();
            case "DiagGGNMC": return new DiagGGNMC(1);
            case "BatchDiagGGNExact": return new BatchDiagGGNExact();
            case "DiagHessian": return new DiagHessian();
            case "KFAC": return new KFAC(1);
            case "KFLR": return new KFLR();
            case "KFRA": return new KFRA();
            default: throw new IllegalArgumentException("unknown method " + method + "; known: " + METHODS);
        }
    }

    /** The name of the residual network with batch normalisation on the command line. */
    static final String RESNET_BN = "resnet-bn";
    /** The sequence classifier of {@link #sequence}. */
    static final String LSTM = "lstm";

    /**
     * What is benchmarked: a plain network's gradient pass, the same network extended, a batch, and
     * (for MultiLayerNetworks) the loop of single-example passes; for a network with batch normalisation,
     * the statistics of every extension pass ({@code null}: running for first order, the batch's for
     * curvature).
     */
    record Subject(String name, long parameters, INDArray x, INDArray y, Runnable gradient, BackPackNetwork extended,
                   Runnable loop, boolean batchNormalization, BatchNormStatistics statistics) {
    }

    /** @return labels cycling through the classes */
    private static INDArray labels(long batch, int classes) {
        INDArray y = Nd4j.zeros(DataType.FLOAT, batch, classes);
        for (int i = 0; i < batch; i++) {
            y.putScalar(i, i % classes, 1.0);
        }
        return y;
    }

    static Subject deepObs(DeepObsNetworks problem, long batch, long budget) {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        MultiLayerNetwork plain = problem.build(DataType.FLOAT, null, 1);
        BackPackNetwork bp = BackPackNetwork.extend(plain.clone());
        bp.setCurvatureMemoryBudget(budget);
        Nd4j.getRandom().setSeed(17);
        INDArray x = Nd4j.rand(DataType.FLOAT, problem.inputShape(batch));
        INDArray y = labels(batch, problem.classes());
        return new Subject(problem.shortName(), problem.parameters(), x, y, () -> {
            plain.setInput(x);
            plain.setLabels(y);
            plain.computeGradientAndScore();
        }, bp, () -> perExampleLoop(plain, x, y), false, null);
    }

    /**
     * An LSTM sequence classifier: 32 features per step, T = 50 steps, two LSTM layers of 128 units (the
     * second read at the last step), a softmax over 10 classes; synthetic N(0,1) sequences.
     */
    static Subject sequence(long batch, long budget) {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        MultiLayerNetwork plain = new MultiLayerNetwork(new org.deeplearning4j.nn.conf.NeuralNetConfiguration.Builder()
                .seed(1).dataType(DataType.FLOAT).weightInit(org.deeplearning4j.nn.weights.WeightInit.XAVIER)
                .list(new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(128)
                                .activation(org.nd4j.linalg.activations.Activation.TANH).build(),
                        new org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep(
                                new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(128)
                                        .activation(org.nd4j.linalg.activations.Activation.TANH).build()),
                        new org.deeplearning4j.nn.conf.layers.OutputLayer.Builder(
                                org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction.MCXENT).nOut(10)
                                .activation(org.nd4j.linalg.activations.Activation.SOFTMAX).build())
                .setInputType(org.deeplearning4j.nn.conf.inputs.InputType.recurrent(32)).build());
        plain.init();
        BackPackNetwork bp = BackPackNetwork.extend(plain.clone());
        bp.setCurvatureMemoryBudget(budget);
        Nd4j.getRandom().setSeed(17);
        INDArray x = Nd4j.randn(DataType.FLOAT, batch, 32, 50);
        INDArray y = labels(batch, 10);
        return new Subject(LSTM, plain.numParams(), x, y, () -> {
            plain.setInput(x);
            plain.setLabels(y);
            plain.computeGradientAndScore();
        }, bp, () -> perExampleLoop(plain, x, y), false, null);
    }

    static Subject residual(long batch, long budget, BatchNormStatistics statistics) {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        org.deeplearning4j.nn.graph.ComputationGraph plain = ResidualNetwork.build(DataType.FLOAT, 1);
        BackPackNetwork bp = BackPackNetwork.extend(plain.clone());
        bp.setCurvatureMemoryBudget(budget);
        Nd4j.getRandom().setSeed(17);
        INDArray x = Nd4j.rand(DataType.FLOAT, batch, ResidualNetwork.CHANNELS, ResidualNetwork.HEIGHT,
                ResidualNetwork.WIDTH);
        INDArray y = labels(batch, ResidualNetwork.CLASSES);
        String name = statistics == null ? RESNET_BN
                : RESNET_BN + "/" + statistics.name().toLowerCase(Locale.ROOT).replace('_', '-');
        return new Subject(name, plain.numParams(), x, y, () -> {
            plain.setInputs(x);
            plain.setLabels(y);
            plain.computeGradientAndScore();
        }, bp, null, true, statistics);
    }

    static List<Row> run(DeepObsNetworks problem, long batch, int reps, int warmup, double maxSeconds, long budget,
                         List<String> methods, PrintStream out, PrintStream progress) {
        return run(deepObs(problem, batch, budget), batch, reps, warmup, maxSeconds, methods, out, progress);
    }

    static List<Row> run(Subject subject, long batch, int reps, int warmup, double maxSeconds,
                         List<String> methods, PrintStream out, PrintStream progress) {
        INDArray x = subject.x();
        INDArray y = subject.y();
        BackPackNetwork bp = subject.extended();
        Map<String, Runnable> passes = new LinkedHashMap<>();
        for (String method : methods) {
            switch (method) {
                case "gradient":
                    passes.put(method, subject.gradient());
                    break;
                case "wrapped":
                    passes.put(method, () -> bp.backward(x, y));
                    break;
                case "loop":
                    if (subject.loop() != null) {
                        passes.put(method, subject.loop());
                    }
                    break;
                default:
                    Extension<?> e = extension(method);
                    // per-example quantities of a network with batch normalisation need the running statistics
                    BatchNormStatistics statistics = subject.statistics() != null ? subject.statistics()
                            : subject.batchNormalization() && e.curvatureRequests().isEmpty()
                            ? BatchNormStatistics.RUNNING : BatchNormStatistics.BATCH;
                    passes.put(method, () -> {
                        bp.setBatchNormStatistics(statistics);
                        // the results of a pass freed once used, as in a training loop (docs/quantities.md)
                        bp.backward(x, y, e).close();
                    });
            }
        }
        Machine machine = Machine.current();
        out.printf("%s (%,d parameters), batch %d, float32, %d warm-up and %d timed passes per method, each timed pass "
                + "after a timed gradient pass%n", subject.name(), subject.parameters(), batch, warmup, reps);
        out.printf("machine: %s%n", machine);
        // JIT and native thread pools warm up on the plain and the wrapped pass before anything is timed
        long warmupEnd = System.nanoTime() + 2_000_000_000L;
        for (int i = 0; i < 20 && System.nanoTime() < warmupEnd; i++) {
            subject.gradient().run();
            bp.backward(x, y);
        }
        ProgressBar bar = new ProgressBar(progress, String.format("%-8s", subject.name()), passes.size());
        Map<String, Timing> measured = new LinkedHashMap<>();
        Map<String, String> notes = new LinkedHashMap<>();
        int done = 0;
        for (Map.Entry<String, Runnable> p : passes.entrySet()) {
            bar.update(done, p.getKey());
            Runnable reference = p.getKey().equals("gradient") ? null : subject.gradient();
            try {
                measured.put(p.getKey(), measure(p.getValue(), reference, reps, warmup, maxSeconds));
                notes.put(p.getKey(), "");
            } catch (RuntimeException | OutOfMemoryError e) {
                measured.put(p.getKey(), Timing.FAILED);
                String message = String.valueOf(e.getMessage()).split("\\. ")[0];
                notes.put(p.getKey(), "failed: " + message.substring(0, Math.min(200, message.length())));
            }
            bar.update(++done, p.getKey());
        }
        bar.finish();
        // a method timed once (beyond --max-seconds) has no interleaved gradient: the gradient's own median
        double gradient = measured.containsKey("gradient") ? measured.get("gradient").median() : Double.NaN;
        List<Row> rows = new ArrayList<>();
        out.printf("%-18s %10s %10s %10s %10s %8s %8s %9s  %s%n", "method", "min ms", "median ms", "max ms",
                "grad ms", "ratio", "paired", "peak MB", "note");
        for (Map.Entry<String, Timing> m : measured.entrySet()) {
            Timing t = m.getValue();
            double reference = m.getKey().equals("gradient") ? t.median()
                    : Double.isNaN(t.gradient()) ? gradient : t.gradient();
            double paired = m.getKey().equals("gradient") ? 1.0 : t.pairedRatio();
            Row row = new Row(subject.name(), m.getKey(), batch, t.min(), t.median(), t.max(), reference,
                    t.median() / reference, paired, t.peakMegabytes(), machine, notes.get(m.getKey()));
            rows.add(row);
            out.printf(Locale.ROOT, "%-18s %10.1f %10.1f %10.1f %10.1f %8.2f %8.2f %9.1f  %s%n", row.method(),
                    row.minMillis(), row.medianMillis(), row.maxMillis(), row.gradientMillis(), row.ratioToGradient(),
                    row.pairedRatio(), row.peakMegabytes(), row.note());
        }
        return rows;
    }

    private static void collectGarbage() {
        System.gc();
        try {
            Thread.sleep(300);   // lets the deallocators release what the collection freed
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Per-example gradients by single-example passes through DL4J, each gradient kept. */
    private static void perExampleLoop(MultiLayerNetwork net, INDArray x, INDArray y) {
        List<INDArray> gradients = new ArrayList<>();
        for (long n = 0; n < x.size(0); n++) {
            INDArray xn = x.rank() == 2 ? x.get(NDArrayIndex.interval(n, n + 1), NDArrayIndex.all())
                    : x.rank() == 3 ? x.get(NDArrayIndex.interval(n, n + 1), NDArrayIndex.all(), NDArrayIndex.all())
                    : x.get(NDArrayIndex.interval(n, n + 1), NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.all());
            net.setInput(xn);
            net.setLabels(y.get(NDArrayIndex.interval(n, n + 1), NDArrayIndex.all()));
            net.computeGradientAndScore();
            gradients.add(net.gradient().gradient().dup());
        }
        if (gradients.size() != x.size(0)) {
            throw new IllegalStateException("loop lost gradients");
        }
    }

    /**
     * One method's timed passes.
     *
     * @param min fastest pass, ms
     * @param median median pass, ms
     * @param max slowest pass, ms
     * @param gradient median of the gradient passes interleaved with them, ms (NaN when there were none)
     * @param peakMegabytes peak resident memory during the passes
     */
    record Timing(double min, double median, double max, double gradient, double pairedRatio, double peakMegabytes) {
        static final Timing FAILED = new Timing(Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN,
                Double.NaN);
    }

    /**
     * @param pass the method's pass
     * @param reference the plain gradient's pass, timed before each timed pass of the method, or null
     * @return the method's timing
     */
    private static Timing measure(Runnable pass, Runnable reference, int reps, int warmup, double maxSeconds) {
        // every method starts from nothing: the scratch workspaces an earlier method sized for
        // itself (and DL4J's, which the next pass recreates) would otherwise count in its peak
        Nd4j.getWorkspaceManager().destroyAllWorkspacesForCurrentThread();
        collectGarbage();
        PeakMemory firstPeak = PeakMemory.start();
        long start = System.nanoTime();
        pass.run();
        double first = (System.nanoTime() - start) / 1e6;
        long firstPeakBytes = firstPeak.stop();
        if (first / 1000 > maxSeconds) {
            return new Timing(first, first, first, Double.NaN, Double.NaN, firstPeakBytes / 1e6);
        }
        for (int i = 1; i < warmup; i++) {
            if (reference != null) {
                reference.run();
            }
            pass.run();
        }
        collectGarbage();
        PeakMemory peak = PeakMemory.start();
        double[] times = new double[Math.max(1, reps)];
        double[] gradients = new double[times.length];
        for (int i = 0; i < times.length; i++) {
            if (reference != null) {
                long g = System.nanoTime();
                reference.run();
                gradients[i] = (System.nanoTime() - g) / 1e6;
            }
            long t = System.nanoTime();
            pass.run();
            times[i] = (System.nanoTime() - t) / 1e6;
        }
        long peakBytes = peak.stop();
        double[] pairs = new double[times.length];
        for (int i = 0; i < times.length; i++) {
            pairs[i] = times[i] / gradients[i];
        }
        double paired = reference == null ? Double.NaN : median(pairs);
        double gradient = reference == null ? Double.NaN : median(gradients);
        Arrays.sort(times);
        return new Timing(times[0], median(times), times[times.length - 1], gradient, paired, peakBytes / 1e6);
    }

    /** @return the median of the values (sorted here) */
    static double median(double[] values) {
        Arrays.sort(values);
        int n = values.length;
        return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    }

    /** The peak resident memory of this process between {@link #start()} and {@link #stop()}. */
    private static final class PeakMemory {
        private final boolean kernelPeak;
        private final AtomicLong sampled = new AtomicLong(Pointer.physicalBytes());
        private final AtomicBoolean running = new AtomicBoolean(true);
        private final Thread sampler;

        private PeakMemory() {
            kernelPeak = resetPeakResident();
            sampler = new Thread(() -> {
                while (running.get()) {
                    sampled.accumulateAndGet(Pointer.physicalBytes(), Math::max);
                    try {
                        Thread.sleep(2);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            });
            sampler.setDaemon(true);
            sampler.start();
        }

        static PeakMemory start() {
            return new PeakMemory();
        }

        /** @return the peak, in bytes */
        long stop() {
            running.set(false);
            try {
                sampler.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return kernelPeak ? Math.max(peakResident(), sampled.get()) : sampled.get();
        }
    }

    /** @return whether the kernel's peak-resident mark of this process could be reset (Linux) */
    private static boolean resetPeakResident() {
        try {
            Files.write(Paths.get("/proc/self/clear_refs"), "5".getBytes(StandardCharsets.US_ASCII));
            return true;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /** @return the kernel's peak resident memory of this process (VmHWM), in bytes, or 0 */
    private static long peakResident() {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            return 0;
        }
        return 0;
    }

    static void writeCsv(List<Row> rows, Path file) {
        List<String> lines = new ArrayList<>();
        lines.add(Row.CSV_HEADER);
        rows.forEach(r -> lines.add(r.csv()));
        try {
            Files.write(file, lines, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static void plot(List<Row> rows, Path file) {
        System.setProperty("java.awt.headless", "true");
        List<String> names = new ArrayList<>();
        List<Double> ratios = new ArrayList<>();
        for (Row r : rows) {
            if (!Double.isNaN(r.ratioToGradient())) {
                names.add(r.method());
                ratios.add(r.ratioToGradient());
            }
        }
        Supplier<String> title = () -> rows.isEmpty() ? "" : rows.get(0).problem() + ", N = " + rows.get(0).batch();
        CategoryChart chart = new CategoryChartBuilder().width(1100).height(500).title(title.get())
                .xAxisTitle("method").yAxisTitle("time / gradient").build();
        chart.getStyler().setLegendVisible(false);
        chart.getStyler().setXAxisLabelRotation(45);
        chart.addSeries("ratio to gradient", names, ratios);
        try {
            String name = file.toString();
            BitmapEncoder.saveBitmap(chart, name.endsWith(".png") ? name.substring(0, name.length() - 4) : name,
                    BitmapEncoder.BitmapFormat.PNG);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
