// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.BruteForce.Loss;
import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Curvature extensions against brute-force references built from DL4J's own passes only
 * ({@link BruteForce}): the exact GGN diagonal (batch and per example) from per-example output
 * Jacobians, one DL4J backward pass per (example, output unit), and loss Hessians written out from
 * their formulas; the Hessian diagonal (batch and per example) from central finite differences of
 * DL4J's gradient; Hessian = GGN for piecewise-linear networks; float32 against the float64
 * references.
 */
class BruteForceCurvatureTest {

    /** GGN: float64 library vs float64 Jacobian reference (both exact up to rounding). */
    static final double GGN_RTOL = 1e-8;
    static final double GGN_ATOL = 1e-11;
    /** Hessian vs central differences with h = 1e-5 in float64. */
    static final double FD_STEP = 1e-5;
    static final double FD_RTOL = 1e-5;
    static final double FD_ATOL = 1e-7;
    /** float32 library vs float64 reference. */
    static final double F32_RTOL = 2e-3;
    static final double F32_ATOL = 1e-4;

    /** Finite-difference references by case name: the float32 test reuses those of the float64 test. */
    private static final Map<String, BruteForce.HessianDiagonals> FD_CACHE = new HashMap<>();

    /**
     * A test network: hidden layers (a fresh copy per build), then an output layer (an
     * {@link OutputLayer} or, if {@code lossLayer}, a {@link LossLayer}) with the given loss.
     */
    record Case(String name, InputType input, long[] featureShape, Loss loss, int nOut, boolean lossLayer,
                boolean outputBias, Supplier<Layer[]> hidden) {

        MultiLayerNetwork build(DataType dataType) {
            return build(dataType, WorkspaceMode.ENABLED);
        }

        MultiLayerNetwork build(DataType dataType, WorkspaceMode workspaces) {
            return TestNets.build(dataType, input, workspaces, 12345, layers(loss.function, loss.activation));
        }

        /**
         * @return a plain float64 network with the same parameters whose last layer is identity + L2:
         *     its output is the pre-activation z of {@code net}'s output layer
         */
        MultiLayerNetwork jacobianNetwork(MultiLayerNetwork net) {
            MultiLayerNetwork ref = TestNets.build(DataType.DOUBLE, input, layers(LossFunction.L2, Activation.IDENTITY));
            assertEquals(net.numParams(), ref.numParams(), "reference copy has the same parameters");
            ref.setParams(net.params().castTo(DataType.DOUBLE));
            return ref;
        }

        private Layer[] layers(LossFunction function, Activation activation) {
            List<Layer> layers = new ArrayList<>(Arrays.asList(hidden.get()));
            if (lossLayer) {
                layers.add(new LossLayer.Builder(function).activation(activation).build());
            } else {
                layers.add(new OutputLayer.Builder(function).activation(activation).nOut(nOut).hasBias(outputBias)
                        .build());
            }
            return layers.toArray(new Layer[0]);
        }

        INDArray features(DataType dataType) {
            return TestNets.features(dataType, 31, featureShape);
        }

        INDArray labels(DataType dataType) {
            return TestNets.labels(dataType, loss.function, 32, featureShape[0], nOut);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    // ---------------------------------------------------------------- case builders

    static DenseLayer dense(int nOut, Activation activation) {
        return new DenseLayer.Builder().nOut(nOut).activation(activation).build();
    }

    static ActivationLayer act(Activation activation) {
        return new ActivationLayer.Builder().activation(activation).build();
    }

    static ConvolutionLayer.Builder conv(int k, int nOut, Activation activation) {
        return new ConvolutionLayer.Builder(k, k).nOut(nOut).activation(activation);
    }

    static SubsamplingLayer.Builder pool(PoolingType type, int k, int s) {
        return new SubsamplingLayer.Builder(type).kernelSize(k, k).stride(s, s);
    }

    static Case mlp(String name, Loss loss, int nIn, int nOut, Supplier<Layer[]> hidden) {
        return new Case(name + " / " + loss, InputType.feedForward(nIn), new long[] {4, nIn}, loss, nOut, false, true,
                hidden);
    }

    static Case cnn(String name, Loss loss, int n, int c, int h, int w, int nOut, Supplier<Layer[]> hidden) {
        return new Case(name + " / " + loss, InputType.convolutional(h, w, c), new long[] {n, c, h, w}, loss, nOut,
                false, true, hidden);
    }

    /** One MLP per supported hidden activation, losses in rotation. */
    static Stream<Case> activationCases() {
        Activation[] activations = {Activation.SIGMOID, Activation.TANH, Activation.RELU, Activation.ELU,
            Activation.SELU, Activation.SOFTPLUS, Activation.SWISH, Activation.GELU, Activation.CUBE,
            Activation.SOFTSIGN, Activation.RATIONALTANH, Activation.RECTIFIEDTANH, Activation.LEAKYRELU,
            Activation.RELU6, Activation.HARDTANH, Activation.HARDSIGMOID};
        Loss[] losses = Loss.values();
        List<Case> cases = new ArrayList<>();
        for (int i = 0; i < activations.length; i++) {
            Activation a = activations[i];
            cases.add(mlp("mlp " + a.name().toLowerCase(), losses[i % losses.length], 4, 3,
                    () -> new Layer[] {dense(5, a)}));
        }
        return cases.stream();
    }

    /** GGN only: layers and configurations besides the plain activation sweep. */
    static Stream<Case> structureCases() {
        return Stream.of(
                mlp("mlp two hidden tanh relu", Loss.MCXENT, 4, 4,
                        () -> new Layer[] {dense(5, Activation.TANH), dense(4, Activation.RELU)}),
                new Case("dense without bias, output without bias / " + Loss.MSE, InputType.feedForward(4),
                        new long[] {4, 4}, Loss.MSE, 3, false, false, () -> new Layer[] {
                            new DenseLayer.Builder().nOut(5).activation(Activation.SIGMOID).hasBias(false).build(),
                            new DenseLayer.Builder().nOut(4).activation(Activation.TANH).hasBias(false).build()}),
                mlp("mlp relu + ActivationLayer(sigmoid) + dense", Loss.L2, 4, 2,
                        () -> new Layer[] {dense(5, Activation.RELU), act(Activation.SIGMOID), dense(3, Activation.ELU)}),
                new Case("LossLayer after dense identity / " + Loss.MCXENT, InputType.feedForward(4), new long[] {4, 4},
                        Loss.MCXENT, 3, true, true,
                        () -> new Layer[] {dense(5, Activation.SOFTSIGN), dense(3, Activation.IDENTITY)}),
                new Case("LossLayer after dense identity / " + Loss.MSE, InputType.feedForward(4), new long[] {4, 4},
                        Loss.MSE, 3, true, true,
                        () -> new Layer[] {dense(5, Activation.RELU), dense(3, Activation.IDENTITY)}),
                new Case("LossLayer after dense identity / " + Loss.XENT, InputType.feedForward(3), new long[] {5, 3},
                        Loss.XENT, 2, true, true,
                        () -> new Layer[] {dense(4, Activation.TANH), dense(2, Activation.IDENTITY)}),
                cnn("cnn truncate stride 2 pad 1 relu, maxpool 2, dense relu", Loss.MCXENT, 3, 2, 7, 7, 3,
                        () -> new Layer[] {conv(3, 3, Activation.RELU).stride(2, 2).padding(1, 1).build(),
                            pool(PoolingType.MAX, 2, 2).build(), dense(4, Activation.RELU)}),
                cnn("cnn same stride 2 dilation 2 tanh, avgpool same 3x3 s2", Loss.MSE, 3, 2, 8, 7, 2,
                        () -> new Layer[] {conv(3, 3, Activation.TANH).stride(2, 2).dilation(2, 2)
                                .convolutionMode(ConvolutionMode.Same).build(),
                            pool(PoolingType.AVG, 3, 2).convolutionMode(ConvolutionMode.Same).build()}),
                cnn("cnn strict stride 2 pad 1 elu, pnorm pooling", Loss.MCXENT, 3, 2, 9, 9, 3,
                        () -> new Layer[] {conv(3, 3, Activation.ELU).stride(2, 2).padding(1, 1)
                                .convolutionMode(ConvolutionMode.Strict).build(),
                            new SubsamplingLayer.Builder(PoolingType.PNORM).pnorm(2).kernelSize(2, 2).stride(1, 1)
                                    .build()}),
                cnn("cnn truncate dilation 2 no bias sigmoid, avgpool 2 s1, conv same s2 softplus, dense", Loss.NLL, 3,
                        2, 8, 8, 3,
                        () -> new Layer[] {conv(3, 2, Activation.SIGMOID).dilation(2, 2).hasBias(false).build(),
                            pool(PoolingType.AVG, 2, 1).build(),
                            conv(2, 3, Activation.SOFTPLUS).stride(2, 2).convolutionMode(ConvolutionMode.Same).build(),
                            dense(3, Activation.SWISH)}),
                cnn("cnn relu, overlapping maxpool same 3x3 s2, leakyrelu conv", Loss.L2, 3, 1, 8, 8, 2,
                        () -> new Layer[] {conv(3, 3, Activation.RELU).padding(1, 1).build(),
                            pool(PoolingType.MAX, 3, 2).convolutionMode(ConvolutionMode.Same).build(),
                            conv(2, 2, Activation.LEAKYRELU).build()}),
                cnn("cnn avgpool truncate padded 3x3 s2 pad 1 (pad not in divisor)", Loss.MCXENT, 3, 2, 6, 6, 3,
                        () -> new Layer[] {conv(2, 2, Activation.GELU).build(),
                            pool(PoolingType.AVG, 3, 2).padding(1, 1).build()}),
                cnn("cnn maxpool truncate padded 3x3 s2 pad 1, pnorm 3", Loss.MSE, 3, 2, 6, 6, 2,
                        () -> new Layer[] {conv(2, 2, Activation.SELU).build(),
                            pool(PoolingType.MAX, 3, 2).padding(1, 1).build(),
                            new SubsamplingLayer.Builder(PoolingType.PNORM).pnorm(3).kernelSize(2, 2).stride(1, 1)
                                    .build()}),
                new Case("flat input to cnn, conv + ActivationLayer(tanh) / " + Loss.L2,
                        InputType.convolutionalFlat(6, 6, 1), new long[] {4, 36}, Loss.L2, 2, false, true,
                        () -> new Layer[] {conv(3, 2, Activation.IDENTITY).build(), act(Activation.TANH)}));
    }

    /** Networks with smooth activations only: GGN and finite-difference Hessian. */
    static Stream<Case> smoothCases() {
        return Stream.of(
                mlp("smooth mlp sigmoid tanh", Loss.MCXENT, 4, 3,
                        () -> new Layer[] {dense(5, Activation.SIGMOID), dense(4, Activation.TANH)}),
                mlp("smooth mlp elu softplus", Loss.NLL, 4, 3,
                        () -> new Layer[] {dense(5, Activation.ELU), dense(4, Activation.SOFTPLUS)}),
                mlp("smooth mlp swish gelu", Loss.L2, 4, 2,
                        () -> new Layer[] {dense(5, Activation.SWISH), dense(4, Activation.GELU)}),
                // cube amplifies: not before XENT, which DL4J clips at saturated sigmoid outputs
                mlp("smooth mlp selu cube", Loss.MSE, 4, 3,
                        () -> new Layer[] {dense(5, Activation.SELU), dense(3, Activation.CUBE)}),
                mlp("smooth mlp softsign rationaltanh", Loss.XENT, 4, 3,
                        () -> new Layer[] {dense(5, Activation.SOFTSIGN), dense(4, Activation.RATIONALTANH)}),
                mlp("smooth mlp tanh + ActivationLayer(tanh) + dense sigmoid", Loss.MSE, 4, 3,
                        () -> new Layer[] {dense(5, Activation.TANH), act(Activation.TANH), dense(3, Activation.SIGMOID)}),
                new Case("smooth LossLayer after softplus, identity / " + Loss.MCXENT, InputType.feedForward(4),
                        new long[] {4, 4}, Loss.MCXENT, 3, true, true,
                        () -> new Layer[] {dense(5, Activation.SOFTPLUS), dense(3, Activation.IDENTITY)}),
                new Case("smooth no-bias gelu, no-bias output / " + Loss.XENT, InputType.feedForward(4),
                        new long[] {4, 4}, Loss.XENT, 2, false, false, () -> new Layer[] {
                            new DenseLayer.Builder().nOut(5).activation(Activation.GELU).hasBias(false).build()}),
                mlp("smooth except at 0 (no pre-activation near 0): rectifiedtanh, leakyrelu", Loss.MCXENT, 4, 3,
                        () -> new Layer[] {dense(5, Activation.RECTIFIEDTANH), dense(4, Activation.LEAKYRELU)}),
                cnn("smooth cnn tanh truncate s2 pad 1, avgpool 2, dense sigmoid", Loss.MCXENT, 3, 2, 7, 7, 3,
                        () -> new Layer[] {conv(3, 3, Activation.TANH).stride(2, 2).padding(1, 1).build(),
                            pool(PoolingType.AVG, 2, 1).build(), dense(4, Activation.SIGMOID)}),
                cnn("smooth cnn sigmoid same, maxpool 2", Loss.L2, 3, 2, 6, 6, 2,
                        () -> new Layer[] {conv(3, 3, Activation.SIGMOID).convolutionMode(ConvolutionMode.Same).build(),
                            pool(PoolingType.MAX, 2, 2).build()}),
                cnn("smooth cnn elu strict s2 pad 1, ActivationLayer(tanh), avgpool same 3x3 s2", Loss.XENT, 3, 2, 9, 9,
                        2, () -> new Layer[] {conv(3, 2, Activation.ELU).stride(2, 2).padding(1, 1)
                                .convolutionMode(ConvolutionMode.Strict).build(), act(Activation.TANH),
                            pool(PoolingType.AVG, 3, 2).convolutionMode(ConvolutionMode.Same).build()}),
                cnn("smooth cnn dilation 2 softplus, conv same s2 swish", Loss.NLL, 3, 2, 8, 8, 3,
                        () -> new Layer[] {conv(3, 2, Activation.SOFTPLUS).dilation(2, 2).build(),
                            conv(2, 3, Activation.SWISH).stride(2, 2).convolutionMode(ConvolutionMode.Same).build()}),
                cnn("smooth cnn gelu, avgpool truncate 3x3 s2 pad 1", Loss.MSE, 3, 2, 6, 6, 2,
                        () -> new Layer[] {conv(2, 2, Activation.GELU).build(),
                            pool(PoolingType.AVG, 3, 2).padding(1, 1).build()}));
    }

    /** Networks whose activations are all piecewise linear: Hessian diagonal = GGN diagonal. */
    static Stream<Case> piecewiseLinearCases() {
        return Stream.of(
                mlp("pl mlp relu leakyrelu", Loss.MCXENT, 4, 3,
                        () -> new Layer[] {dense(6, Activation.RELU), dense(4, Activation.LEAKYRELU)}),
                mlp("pl mlp relu identity", Loss.MSE, 4, 3,
                        () -> new Layer[] {dense(5, Activation.RELU), dense(4, Activation.IDENTITY)}),
                mlp("pl mlp hardtanh relu6 + ActivationLayer(relu)", Loss.L2, 4, 2,
                        () -> new Layer[] {dense(5, Activation.HARDTANH), act(Activation.RELU), dense(4, Activation.RELU6)}),
                mlp("pl logistic regression", Loss.NLL, 5, 3, () -> new Layer[0]),
                mlp("pl mlp leakyrelu", Loss.XENT, 4, 3, () -> new Layer[] {dense(5, Activation.LEAKYRELU)}),
                cnn("pl cnn relu, maxpool 2, dense leakyrelu", Loss.XENT, 3, 2, 7, 7, 2,
                        () -> new Layer[] {conv(3, 3, Activation.RELU).padding(1, 1).build(),
                            pool(PoolingType.MAX, 2, 2).build(), dense(4, Activation.LEAKYRELU)}),
                cnn("pl cnn same s2 relu, maxpool same 3x3 s2, ActivationLayer(relu)", Loss.L2, 3, 2, 8, 8, 2,
                        () -> new Layer[] {conv(3, 3, Activation.RELU).stride(2, 2).convolutionMode(ConvolutionMode.Same)
                                .build(), pool(PoolingType.MAX, 3, 2).convolutionMode(ConvolutionMode.Same).build(),
                            act(Activation.RELU)}),
                cnn("pl cnn identity conv, avgpool, leakyrelu conv", Loss.MCXENT, 3, 1, 7, 7, 3,
                        () -> new Layer[] {conv(2, 2, Activation.IDENTITY).build(), pool(PoolingType.AVG, 2, 2).build(),
                            conv(2, 2, Activation.LEAKYRELU).build()}));
    }

    static Stream<Case> allCases() {
        return Stream.of(activationCases(), structureCases(), smoothCases(), piecewiseLinearCases())
                .flatMap(s -> s);
    }

    /**
     * The smooth networks, and the one-hidden-layer sweep over all activations (those with kinks
     * have, with these seeds, no pre-activation within the finite-difference step of a kink, so
     * the differences see the piecewise-smooth function's Hessian).
     */
    static Stream<Case> finiteDifferenceCases() {
        return Stream.concat(smoothCases(), activationCases());
    }

    /** A selection for float32. */
    static Stream<Case> float32Cases() {
        Set<String> wanted = Set.of("mlp tanh / softmax-negativeloglikelihood", "mlp cube / identity-l2",
                "mlp two hidden tanh relu / softmax-mcxent",
                "cnn truncate stride 2 pad 1 relu, maxpool 2, dense relu / softmax-mcxent",
                "cnn same stride 2 dilation 2 tanh, avgpool same 3x3 s2 / identity-mse",
                "cnn strict stride 2 pad 1 elu, pnorm pooling / softmax-mcxent",
                "LossLayer after dense identity / softmax-mcxent", "smooth mlp swish gelu / identity-l2");
        List<Case> cases = allCases().filter(c -> wanted.contains(c.name)).collect(Collectors.toList());
        assertEquals(wanted.size(), cases.size(), "float32 selection: "
                + cases.stream().map(Case::name).collect(Collectors.toList()));
        return cases.stream();
    }

    /** float32 Hessian: the smooth cases that use the float64 finite-difference reference. */
    static Stream<Case> float32HessianCases() {
        return smoothCases().filter(c -> c.name.startsWith("smooth mlp sigmoid tanh")
                || c.name.startsWith("smooth cnn tanh truncate"));
    }

    /** Every case in both workspace modes. */
    static Stream<Arguments> allCasesBothWorkspaceModes() {
        return allCases().flatMap(c -> Stream.of(Arguments.of(c, WorkspaceMode.ENABLED),
                Arguments.of(c, WorkspaceMode.NONE)));
    }

    static Stream<Arguments> piecewiseLinearCasesBothWorkspaceModes() {
        return piecewiseLinearCases().flatMap(c -> Stream.of(Arguments.of(c, WorkspaceMode.ENABLED),
                Arguments.of(c, WorkspaceMode.NONE)));
    }

    @BeforeEach
    void float64Defaults() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    // ---------------------------------------------------------------- tests

    /** Brute-force GGN reference (plus a self-check of the Jacobians via the chain rule). */
    static Map<String, INDArray> ggnReference(Case c, MultiLayerNetwork net, INDArray x, INDArray y) {
        MultiLayerNetwork plain = net.clone();
        BruteForce.Jacobians jac = BruteForce.jacobians(c.jacobianNetwork(net), x);
        // self-check of the reference: Σ_n J_nᵀ ∇_z ℓ_n must be DL4J's summed gradient
        Map<String, INDArray> dl4j = BruteForce.gradientSum(plain, x, y);
        Map<String, INDArray> chain = BruteForce.chainRuleGradient(jac, c.loss, y);
        assertEquals(dl4j.keySet(), chain.keySet(), "reference keys");
        dl4j.forEach((key, g) -> assertClose(g, chain.get(key), 1e-9, 1e-12,
                c.name + ": reference self-check (chain rule) " + key));
        return BruteForce.batchDiagGgn(jac, c.loss);
    }

    @ParameterizedTest(name = "{0} [workspaces {1}]")
    @MethodSource("allCasesBothWorkspaceModes")
    void exactGgnDiagonalMatchesJacobianReference(Case c, WorkspaceMode workspaces) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE, workspaces);
        INDArray x = c.features(DataType.DOUBLE);
        INDArray y = c.labels(DataType.DOUBLE);
        Map<String, INDArray> batchRef = ggnReference(c, net, x, y);
        Map<String, INDArray> sumRef = BruteForce.sumOverBatch(batchRef);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact());
        assertLayout(batchRef, q, DiagGGNExact.class, BatchDiagGGNExact.class);
        for (String key : batchRef.keySet()) {
            int layer = BruteForce.layerOf(key);
            String param = BruteForce.paramOf(key);
            assertClose(sumRef.get(key), q.get(DiagGGNExact.class, layer, param), GGN_RTOL, GGN_ATOL,
                    c.name + ": DiagGGNExact " + key);
            assertClose(batchRef.get(key), q.get(BatchDiagGGNExact.class, layer, param), GGN_RTOL, GGN_ATOL,
                    c.name + ": BatchDiagGGNExact " + key);
        }
    }

    /** @return the finite-difference Hessian diagonals of {@code c} (built as {@code net}, data {@code x, y}) */
    static BruteForce.HessianDiagonals finiteDifferenceReference(Case c, MultiLayerNetwork net, INDArray x, INDArray y) {
        return FD_CACHE.computeIfAbsent(c.name, k -> BruteForce.finiteDifferenceHessian(net.clone(), x, y, FD_STEP));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("finiteDifferenceCases")
    void hessianDiagonalMatchesFiniteDifferences(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        INDArray x = c.features(DataType.DOUBLE);
        INDArray y = c.labels(DataType.DOUBLE);
        BruteForce.HessianDiagonals fd = finiteDifferenceReference(c, net, x, y);
        // the finite differences themselves: per-example terms sum to the batch diagonal
        fd.batch.forEach((key, h) -> assertClose(h, fd.perExample.get(key).sum(0), 1e-6, 1e-8,
                c.name + ": reference self-check (Σ_n per-example FD = batch FD) " + key));

        for (WorkspaceMode workspaces : List.of(WorkspaceMode.ENABLED, WorkspaceMode.NONE)) {
            MultiLayerNetwork extended = c.build(DataType.DOUBLE, workspaces);
            extended.setParams(net.params());
            Quantities q = BackPackNetwork.extend(extended).backward(x, y, new DiagHessian(), new BatchDiagHessian());
            assertLayout(fd.perExample, q, DiagHessian.class, BatchDiagHessian.class);
            String what = c.name + " [workspaces " + workspaces + "]: ";
            for (String key : fd.batch.keySet()) {
                int layer = BruteForce.layerOf(key);
                String param = BruteForce.paramOf(key);
                assertClose(fd.batch.get(key), q.get(DiagHessian.class, layer, param), FD_RTOL, FD_ATOL,
                        what + "DiagHessian " + key);
                assertClose(fd.perExample.get(key), q.get(BatchDiagHessian.class, layer, param), FD_RTOL, FD_ATOL,
                        what + "BatchDiagHessian " + key);
            }
        }
    }

    @ParameterizedTest(name = "{0} [workspaces {1}]")
    @MethodSource("piecewiseLinearCasesBothWorkspaceModes")
    void hessianEqualsGgnForPiecewiseLinearNetworks(Case c, WorkspaceMode workspaces) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE, workspaces);
        INDArray x = c.features(DataType.DOUBLE);
        INDArray y = c.labels(DataType.DOUBLE);
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact(),
                new DiagHessian(), new BatchDiagHessian());
        assertEquals(q.layers(DiagGGNExact.class), q.layers(DiagHessian.class), "layers");
        for (int layer : q.layers(DiagGGNExact.class)) {
            assertEquals(q.params(DiagGGNExact.class, layer), q.params(DiagHessian.class, layer), "params");
            for (String param : q.params(DiagGGNExact.class, layer)) {
                assertClose(q.get(DiagGGNExact.class, layer, param), q.get(DiagHessian.class, layer, param), 1e-12, 0,
                        c.name + ": DiagHessian vs DiagGGNExact " + layer + "_" + param);
                assertClose(q.get(BatchDiagGGNExact.class, layer, param), q.get(BatchDiagHessian.class, layer, param),
                        1e-12, 0, c.name + ": BatchDiagHessian vs BatchDiagGGNExact " + layer + "_" + param);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("float32Cases")
    void float32GgnIsCloseToFloat64Reference(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        INDArray x = c.features(DataType.DOUBLE);
        INDArray y = c.labels(DataType.DOUBLE);
        Map<String, INDArray> batchRef = ggnReference(c, net, x, y);
        Map<String, INDArray> sumRef = BruteForce.sumOverBatch(batchRef);

        MultiLayerNetwork f32 = net.convertDataType(DataType.FLOAT);
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        Quantities q;
        try {
            q = BackPackNetwork.extend(f32).backward(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT),
                    new DiagGGNExact(), new BatchDiagGGNExact());
        } finally {
            Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        }
        assertLayout(batchRef, q, DiagGGNExact.class, BatchDiagGGNExact.class);
        for (String key : batchRef.keySet()) {
            int layer = BruteForce.layerOf(key);
            String param = BruteForce.paramOf(key);
            INDArray d = q.get(DiagGGNExact.class, layer, param);
            assertEquals(DataType.FLOAT, d.dataType(), c.name + ": float32 result type " + key);
            assertClose(sumRef.get(key), d, F32_RTOL, F32_ATOL, c.name + ": float32 DiagGGNExact " + key);
            assertClose(batchRef.get(key), q.get(BatchDiagGGNExact.class, layer, param), F32_RTOL, F32_ATOL,
                    c.name + ": float32 BatchDiagGGNExact " + key);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("float32HessianCases")
    void float32HessianIsCloseToFloat64FiniteDifferences(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        INDArray x = c.features(DataType.DOUBLE);
        INDArray y = c.labels(DataType.DOUBLE);
        BruteForce.HessianDiagonals fd = finiteDifferenceReference(c, net, x, y);

        MultiLayerNetwork f32 = net.convertDataType(DataType.FLOAT);
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        Quantities q;
        try {
            q = BackPackNetwork.extend(f32).backward(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT),
                    new DiagHessian());
        } finally {
            Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        }
        for (String key : fd.batch.keySet()) {
            assertClose(fd.batch.get(key), q.get(DiagHessian.class, BruteForce.layerOf(key), BruteForce.paramOf(key)),
                    F32_RTOL, F32_ATOL, c.name + ": float32 DiagHessian " + key);
        }
    }

    /** The extensions report exactly the layers and parameters that have reference values. */
    private static void assertLayout(Map<String, INDArray> reference, Quantities q,
                                     Class<? extends io.github.dl4jbackpack.extensions.Extension<?>> sum,
                                     Class<? extends io.github.dl4jbackpack.extensions.Extension<?>> batch) {
        Set<Integer> layers = new TreeSet<>();
        reference.keySet().forEach(k -> layers.add(BruteForce.layerOf(k)));
        assertEquals(layers, q.layers(sum), sum.getSimpleName() + " layers");
        assertEquals(layers, q.layers(batch), batch.getSimpleName() + " layers");
        for (int layer : layers) {
            Set<String> params = new LinkedHashSet<>();
            reference.keySet().stream().filter(k -> BruteForce.layerOf(k) == layer)
                    .forEach(k -> params.add(BruteForce.paramOf(k)));
            assertEquals(params, new LinkedHashSet<>(q.params(sum, layer)), sum.getSimpleName() + " params " + layer);
            assertEquals(params, new LinkedHashSet<>(q.params(batch, layer)), batch.getSimpleName() + " params " + layer);
        }
    }
}
