// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchGrad;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The listener's numbers against per-example gradients of the same iterations, its cost and its CSV. */
class GradientVarianceListenerTest {

    static double quantile(double[] sorted, double q) {
        double position = q * (sorted.length - 1);
        int below = (int) Math.floor(position);
        int above = Math.min(sorted.length - 1, below + 1);
        return sorted[below] + (position - below) * (sorted[above] - sorted[below]);
    }

    static void assertRelative(double expected, double actual, String what) {
        assertEquals(expected, actual, 1e-9 * Math.max(1e-300, Math.abs(expected)), what);
    }

    @Test
    void reportsEqualStatisticsOfThePerExampleGradientsOfThatIteration(@TempDir Path dir) throws Exception {
        MultiLayerNetwork net = TransparencyTest.cnn(DataType.DOUBLE, WorkspaceMode.ENABLED, false);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        bp.enable(new BatchGrad());   // an independent route to the same iteration's per-example gradients
        Path csv = dir.resolve("noise.csv");
        GradientVarianceListener listener = new GradientVarianceListener(bp, 2).writeCsv(csv);
        net.addListeners(listener);
        List<Quantities> passes = new ArrayList<>();
        bp.addQuantitiesListener(passes::add);
        int reports = 0;
        for (int it = 0; it < 5; it++) {
            long n = 4 + it;
            net.fit(TestNets.features(DataType.DOUBLE, it, n, 2, 8, 8),
                    TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, it, n, 3));
            if (it % 2 != 0) {
                continue;
            }
            reports++;
            Quantities q = passes.get(passes.size() - 1);
            assertEquals(6, listener.lastReport().size(), "conv, dense and output layers, W and b each");
            for (GradientVarianceListener.Statistics s : listener.lastReport()) {
                assertEquals(it, s.iteration());
                INDArray g = q.get(BatchGrad.class, s.layer(), s.param());   // [N, *p], g_n = ∇ℓ_n / N
                INDArray perExample = g.dup('c').reshape(n, g.length() / n).muli(n);   // ∇ℓ_n
                INDArray mean = perExample.mean(0);
                INDArray centred = perExample.subRowVector(mean);
                double variance = centred.mul(centred).sumNumber().doubleValue() / n;
                String what = "iteration " + it + " layer " + s.layer() + " " + s.param();
                assertEquals(n, s.batchSize());
                assertRelative(variance, s.variance(), what + " variance");
                assertRelative(mean.norm2Number().doubleValue(), s.gradientNorm(), what + " gradient norm");
                assertRelative(Math.pow(mean.norm2Number().doubleValue(), 2) / variance, s.signalToNoise(), what + " SNR");
                double[] norms = perExample.norm2(1).toDoubleVector();
                Arrays.sort(norms);
                assertRelative(quantile(norms, 0.1), s.normQ10(), what + " q10");
                assertRelative(quantile(norms, 0.5), s.normQ50(), what + " q50");
                assertRelative(quantile(norms, 0.9), s.normQ90(), what + " q90");
            }
        }
        assertEquals(3, reports);
        List<String> lines = Files.readAllLines(csv);
        assertTrue(lines.get(0).startsWith("iteration,epoch,layer,param,batch,variance,gradient_norm,snr"), lines.get(0));
        assertEquals(1 + 3 * 6, lines.size(), "header and one row per parameter and report");
    }

    @Test
    void skippedIterationsComputeNothing() {
        MultiLayerNetwork net = TransparencyTest.cnn(DataType.DOUBLE, WorkspaceMode.ENABLED, false);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        GradientVarianceListener listener = new GradientVarianceListener(bp, 3);
        net.addListeners(listener);
        List<Long> passes = new ArrayList<>();
        bp.addQuantitiesListener(q -> passes.add(q.batchSize()));
        for (int it = 0; it < 7; it++) {
            net.fit(TestNets.features(DataType.DOUBLE, it, 4, 2, 8, 8),
                    TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, it, 4, 3));
        }
        assertEquals(3, passes.size(), "extended passes only at iterations 0, 3 and 6");
        assertEquals(6, listener.lastReport().get(0).iteration());
        assertThrows(IllegalArgumentException.class, () -> new GradientVarianceListener(bp, 0));
    }
}
