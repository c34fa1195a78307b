// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.BruteForce.HessianDiagonals;
import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;
import java.util.stream.LongStream;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Property tests on seeded random graphs ({@link RandomGraphs}): dense layers with random activations,
 * 1-3 inputs, fan-out, elementwise, merge, scale, shift and subset vertices, one or two outputs with
 * supported losses. For every graph, in float64 (16 seeds, half of them with workspaces, half without):
 * <ul>
 *   <li>the first-order extensions equal their definitions on DL4J's gradients one example at a time
 *       ({@link GraphReference}), to 1e-8 relative;</li>
 *   <li>DiagGGNExact and BatchDiagGGNExact equal the exact GGN from explicit Jacobians
 *       ({@link GraphBruteForce}), to 1e-7 relative;</li>
 *   <li>the gradient and score DL4J leaves after the extended pass are bit-identical to those of a plain
 *       clone.</li>
 * </ul>
 * A few float32 graphs are checked the same way against float64 references, to 1e-3 of the largest
 * value.
 *
 * <p>The second-order checks run on graphs generated without ElementWiseVertex, because every
 * second-order pass through one currently fails (see {@link #elementWiseVertexOnTheCurvaturePath}); the
 * same checks on the graphs with them are {@link #diagonalGgnThroughElementWiseVertices}, disabled until
 * that is fixed.
 */
class RandomGraphsTest {

    private static final int N = 3;
    private static final int FLOAT64_SEEDS = 16;

    /** Seeds 1-16, odd seeds with workspaces, even ones without. */
    static Stream<Arguments> float64() {
        return LongStream.rangeClosed(1, FLOAT64_SEEDS).mapToObj(seed -> Arguments.of(seed,
                seed % 2 == 1 ? WorkspaceMode.ENABLED : WorkspaceMode.NONE));
    }

    static Stream<Arguments> float32() {
        return Stream.of(Arguments.of(101L, WorkspaceMode.ENABLED), Arguments.of(102L, WorkspaceMode.NONE),
                Arguments.of(103L, WorkspaceMode.ENABLED), Arguments.of(104L, WorkspaceMode.NONE));
    }

    @ParameterizedTest(name = "seed {0}, workspaces {1}")
    @MethodSource("float64")
    void firstOrderEqualsSingleExamplePasses(long seed, WorkspaceMode workspaces) {
        checkFirstOrder(RandomGraphs.generate(seed, DataType.DOUBLE, workspaces, true), 1e-8, 1e-12);
    }

    @ParameterizedTest(name = "seed {0}, workspaces {1}")
    @MethodSource("float64")
    void diagonalGgnEqualsExplicitJacobians(long seed, WorkspaceMode workspaces) {
        checkDiagonalGgn(RandomGraphs.generate(seed, DataType.DOUBLE, workspaces, false), 1e-7, 1e-10);
    }

    @ParameterizedTest(name = "seed {0}, workspaces {1}")
    @MethodSource("float32")
    void float32FirstOrder(long seed, WorkspaceMode workspaces) {
        checkFirstOrder(RandomGraphs.generate(seed, DataType.FLOAT, workspaces, true), 1e-3, 1e-3);
    }

    @ParameterizedTest(name = "seed {0}, workspaces {1}")
    @MethodSource("float32")
    void float32DiagonalGgn(long seed, WorkspaceMode workspaces) {
        checkDiagonalGgn(RandomGraphs.generate(seed, DataType.FLOAT, workspaces, false), 1e-3, 1e-3);
    }

    @ParameterizedTest(name = "seed {0}, workspaces {1}")
    @MethodSource("float64")
    void diagonalGgnThroughElementWiseVertices(long seed, WorkspaceMode workspaces) {
        checkDiagonalGgn(RandomGraphs.generate(seed, DataType.DOUBLE, workspaces, true), 1e-7, 1e-10);
    }

    /**
     * The smallest case of the bug: GraphNets.residual(), {@code in → dense1 (tanh) → dense2 (relu)},
     * {@code add = ElementWiseVertex(Add)(dense2, dense1)}, {@code add → out (softmax + MCXENT)}.
     * (It once threw a ClassCastException: ElementWiseDerivatives read the vertex's operation as the
     * configuration's enum instead of the implementation's.)
     */
    @Test
    void elementWiseVertexOnTheCurvaturePath() {
        ComputationGraph graph = GraphNets.residual();
        GraphNets.Data d = GraphNets.Topology.RESIDUAL.data(graph, N, 1);
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, d.features());
        Map<String, INDArray> ggn = GraphBruteForce.diagGgn(jac);
        HessianDiagonals fd = GraphBruteForce.finiteDifferenceHessian(graph, d.features(), d.labels(), 1e-5);
        BackPackNetwork bp = BackPackNetwork.extend(graph);

        Quantities q = bp.backward(d.features(), d.labels(), new DiagGGNExact());
        ggn.forEach((key, expected) -> assertClose(expected, q.byKey(DiagGGNExact.class, key), 1e-7, 1e-10,
                "DiagGGNExact " + key));

        // Add has no Hessian residual of its own: DiagHessian is supported here
        Quantities h = bp.backward(d.features(), d.labels(), new DiagHessian());
        fd.batch.forEach((key, expected) -> assertClose(expected, h.byKey(DiagHessian.class, key), 1e-5, 1e-7,
                "DiagHessian " + key));
    }

    // ------------------------------------------------------------------ checks

    /** What a plain clone of the graph computes on the batch, before the graph is extended. */
    private record Plain(double[] gradient, double score) {

        static Plain of(ComputationGraph graph, GraphNets.Data d) {
            ComputationGraph plain = graph.clone();
            plain.setInputs(d.features());
            plain.setLabels(d.labels());
            plain.computeGradientAndScore();
            return new Plain(exact(plain.gradient().gradient()), plain.score());
        }

        void assertSameAs(ComputationGraph graph, Quantities q, String what) {
            assertArrayEquals(gradient, exact(graph.gradient().gradient()), what + ": gradient after the pass");
            assertEquals(score, graph.score(), 0.0, what + ": score");
            assertEquals(score, q.score(), 0.0, what + ": Quantities.score()");
        }

        private static double[] exact(INDArray a) {
            return a.castTo(DataType.DOUBLE).dup().data().asDouble();
        }
    }

    private static void checkFirstOrder(RandomGraphs.Case c, double rtol, double atol) {
        ComputationGraph graph = c.graph();
        GraphNets.Data d = c.data(N);
        Map<String, INDArray> g = GraphReference.individualGradients(GraphBruteForce.float64(graph),
                GraphBruteForce.float64(d.features()), GraphBruteForce.float64(d.labels()));
        Plain plain = Plain.of(graph, d);

        BackPackNetwork bp = BackPackNetwork.extend(graph);
        Quantities q = bp.backward(d.features(), d.labels(), new BatchGrad(), new BatchL2Grad(), new SumGradSquared(),
                new Variance(), new BatchDotGrad());
        String what = c.toString();
        assertEquals(graph.paramTable().keySet(), q.keys(BatchGrad.class), what + ": keys");
        Map<String, INDArray> norms = GraphReference.squaredNorms(g);
        Map<String, INDArray> sumSquares = GraphReference.sumGradSquared(g);
        Map<String, INDArray> variance = GraphReference.variance(g);
        Map<String, INDArray> dots = GraphReference.dots(g);
        for (String key : g.keySet()) {
            assertClose(g.get(key), q.byKey(BatchGrad.class, key), rtol, atol, what + ": BatchGrad " + key);
            assertClose(norms.get(key), q.byKey(BatchL2Grad.class, key), rtol, atol, what + ": BatchL2Grad " + key);
            assertClose(sumSquares.get(key), q.byKey(SumGradSquared.class, key), rtol, atol,
                    what + ": SumGradSquared " + key);
            assertClose(variance.get(key), q.byKey(Variance.class, key), rtol, atol, what + ": Variance " + key);
            assertClose(dots.get(key), q.byKey(BatchDotGrad.class, key), rtol, atol, what + ": BatchDotGrad " + key);
        }
        plain.assertSameAs(graph, q, what);
        Quantities sums = bp.backward(d.features(), d.labels(), new WeightedGradientSum());
        INDArray weights = Reference.testWeights(N);
        for (String key : g.keySet()) {
            assertClose(Reference.weightedSum(g.get(key), weights), sums.byKey(WeightedGradientSum.class, key)
                    .of(weights), rtol, atol, what + ": WeightedGradientSum " + key);
        }
    }

    private static void checkDiagonalGgn(RandomGraphs.Case c, double rtol, double atol) {
        ComputationGraph graph = c.graph();
        GraphNets.Data d = c.data(N);
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, d.features());
        Map<String, INDArray> ggn = GraphBruteForce.diagGgn(jac);
        Map<String, INDArray> batchGgn = GraphBruteForce.batchDiagGgn(jac);
        Plain plain = Plain.of(graph, d);

        BackPackNetwork bp = BackPackNetwork.extend(graph);
        Quantities q = bp.backward(d.features(), d.labels(), new DiagGGNExact(), new BatchDiagGGNExact());
        String what = c.toString();
        assertEquals(graph.paramTable().keySet(), q.keys(DiagGGNExact.class), what + ": keys");
        for (String key : ggn.keySet()) {
            assertClose(ggn.get(key), q.byKey(DiagGGNExact.class, key), rtol, atol, what + ": DiagGGNExact " + key);
            assertClose(batchGgn.get(key), q.byKey(BatchDiagGGNExact.class, key), rtol, atol,
                    what + ": BatchDiagGGNExact " + key);
        }
        plain.assertSameAs(graph, q, what);
    }
}
