// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** Kronecker factors against the paper's reference implementation where it has them. */
class GoldenKroneckerTest {

    @ParameterizedTest(name = "{0}")
    @MethodSource("io.github.dl4jbackpack.GoldenCase#names")
    void float64MatchesReferenceImplementation(String name) {
        GoldenCase golden = GoldenCase.load(name);
        MultiLayerNetwork net = golden.network(DataType.DOUBLE);
        Quantities q = BackPackNetwork.extend(net).backward(golden.features(), golden.labels(), new KFLR(),
                new KFRA());
        int compared = 0;
        for (int layer : golden.parametricLayers()) {
            boolean conv = golden.spec.get("layers").get(layer).get("type").asText().equals("conv2d");
            for (Class<? extends io.github.dl4jbackpack.extensions.Extension<KroneckerFactors>> e
                    : List.of(KFLR.class, KFRA.class)) {
                String prefix = e == KFLR.class ? "kflr_" : "kfra_";
                if (!golden.has(prefix + layer + "_W_A")) {
                    continue;
                }
                KroneckerFactors w = q.get(e, layer, "W");
                KroneckerFactors b = q.get(e, layer, "b");
                String what = name + " " + prefix + layer;
                INDArray a = golden.array(prefix + layer + "_W_A");
                INDArray bw = golden.array(prefix + layer + "_W_B");
                assertClose(a, w.inputFactor().orElseThrow(), 1e-9, 1e-12, what + " A");
                assertClose(bw, w.outputFactor(), 1e-9, 1e-12, what + " B");
                assertClose(golden.array(prefix + layer + "_b_B"), b.outputFactor(), 1e-9, 1e-12, what + " bias B");
                List<INDArray> factors = w.factors();
                assertClose(conv ? bw : a, factors.get(0), 1e-9, 1e-12, what + " factor order");
                assertEquals(1, b.factors().size());
                compared++;
            }
        }
        int expected = name.equals("cnn_stride_avgpool_mse") ? 0
                : golden.parametricLayers().size() * (name.equals("mlp_tanh_bce") ? 1 : 2);
        assertEquals(expected, compared, "golden factors compared");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("io.github.dl4jbackpack.GoldenCase#names")
    void kfacConvergesToKflrAsSamplesGrow(String name) {
        GoldenCase golden = GoldenCase.load(name);
        MultiLayerNetwork net = golden.network(DataType.DOUBLE);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities exact = bp.backward(golden.features(), golden.labels(), new KFLR());
        double[] error = new double[2];
        int[] samples = {8, 512};
        for (int i = 0; i < samples.length; i++) {
            for (int seed = 0; seed < 4; seed++) {
                TestNets.seed(seed);
                Quantities mc = bp.backward(golden.features(), golden.labels(), new KFAC(samples[i]));
                for (int layer : golden.parametricLayers()) {
                    INDArray b = exact.get(KFLR.class, layer, "W").outputFactor();
                    INDArray estimate = mc.get(KFAC.class, layer, "W").outputFactor();
                    error[i] += estimate.sub(b).norm2Number().doubleValue() / b.norm2Number().doubleValue();
                    assertClose(exact.get(KFLR.class, layer, "W").inputFactor().orElseThrow(),
                            mc.get(KFAC.class, layer, "W").inputFactor().orElseThrow(), 0, 0, "A is exact in KFAC");
                }
            }
        }
        // 64× more samples: 8× smaller error in expectation
        assertEquals(8.0, error[0] / error[1], 5.0, name + ": error ratio " + error[0] / error[1]);
    }
}
