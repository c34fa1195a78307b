// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.dataset.DataSet;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The shipped data loads, and the demo runs and reports a table per epoch. */
class GradientNoiseDemoTest {

    @Test
    void digitsShipWithTheModule() {
        DataSet d = Digits.load(DataType.FLOAT);
        assertEquals(1797, d.numExamples());
        assertEquals(1.0, d.getFeatures().maxNumber().doubleValue(), 0.0);
        assertEquals(1797.0, d.getLabels().sumNumber().doubleValue(), 0.0);
    }

    @Test
    void demoTrainsAndReportsEveryLayerWithParameters() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream progress = new ByteArrayOutputStream();
        double accuracy = GradientNoiseDemo.run(2, 64, 3, 600, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(progress, true, StandardCharsets.UTF_8));
        String text = out.toString(StandardCharsets.UTF_8);
        assertTrue(text.contains("epoch 2: mean training loss"), text);
        for (String layer : new String[] {"0     b     ConvolutionLayer", "0     W     ConvolutionLayer",
                "2     W     ConvolutionLayer", "4     W     DenseLayer", "5     b     OutputLayer"}) {
            assertTrue(text.contains(layer), text);
        }
        assertTrue(progress.toString(StandardCharsets.UTF_8).contains("10/10"), "progress bar drawn");
        assertTrue(accuracy > 0.2, "learns something in two short epochs: " + accuracy);
    }
}
