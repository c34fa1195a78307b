// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The comparison runs every optimiser and prints its table. */
class OptimizerComparisonTest {

    @Test
    void everyOptimizerTrainsAndIsReported() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        List<OptimizerComparison.Result> results = OptimizerComparison.run(2, 256, 5,
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(new ByteArrayOutputStream()));
        assertEquals(7, results.size());
        String table = out.toString(StandardCharsets.UTF_8);
        for (OptimizerComparison.Result r : results) {
            assertTrue(table.contains(r.optimizer()), table);
            assertTrue(Double.isFinite(r.trainLoss()), r + ": finite loss");
            assertTrue(r.testAccuracy() > 0.5, r.toString());
        }
    }
}
