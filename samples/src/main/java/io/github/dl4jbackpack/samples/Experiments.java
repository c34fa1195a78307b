// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.samples.experiments.ExperimentRunner;
import io.github.dl4jbackpack.samples.experiments.Optimizer;
import io.github.dl4jbackpack.samples.experiments.Preset;
import io.github.dl4jbackpack.samples.experiments.ProblemPlan;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * The paper's optimisation experiments (Section 4, Fig. 7, 10, 11, Table 3) by the DeepOBS
 * protocol, on MNIST, Fashion-MNIST and, where their binary files are present, CIFAR-10/100.
 *
 * <pre>
 * --preset quick|paper      (default quick)
 * --data DIR                (default data; filled by scripts/fetch-data.sh)
 * --out DIR                 (default results/PRESET; finished runs there are reused)
 * --problems a,b            (only these problems of the preset, e.g. mnist_logreg or logreg)
 * --optimizers a,b          (only these optimisers, e.g. kfac,adam)
 * --jobs J                  (runs at a time, each in a process of its own, default 1 (in this process); with J runs
 *                            filling the cores, set OMP_NUM_THREADS=1)
 * </pre>
 */
public final class Experiments {

    /** JavaCPP's limit on the process's resident memory, checked at every native allocation when positive. */
    static final String PHYSICAL_BYTES = "org.bytedeco.javacpp.maxPhysicalBytes";

    private Experiments() {
    }

    /**
     * Runs the experiments.
     *
     * @param args see the class comment
     */
    public static void main(String[] args) {
        switchOffResidentMemoryCheck();
        Map<String, String> opts = GradientNoiseDemo.options(args);
        Preset preset = Preset.of(opts.getOrDefault("preset", "quick"));
        preset = filter(preset, opts.get("problems"), opts.get("optimizers"));
        Path data = Paths.get(opts.getOrDefault("data", "data"));
        Path out = Paths.get(opts.getOrDefault("out", "results/" + preset.name()));
        System.out.println("Preset " + preset.name() + ", data " + data.toAbsolutePath() + ", output " + out.toAbsolutePath());
        for (ProblemPlan p : preset.plans()) {
            System.out.println("  " + p + " (" + p.runCount() + " runs)");
        }
        long start = System.nanoTime();
        ExperimentRunner.run(preset, data, out, System.out, System.err,
                Integer.parseInt(opts.getOrDefault("jobs", "1")));
        System.out.printf("wall time %.1f min%n", (System.nanoTime() - start) / 60e9);
    }

    /**
     * JavaCPP reads the process's resident memory (from /proc) at every native allocation unless its limit is 0: a
     * fifth of a logistic-regression step here. The runs bound their memory themselves (a garbage collection every
     * second), so the check is switched off unless the command line sets the limit ({@code org.bytedeco.javacpp.maxPhysicalBytes}).
     * Called before ND4J is loaded, by this class and by the processes that train runs.
     */
    public static void switchOffResidentMemoryCheck() {
        if (System.getProperty(PHYSICAL_BYTES) == null
                && System.getProperty(PHYSICAL_BYTES.toLowerCase(java.util.Locale.ROOT)) == null) {
            System.setProperty(PHYSICAL_BYTES, "0");
        }
    }

    static Preset filter(Preset preset, String problems, String optimizers) {
        List<ProblemPlan> plans = new ArrayList<>();
        List<DeepObsNetworks> wanted = problems == null ? null
                : Arrays.stream(problems.split(",")).map(DeepObsNetworks::of).collect(Collectors.toList());
        List<Optimizer> keep = optimizers == null ? null
                : Arrays.stream(optimizers.split(",")).map(Optimizer::of).collect(Collectors.toList());
        for (ProblemPlan p : preset.plans()) {
            if (wanted != null && !wanted.contains(p.problem())) {
                continue;
            }
            List<Optimizer> opt = keep == null ? p.optimizers()
                    : p.optimizers().stream().filter(keep::contains).collect(Collectors.toList());
            if (!opt.isEmpty()) {
                plans.add(p.withOptimizers(opt));
            }
        }
        if (plans.isEmpty()) {
            throw new IllegalArgumentException("no problem/optimizer of preset " + preset.name() + " is selected");
        }
        return new Preset(preset.name(), plans);
    }
}
