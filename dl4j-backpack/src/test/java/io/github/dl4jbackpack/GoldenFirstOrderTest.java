// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;


import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** First-order extensions against the paper's reference implementation on the six golden cases. */
class GoldenFirstOrderTest {

    @ParameterizedTest(name = "{0}")
    @MethodSource("io.github.dl4jbackpack.GoldenCase#names")
    void float64MatchesReferenceImplementation(String name) {
        GoldenCase golden = GoldenCase.load(name);
        MultiLayerNetwork net = golden.network(DataType.DOUBLE);
        Quantities q = BackPackNetwork.extend(net).backward(golden.features(), golden.labels(), new BatchGrad(),
                new BatchL2Grad(), new SumGradSquared(), new Variance(), new BatchDotGrad());
        assertEquals(golden.score(), q.score(), 1e-12 * Math.abs(golden.score()), "score");
        assertEquals(golden.parametricLayers(), java.util.List.copyOf(q.layers(BatchGrad.class)));
        for (int layer : golden.parametricLayers()) {
            for (String p : new String[] {"W", "b"}) {
                String key = layer + "_" + p;
                INDArray grad = net.gradient().getGradientFor(key).div(golden.features().size(0));
                assertClose(golden.array("grad_" + key), grad, 1e-10, 1e-13, name + " gradient " + key);
                check(golden, "batch_grad_" + key, q.get(BatchGrad.class, layer, p));
                check(golden, "batch_l2_" + key, q.get(BatchL2Grad.class, layer, p));
                check(golden, "sum_grad_squared_" + key, q.get(SumGradSquared.class, layer, p));
                check(golden, "variance_" + key, q.get(Variance.class, layer, p));
                check(golden, "batch_dot_" + key, q.get(BatchDotGrad.class, layer, p));
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("io.github.dl4jbackpack.GoldenCase#names")
    void float32WithinFloat32Tolerance(String name) {
        GoldenCase golden = GoldenCase.load(name);
        MultiLayerNetwork net = golden.network(DataType.FLOAT);
        Quantities q = BackPackNetwork.extend(net).backward(golden.features().castTo(DataType.FLOAT),
                golden.labels().castTo(DataType.FLOAT), new BatchGrad(), new BatchL2Grad(), new SumGradSquared(),
                new Variance(), new BatchDotGrad());
        for (int layer : golden.parametricLayers()) {
            for (String p : new String[] {"W", "b"}) {
                String key = layer + "_" + p;
                INDArray bg = q.get(BatchGrad.class, layer, p);
                assertEquals(DataType.FLOAT, bg.dataType());
                assertClose(golden.array("batch_grad_" + key), bg, 1e-3, 1e-4, name + " f32 batch_grad_" + key);
                assertClose(golden.array("batch_l2_" + key), q.get(BatchL2Grad.class, layer, p), 2e-3, 1e-4,
                        name + " f32 batch_l2_" + key);
                assertClose(golden.array("sum_grad_squared_" + key), q.get(SumGradSquared.class, layer, p), 2e-3,
                        1e-4, name + " f32 sum_grad_squared_" + key);
                assertClose(golden.array("variance_" + key), q.get(Variance.class, layer, p), 2e-3, 1e-3,
                        name + " f32 variance_" + key);
                assertClose(golden.array("batch_dot_" + key), q.get(BatchDotGrad.class, layer, p), 2e-3, 1e-4,
                        name + " f32 batch_dot_" + key);
            }
        }
    }

    private static void check(GoldenCase golden, String file, INDArray actual) {
        assertClose(golden.array(file), actual, 1e-9, 1e-12, golden.name + " " + file);
    }
}
