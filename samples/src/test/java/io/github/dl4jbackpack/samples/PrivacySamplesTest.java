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
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Smoke runs of the privacy sample and benchmark (timings and accuracies are reported, not asserted). */
class PrivacySamplesTest {

    private static PrintStream sink() {
        return new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
    }

    @Test
    void privateMnistTrainsEveryRunAndSpendsThePlannedEpsilon(@TempDir Path dir) throws Exception {
        Random r = new Random(3);
        int n = 300;
        byte[] pixels = new byte[n * 784];
        r.nextBytes(pixels);
        int[] labels = r.ints(n, 0, 10).toArray();
        ImageDataSet train = ImageDataSet.of(new LabelledImages(1, 28, 28, 10, pixels, labels), DataType.FLOAT);
        ImageDataSet test = train.sample(100, 4);
        PrivateMnist.Settings s = new PrivateMnist.Settings(2, 50, 1.0, 0.1, 0.5, new double[] {3, 8}, 1e-5, 16, 0, 7);
        ByteArrayOutputStream table = new ByteArrayOutputStream();
        List<PrivateMnist.Row> rows = PrivateMnist.run(s, train, test,
                new PrintStream(table, true, StandardCharsets.UTF_8), sink());
        assertEquals(6, rows.size(), rows.toString());
        for (PrivateMnist.Row row : rows) {
            assertTrue(row.testAccuracy() >= 0 && row.testAccuracy() <= 1, row.toString());
        }
        for (double target : new double[] {3, 8}) {
            PrivateMnist.Row last = rows.stream().filter(x -> x.run().equals("ε = " + target) && x.epoch() == 2)
                    .findFirst().orElseThrow();
            assertTrue(last.epsilon() <= target && last.epsilon() >= 0.99 * target, last.toString());
        }
        assertTrue(table.toString(StandardCharsets.UTF_8).contains("noise multiplier"));
        Path csv = dir.resolve("p.csv");
        Path png = dir.resolve("p.png");
        PrivateMnist.writeCsv(rows, csv);
        PrivateMnist.plot(rows, s, png);
        assertEquals(1 + rows.size(), Files.readAllLines(csv).size());
        assertTrue(Files.size(png) > 0);
    }

    @Test
    void privacyBenchmarkTimesBothModes(@TempDir Path dir) throws Exception {
        List<PrivacyBenchmark.Row> rows = PrivacyBenchmark.run(DeepObsNetworks.LOGREG, 8, 2, 1,
                List.of("sgd", "dp-sgd"), sink(), sink());
        assertEquals(2, rows.size());
        assertEquals(1.0, rows.get(0).ratio(), 1e-12);
        assertTrue(rows.get(1).medianMillis() > 0);
        Path csv = dir.resolve("b.csv");
        PrivacyBenchmark.writeCsv(rows, csv);
        for (String line : Files.readAllLines(csv)) {
            assertEquals(14, line.split(",", -1).length, line);
        }
        assertThrows(IllegalArgumentException.class, () -> PrivacyBenchmark.run(DeepObsNetworks.LOGREG, 8, 1, 0,
                List.of("adam"), sink(), sink()));
    }

    @Test
    void theMlpHasDeepObsParameterCount() {
        assertEquals(1_336_610, DeepObsNetworks.of("mnist_mlp").build(DataType.FLOAT, null, 1).numParams());
    }
}
