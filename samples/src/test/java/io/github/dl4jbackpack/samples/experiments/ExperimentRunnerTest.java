// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import io.github.dl4jbackpack.samples.DeepObsNetworks;
import io.github.dl4jbackpack.samples.data.TestFiles;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A smoke run of the whole protocol on generated MNIST-shaped files, a few iterations per run. */
class ExperimentRunnerTest {

    @TempDir
    Path dir;

    private static Preset tiny() {
        return new Preset("tiny", List.of(
                new ProblemPlan(DeepObsNetworks.LOGREG, 2, 256, 64, 0, 64,
                        List.of(Optimizer.MOMENTUM, Optimizer.DIAG_GGN_MC), new double[] {1e-2, 1e-1},
                        new double[] {1e-2}, new double[] {1e-2, 1e-1}, new long[] {1, 2, 3}),
                new ProblemPlan(DeepObsNetworks.C2D2, 1, 32, 16, 16, 16, List.of(Optimizer.ADAM), new double[] {1e-2},
                        new double[] {1e-2}, new double[] {1e-3}, new long[] {1}),
                new ProblemPlan(DeepObsNetworks.C3D3, 1, 32, 16, 16, 16, List.of(Optimizer.ADAM), new double[] {1e-2},
                        new double[] {1e-2}, new double[] {1e-3}, new long[] {1})));
    }

    private static ExperimentRunner.Report run(Path data, Path out, StringBuilder printed) {
        ByteArrayOutputStream text = new ByteArrayOutputStream();
        ExperimentRunner.Report r = ExperimentRunner.run(tiny(), data, out,
                new PrintStream(text, true, StandardCharsets.UTF_8), new PrintStream(new ByteArrayOutputStream()));
        printed.append(text.toString(StandardCharsets.UTF_8));
        return r;
    }

    @Test
    void runsTheProtocolWritesResultsAndResumes() throws IOException {
        Path data = dir.resolve("data");
        TestFiles.mnistLike(data.resolve("mnist"), 400, 100, false, 31);
        TestFiles.mnistLike(data.resolve("fashion-mnist"), 60, 20, true, 32);
        Path out = dir.resolve("out");
        StringBuilder printed = new StringBuilder();

        ExperimentRunner.Report first = run(data, out, printed);
        // logreg: 2 + 2 grid runs and 2 more seeds each; 2c2d: one run; 3c3d: no CIFAR files.
        assertEquals(9, first.trained());
        assertEquals(0, first.reused());
        assertEquals(List.of("cifar10_3c3d"), first.skippedProblems());
        assertTrue(printed.toString().contains("skipping cifar10_3c3d"), printed.toString());
        assertEquals(3, first.best().size());

        List<RunResult> logregRuns;
        try (Stream<Path> files = Files.list(out.resolve("runs").resolve("mnist_logreg"))) {
            logregRuns = files.map(RunResult::read).collect(Collectors.toList());
        }
        assertEquals(8, logregRuns.size());
        for (ExperimentRunner.Best b : first.best()) {
            assertEquals(b.problem().equals("mnist_logreg") ? 3 : 1, b.seeds().size());
            assertTrue(b.seeds().stream().allMatch(r -> r.setting().equals(b.setting())), "re-runs use the best setting");
            if (b.problem().equals("mnist_logreg")) {
                // The chosen setting has the highest final validation accuracy among its optimiser's seed-1 runs.
                for (RunResult r : logregRuns) {
                    if (r.seed() == 1 && r.setting().optimizer() == b.setting().optimizer()) {
                        assertTrue(b.gridValidAccuracy() >= r.last().validAccuracy(), r + " vs " + b);
                    }
                }
                assertEquals(3, b.seeds().stream().mapToLong(RunResult::seed).distinct().count());
                assertTrue(b.finalMedian(EpochMetrics.Metric.TEST_ACCURACY) > 0.5,
                        b.setting() + " learns the generated classes: " + b.finalMedian(EpochMetrics.Metric.TEST_ACCURACY));
            }
        }
        for (String f : List.of("best_settings.csv", "grid_mnist_logreg.csv", "summary_mnist_logreg.csv",
                "summary_fmnist_2c2d.csv")) {
            assertTrue(Files.size(out.resolve(f)) > 0, f);
        }
        List<String> summary = Files.readAllLines(out.resolve("summary_mnist_logreg.csv"));
        // 2 optimisers × 3 epoch records (0, 1, 2) × 6 metrics, and the header.
        assertEquals(1 + 2 * 3 * 6, summary.size());
        assertEquals(1 + 3, Files.readAllLines(out.resolve("best_settings.csv")).size());
        BufferedImage png = ImageIO.read(out.resolve("mnist_logreg.png").toFile());
        assertEquals(1280, png.getWidth());
        assertTrue(Files.exists(out.resolve("fmnist_2c2d.png")));

        // Everything is stored: a second call trains nothing and chooses the same.
        ExperimentRunner.Report second = run(data, out, printed);
        assertEquals(0, second.trained());
        assertEquals(9, second.reused());
        assertEquals(first.best(), second.best());

        // An interrupted experiment continues with the missing run only.
        RunStore store = new RunStore(out);
        ExperimentRunner.Best momentum = first.best().get(0);
        Files.delete(store.file("mnist_logreg", momentum.setting(), 3));
        ExperimentRunner.Report third = run(data, out, printed);
        assertEquals(1, third.trained());
        assertEquals(8, third.reused());
    }

    @Test
    void runsInSeveralProcessesGiveTheResultsOfOneRunAtATime() throws IOException {
        Path data = dir.resolve("data");
        TestFiles.mnistLike(data.resolve("mnist"), 400, 100, false, 31);
        TestFiles.mnistLike(data.resolve("fashion-mnist"), 60, 20, true, 32);
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        ExperimentRunner.Report one = ExperimentRunner.run(tiny(), data, dir.resolve("one"), quiet, quiet, 1);
        ExperimentRunner.Report two = ExperimentRunner.run(tiny(), data, dir.resolve("two"), quiet, quiet, 2);
        // every run trained in a process of its own, which logged its output
        assertTrue(Files.isDirectory(dir.resolve("two").resolve("logs").resolve("mnist_logreg")));
        assertEquals(9, two.trained());
        assertEquals(one.trained(), two.trained());
        assertEquals(one.best().size(), two.best().size());
        for (int i = 0; i < one.best().size(); i++) {
            ExperimentRunner.Best a = one.best().get(i);
            ExperimentRunner.Best b = two.best().get(i);
            assertEquals(a.setting(), b.setting());
            assertEquals(a.seeds().size(), b.seeds().size());
            for (int k = 0; k < a.seeds().size(); k++) {
                assertEquals(a.seeds().get(k).seed(), b.seeds().get(k).seed());
                assertEquals(a.seeds().get(k).epochs(), b.seeds().get(k).epochs(), a.setting() + " seed "
                        + a.seeds().get(k).seed() + ": the same metrics, epoch by epoch");
            }
        }
        assertThrows(IllegalArgumentException.class,
                () -> ExperimentRunner.run(tiny(), data, dir.resolve("none"), quiet, quiet, 0));
    }
}
