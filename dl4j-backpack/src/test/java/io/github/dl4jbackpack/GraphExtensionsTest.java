// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.GraphNets.Topology;
import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagGGNMC;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;

import static io.github.dl4jbackpack.GraphNets.dense;
import static io.github.dl4jbackpack.GraphNets.output;
import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every extension on ComputationGraphs (residual, Inception-like, multi-input, multi-output and a
 * graph of every supported vertex), float64, against independent references: a loop of
 * single-example passes through DL4J ({@link GraphReference}), explicit per-output Jacobians and
 * finite-difference Hessians ({@link GraphBruteForce}); a chain-shaped graph against the same network
 * as a MultiLayerNetwork; float32 against float64.
 */
class GraphExtensionsTest {

    private static final int N = 4;

    private static Map<String, INDArray> values(Quantities q, Class<? extends Extension<INDArray>> e) {
        Map<String, INDArray> out = new java.util.LinkedHashMap<>();
        for (String key : q.keys(e)) {
            out.put(key, q.byKey(e, key));
        }
        return out;
    }

    private static void assertAllClose(Map<String, INDArray> expected, Map<String, INDArray> actual, double rtol,
                                       double atol, String what) {
        assertEquals(new TreeSet<>(expected.keySet()), new TreeSet<>(actual.keySet()), what + ": parameters");
        for (String key : expected.keySet()) {
            assertClose(expected.get(key), actual.get(key), rtol, atol, what + " " + key);
        }
    }

    @ParameterizedTest
    @EnumSource(Topology.class)
    void firstOrderEqualsTheLoopOfSingleExamplePasses(Topology topology) {
        for (WorkspaceMode mode : new WorkspaceMode[] {WorkspaceMode.ENABLED, WorkspaceMode.NONE}) {
            ComputationGraph graph = topology.build(DataType.DOUBLE, mode, 11);
            GraphNets.Data data = topology.data(graph, N, 3);
            Map<String, INDArray> g = GraphReference.individualGradients(graph, data.features(), data.labels());
            Quantities q = BackPackNetwork.extend(graph).backward(data.features(), data.labels(), new BatchGrad(),
                    new BatchL2Grad(), new SumGradSquared(), new Variance(), new BatchDotGrad());
            String c = topology + " " + mode;
            assertAllClose(g, values(q, BatchGrad.class), 1e-10, 1e-13, c + " BatchGrad");
            assertAllClose(GraphReference.squaredNorms(g), values(q, BatchL2Grad.class), 1e-9, 1e-13, c + " BatchL2Grad");
            assertAllClose(GraphReference.sumGradSquared(g), values(q, SumGradSquared.class), 1e-9, 1e-13, c + " SGS");
            assertAllClose(GraphReference.variance(g), values(q, Variance.class), 1e-8, 1e-12, c + " Variance");
            assertAllClose(GraphReference.dots(g), values(q, BatchDotGrad.class), 1e-9, 1e-13, c + " BatchDotGrad");
            assertEquals(GraphReference.score(graph, data.features(), data.labels()), q.score(), 1e-12, c + " score");
        }
    }

    @ParameterizedTest
    @EnumSource(Topology.class)
    void ggnDiagonalEqualsExplicitJacobians(Topology topology) {
        ComputationGraph graph = topology.build(DataType.DOUBLE, WorkspaceMode.ENABLED, 5);
        GraphNets.Data data = topology.data(graph, 3, 8);
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, data.features());
        Quantities q = BackPackNetwork.extend(graph).backward(data.features(), data.labels(), new DiagGGNExact(),
                new BatchDiagGGNExact());
        assertAllClose(GraphBruteForce.diagGgn(jac), values(q, DiagGGNExact.class), 1e-9, 1e-13,
                topology + " DiagGGNExact");
        assertAllClose(GraphBruteForce.batchDiagGgn(jac), values(q, BatchDiagGGNExact.class), 1e-9, 1e-13,
                topology + " BatchDiagGGNExact");
    }

    @ParameterizedTest
    @EnumSource(Topology.class)
    void hessianDiagonalEqualsFiniteDifferences(Topology topology) {
        ComputationGraph graph = topology.build(DataType.DOUBLE, WorkspaceMode.ENABLED, 6);
        GraphNets.Data data = topology.data(graph, 2, 9);
        var fd = GraphBruteForce.finiteDifferenceHessian(graph, data.features(), data.labels(), 1e-4);
        Quantities q = BackPackNetwork.extend(graph).backward(data.features(), data.labels(), new DiagHessian(),
                new BatchDiagHessian());
        assertAllClose(fd.batch, values(q, DiagHessian.class), 1e-5, 1e-7, topology + " DiagHessian");
        assertAllClose(fd.perExample, values(q, BatchDiagHessian.class), 1e-5, 1e-7, topology + " BatchDiagHessian");
    }

    @Test
    void hessianThroughAProductOfThreeInputsIsRefusedTheGgnGoesThrough() {
        org.deeplearning4j.nn.conf.ComputationGraphConfiguration.GraphBuilder b = GraphNets.builder(DataType.DOUBLE,
                WorkspaceMode.ENABLED, 3)
                .addInputs("in")
                .addLayer("a", dense(3, Activation.TANH), "in")
                .addLayer("b", dense(3, Activation.SIGMOID), "in")
                .addVertex("abc", new org.deeplearning4j.nn.conf.graph.ElementWiseVertex(
                        org.deeplearning4j.nn.conf.graph.ElementWiseVertex.Op.Product), "a", "b", "a")
                .addLayer("out", output(LossFunction.MSE, Activation.IDENTITY, 2), "abc")
                .setOutputs("out")
                .setInputTypes(InputType.feedForward(3));
        ComputationGraph graph = GraphNets.init(b, 3);
        INDArray[] x = GraphNets.features(DataType.DOUBLE, 3, 4, InputType.feedForward(3));
        INDArray[] y = GraphNets.labels(graph, 3, 5);
        INDArray before = graph.params().dup();
        BackPackNetwork bp = BackPackNetwork.extend(graph);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> bp.backward(x, y, new DiagHessian()));
        assertEquals(List.of("abc"), e.parts().stream().map(UnsupportedLayerException.Part::layer)
                .collect(Collectors.toList()), e.getMessage());
        assertEquals(before, graph.params(), "refused before anything ran");
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, x);
        Quantities q = bp.backward(x, y, new DiagGGNExact());
        assertAllClose(GraphBruteForce.diagGgn(jac), values(q, DiagGGNExact.class), 1e-9, 1e-13, "three-way product");
    }

    /** {@code a ⊙ b} of two branches and {@code c ⊙ c} of one: the Product residual couples the inputs. */
    static ComputationGraph products(WorkspaceMode mode) {
        org.deeplearning4j.nn.conf.ComputationGraphConfiguration.GraphBuilder b = GraphNets.builder(DataType.DOUBLE,
                mode, 3)
                .addInputs("in")
                .addLayer("a", dense(4, Activation.TANH), "in")
                .addLayer("b", dense(4, Activation.SIGMOID), "in")
                .addVertex("ab", new org.deeplearning4j.nn.conf.graph.ElementWiseVertex(
                        org.deeplearning4j.nn.conf.graph.ElementWiseVertex.Op.Product), "a", "b")
                .addLayer("c", dense(3, Activation.IDENTITY), "ab")
                .addVertex("cc", new org.deeplearning4j.nn.conf.graph.ElementWiseVertex(
                        org.deeplearning4j.nn.conf.graph.ElementWiseVertex.Op.Product), "c", "c")
                .addVertex("sum", new org.deeplearning4j.nn.conf.graph.ElementWiseVertex(
                        org.deeplearning4j.nn.conf.graph.ElementWiseVertex.Op.Add), "cc", "c")
                .addLayer("out", output(LossFunction.MSE, Activation.IDENTITY, 2), "sum")
                .setOutputs("out")
                .setInputTypes(InputType.feedForward(3));
        return GraphNets.init(b, 3);
    }

    @Test
    void hessianDiagonalThroughProductVerticesEqualsFiniteDifferences() {
        for (WorkspaceMode mode : new WorkspaceMode[] {WorkspaceMode.ENABLED, WorkspaceMode.NONE}) {
            ComputationGraph graph = products(mode);
            INDArray[] x = GraphNets.features(DataType.DOUBLE, 3, 4, InputType.feedForward(3));
            INDArray[] y = GraphNets.labels(graph, 3, 5);
            var fd = GraphBruteForce.finiteDifferenceHessian(graph, x, y, 1e-4);
            Quantities q = BackPackNetwork.extend(graph).backward(x, y, new DiagHessian(), new BatchDiagHessian(),
                    new DiagGGNExact());
            assertAllClose(fd.batch, values(q, DiagHessian.class), 1e-5, 1e-7, mode + " DiagHessian");
            assertAllClose(fd.perExample, values(q, BatchDiagHessian.class), 1e-5, 1e-7, mode + " BatchDiagHessian");
            GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, x);
            assertAllClose(GraphBruteForce.diagGgn(jac), values(q, DiagGGNExact.class), 1e-9, 1e-13,
                    mode + " DiagGGNExact");
        }
    }

    @Test
    void layersThatSeeAStackedBatchSumTheirCopiesInFirstAndSecondOrder() {
        ComputationGraph graph = GraphNets.stacked();
        GraphNets.Data data = GraphNets.data(graph, 4, 1, GraphNets.VERTEX_ZOO_INPUTS);
        Map<String, INDArray> g = GraphReference.individualGradients(graph, data.features(), data.labels());
        BackPackNetwork bp = BackPackNetwork.extend(graph);
        Quantities q = bp.backward(data.features(), data.labels(), new BatchGrad(), new BatchL2Grad(),
                new SumGradSquared(), new Variance(), new BatchDotGrad());
        assertAllClose(g, values(q, BatchGrad.class), 1e-10, 1e-13, "stacked BatchGrad");
        assertAllClose(GraphReference.squaredNorms(g), values(q, BatchL2Grad.class), 1e-9, 1e-13, "stacked BatchL2Grad");
        assertAllClose(GraphReference.sumGradSquared(g), values(q, SumGradSquared.class), 1e-9, 1e-13, "stacked SGS");
        assertAllClose(GraphReference.variance(g), values(q, Variance.class), 1e-8, 1e-12, "stacked Variance");
        assertAllClose(GraphReference.dots(g), values(q, BatchDotGrad.class), 1e-9, 1e-13, "stacked BatchDotGrad");
        // the weighted sums alone (no individual gradients formed): each example's weight reaches both its copies
        Quantities sums = bp.backward(data.features(), data.labels(), new WeightedGradientSum());
        INDArray weights = Reference.testWeights(data.features()[0].size(0));
        for (String key : g.keySet()) {
            Reference.assertClose(Reference.weightedSum(g.get(key), weights),
                    sums.byKey(WeightedGradientSum.class, key).of(weights), 1e-10, 1e-13, "stacked weighted sum " + key);
        }
        // second order: an example's columns reach both copies, summed before squaring at the shared layer
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, data.features());
        var fd = GraphBruteForce.finiteDifferenceHessian(graph, data.features(), data.labels(), 1e-4);
        Quantities curvature = bp.backward(data.features(), data.labels(), new DiagGGNExact(), new DiagGGNMC(),
                new DiagHessian(), new BatchDiagGGNExact(), new BatchDiagHessian());
        assertAllClose(GraphBruteForce.diagGgn(jac), values(curvature, DiagGGNExact.class), 1e-9, 1e-13,
                "stacked DiagGGNExact");
        assertAllClose(GraphBruteForce.batchDiagGgn(jac), values(curvature, BatchDiagGGNExact.class), 1e-9, 1e-13,
                "stacked BatchDiagGGNExact");
        assertAllClose(fd.batch, values(curvature, DiagHessian.class), 1e-5, 1e-7, "stacked DiagHessian");
        assertAllClose(fd.perExample, values(curvature, BatchDiagHessian.class), 1e-5, 1e-7,
                "stacked BatchDiagHessian");
        // KFLR with the convolution convention over an example's copies: the bias factor is the exact GGN
        // block of the shared bias; the input factor sums an example's rows, divided by N
        Quantities kflr = bp.backward(data.features(), data.labels(), new KFLR());
        KroneckerFactors bias = kflr.byKey(KFLR.class, "shared_b");
        assertAllClose(Map.of("b", GraphBruteForce.ggnBlock(jac, "shared_b")), Map.of("b", bias.factors().get(0)),
                1e-9, 1e-13, "stacked KFLR bias block");
        INDArray stacked = graph.feedForward(data.features(), true).get("stack").castTo(DataType.DOUBLE);
        long n = data.features()[0].size(0);
        INDArray inputFactor = stacked.transpose().mmul(stacked).divi(n);
        assertAllClose(Map.of("A", inputFactor), Map.of("A", kflr.byKey(KFLR.class, "shared_W").inputFactor().orElseThrow()),
                1e-9, 1e-13, "stacked KFLR input factor");
        // KFRA is refused, naming the stacked layer and the unstacking
        UnsupportedLayerException second = assertThrows(UnsupportedLayerException.class,
                () -> bp.backward(data.features(), data.labels(), new BatchGrad(), new KFRA()));
        Set<String> named = second.parts().stream().map(UnsupportedLayerException.Part::layer)
                .collect(Collectors.toSet());
        assertEquals(Set.of("shared", "unstack0", "unstack1"), named, second.getMessage());
        assertTrue(second.getMessage().contains("stacked 2 times"), second.getMessage());
        assertTrue(bp.enabled().isEmpty());
    }

    /**
     * A convolution over a stacked batch (its kind sums the rows' individual gradients, not an over-time product as
     * the dense layer does): every first-order quantity, and the weighted sums with each example's weight reaching
     * both its copies.
     */
    @Test
    void convolutionOverAStackedBatchSumsItsCopies() {
        InputType image = InputType.convolutional(5, 5, 1);
        ComputationGraph graph = GraphNets.init(GraphNets.builder(DataType.DOUBLE, WorkspaceMode.ENABLED, 3)
                .addInputs("in")
                .addLayer("a", new ConvolutionLayer.Builder(3, 3).convolutionMode(ConvolutionMode.Same).nOut(1)
                        .activation(Activation.TANH).build(), "in")
                .addVertex("stack", new org.deeplearning4j.nn.conf.graph.StackVertex(), "a", "in")
                .addLayer("shared", new ConvolutionLayer.Builder(2, 2).nOut(2).activation(Activation.TANH).build(),
                        "stack")
                .addVertex("unstack0", new org.deeplearning4j.nn.conf.graph.UnstackVertex(0, 2), "shared")
                .addVertex("unstack1", new org.deeplearning4j.nn.conf.graph.UnstackVertex(1, 2), "shared")
                .addVertex("merge", new org.deeplearning4j.nn.conf.graph.MergeVertex(), "unstack0", "unstack1")
                .addLayer("out", GraphNets.output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "merge")
                .setOutputs("out")
                .setInputTypes(image), 3);
        GraphNets.Data data = GraphNets.data(graph, 4, 5, image);
        Map<String, INDArray> g = GraphReference.individualGradients(graph, data.features(), data.labels());
        BackPackNetwork bp = BackPackNetwork.extend(graph);
        Quantities q = bp.backward(data.features(), data.labels(), new BatchGrad(), new BatchL2Grad(),
                new SumGradSquared(), new Variance(), new BatchDotGrad());
        assertAllClose(g, values(q, BatchGrad.class), 1e-10, 1e-13, "stacked BatchGrad");
        assertAllClose(GraphReference.squaredNorms(g), values(q, BatchL2Grad.class), 1e-9, 1e-13, "stacked BatchL2Grad");
        assertAllClose(GraphReference.variance(g), values(q, Variance.class), 1e-8, 1e-12, "stacked Variance");
        Quantities sums = bp.backward(data.features(), data.labels(), new WeightedGradientSum());
        INDArray weights = Reference.testWeights(4);
        for (String key : g.keySet()) {
            Reference.assertClose(Reference.weightedSum(g.get(key), weights),
                    sums.byKey(WeightedGradientSum.class, key).of(weights), 1e-10, 1e-13, "stacked weighted sum " + key);
        }
    }

    @Test
    void stackedGraphsInFloat32AgreeWithFloat64() {
        ComputationGraph doubles = GraphNets.stacked();
        ComputationGraph floats = doubles.convertDataType(DataType.FLOAT);
        GraphNets.Data data = GraphNets.data(doubles, 4, 1, GraphNets.VERTEX_ZOO_INPUTS);
        INDArray[] x32 = new INDArray[data.features().length];
        for (int i = 0; i < x32.length; i++) {
            x32[i] = data.features()[i].castTo(DataType.FLOAT);
        }
        INDArray[] y32 = new INDArray[data.labels().length];
        for (int i = 0; i < y32.length; i++) {
            y32[i] = data.labels()[i].castTo(DataType.FLOAT);
        }
        Quantities q64 = BackPackNetwork.extend(doubles).backward(data.features(), data.labels(), new DiagGGNExact(),
                new BatchDiagHessian());
        Quantities q32 = BackPackNetwork.extend(floats).backward(x32, y32, new DiagGGNExact(), new BatchDiagHessian());
        assertAllClose(values(q64, DiagGGNExact.class), values(q32, DiagGGNExact.class), 1e-3, 1e-4, "float32 GGN");
        assertAllClose(values(q64, BatchDiagHessian.class), values(q32, BatchDiagHessian.class), 1e-3, 1e-4,
                "float32 per-example Hessian");
    }

    /** Two towers sharing their weights (a siamese graph), compared by a Product vertex, with a nonlinear head. */
    @Test
    void siameseTowersGetTheGgnAndHessianOfTheirSharedWeights() {
        ComputationGraph graph = GraphNets.init(GraphNets.builder(DataType.DOUBLE, WorkspaceMode.ENABLED,
                        GraphNets.DEFAULT_SEED)
                .addInputs("left", "right")
                .addVertex("stack", new org.deeplearning4j.nn.conf.graph.StackVertex(), "left", "right")
                .addLayer("tower1", GraphNets.dense(5, Activation.TANH), "stack")
                .addLayer("tower2", GraphNets.dense(3, Activation.SIGMOID), "tower1")
                .addVertex("u0", new org.deeplearning4j.nn.conf.graph.UnstackVertex(0, 2), "tower2")
                .addVertex("u1", new org.deeplearning4j.nn.conf.graph.UnstackVertex(1, 2), "tower2")
                .addVertex("diff", new org.deeplearning4j.nn.conf.graph.ElementWiseVertex(
                        org.deeplearning4j.nn.conf.graph.ElementWiseVertex.Op.Product), "u0", "u1")
                .addLayer("out", new org.deeplearning4j.nn.conf.layers.OutputLayer.Builder(LossFunction.XENT)
                        .activation(Activation.SIGMOID).nOut(2).build(), "diff")
                .setOutputs("out")
                .setInputTypes(InputType.feedForward(4), InputType.feedForward(4)), GraphNets.DEFAULT_SEED);
        INDArray[] x = GraphNets.features(DataType.DOUBLE, 5, 4, InputType.feedForward(4), InputType.feedForward(4));
        INDArray[] y = GraphNets.labels(graph, 5, 4);
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, x);
        var fd = GraphBruteForce.finiteDifferenceHessian(graph, x, y, 1e-4);
        Quantities q = BackPackNetwork.extend(graph).backward(x, y, new DiagGGNExact(), new DiagHessian(),
                new BatchDiagGGNExact(), new BatchDiagHessian());
        assertAllClose(GraphBruteForce.diagGgn(jac), values(q, DiagGGNExact.class), 1e-9, 1e-13, "siamese GGN");
        assertAllClose(GraphBruteForce.batchDiagGgn(jac), values(q, BatchDiagGGNExact.class), 1e-9, 1e-13,
                "siamese per-example GGN");
        assertAllClose(fd.batch, values(q, DiagHessian.class), 1e-5, 1e-7, "siamese Hessian");
        assertAllClose(fd.perExample, values(q, BatchDiagHessian.class), 1e-5, 1e-7, "siamese per-example Hessian");
    }

    @ParameterizedTest
    @EnumSource(Topology.class)
    void kflrOfOneExampleIsTheExactGgnBlockOfDenseWeightsAndBiases(Topology topology) {
        ComputationGraph graph = topology.build(DataType.DOUBLE, WorkspaceMode.ENABLED, 2);
        GraphNets.Data data = topology.data(graph, 1, 4);
        GraphBruteForce.Jacobians jac = GraphBruteForce.jacobians(graph, data.features());
        Quantities q = BackPackNetwork.extend(graph).backward(data.features(), data.labels(), new KFLR());
        for (String key : q.keys(KFLR.class)) {
            KroneckerFactors k = q.byKey(KFLR.class, key);
            boolean convolutionWeight = !k.inputSideFirst() && k.inputFactor().isPresent();
            if (convolutionWeight) {
                continue; // a convolution's A sums over positions: exact only for the bias
            }
            assertClose(GraphBruteForce.ggnBlock(jac, key), k.toMatrix(), 1e-9, 1e-13, topology + " KFLR " + key);
        }
    }

    @ParameterizedTest
    @EnumSource(value = Topology.class, names = {"INCEPTION", "MULTI_INPUT"})
    void kfraOfOneExampleEqualsKflrWhereEveryNodeHasOneConsumer(Topology topology) {
        ComputationGraph graph = topology.build(DataType.DOUBLE, WorkspaceMode.ENABLED, 2);
        GraphNets.Data data = topology.data(graph, 1, 4);
        Quantities q = BackPackNetwork.extend(graph).backward(data.features(), data.labels(), new KFLR(), new KFRA());
        for (String key : q.keys(KFLR.class)) {
            KroneckerFactors exact = q.byKey(KFLR.class, key);
            KroneckerFactors averaged = q.byKey(KFRA.class, key);
            assertClose(exact.outputFactor(), averaged.outputFactor(), 1e-9, 1e-13, topology + " KFRA B " + key);
        }
    }

    @ParameterizedTest
    @EnumSource(value = Topology.class, names = {"RESIDUAL", "MULTI_OUTPUT"})
    void kfraIsRefusedAtFanOut(Topology topology) {
        ComputationGraph graph = topology.build();
        GraphNets.Data data = topology.data(graph, 2, 4);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(graph).backward(data.features(), data.labels(), new KFRA()));
        assertTrue(e.getMessage().contains("consumers"), e.getMessage());
        assertTrue(e.getMessage().contains("KFLR or KFAC"), e.getMessage());
    }

    static Layer[][] chains() {
        return new Layer[][] {
            {dense(5, Activation.TANH), dense(4, Activation.SIGMOID), output(LossFunction.MCXENT, Activation.SOFTMAX, 3)},
            {new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.TANH).build(),
                new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                new ConvolutionLayer.Builder(2, 2).nOut(2).convolutionMode(ConvolutionMode.Same)
                        .activation(Activation.IDENTITY).build(),
                new ActivationLayer.Builder().activation(Activation.SOFTPLUS).build(),
                output(LossFunction.MSE, Activation.IDENTITY, 2)},
        };
    }

    @Test
    void chainGraphGivesWhatTheSameMultiLayerNetworkGives() {
        InputType[] inputs = {InputType.feedForward(6), InputType.convolutional(7, 7, 2)};
        Layer[][] chains = chains();
        for (int c = 0; c < chains.length; c++) {
            ComputationGraph graph = GraphNets.chain(DataType.DOUBLE, WorkspaceMode.ENABLED, 21, inputs[c], chains[c]);
            MultiLayerNetwork net = GraphNets.chainNetwork(graph, inputs[c]);
            INDArray x = GraphNets.features(DataType.DOUBLE, N, 5, inputs[c])[0];
            INDArray y = GraphNets.labels(graph, N, 6)[0];
            BackPackNetwork g = BackPackNetwork.extend(graph);
            BackPackNetwork m = BackPackNetwork.extend(net);
            List<Extension<?>> all = List.of(new BatchGrad(), new BatchL2Grad(), new SumGradSquared(), new Variance(),
                    new BatchDotGrad(), new DiagGGNExact(), new BatchDiagGGNExact(), new DiagGGNMC(2),
                    new BatchDiagGGNMC(2), new DiagHessian(), new BatchDiagHessian(), new KFAC(2), new KFLR(),
                    new KFRA());
            TestNets.seed(77);
            Quantities qg = g.backward(x, y, all.toArray(new Extension<?>[0]));
            TestNets.seed(77);
            Quantities qm = m.backward(x, y, all.toArray(new Extension<?>[0]));
            assertEquals(qm.score(), qg.score(), 0.0, "score");
            for (Extension<?> e : all) {
                @SuppressWarnings("unchecked")
                Class<? extends Extension<?>> type = (Class<? extends Extension<?>>) e.getClass();
                assertEquals(qm.keys(type).stream().map(GraphNets::graphKey).collect(Collectors.toList()),
                        List.copyOf(qg.keys(type)), e.name() + " parameters");
                for (String key : qm.keys(type)) {
                    Object a = qm.byKey(cast(type), key);
                    Object b = qg.byKey(cast(type), GraphNets.graphKey(key));
                    if (a instanceof KroneckerFactors) {
                        List<INDArray> fa = ((KroneckerFactors) a).factors();
                        List<INDArray> fb = ((KroneckerFactors) b).factors();
                        assertEquals(fa.size(), fb.size());
                        for (int i = 0; i < fa.size(); i++) {
                            assertClose(fa.get(i), fb.get(i), 1e-12, 1e-15, "chain " + c + " " + e.name() + " " + key);
                        }
                    } else {
                        assertClose((INDArray) a, (INDArray) b, 1e-12, 1e-15, "chain " + c + " " + e.name() + " " + key);
                    }
                }
            }
        }
    }

    @SuppressWarnings("unchecked")
    private static <T> Class<? extends Extension<T>> cast(Class<? extends Extension<?>> type) {
        return (Class<? extends Extension<T>>) (Class<?>) type;
    }

    @ParameterizedTest
    @EnumSource(value = Topology.class, names = {"RESIDUAL", "INCEPTION", "MULTI_OUTPUT", "VERTEX_ZOO"})
    void float32IsWithinFloat32ToleranceOfFloat64(Topology topology) {
        ComputationGraph single = topology.build(DataType.FLOAT, WorkspaceMode.ENABLED, 31);
        ComputationGraph dbl = GraphBruteForce.float64(single);
        GraphNets.Data data = topology.data(dbl, N, 32);
        INDArray[] xf = cast(data.features(), DataType.FLOAT);
        INDArray[] yf = cast(data.labels(), DataType.FLOAT);
        Extension<?>[] ext = {new BatchGrad(), new Variance(), new BatchL2Grad(), new DiagGGNExact(), new KFLR()};
        Quantities qf = BackPackNetwork.extend(single).backward(xf, yf, ext);
        Quantities qd = BackPackNetwork.extend(dbl).backward(data.features(), data.labels(), ext);
        for (Class<? extends Extension<INDArray>> e : List.of(BatchGrad.class, Variance.class, BatchL2Grad.class,
                DiagGGNExact.class)) {
            for (String key : qd.keys(e)) {
                assertClose(qd.byKey(e, key), qf.byKey(e, key), 1e-3, 1e-4, topology + " float32 " + e.getSimpleName()
                        + " " + key);
            }
        }
    }

    private static INDArray[] cast(INDArray[] arrays, DataType type) {
        INDArray[] out = new INDArray[arrays.length];
        for (int i = 0; i < arrays.length; i++) {
            out[i] = arrays[i].castTo(type);
        }
        return out;
    }

    @Test
    void aGraphWhoseOutputIsNotALossLayerIsRefusedNamingIt() {
        org.deeplearning4j.nn.conf.ComputationGraphConfiguration.GraphBuilder b = GraphNets.builder(DataType.DOUBLE,
                WorkspaceMode.ENABLED, 1)
                .addInputs("in")
                .addLayer("hidden", dense(4, Activation.TANH), "in")
                .addLayer("out", output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "hidden")
                .addLayer("head", dense(2, Activation.IDENTITY), "hidden")
                .setOutputs("out", "head")
                .setInputTypes(InputType.feedForward(3));
        ComputationGraph graph = GraphNets.init(b, 1);
        INDArray params = graph.params().dup();
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(graph).enable(new BatchGrad(), new DiagGGNExact()));
        assertEquals(List.of("head"), e.parts().stream().map(UnsupportedLayerException.Part::layer)
                .collect(Collectors.toList()), e.getMessage());
        assertTrue(e.getMessage().contains("not an output or loss layer"), e.getMessage());
        assertEquals(params, graph.params());
    }

    @Test
    void mismatchedArraysAreRejectedBeforeTheGraphIsTouched() {
        ComputationGraph graph = Topology.MULTI_INPUT.build();
        GraphNets.Data data = Topology.MULTI_INPUT.data(graph, 3, 1);
        BackPackNetwork bp = BackPackNetwork.extend(graph);
        INDArray params = graph.params().dup();
        IllegalArgumentException inputs = assertThrows(IllegalArgumentException.class,
                () -> bp.backward(new INDArray[] {data.features()[0]}, data.labels(), new BatchGrad()));
        assertTrue(inputs.getMessage().contains("2 input(s) but 1"), inputs.getMessage());
        IllegalArgumentException labels = assertThrows(IllegalArgumentException.class,
                () -> bp.backward(data.features(), new INDArray[] {data.labels()[0], data.labels()[0]}, new BatchGrad()));
        assertTrue(labels.getMessage().contains("1 output(s) but 2"), labels.getMessage());
        IllegalArgumentException rows = assertThrows(IllegalArgumentException.class,
                () -> bp.backward(new INDArray[] {data.features()[0], data.features()[1].get(
                        org.nd4j.linalg.indexing.NDArrayIndex.interval(0, 2))}, data.labels(), new BatchGrad()));
        assertTrue(rows.getMessage().contains("2 examples"), rows.getMessage());
        IllegalArgumentException single = assertThrows(IllegalArgumentException.class,
                () -> bp.backward(data.features()[0], data.labels()[0], new BatchGrad()));
        assertTrue(single.getMessage().contains("2 input(s)"), single.getMessage());
        assertEquals(params, graph.params());
        Quantities q = bp.backward(data.features(), data.labels(), new BatchGrad());
        assertEquals(List.of("denseA", "denseB", "out"), List.copyOf(q.layerNames(BatchGrad.class)));
        IllegalStateException names = assertThrows(IllegalStateException.class, () -> q.layers(BatchGrad.class));
        assertTrue(names.getMessage().contains("layerNames"), names.getMessage());
    }
}
