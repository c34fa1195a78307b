// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Smoke run of the updater step runner (timings are not asserted: they belong to the runner's reports). */
class UpdaterBenchmarkTest {

    @Test
    void everyRuleTrainsLogisticRegressionAndTheTableIsWritten(@TempDir Path dir) throws Exception {
        List<String> rules = List.of("adam", "kfac", "kflr", "diag-mc", "kfac-amortised", "diag-mc-amortised");
        ByteArrayOutputStream table = new ByteArrayOutputStream();
        List<UpdaterBenchmark.Row> rows = UpdaterBenchmark.run(DeepObsNetworks.LOGREG,
                new UpdaterBenchmark.Settings(8, 4, 1, 2, 0.9, 3), rules,
                new PrintStream(table, true, StandardCharsets.UTF_8),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
        assertEquals(rules.size(), rows.size());
        for (UpdaterBenchmark.Row r : rows) {
            assertEquals(4, r.steps(), r.toString());
            assertTrue(r.meanMillis() > 0 && r.medianMillis() <= r.maxMillis(), r.toString());
            assertEquals(r.meanMillis() / rows.get(0).meanMillis(), r.ratioToAdam(), 1e-12, r.toString());
        }
        assertTrue(table.toString(StandardCharsets.UTF_8).contains("inverses every 3 steps"));
        Path csv = dir.resolve("u.csv");
        UpdaterBenchmark.writeCsv(rows, csv);
        List<String> lines = Files.readAllLines(csv);
        assertEquals(1 + rows.size(), lines.size());
        for (String line : lines) {
            assertEquals(13, line.split(",", -1).length, line);
        }
        assertThrows(IllegalArgumentException.class, () -> UpdaterBenchmark.updater("lbfgs",
                new UpdaterBenchmark.Settings(8, 1, 0, 1, 0, 1)));
    }
}
