// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The digits become masked column sequences, and the LSTM demo trains and reports its layers. */
class SequenceNoiseDemoTest {

    @Test
    void digitsBecomeVariableLengthColumnSequences() {
        SequenceNoiseDemo.Sequences s = SequenceNoiseDemo.columnSequences(Digits.load(DataType.FLOAT));
        INDArray lengths = s.mask().sum(1);
        assertEquals(1797, s.size());
        assertTrue(lengths.minNumber().doubleValue() >= 2 && lengths.maxNumber().doubleValue() == 8,
                "lengths " + lengths.minNumber() + ".." + lengths.maxNumber());
        assertTrue(lengths.minNumber().doubleValue() < 8, "some columns are blank and dropped");
        for (int i = 0; i < 50; i++) {
            int len = lengths.getInt(i);
            // the first real step has ink, the padding after the last real step has none
            assertTrue(step(s, i, 0).sumNumber().doubleValue() > 0, "sequence " + i);
            if (len < 8) {
                assertEquals(0.0, step(s, i, len).sumNumber().doubleValue(), 0.0);
            }
        }
    }

    private static INDArray step(SequenceNoiseDemo.Sequences s, int i, int t) {
        return s.features().get(NDArrayIndex.point(i), NDArrayIndex.all(), NDArrayIndex.point(t));
    }

    @Test
    void demoTrainsAndReportsEveryParameter() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream progress = new ByteArrayOutputStream();
        double accuracy = SequenceNoiseDemo.run(2, 64, 3, 16, 640, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(progress, true, StandardCharsets.UTF_8));
        String text = out.toString(StandardCharsets.UTF_8);
        assertTrue(text.contains("epoch 2: mean training loss"), text);
        for (String row : new String[] {"0     W     LastTimeStep", "0     RW    LastTimeStep", "0     b     LastTimeStep",
                "1     W     OutputLayer", "1     b     OutputLayer"}) {
            assertTrue(text.contains(row), text);
        }
        assertTrue(progress.toString(StandardCharsets.UTF_8).contains("10/10"), "progress bar drawn");
        assertTrue(accuracy > 0.15, "learns something in two short epochs: " + accuracy);
    }
}
