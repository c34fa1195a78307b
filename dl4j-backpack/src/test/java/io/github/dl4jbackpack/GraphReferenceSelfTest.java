// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.BruteForce.HessianDiagonals;
import io.github.dl4jbackpack.BruteForce.Loss;
import io.github.dl4jbackpack.GraphNets.Data;
import io.github.dl4jbackpack.GraphNets.Topology;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.graph.ElementWiseVertex;
import org.deeplearning4j.nn.conf.graph.MergeVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.iter.NdIndexIterator;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.GraphNets.dense;
import static io.github.dl4jbackpack.GraphNets.output;
import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Makes the ComputationGraph references ({@link GraphReference}, {@link GraphBruteForce}) trustworthy on
 * their own, without the library:
 * <ul>
 *   <li>DL4J's graph gradient agrees with central differences of DL4J's score, for every test graph (so the
 *       vertices' backward passes the references rely on are right);</li>
 *   <li>the per-example gradients sum to DL4J's whole-batch gradient / N (both workspace modes);</li>
 *   <li>the per-output Jacobians reproduce DL4J's gradient by the chain rule (which also checks that the
 *       identity + L2 trick isolates one output), bias Jacobians are identities, and the GGN block's diagonal
 *       is the GGN diagonal;</li>
 *   <li>on chain graphs, every graph reference equals the {@link MultiLayerNetwork} reference
 *       ({@link Reference}, {@link BruteForce}, {@link BruteForceKronecker}) on the equivalent network;</li>
 *   <li>GGN diagonal = finite-difference Hessian diagonal where they coincide (output linear in every
 *       single parameter: one output layer with MSE; relu networks, also with two outputs);</li>
 *   <li>the multi-output score is the sum of the per-output mean losses computed by hand.</li>
 * </ul>
 */
class GraphReferenceSelfTest {

    static final int N = 4;
    /** finite differences of the score with step 1e-6 (float64) */
    static final double SCORE_STEP = 1e-6;
    /** finite differences of the gradient, as {@link BruteForceCurvatureTest} */
    static final double FD_STEP = 1e-5;
    static final double FD_RTOL = 1e-5;
    static final double FD_ATOL = 1e-7;

    @BeforeEach
    void float64Defaults() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    /** A chain of layers, built both as a chain graph and as a {@link MultiLayerNetwork}. */
    record Chain(String name, InputType input, Supplier<Layer[]> layers) {
        ComputationGraph graph() {
            return GraphNets.chain(input, layers.get());
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Chain> chains() {
        return Stream.of(
                new Chain("mlp tanh relu / softmax-mcxent", InputType.feedForward(4), () -> new Layer[] {
                    dense(5, Activation.TANH), dense(4, Activation.RELU),
                    output(LossFunction.MCXENT, Activation.SOFTMAX, 3)}),
                new Chain("cnn relu pad 1, maxpool, ActivationLayer tanh, dense sigmoid / identity-mse",
                        InputType.convolutional(5, 5, 1), () -> new Layer[] {
                            new ConvolutionLayer.Builder(3, 3).padding(1, 1).nOut(2).activation(Activation.RELU)
                                    .build(),
                            new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                            new ActivationLayer.Builder().activation(Activation.TANH).build(),
                            dense(3, Activation.SIGMOID), output(LossFunction.MSE, Activation.IDENTITY, 2)}));
    }

    /** Every test graph with its data. */
    record GraphCase(String name, Supplier<ComputationGraph> graph, InputType[] inputs) {
        Data data(ComputationGraph g) {
            return GraphNets.data(g, N, 77, inputs);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<GraphCase> graphCases() {
        List<GraphCase> cases = new ArrayList<>();
        for (Topology t : Topology.values()) {
            cases.add(new GraphCase(t.toString(), t::build, t.inputs()));
        }
        chains().forEach(c -> cases.add(new GraphCase("chain " + c.name, c::graph, new InputType[] {c.input})));
        return cases.stream();
    }

    static Stream<Arguments> graphCasesBothWorkspaceModes() {
        return graphCases().flatMap(c -> Stream.of(Arguments.of(c, WorkspaceMode.ENABLED),
                Arguments.of(c, WorkspaceMode.NONE)));
    }

    // ---------------------------------------------------------------- DL4J's gradient itself

    /**
     * Central differences of DL4J's score against DL4J's gradient. Also guards the test graphs against a
     * saturated softmax: DL4J's MCXENT clips probabilities at 1e-10 in the score but not in the gradient
     * ({@code p − y}), so the two disagree there (this is why {@link GraphNets#inception} has small fan-ins).
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("graphCases")
    void dl4jGraphGradientMatchesFiniteDifferencesOfTheScore(GraphCase c) {
        ComputationGraph graph = c.graph.get();
        Data d = c.data(graph);
        Map<String, INDArray> gradient = GraphReference.batchGradient(graph, d.features(), d.labels());
        ComputationGraph plain = graph.clone();
        for (String key : GraphBruteForce.keys(plain)) {
            INDArray param = plain.getParam(key);
            INDArray fd = Nd4j.create(DataType.DOUBLE, param.shape());
            NdIndexIterator it = new NdIndexIterator('c', param.shape());
            while (it.hasNext()) {
                long[] idx = it.next();
                double original = param.getDouble(idx);
                param.putScalar(idx, original + SCORE_STEP);
                double plus = score(plain, d);
                param.putScalar(idx, original - SCORE_STEP);
                double minus = score(plain, d);
                param.putScalar(idx, original);
                fd.putScalar(idx, (plus - minus) / (2 * SCORE_STEP));
            }
            assertClose(fd, gradient.get(key), 1e-5, 1e-8, c.name + ": DL4J gradient vs score differences " + key);
        }
    }

    private static double score(ComputationGraph plain, Data d) {
        plain.setInputs(d.features());
        plain.setLabels(d.labels());
        plain.computeGradientAndScore();
        return plain.score();
    }

    // ---------------------------------------------------------------- first order

    @ParameterizedTest(name = "{0} [workspaces {1}]")
    @MethodSource("graphCasesBothWorkspaceModes")
    void individualGradientsSumToTheBatchGradient(GraphCase c, WorkspaceMode workspaces) {
        ComputationGraph graph = c.graph.get();
        ComputationGraph g = workspaces == WorkspaceMode.ENABLED ? graph : withWorkspaces(graph, workspaces);
        Data d = c.data(g);
        Map<String, INDArray> individual = GraphReference.individualGradients(g, d.features(), d.labels());
        Map<String, INDArray> batch = GraphReference.batchGradient(g, d.features(), d.labels());
        assertEquals(g.paramTable().keySet(), individual.keySet(), c.name + ": keys");
        assertEquals(List.copyOf(g.paramTable().keySet()), List.copyOf(individual.keySet()), c.name + ": key order");
        for (String key : batch.keySet()) {
            INDArray gi = individual.get(key);
            assertEquals(N, gi.size(0), key + ": batch axis");
            assertClose(batch.get(key), gi.sum(0), 1e-10, 0, c.name + ": Σ_n g_n = ∇L " + key);
            // derived quantities by their definitions
            assertClose(batch.get(key), GraphReference.sum(individual).get(key), 1e-10, 0, key + " sum");
            INDArray mean = batch.get(key).div(N);
            INDArray variance = gi.mul(gi).sum(0).div(N).sub(mean.mul(mean));
            assertClose(variance, GraphReference.variance(individual).get(key), 1e-10, 1e-14, key + " variance");
            INDArray dots = GraphReference.dots(individual).get(key);
            assertClose(Nd4j.diag(dots).reshape(N), GraphReference.squaredNorms(individual).get(key), 1e-12, 0,
                    key + " ‖g_n‖² = diag of dots");
            double norms = GraphReference.squaredNorms(individual).get(key).sumNumber().doubleValue();
            double sgs = GraphReference.sumGradSquared(individual).get(key).sumNumber().doubleValue();
            assertEquals(norms, sgs, 1e-12 * norms, key + " Σ_n ‖g_n‖² = Σ sumGradSquared");
        }
    }

    /** @return a copy of {@code graph} (same configuration and parameters) in another workspace mode */
    static ComputationGraph withWorkspaces(ComputationGraph graph, WorkspaceMode workspaces) {
        var conf = graph.getConfiguration().clone();
        conf.setTrainingWorkspaceMode(workspaces);
        conf.setInferenceWorkspaceMode(workspaces);
        ComputationGraph g = new ComputationGraph(conf);
        g.init();
        g.setParams(graph.params());
        return g;
    }

    @Test
    void builderWorkspaceModeAndFloat32() {
        ComputationGraph none = GraphNets.residual(DataType.DOUBLE, WorkspaceMode.NONE, GraphNets.DEFAULT_SEED);
        ComputationGraph enabled = GraphNets.residual();
        assertEquals(WorkspaceMode.NONE, none.getConfiguration().getTrainingWorkspaceMode());
        assertClose(enabled.params(), none.params(), 0, 0, "same seed, same parameters");
        ComputationGraph f32 = GraphNets.residual(DataType.FLOAT, WorkspaceMode.ENABLED, GraphNets.DEFAULT_SEED);
        assertEquals(DataType.FLOAT, f32.params().dataType());
        Data d64 = Topology.RESIDUAL.data(enabled, N, 5);
        Data d32 = Topology.RESIDUAL.data(f32, N, 5);
        assertEquals(DataType.FLOAT, d32.features()[0].dataType());
        assertEquals(DataType.FLOAT, d32.labels()[0].dataType());
        f32.setParams(enabled.params().castTo(DataType.FLOAT));
        Map<String, INDArray> g64 = GraphReference.individualGradients(enabled, d64.features(), d64.labels());
        Map<String, INDArray> g32 = GraphReference.individualGradients(f32, d32.features(), d32.labels());
        g64.forEach((key, g) -> assertClose(g, g32.get(key), 1e-3, 1e-4, "float32 vs float64 " + key));

        // the brute force works in float64 on any graph: a float32 graph gives the GGN of its (float32-rounded)
        // parameters, as the float64 graph holding the same values does
        enabled.setParams(f32.params().castTo(DataType.DOUBLE));
        Map<String, INDArray> ggn64 = GraphBruteForce.diagGgn(GraphBruteForce.jacobians(enabled, d64.features()));
        Map<String, INDArray> ggn32 = GraphBruteForce.diagGgn(GraphBruteForce.jacobians(f32, d64.features()));
        ggn64.forEach((key, v) -> assertClose(v, ggn32.get(key), 1e-12, 1e-15, "GGN of a float32 graph " + key));
    }

    // ---------------------------------------------------------------- Jacobians

    @ParameterizedTest(name = "{0}")
    @MethodSource("graphCases")
    void jacobiansReproduceTheGradientByTheChainRule(GraphCase c) {
        ComputationGraph graph = c.graph.get();
        Data d = c.data(graph);
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, d.features());
        Map<String, INDArray> dl4j = GraphBruteForce.gradientSum(graph.clone(), d.features(), d.labels());
        Map<String, INDArray> chain = GraphBruteForce.chainRuleGradient(jac, d.labels());
        assertEquals(dl4j.keySet(), chain.keySet(), "keys");
        dl4j.forEach((key, g) -> assertClose(g, chain.get(key), 1e-9, 1e-12, c.name + ": Σ J_nᵀ ∇ℓ_n " + key));

        // the pre-activation of each output's own bias: ∂z/∂b = I; the other outputs' parameters: zero rows
        for (int k = 0; k < jac.outputCount(); k++) {
            for (String output : jac.outputs) {
                String bias = output + "_b";
                for (int i = 0; i < N; i++) {
                    INDArray j = jac.j.get(k).get(i).get(bias);
                    INDArray expected = output.equals(jac.outputs.get(k)) ? Nd4j.eye(j.rows()).castTo(DataType.DOUBLE)
                            : Nd4j.zeros(DataType.DOUBLE, j.rows(), j.columns());
                    assertClose(expected, j, 0, 1e-12, c.name + ": ∂z_" + jac.outputs.get(k) + "/∂" + bias);
                }
            }
        }
        Map<String, INDArray> diag = GraphBruteForce.diagGgn(jac);
        for (String key : jac.shapes.keySet()) {
            INDArray block = GraphBruteForce.ggnBlock(jac, key);
            assertClose(diag.get(key).dup('c').reshape(diag.get(key).length()), Nd4j.diag(block).reshape(block.rows()),
                    1e-12, 1e-15, c.name + ": diag of the GGN block " + key);
            assertClose(block, block.transpose(), 1e-12, 1e-15, c.name + ": GGN block symmetric " + key);
        }
    }

    @Test
    void multiOutputGgnIsTheSumOfThePerOutputTerms() {
        ComputationGraph graph = GraphNets.multiOutput();
        Data d = Topology.MULTI_OUTPUT.data(graph, N, 3);
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, d.features());
        assertEquals(List.of("outClass", "outReg"), jac.outputs);
        assertEquals(List.of(Loss.MCXENT, Loss.MSE), jac.losses);
        Map<String, INDArray> all = GraphBruteForce.batchDiagGgn(jac);
        Map<String, INDArray> cls = GraphBruteForce.batchDiagGgn(jac, jac.output("outClass"));
        Map<String, INDArray> reg = GraphBruteForce.batchDiagGgn(jac, jac.output("outReg"));
        for (String key : all.keySet()) {
            assertClose(all.get(key), cls.get(key).add(reg.get(key)), 1e-14, 0, key);
        }
        // each head's parameters only see their own loss
        assertEquals(0.0, cls.get("outReg_W").amaxNumber().doubleValue());
        assertEquals(0.0, reg.get("outClass_W").amaxNumber().doubleValue());
        // the MSE head: diag(Jᵀ (2/C) I J)/N with ∂z_c/∂b_c = 1 gives (2/C)/N per example for outReg_b
        assertClose(Nd4j.valueArrayOf(new long[] {N, 2}, 2.0 / 2 / N, DataType.DOUBLE), all.get("outReg_b"), 1e-14, 0,
                "outReg_b");
    }

    // ---------------------------------------------------------------- chain graphs = MultiLayerNetwork references

    @ParameterizedTest(name = "{0}")
    @MethodSource("chains")
    void chainGraphReferencesEqualTheNetworkReferences(Chain c) {
        ComputationGraph graph = c.graph();
        MultiLayerNetwork net = GraphNets.chainNetwork(graph, c.input);
        Data d = GraphNets.data(graph, N, 21, c.input);
        INDArray x = d.features()[0];
        INDArray y = d.labels()[0];
        // identical networks
        assertEquals(graph.numParams(), net.numParams());
        assertClose(net.output(x, false), graph.output(false, x)[0], 1e-14, 0, c.name + ": outputs");
        for (String key : net.paramTable().keySet()) {
            assertClose(net.getParam(key), graph.getParam(GraphNets.graphKey(key)), 0, 0, "parameter " + key);
            assertEquals(key, GraphNets.networkKey(GraphNets.graphKey(key)));
        }

        // first order
        Map<String, INDArray> gGraph = GraphReference.individualGradients(graph, d.features(), d.labels());
        Map<String, INDArray> gNet = Reference.individualGradients(net, x, y);
        assertEquals(gNet.size(), gGraph.size(), "keys");
        gNet.forEach((key, g) -> assertClose(g, gGraph.get(GraphNets.graphKey(key)), 1e-12, 1e-15,
                c.name + ": individual gradients " + key));

        // GGN: the graph's Jacobians vs BruteForce's on the network equivalent to the Jacobian graph
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, d.features());
        MultiLayerNetwork jacobianNet = GraphNets.chainNetwork(GraphBruteForce.jacobianGraph(graph), c.input);
        BruteForce.Jacobians netJac = BruteForce.jacobians(jacobianNet, x);
        Loss loss = jac.losses.get(0);
        Map<String, INDArray> ggnGraph = GraphBruteForce.batchDiagGgn(jac);
        Map<String, INDArray> ggnNet = BruteForce.batchDiagGgn(netJac, loss);
        ggnNet.forEach((key, v) -> assertClose(v, ggnGraph.get(GraphNets.graphKey(key)), 1e-12, 1e-15,
                c.name + ": batch GGN diagonal " + key));
        for (String key : ggnNet.keySet()) {
            assertClose(BruteForceKronecker.ggnBlock(netJac, loss, key),
                    GraphBruteForce.ggnBlock(jac, GraphNets.graphKey(key)), 1e-12, 1e-15, c.name + ": GGN block " + key);
        }

        // Hessian diagonal by finite differences
        HessianDiagonals fdGraph = GraphBruteForce.finiteDifferenceHessian(graph, d.features(), d.labels(), FD_STEP);
        HessianDiagonals fdNet = BruteForce.finiteDifferenceHessian(net.clone(), x, y, FD_STEP);
        fdNet.batch.forEach((key, v) -> assertClose(v, fdGraph.batch.get(GraphNets.graphKey(key)), 1e-8, 1e-10,
                c.name + ": FD Hessian diagonal " + key));
        fdNet.perExample.forEach((key, v) -> assertClose(v, fdGraph.perExample.get(GraphNets.graphKey(key)), 1e-8,
                1e-10, c.name + ": FD per-example Hessian diagonal " + key));
    }

    // ---------------------------------------------------------------- GGN = Hessian

    /** Graphs whose outputs are, locally, linear in every single parameter: Hessian diagonal = GGN diagonal. */
    static Stream<GraphCase> piecewiseLinearCases() {
        return Stream.of(
                new GraphCase("single output layer / identity-mse", () -> GraphNets.chain(InputType.feedForward(3),
                        output(LossFunction.MSE, Activation.IDENTITY, 2)), new InputType[] {InputType.feedForward(3)}),
                new GraphCase("chain relu relu / identity-mse", () -> GraphNets.chain(InputType.feedForward(3),
                        dense(4, Activation.RELU), dense(4, Activation.RELU),
                        output(LossFunction.MSE, Activation.IDENTITY, 2)),
                        new InputType[] {InputType.feedForward(3)}),
                new GraphCase("relu residual, two inputs, two outputs (mse, softmax-mcxent)",
                        GraphReferenceSelfTest::reluTwoHeads,
                        new InputType[] {InputType.feedForward(3), InputType.feedForward(2)}));
    }

    /**
     * {@code inA (3) → h (relu 4)}, {@code inB (2) → g (identity 2)}, {@code r = relu 4 (h)},
     * {@code add = h + r}, {@code merge = [add, g]} → {@code outReg (identity + MSE, 2)}; {@code h →
     * outClass (softmax + MCXENT, 3)}.
     */
    static ComputationGraph reluTwoHeads() {
        return GraphNets.init(GraphNets.builder(DataType.DOUBLE, WorkspaceMode.ENABLED, 99)
                .addInputs("inA", "inB")
                .addLayer("h", dense(4, Activation.RELU), "inA")
                .addLayer("g", dense(2, Activation.IDENTITY), "inB")
                .addLayer("r", dense(4, Activation.RELU), "h")
                .addVertex("add", new ElementWiseVertex(ElementWiseVertex.Op.Add), "h", "r")
                .addVertex("merge", new MergeVertex(), "add", "g")
                .addLayer("outReg", output(LossFunction.MSE, Activation.IDENTITY, 2), "merge")
                .addLayer("outClass", output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "h")
                .setOutputs("outReg", "outClass")
                .setInputTypes(InputType.feedForward(3), InputType.feedForward(2)), 99);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("piecewiseLinearCases")
    void ggnDiagonalEqualsFiniteDifferenceHessianForPiecewiseLinearGraphs(GraphCase c) {
        ComputationGraph graph = c.graph.get();
        Data d = c.data(graph);
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, d.features());
        Map<String, INDArray> batchGgn = GraphBruteForce.batchDiagGgn(jac);
        Map<String, INDArray> ggn = GraphBruteForce.diagGgn(jac);
        HessianDiagonals fd = GraphBruteForce.finiteDifferenceHessian(graph, d.features(), d.labels(), FD_STEP);
        assertEquals(ggn.keySet(), fd.batch.keySet(), "keys");
        for (String key : ggn.keySet()) {
            assertClose(fd.batch.get(key), fd.perExample.get(key).sum(0), 1e-6, 1e-8,
                    c.name + ": Σ_n per-example FD = batch FD " + key);
            assertClose(fd.batch.get(key), ggn.get(key), FD_RTOL, FD_ATOL, c.name + ": GGN vs FD Hessian " + key);
            assertClose(fd.perExample.get(key), batchGgn.get(key), FD_RTOL, FD_ATOL,
                    c.name + ": per-example GGN vs FD Hessian " + key);
        }
    }

    // ---------------------------------------------------------------- score

    @Test
    void multiOutputScoreIsTheSumOfThePerOutputMeanLosses() {
        ComputationGraph graph = GraphNets.multiOutput();
        Data d = Topology.MULTI_OUTPUT.data(graph, N, 11);
        double score = GraphReference.score(graph, d.features(), d.labels());
        INDArray[] out = graph.output(false, d.features());
        double[][] p = out[0].toDoubleMatrix();
        double[][] yc = d.labels()[0].toDoubleMatrix();
        double[][] r = out[1].toDoubleMatrix();
        double[][] yr = d.labels()[1].toDoubleMatrix();
        double xent = 0;
        double mse = 0;
        for (int n = 0; n < N; n++) {
            for (int c = 0; c < p[n].length; c++) {
                xent -= yc[n][c] * Math.log(p[n][c]) / N;
            }
            for (int c = 0; c < r[n].length; c++) {
                mse += (r[n][c] - yr[n][c]) * (r[n][c] - yr[n][c]) / r[n].length / N;
            }
        }
        assertEquals(xent + mse, score, 1e-12 * Math.abs(score), "L = mean MCXENT + mean MSE");

        // and from the pre-activations with the explicit softmax
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, d.features());
        double fromZ = 0;
        for (int n = 0; n < N; n++) {
            double[] softmax = BruteForce.softmax(jac.z[0][n]);
            for (int c = 0; c < softmax.length; c++) {
                fromZ -= yc[n][c] * Math.log(softmax[c]) / N;
                assertEquals(p[n][c], softmax[c], 1e-14, "softmax(z) is DL4J's output");
            }
            for (int c = 0; c < jac.z[1][n].length; c++) {
                fromZ += Math.pow(jac.z[1][n][c] - yr[n][c], 2) / jac.z[1][n].length / N;
                assertEquals(r[n][c], jac.z[1][n][c], 1e-14, "identity output is z");
            }
        }
        assertEquals(fromZ, score, 1e-12 * Math.abs(score), "L from z");
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(Topology.class)
    void dataHaveTheShapesTheGraphsTake(Topology t) {
        ComputationGraph graph = t.build();
        Data d = t.data(graph, 3, 1);
        assertEquals(graph.getConfiguration().getNetworkInputs().size(), d.features().length);
        assertEquals(graph.getConfiguration().getNetworkOutputs().size(), d.labels().length);
        INDArray[] out = graph.output(false, d.features());
        for (int k = 0; k < out.length; k++) {
            assertEquals(List.of(out[k].shape()[0], out[k].shape()[1]),
                    List.of(d.labels()[k].shape()[0], d.labels()[k].shape()[1]), "labels " + k);
            Loss loss = GraphBruteForce.loss(graph, graph.getConfiguration().getNetworkOutputs().get(k));
            if (loss == Loss.MCXENT) {
                assertClose(Nd4j.ones(DataType.DOUBLE, 3), d.labels()[k].sum(1), 0, 0, "one-hot");
            }
        }
        // the same seed gives the same data
        Data again = t.data(graph, 3, 1);
        for (int i = 0; i < d.features().length; i++) {
            assertClose(d.features()[i], again.features()[i], 0, 0, "reproducible");
        }
    }
}
