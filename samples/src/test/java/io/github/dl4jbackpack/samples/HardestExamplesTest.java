// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.layers.feedforward.dense.DenseLayer;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Comparator;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The transfer-learning sample runs, its per-example gradient norms (one BackPACK pass per batch)
 * agree with single-example DL4J passes on the same head, and it lists the examples with the
 * largest of them, in order.
 */
class HardestExamplesTest {

    @Test
    void digitsAreUpsampledByNearestNeighbourToThreeChannels() {
        INDArray digits = Nd4j.arange(2 * 64).castTo(DataType.FLOAT).reshape(2, 1, 8, 8);
        INDArray x = HardestExamples.toVggInput(digits);
        assertEquals(java.util.List.of(2L, 3L, 32L, 32L), java.util.Arrays.stream(x.shape()).boxed().toList());
        for (int n = 0; n < 2; n++) {
            for (int c = 0; c < 3; c++) {
                for (int y = 0; y < 32; y++) {
                    for (int z = 0; z < 32; z++) {
                        assertEquals(digits.getDouble(n, 0, y / 4, z / 4), x.getDouble(n, c, y, z), 0.0);
                    }
                }
            }
        }
    }

    @Test
    void listsTheExamplesWithTheLargestSingleExampleGradientNorms() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream progress = new ByteArrayOutputStream();
        int train = 96;
        HardestExamples.Result r = HardestExamples.run(1, 32, 3, train, 32,
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(progress, true, StandardCharsets.UTF_8));
        String text = out.toString(StandardCharsets.UTF_8);
        assertTrue(text.contains("epoch  1: mean training loss"), text);
        assertTrue(text.contains("the 10 largest:"), text);
        assertTrue(progress.toString(StandardCharsets.UTF_8).contains("3/3"), "progress bar drawn");
        assertEquals(train, r.norms().length);

        // ‖∇ℓ_n‖ by DL4J alone: one example at a time through a plain copy of the trained head
        // (every parameter of the head is trainable; the frozen VGG16 part is not in it)
        ComputationGraph plain = r.head().clone();
        assertTrue(plain.getLayer(HardestExamples.DENSE1) instanceof DenseLayer, "a plain DL4J layer");
        double[] loop = new double[train];
        for (int n = 0; n < train; n++) {
            plain.setInputs(HardestExamples.headInput(r.features(), new int[] {n}));
            plain.setLabels(r.labels().getRow(n, true));
            plain.computeGradientAndScore();
            double squared = 0;
            for (INDArray g : plain.gradient().gradientForVariable().values()) {
                double norm = g.norm2Number().doubleValue();
                squared += norm * norm;
            }
            loop[n] = Math.sqrt(squared);
        }
        double largest = IntStream.range(0, train).mapToDouble(n -> loop[n]).max().orElseThrow();
        assertTrue(largest > 0, "some gradient is non-zero");
        for (int n = 0; n < train; n++) {
            assertEquals(loop[n], r.norms()[n], 1e-3 * loop[n] + 1e-6 * largest, "example " + n);
        }

        // the listed examples are the top of the loop's ordering, largest first (ties up to rounding)
        int[] byLoop = IntStream.range(0, train).boxed()
                .sorted(Comparator.comparingDouble((Integer n) -> loop[n]).reversed()).mapToInt(Integer::intValue)
                .toArray();
        assertEquals(HardestExamples.LISTED, r.hardest().length);
        for (int rank = 0; rank < r.hardest().length; rank++) {
            double expected = loop[byLoop[rank]];
            assertEquals(expected, loop[r.hardest()[rank]], 2e-3 * expected + 1e-6 * largest, "rank " + (rank + 1));
            String row = String.format("%4d %6d", rank + 1, r.digitIndex()[r.hardest()[rank]]);
            assertTrue(text.contains(row), "table row " + row + " in\n" + text);
        }
    }
}
