// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Map;
import java.util.stream.LongStream;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;

/**
 * Property-style tests on seeded random architectures: against the per-example loop (without
 * dropout, in both workspace modes and in float32), and the identities between quantities of one
 * pass (with dropout, whose masks are those of that pass).
 */
class PropertiesTest {

    static Stream<Long> seeds() {
        return LongStream.range(100, 130).boxed();
    }

    @ParameterizedTest(name = "seed {0}")
    @MethodSource("seeds")
    void randomArchitectureMatchesTheLoop(long seed) {
        WorkspaceMode mode = seed % 2 == 0 ? WorkspaceMode.ENABLED : WorkspaceMode.NONE;
        RandomArchitectures.Sample s = RandomArchitectures.sample(seed, false, DataType.DOUBLE, mode);
        Map<String, INDArray> reference = Reference.individualGradients(s.net(), s.features(), s.labels());
        Quantities q = BackPackNetwork.extend(s.net()).backward(s.features(), s.labels(), new BatchGrad(),
                new BatchL2Grad(), new SumGradSquared(), new Variance(), new BatchDotGrad(), new WeightedGradientSum());
        try {
            FirstOrderAgainstLoopTest.assertMatches(reference, q, 1e-9, 1e-12);
        } catch (AssertionError e) {
            throw new AssertionError(s.description() + " [" + mode + "]: " + e.getMessage(), e);
        }
    }

    @ParameterizedTest(name = "seed {0}")
    @MethodSource("seeds")
    void float32RandomArchitectureIsCloseToFloat64Loop(long seed) {
        RandomArchitectures.Sample s = RandomArchitectures.sample(seed, false, DataType.DOUBLE, WorkspaceMode.ENABLED);
        Map<String, INDArray> reference = Reference.individualGradients(s.net(), s.features(), s.labels());
        MultiLayerNetwork f32 = s.net().convertDataType(DataType.FLOAT);
        Quantities q = BackPackNetwork.extend(f32).backward(s.features().castTo(DataType.FLOAT),
                s.labels().castTo(DataType.FLOAT), new BatchGrad(), new BatchL2Grad(), new SumGradSquared(),
                new Variance(), new BatchDotGrad(), new WeightedGradientSum());
        try {
            FirstOrderAgainstLoopTest.assertMatches(reference, q, 2e-3, 2e-4);
        } catch (AssertionError e) {
            throw new AssertionError(s.description() + " [float32]: " + e.getMessage(), e);
        }
    }

    @ParameterizedTest(name = "seed {0}")
    @MethodSource("seeds")
    void identitiesHoldWithDropout(long seed) {
        RandomArchitectures.Sample s = RandomArchitectures.sample(seed, true, DataType.DOUBLE,
                seed % 2 == 0 ? WorkspaceMode.ENABLED : WorkspaceMode.NONE);
        Nd4j.getRandom().setSeed(seed);
        Quantities q = BackPackNetwork.extend(s.net()).backward(s.features(), s.labels(), new BatchGrad(),
                new BatchL2Grad(), new SumGradSquared(), new Variance(), new BatchDotGrad(), new WeightedGradientSum());
        long n = s.features().size(0);
        String d = s.description();
        for (int layer : q.layers(BatchGrad.class)) {
            for (String p : q.params(BatchGrad.class, layer)) {
                String key = layer + "_" + p;
                INDArray g = q.get(BatchGrad.class, layer, p);
                INDArray grad = s.net().gradient().getGradientFor(key).div(n);
                assertClose(grad, g.sum(0), 1e-10, 1e-13, d + ": Σ_n BatchGrad = gradient/N, " + key);
                INDArray l2 = q.get(BatchL2Grad.class, layer, p);
                assertClose(Reference.squaredNorms(g), l2, 1e-10, 1e-13, d + ": BatchL2 = ‖BatchGrad‖², " + key);
                INDArray dots = q.get(BatchDotGrad.class, layer, p);
                assertClose(l2, Nd4j.diag(dots), 1e-10, 1e-13, d + ": diag(BatchDot) = BatchL2, " + key);
                assertClose(dots.transpose(), dots, 1e-12, 1e-14, d + ": BatchDot symmetric, " + key);
                INDArray sgs = q.get(SumGradSquared.class, layer, p);
                assertClose(Reference.sumGradSquared(g), sgs, 1e-10, 1e-13, d + ": SGS = Σ g², " + key);
                assertClose(sgs.div(n).sub(grad.div(n).mul(grad.div(n))), q.get(Variance.class, layer, p), 1e-9,
                        1e-12, d + ": Variance = SGS/N − (grad/N)², " + key);
                assertClose(grad, q.get(WeightedGradientSum.class, layer, p).of(Nd4j.ones(DataType.DOUBLE, n)),
                        1e-10, 1e-13, d + ": WeightedGradientSum of ones = gradient/N, " + key);
            }
        }
    }
}
