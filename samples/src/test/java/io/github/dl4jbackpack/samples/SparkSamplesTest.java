// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.samples.data.ImageDataSet;
import io.github.dl4jbackpack.samples.data.LabelledImages;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A small run of the Spark sample: Spark's values agree with the one-machine computation beside them. */
class SparkSamplesTest {

    @Test
    void sparkAgreesWithOneMachine(@TempDir Path dir) throws Exception {
        Random r = new Random(5);
        int n = 240;
        byte[] pixels = new byte[n * 784];
        r.nextBytes(pixels);
        ImageDataSet train = ImageDataSet.of(new LabelledImages(1, 28, 28, 10, pixels, r.ints(n, 0, 10).toArray()),
                DataType.FLOAT);
        SparkNoiseScale.Settings s = new SparkNoiseScale.Settings(0, 40, 3, 1, 7, List.of("local[2]"));
        ByteArrayOutputStream table = new ByteArrayOutputStream();
        List<SparkNoiseScale.Row> rows = SparkNoiseScale.run(s, train,
                new PrintStream(table, true, StandardCharsets.UTF_8),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
        assertEquals(2, rows.size());
        SparkNoiseScale.Row one = rows.get(0);
        SparkNoiseScale.Row spark = rows.get(1);
        assertEquals(n, one.examples());
        assertEquals(n, spark.examples());
        // the noise scale is exact on both sides (Chan's merge of Variance there, Σ∇ℓ² − M‖μ‖² here, float32 passes)
        assertEquals(one.noiseScale(), spark.noiseScale(), 1e-3 * one.noiseScale(), rows.toString());
        // the Fisher diagonals are one Monte Carlo draw each: close, not equal
        assertTrue(spark.fisherDifference() > 0 && spark.fisherDifference() < 1, rows.toString());
        assertEquals(one.fisherTrace(), spark.fisherTrace(), 0.5 * one.fisherTrace(), rows.toString());
        assertTrue(table.toString(StandardCharsets.UTF_8).contains("noise scale"));
        Path csv = dir.resolve("s.csv");
        SparkNoiseScale.writeCsv(rows, csv);
        assertEquals(3, Files.readAllLines(csv).size());
    }
}
