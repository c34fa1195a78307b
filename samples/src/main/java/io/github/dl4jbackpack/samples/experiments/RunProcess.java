// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import io.github.dl4jbackpack.samples.DeepObsNetworks;
import io.github.dl4jbackpack.samples.Experiments;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Locale;

/**
 * One training run in a Java process of its own, for experiments that train several runs at a time.
 *
 * <p>Why processes and not threads: ND4J 1.0.0-M2.1 can free a native buffer that an operation of another thread is
 * still reading. Its executioner passes the native handle of a broadcast's dimension array to native code and keeps
 * no Java reference to the array during the call, so a garbage collection started by a second thread that allocates
 * can reclaim it mid-operation; its deallocator then frees the native buffer and the process dies with SIGSEGV (in
 * {@code DataBuffer::primary()}, {@code TadDescriptor} or {@code Broadcast::exec}, under DL4J's
 * {@code BaseLayer.preOutputWithPreNorm}). Two plain DL4J networks trained on two threads with frequent collections
 * crash within minutes without this library (docs/experiments.md). In a process that trains one network on one thread,
 * collections start when that thread allocates, not during its native calls, which makes the crash rare; should a
 * run's process die all the same, the run is trained again from its seed (runs are deterministic), at most
 * {@link #ATTEMPTS} times.
 *
 * <p>The child process ({@link #main}) loads the data, trains, stores the run in the experiment's
 * {@link RunStore}, and reports progress on its standard output as lines {@code @progress <iterations> <epoch>
 * <loss>}; everything else it prints goes to {@code logs/<problem>/<setting>_seed<s>.log} in the output directory,
 * beside a JVM crash report if there is one.
 */
public final class RunProcess {

    private static final Logger LOG = LoggerFactory.getLogger(RunProcess.class);

    /** How many times a run is started before the experiment gives up on it. */
    static final int ATTEMPTS = 3;
    /** The prefix of a progress line. */
    private static final String PROGRESS = "@progress ";
    /** The least time between two progress lines of a child, in nanoseconds. */
    private static final long PROGRESS_INTERVAL_NANOS = 200_000_000L;

    private final List<String> javaCommand;

    /** Runs children with this process's Java, class path and JVM options. */
    RunProcess() {
        this(javaCommandOfThisProcess());
    }

    /**
     * @param javaCommand the command that starts a JVM on this class path, up to the main class (the class name and
     *     the run's arguments are appended)
     */
    RunProcess(List<String> javaCommand) {
        this.javaCommand = List.copyOf(javaCommand);
    }

    /**
     * Trains a run in a child process, again if its process dies, and reads it from the store.
     *
     * @param plan the run's problem plan
     * @param setting the hyperparameters
     * @param seed the seed
     * @param dataDir the data directory
     * @param outDir the experiment's output directory (its {@link RunStore})
     * @param progress receives the child's progress
     * @return the stored run
     * @throws IllegalStateException if every attempt failed
     */
    RunResult train(ProblemPlan plan, Setting setting, long seed, Path dataDir, Path outDir,
                    Trainer.Progress progress) {
        String problem = plan.problem().deepObsName();
        Path log = outDir.resolve("logs").resolve(problem).resolve(setting.id() + "_seed" + seed + ".log")
                .toAbsolutePath();
        List<String> command = new ArrayList<>(javaCommand);
        command.add("-XX:ErrorFile=" + log.getParent().resolve("hs_err_" + setting.id() + "_seed" + seed + "_%p.log"));
        command.add(RunProcess.class.getName());
        command.addAll(List.of(plan.problem().name(), Integer.toString(plan.epochs()),
                Integer.toString(plan.trainSize()), Integer.toString(plan.validationSize()),
                Integer.toString(plan.evalSize()), Integer.toString(plan.batch()), setting.optimizer().id(),
                Double.toString(setting.alpha()), Double.toString(setting.lambda()), Long.toString(seed),
                dataDir.toAbsolutePath().toString(), outDir.toAbsolutePath().toString()));
        RunStore store = new RunStore(outDir);
        String run = problem + " " + setting.optimizer().label() + " " + setting.describe() + " seed " + seed;
        for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
            int exit = start(command, log, attempt, progress);
            if (exit == 0) {
                return store.load(problem, setting, seed, plan.config()).orElseThrow(() -> new IllegalStateException(
                        run + ": its process ended normally but stored no run; its output: " + log));
            }
            LOG.warn("{}: attempt {} of {} ended with exit code {}{}; its output: {}", run, attempt, ATTEMPTS, exit,
                    attempt < ATTEMPTS ? ", training it again from its seed" : "", log);
        }
        throw new IllegalStateException(run + ": its process failed " + ATTEMPTS + " times; its output: " + log);
    }

    /** @return the child's exit code, after its output was read to the end */
    private static int start(List<String> command, Path log, int attempt, Trainer.Progress progress) {
        try {
            Files.createDirectories(log.getParent());
            Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
            // a child does not outlive the experiment (interrupted, or failed in another run)
            Thread stop = new Thread(p::destroyForcibly, "stop-run-process");
            Runtime.getRuntime().addShutdownHook(stop);
            try {
                return read(p, command, log, attempt, progress);
            } finally {
                p.destroyForcibly();
                try {
                    Runtime.getRuntime().removeShutdownHook(stop);
                } catch (IllegalStateException shuttingDown) {
                    // the hook stops the child
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot run " + String.join(" ", command), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while a run was training", e);
        }
    }

    /** @return the child's exit code, after its output was read to the end */
    private static int read(Process p, List<String> command, Path log, int attempt, Trainer.Progress progress)
            throws IOException, InterruptedException {
        p.getOutputStream().close();
        Deque<String> last = new ArrayDeque<>();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
             BufferedWriter out = Files.newBufferedWriter(log, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                     attempt == 1 ? StandardOpenOption.TRUNCATE_EXISTING : StandardOpenOption.APPEND)) {
            out.write("# attempt " + attempt + ": " + String.join(" ", command) + System.lineSeparator());
            for (String line = in.readLine(); line != null; line = in.readLine()) {
                if (line.startsWith(PROGRESS)) {
                    String[] f = line.substring(PROGRESS.length()).split(" ");
                    progress.update(Long.parseLong(f[0]), Integer.parseInt(f[1]), Double.parseDouble(f[2]));
                    continue;
                }
                out.write(line);
                out.newLine();
                last.addLast(line);
                if (last.size() > 5) {
                    last.removeFirst();
                }
            }
        }
        int exit = p.waitFor();
        if (exit != 0 && !last.isEmpty()) {
            LOG.warn("the last lines of {}:{}{}", log, System.lineSeparator(), String.join(System.lineSeparator(), last));
        }
        return exit;
    }

    /**
     * @return {@code java}, this JVM's options (without agents and debuggers, which cannot be shared) and class
     *     path
     */
    static List<String> javaCommandOfThisProcess() {
        List<String> command = new ArrayList<>();
        command.add(Paths.get(System.getProperty("java.home"), "bin", "java").toString());
        for (String option : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (!option.startsWith("-agentlib") && !option.startsWith("-javaagent") && !option.startsWith("-Xrunjdwp")
                    && !option.startsWith("-XX:StartFlightRecording") && !option.startsWith("-XX:ErrorFile")) {
                command.add(option);
            }
        }
        List<String> classPath = new ArrayList<>();
        for (String entry : System.getProperty("java.class.path").split(java.io.File.pathSeparator)) {
            if (!entry.isEmpty()) {
                classPath.add(Paths.get(entry).toAbsolutePath().toString());
            }
        }
        command.add("-cp");
        command.add(String.join(java.io.File.pathSeparator, classPath));
        return command;
    }

    /**
     * The child process: trains one run and stores it.
     *
     * @param args problem (enum name), epochs, training examples, validation examples, evaluated examples, batch
     *     size, optimiser id, α, λ ({@code NaN} for a baseline), seed, data directory, output directory
     */
    public static void main(String[] args) {
        if (args.length != 12) {
            throw new IllegalArgumentException("expected 12 arguments (see RunProcess.main), got " + args.length);
        }
        Experiments.switchOffResidentMemoryCheck();
        DeepObsNetworks problem = DeepObsNetworks.valueOf(args[0]);
        Setting setting = new Setting(Optimizer.of(args[6]), Double.parseDouble(args[7]), Double.parseDouble(args[8]));
        long seed = Long.parseLong(args[9]);
        ProblemPlan plan = new ProblemPlan(problem, Integer.parseInt(args[1]), Integer.parseInt(args[2]),
                Integer.parseInt(args[3]), Integer.parseInt(args[4]), Integer.parseInt(args[5]),
                List.of(setting.optimizer()), new double[] {setting.alpha()}, new double[] {setting.lambda()},
                new double[] {setting.alpha()}, new long[] {seed});
        Path dataDir = Paths.get(args[10]);
        Trainer.Data data = ExperimentRunner.load(plan, problem.dataSource().load(dataDir));
        long[] last = {System.nanoTime() - PROGRESS_INTERVAL_NANOS, 0};
        RunResult result = Trainer.train(plan, data, setting, seed, (iterations, epoch, loss) -> {
            long now = System.nanoTime();
            if (now - last[0] >= PROGRESS_INTERVAL_NANOS || epoch != last[1]) {
                System.out.println(PROGRESS + iterations + " " + epoch + " " + String.format(Locale.ROOT, "%.6g", loss));
                System.out.flush();
                last[0] = now;
                last[1] = epoch;
            }
        });
        new RunStore(Paths.get(args[11])).save(result);
        System.out.flush();
        System.exit(0);
    }
}
