// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import io.github.dl4jbackpack.BatchNormStatistics;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Smoke runs of the benchmark runner (timings are not asserted: they belong to the runner's reports). */
class BenchmarkTest {

    static List<Benchmark.Row> run(DeepObsNetworks problem, long batch, List<String> methods) {
        return Benchmark.run(problem, batch, 1, 0, 60, 1L << 30, methods,
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
    }

    @Test
    void everyMethodRunsOnLogisticRegression(@TempDir Path dir) throws Exception {
        List<Benchmark.Row> rows = run(DeepObsNetworks.LOGREG, 8, Benchmark.METHODS);
        assertEquals(Benchmark.METHODS.size(), rows.size());
        for (Benchmark.Row r : rows) {
            assertTrue(r.note().isEmpty(), r.toString());
            assertTrue(r.medianMillis() > 0 && r.ratioToGradient() > 0, r.toString());
            assertTrue(r.minMillis() <= r.medianMillis() && r.medianMillis() <= r.maxMillis(), r.toString());
            // every method's ratio is to the gradient passes interleaved with its own
            assertTrue(r.gradientMillis() > 0, r.toString());
            assertEquals(r.medianMillis() / r.gradientMillis(), r.ratioToGradient(), 1e-12, r.toString());
            // one timed pass: the median of the per-pass ratios is that pass's ratio
            assertEquals(r.ratioToGradient(), r.pairedRatio(), r.method().equals("gradient") ? 0.0 : 1e-12,
                    r.toString());
            assertTrue(!r.machine().cpu().isEmpty() && r.machine().cores() > 0 && r.machine().ompThreads() > 0
                    && !r.machine().backend().isEmpty() && !r.machine().blas().isEmpty(), r.toString());
        }
        assertEquals(1.0, rows.get(0).ratioToGradient(), 0.0);
        Path csv = dir.resolve("b.csv");
        Path png = dir.resolve("b.png");
        Benchmark.writeCsv(rows, csv);
        Benchmark.plot(rows, png);
        List<String> lines = Files.readAllLines(csv);
        assertEquals("problem,method,batch,min_ms,median_ms,max_ms,gradient_median_ms,ratio_to_gradient,"
                + "paired_ratio_median,peak_mb,omp_threads,cores,cpu,backend,blas,note", lines.get(0));
        assertEquals(1 + rows.size(), lines.size());
        for (String line : lines) {
            assertEquals(16, line.split(",", -1).length, line);
        }
        assertTrue(Files.size(png) > 1000, "chart written");
    }

    @Test
    void theMedianOfAnEvenOrOddNumberOfPasses() {
        assertEquals(2.0, Benchmark.median(new double[] {3, 1, 2}), 0.0);
        assertEquals(2.5, Benchmark.median(new double[] {4, 1, 3, 2}), 0.0);
    }

    @Test
    void smallCnnRunsAndKfraRefusesWhatExceedsItsBudget() {
        List<Benchmark.Row> rows = run(DeepObsNetworks.C3D3, 2,
                List.of("gradient", "wrapped", "Variance", "DiagGGNMC", "KFLR", "KFRA", "loop"));
        for (Benchmark.Row r : rows) {
            if (r.method().equals("KFRA")) {
                assertTrue(r.note().startsWith("failed: KFRA needs"), r.toString());
            } else {
                assertTrue(r.note().isEmpty() && r.medianMillis() > 0, r.toString());
            }
        }
    }

    @Test
    void theResidualNetworkWithBatchNormalisationRunsFirstOrderWithRunningAndCurvatureWithBatchStatistics() {
        List<Benchmark.Row> rows = Benchmark.run(Benchmark.residual(2, 1L << 30, null), 2, 1, 0, 60,
                List.of("gradient", "wrapped", "BatchL2Grad", "Variance", "DiagGGNMC", "KFLR", "loop"),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
        // "loop" is for MultiLayerNetworks only and is left out
        assertEquals(6, rows.size());
        for (Benchmark.Row r : rows) {
            assertTrue(r.note().isEmpty(), r.toString());
            assertTrue(r.medianMillis() > 0, r.toString());
        }
    }

    @Test
    void theResidualNetworksCurvatureRunsWithTheStatisticsNamedOnTheCommandLine() {
        Benchmark.Subject subject = Benchmark.residual(2, 1L << 30, BatchNormStatistics.BATCH_AS_CONSTANTS);
        List<Benchmark.Row> rows = Benchmark.run(subject, 2, 1, 0, 60, List.of("gradient", "BatchL2Grad", "DiagGGNExact"),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
        assertEquals(3, rows.size());
        for (Benchmark.Row r : rows) {
            assertEquals("resnet-bn/batch-as-constants", r.problem(), r.toString());
            assertTrue(r.note().isEmpty() && r.medianMillis() > 0, r.toString());
        }
        assertEquals(BatchNormStatistics.BATCH_AS_CONSTANTS, subject.extended().batchNormStatistics());
    }
}
