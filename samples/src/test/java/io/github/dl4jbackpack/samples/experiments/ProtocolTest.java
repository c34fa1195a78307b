// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import io.github.dl4jbackpack.samples.DeepObsNetworks;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Selection, quartiles, grids and the run store on a tiny fake grid. */
class ProtocolTest {

    @TempDir
    Path dir;

    /** A fake run whose last epoch has the given validation accuracy and loss. */
    private static RunResult run(Setting s, long seed, String status, double validAcc, double validLoss, double testAcc) {
        return new RunResult("mnist_logreg", s, seed, "cfg", status, 1.5, List.of(
                new EpochMetrics(0, 2.3, 0.1, 2.3, 0.1, 2.3, 0.1),
                new EpochMetrics(1, 0.5, 0.8, validLoss, validAcc, 0.6, testAcc)));
    }

    private static Setting kfac(double a, double l) {
        return new Setting(Optimizer.KFAC, a, l);
    }

    @Test
    void bestIsHighestFinalValidationAccuracyThenLowestLoss() {
        RunResult low = run(kfac(1e-3, 1e-2), 1, RunResult.OK, 0.80, 0.50, 0.99);
        RunResult high = run(kfac(1e-2, 1e-2), 1, RunResult.OK, 0.90, 0.40, 0.10);
        RunResult tieWorseLoss = run(kfac(1e-1, 1e-2), 1, RunResult.OK, 0.90, 0.45, 0.95);
        RunResult diverged = run(kfac(1, 1e-2), 1, RunResult.DIVERGED, Double.NaN, Double.NaN, Double.NaN);
        // The test accuracy plays no part in the choice.
        assertSame(high, Protocol.best(List.of(low, tieWorseLoss, diverged, high)));
        assertSame(high, Protocol.best(List.of(diverged, high, tieWorseLoss)));
        assertSame(low, Protocol.best(List.of(diverged, low)));
        RunResult twin = run(kfac(1e-4, 1e-2), 1, RunResult.OK, 0.90, 0.40, 0.5);
        assertSame(twin, Protocol.best(List.of(twin, high)), "equal runs: the first in grid order");
        assertThrows(IllegalArgumentException.class, () -> Protocol.best(List.of()));
    }

    @Test
    void quartilesInterpolateLikeNumpyAndSkipNonFiniteValues() {
        assertArrayEquals(new double[] {1.75, 2.5, 3.25, 4}, Protocol.quartiles(new double[] {4, 1, 3, 2}), 1e-12);
        assertArrayEquals(new double[] {2, 3, 4, 5}, Protocol.quartiles(new double[] {5, 1, 3, 2, 4, Double.NaN}), 1e-12);
        assertArrayEquals(new double[] {7, 7, 7, 1}, Protocol.quartiles(new double[] {7, Double.POSITIVE_INFINITY}), 0);
        double[] none = Protocol.quartiles(new double[] {Double.NaN});
        assertTrue(Double.isNaN(none[1]));
        assertEquals(0, none[3]);
    }

    @Test
    void summaryHasQuartilesPerEpochAndMetric() {
        Setting s = kfac(1e-2, 1e-2);
        List<RunResult> seeds = List.of(run(s, 1, RunResult.OK, 0.9, 0.3, 0.80), run(s, 2, RunResult.OK, 0.9, 0.3, 0.84),
                run(s, 3, RunResult.OK, 0.9, 0.3, 0.88), run(s, 4, RunResult.DIVERGED, Double.NaN, Double.NaN, Double.NaN));
        List<Protocol.Quartiles> q = Protocol.summarize(seeds);
        assertEquals(2 * EpochMetrics.Metric.values().length, q.size());
        Protocol.Quartiles test = q.stream().filter(r -> r.epoch() == 1 && r.metric() == EpochMetrics.Metric.TEST_ACCURACY)
                .findFirst().orElseThrow();
        assertEquals(0.82, test.q1(), 1e-12);
        assertEquals(0.84, test.median(), 1e-12);
        assertEquals(0.86, test.q3(), 1e-12);
        assertEquals(3, test.runs());
    }

    @Test
    void gridsAndRunCounts() {
        ProblemPlan plan = new ProblemPlan(DeepObsNetworks.LOGREG, 2, 100, 10, 10, 16,
                List.of(Optimizer.ADAM, Optimizer.DIAG_GGN), new double[] {1e-3, 1e-2}, new double[] {1e-1, 1, 10},
                new double[] {1e-4, 1e-3, 1e-2, 1e-1}, new long[] {1, 2, 3});
        assertEquals(4, plan.grid(Optimizer.ADAM).size());
        assertTrue(plan.grid(Optimizer.ADAM).stream().allMatch(s -> Double.isNaN(s.lambda())));
        assertEquals(6, plan.grid(Optimizer.DIAG_GGN).size());
        assertEquals(new Setting(Optimizer.DIAG_GGN, 1e-2, 10), plan.grid(Optimizer.DIAG_GGN).get(5));
        assertEquals(4 + 2 + 6 + 2, plan.runCount());
        assertTrue(Protocol.interior(1e-3, plan.rates()));
        assertFalse(Protocol.interior(1e-4, plan.rates()));
        assertFalse(Protocol.interior(1e-1, plan.rates()));
        assertThrows(IllegalArgumentException.class, () -> new Setting(Optimizer.KFAC, 1e-2, Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> new Setting(Optimizer.MOMENTUM, 1e-2, 1e-2));
    }

    @Test
    void paperPresetIsTheFullProtocol() {
        Preset paper = Preset.paper();
        assertEquals(4, paper.plans().size());
        for (ProblemPlan p : paper.plans()) {
            assertEquals(30, p.grid(Optimizer.KFAC).size());
            assertEquals(10, p.seeds().length);
            assertEquals(p.problem().epochs(), p.epochs());
        }
        assertEquals(256, paper.plans().get(3).batch());
        assertEquals(List.of(Optimizer.MOMENTUM, Optimizer.ADAM, Optimizer.DIAG_GGN_MC, Optimizer.KFAC),
                paper.plans().get(3).optimizers());
        assertEquals(1e-5, Preset.PAPER_RATES[0], 0);
        assertEquals(3.16e-5, Preset.PAPER_RATES[1], 0);
        assertEquals(10, Preset.PAPER_RATES[12], 0);
    }

    @Test
    void quickPresetCoversBothMnistProblemsAndEveryFeasibleOptimizer() {
        Preset quick = Preset.quick();
        List<Optimizer> paperRules = List.of(Optimizer.values()).subList(0, Optimizer.KFAC_AMORTISED.ordinal());
        assertEquals(paperRules, quick.plans().stream()
                .filter(p -> p.problem() == DeepObsNetworks.LOGREG).flatMap(p -> p.optimizers().stream())
                .sorted().collect(java.util.stream.Collectors.toList()));
        assertEquals(List.of(Optimizer.MOMENTUM, Optimizer.ADAM, Optimizer.DIAG_GGN_MC, Optimizer.KFAC_AMORTISED),
                quick.plans().stream().filter(p -> p.problem() == DeepObsNetworks.C2D2)
                        .flatMap(p -> p.optimizers().stream()).collect(java.util.stream.Collectors.toList()));
        assertTrue(quick.plans().stream().allMatch(p -> p.batch() == p.problem().batchSize()));
    }

    @Test
    void runFilesRoundTripAndAreReusedOnlyUnderTheSameConfiguration() {
        RunStore store = new RunStore(dir);
        Setting s = kfac(1e-2, 1e-3);
        RunResult r = run(s, 7, RunResult.DIVERGED, Double.NaN, 0.25, 0.5);
        store.save(r);
        Optional<RunResult> back = store.load("mnist_logreg", s, 7, "cfg");
        assertTrue(back.isPresent());
        assertEquals(r, back.get());
        assertFalse(store.load("mnist_logreg", s, 7, "other").isPresent());
        assertFalse(store.load("mnist_logreg", s, 8, "cfg").isPresent());
        assertFalse(store.load("mnist_logreg", kfac(1e-2, 1e-2), 7, "cfg").isPresent());
        Setting adam = new Setting(Optimizer.ADAM, 3.16e-4, Double.NaN);
        RunResult a = run(adam, 1, RunResult.OK, 0.5, 1, 0.5);
        store.save(a);
        assertEquals(a, store.load("mnist_logreg", adam, 1, "cfg").orElseThrow());
        List<Path> files = new ArrayList<>(List.of(store.file("mnist_logreg", s, 7), store.file("mnist_logreg", adam, 1)));
        assertEquals("kfac_a1.00e-02_l1.00e-03_seed7.csv", files.get(0).getFileName().toString());
        assertEquals("adam_a3.16e-04_seed1.csv", files.get(1).getFileName().toString());
    }
}
