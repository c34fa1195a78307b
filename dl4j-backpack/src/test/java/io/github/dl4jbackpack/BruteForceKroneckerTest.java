// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.BruteForce.Loss;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Supplier;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Kronecker factors (KFLR, KFAC, KFRA) against brute-force references (docs/math.md, "Kronecker
 * factors"), built on plain copies of the network from DL4J's own passes only:
 * <ol>
 *   <li>one example, where the Kronecker product is exact: KFLR's {@code toMatrix()} equals the full
 *       exact GGN block {@code Jᵀ H J} of every parameter, from per-example DL4J Jacobians;</li>
 *   <li>{@code A} as direct sums over the layer inputs of a plain forward pass, and over convolution
 *       patches extracted with explicit loops (Truncate, Same, Strict; stride, padding, dilation);</li>
 *   <li>KFLR's {@code B} equals the exact GGN block of the layer's bias;</li>
 *   <li>KFRA against an explicit implementation of its recursion with per-example module Jacobians;</li>
 *   <li>KFAC: unbiased, error shrinking like {@code 1/√M};</li>
 *   <li>KFRA refuses to exceed the curvature memory budget, and the network keeps working.</li>
 * </ol>
 */
class BruteForceKroneckerTest {

    /** Library vs references that are exact up to rounding (DL4J Jacobians, direct sums). */
    static final double EXACT_RTOL = 1e-9;
    static final double EXACT_ATOL = 1e-12;
    /** Library vs references through finite-difference (pooling) module Jacobians. */
    static final double FD_RTOL = 1e-6;
    static final double FD_ATOL = 1e-9;

    /** A test network: hidden layers (fresh per build), then an OutputLayer with the loss. */
    record Net(String name, InputType input, long[] featureShape, Loss loss, int nOut, Supplier<Layer[]> hidden) {

        MultiLayerNetwork build() {
            return TestNets.build(DataType.DOUBLE, input, layers(loss.function, loss.activation));
        }

        /** @return a plain copy whose output layer is identity + L2 (its output is the pre-activation f) */
        MultiLayerNetwork jacobianNetwork(MultiLayerNetwork net) {
            MultiLayerNetwork ref = TestNets.build(DataType.DOUBLE, input, layers(LossFunction.L2, Activation.IDENTITY));
            assertEquals(net.numParams(), ref.numParams(), "reference copy has the same parameters");
            ref.setParams(net.params().dup());
            return ref;
        }

        private Layer[] layers(LossFunction function, Activation activation) {
            List<Layer> layers = new ArrayList<>(Arrays.asList(hidden.get()));
            layers.add(new OutputLayer.Builder(function).activation(activation).nOut(nOut).build());
            return layers.toArray(new Layer[0]);
        }

        INDArray features() {
            return TestNets.features(DataType.DOUBLE, 31, featureShape);
        }

        INDArray labels() {
            return TestNets.labels(DataType.DOUBLE, loss.function, 32, featureShape[0], nOut);
        }

        @Override
        public String toString() {
            return name + " / " + loss;
        }
    }

    // ---------------------------------------------------------------- case builders

    static DenseLayer dense(int nOut, Activation activation) {
        return new DenseLayer.Builder().nOut(nOut).activation(activation).build();
    }

    static ConvolutionLayer.Builder conv(int k, int nOut, Activation activation) {
        return new ConvolutionLayer.Builder(k, k).nOut(nOut).activation(activation);
    }

    static SubsamplingLayer.Builder pool(PoolingType type, int k, int s) {
        return new SubsamplingLayer.Builder(type).kernelSize(k, k).stride(s, s);
    }

    static Net mlp(String name, Loss loss, int n, int nIn, int nOut, Supplier<Layer[]> hidden) {
        return new Net(name, InputType.feedForward(nIn), new long[] {n, nIn}, loss, nOut, hidden);
    }

    static Net cnn(String name, Loss loss, int n, int c, int h, int w, int nOut, Supplier<Layer[]> hidden) {
        return new Net(name, InputType.convolutional(h, w, c), new long[] {n, c, h, w}, loss, nOut, hidden);
    }

    /** One example: every layer's Kronecker product is its exact GGN block. */
    static Stream<Net> singleExampleCases() {
        List<Net> cases = new ArrayList<>();
        for (Loss loss : Loss.values()) {
            cases.add(mlp("output layer only, N=1", loss, 1, 4, 3, () -> new Layer[0]));
        }
        for (Loss loss : Loss.values()) {
            cases.add(mlp("mlp elu leakyrelu, N=1", loss, 1, 4, 3,
                    () -> new Layer[] {dense(5, Activation.ELU), dense(4, Activation.LEAKYRELU)}));
        }
        // a convolution with a single output position: G(W) = (J_zᵀ H J_z) ⊗ u uᵀ exactly
        cases.add(cnn("cnn N=1, conv k3 s3 p1 to 1x1 tanh, dense selu", Loss.MCXENT, 1, 2, 3, 3, 3,
                () -> new Layer[] {conv(3, 3, Activation.TANH).stride(3, 3).padding(1, 1).build(),
                    dense(4, Activation.SELU)}));
        cases.add(cnn("cnn N=1, conv same k3 s3 d2 to 1x1 elu", Loss.XENT, 1, 2, 3, 3, 2,
                () -> new Layer[] {conv(3, 2, Activation.ELU).stride(3, 3).dilation(2, 2)
                        .convolutionMode(ConvolutionMode.Same).build()}));
        return cases.stream();
    }

    static Stream<Net> mlpCases() {
        return Stream.of(
                mlp("mlp tanh sigmoid", Loss.MCXENT, 4, 4, 3,
                        () -> new Layer[] {dense(5, Activation.TANH), dense(4, Activation.SIGMOID)}),
                mlp("mlp elu", Loss.XENT, 4, 4, 3, () -> new Layer[] {dense(5, Activation.ELU)}),
                mlp("mlp selu leakyrelu", Loss.MSE, 4, 4, 3,
                        () -> new Layer[] {dense(5, Activation.SELU), dense(4, Activation.LEAKYRELU)}),
                mlp("mlp leakyrelu, ActivationLayer(elu), dense tanh", Loss.L2, 4, 4, 2,
                        () -> new Layer[] {dense(5, Activation.LEAKYRELU),
                            new ActivationLayer.Builder().activation(Activation.ELU).build(),
                            dense(3, Activation.TANH)}),
                mlp("mlp no-bias sigmoid, selu", Loss.NLL, 4, 4, 3,
                        () -> new Layer[] {new DenseLayer.Builder().nOut(5).activation(Activation.SIGMOID).hasBias(false)
                                .build(), dense(4, Activation.SELU)}),
                mlp("logistic regression", Loss.MCXENT, 4, 5, 3, () -> new Layer[0]));
    }

    static Stream<Net> cnnCases() {
        return Stream.of(
                cnn("cnn 2x5x5 conv k3 p1 tanh, maxpool 2 s1, dense leakyrelu", Loss.MCXENT, 3, 2, 5, 5, 3,
                        () -> new Layer[] {conv(3, 2, Activation.TANH).padding(1, 1).build(),
                            pool(PoolingType.MAX, 2, 1).build(), dense(4, Activation.LEAKYRELU)}),
                cnn("cnn 1x5x5 conv k2 elu, avgpool 2 s2", Loss.MSE, 3, 1, 5, 5, 2,
                        () -> new Layer[] {conv(2, 2, Activation.ELU).build(), pool(PoolingType.AVG, 2, 2).build()}),
                cnn("cnn 2x7x7 truncate k3 s2 p1 selu, maxpool 2 s2, dense elu", Loss.NLL, 3, 2, 7, 7, 3,
                        () -> new Layer[] {conv(3, 2, Activation.SELU).stride(2, 2).padding(1, 1).build(),
                            pool(PoolingType.MAX, 2, 2).build(), dense(3, Activation.ELU)}),
                cnn("cnn 2x7x8 truncate k2x3 s2x1 p1x0 d1x2 sigmoid, avgpool 2 s1", Loss.L2, 3, 2, 7, 8, 2,
                        () -> new Layer[] {new ConvolutionLayer.Builder(2, 3).nOut(2).activation(Activation.SIGMOID)
                                .stride(2, 1).padding(1, 0).dilation(1, 2).build(),
                            pool(PoolingType.AVG, 2, 1).build()}),
                cnn("cnn 2x8x7 same k3 s2 d2 leakyrelu, avgpool same 3 s2", Loss.MSE, 3, 2, 8, 7, 2,
                        () -> new Layer[] {conv(3, 2, Activation.LEAKYRELU).stride(2, 2).dilation(2, 2)
                                .convolutionMode(ConvolutionMode.Same).build(),
                            pool(PoolingType.AVG, 3, 2).convolutionMode(ConvolutionMode.Same).build()}),
                cnn("cnn 1x5x5 same k2 s1 tanh, maxpool same 3 s2, conv strict k3 s2 p1 elu", Loss.XENT, 3, 1, 5, 5, 2,
                        () -> new Layer[] {conv(2, 2, Activation.TANH).convolutionMode(ConvolutionMode.Same).build(),
                            pool(PoolingType.MAX, 3, 2).convolutionMode(ConvolutionMode.Same).build(),
                            conv(3, 2, Activation.ELU).stride(2, 2).padding(1, 1)
                                    .convolutionMode(ConvolutionMode.Strict).build()}),
                cnn("cnn 2x6x6 no-bias conv k2 d2 relu, conv same k2 s2 softplus, dense selu", Loss.MCXENT, 3, 2, 6, 6, 3,
                        () -> new Layer[] {conv(2, 2, Activation.RELU).dilation(2, 2).hasBias(false).build(),
                            conv(2, 2, Activation.SOFTPLUS).stride(2, 2).convolutionMode(ConvolutionMode.Same).build(),
                            dense(3, Activation.SELU)}),
                cnn("cnn 2x9x9 strict k3 s2 p1 tanh, avgpool 3 s2 p1", Loss.NLL, 3, 2, 9, 9, 3,
                        () -> new Layer[] {conv(3, 2, Activation.TANH).stride(2, 2).padding(1, 1)
                                .convolutionMode(ConvolutionMode.Strict).build(),
                            pool(PoolingType.AVG, 3, 2).padding(1, 1).build()}));
    }

    static Stream<Net> kroneckerCases() {
        return Stream.concat(mlpCases(), cnnCases());
    }

    /** KFAC: one network per loss, and a CNN. */
    static Stream<Net> kfacCases() {
        return Stream.concat(mlpCases().filter(c -> !c.name.equals("logistic regression")),
                cnnCases().limit(1));
    }

    @BeforeEach
    void float64Defaults() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    // ---------------------------------------------------------------- helpers

    /** @return the indices of the layers with parameters */
    static Set<Integer> parametricLayers(MultiLayerNetwork net) {
        Set<Integer> layers = new TreeSet<>();
        for (int i = 0; i < net.getnLayers(); i++) {
            if (BruteForceKronecker.isParametric(net.getLayerWiseConfigurations().getConf(i).getLayer())) {
                layers.add(i);
            }
        }
        return layers;
    }

    static Layer conf(MultiLayerNetwork net, int layer) {
        return net.getLayerWiseConfigurations().getConf(layer).getLayer();
    }

    /** Per-example DL4J Jacobians of the output pre-activation, self-checked by the chain rule. */
    static BruteForce.Jacobians jacobians(Net c, MultiLayerNetwork net, INDArray x, INDArray y) {
        BruteForce.Jacobians jac = BruteForce.jacobians(c.jacobianNetwork(net), x);
        Map<String, INDArray> dl4j = BruteForce.gradientSum(net.clone(), x, y);
        Map<String, INDArray> chain = BruteForce.chainRuleGradient(jac, c.loss, y);
        dl4j.forEach((key, g) -> assertClose(g, chain.get(key), 1e-9, 1e-12,
                c + ": reference self-check (chain rule) " + key));
        return jac;
    }

    /** @return layer → the input-side factor by direct sums, with a self-check of the patches */
    static Map<Integer, INDArray> inputFactors(Net c, MultiLayerNetwork net, INDArray x) {
        MultiLayerNetwork plain = net.clone();
        List<INDArray> activations = plain.feedForward(x, true);
        Map<Integer, INDArray> out = new LinkedHashMap<>();
        for (int i : parametricLayers(plain)) {
            Layer conf = conf(plain, i);
            INDArray in = BruteForceKronecker.layerInput(activations.get(i), conf);
            if (conf instanceof ConvolutionLayer) {
                ConvolutionLayer cl = (ConvolutionLayer) conf;
                // self-check: φ(W u + b) over my patches is DL4J's convolution output
                INDArray z = BruteForceKronecker.convolveWithPatches(in, cl, plain.getParam(i + "_W"),
                        cl.hasBias() ? plain.getParam(i + "_b") : null);
                INDArray expected = activations.get(i + 1).castTo(DataType.DOUBLE).dup('c');
                INDArray phi = cl.getActivationFn().getActivation(z.reshape('c', expected.shape()).dup(), false);
                assertClose(expected, phi, 1e-12, 1e-14, c + ": reference self-check: patches of layer " + i);
                out.put(i, BruteForceKronecker.convInputFactor(in, cl));
            } else {
                assertEquals(2, in.rank(), "dense input rank");
                out.put(i, BruteForceKronecker.denseInputFactor(in));
            }
        }
        return out;
    }

    /** Checks the layout of the factors of one layer: order, symmetry, dimension, bias. */
    static void assertLayout(Quantities q, Class<? extends Extension<KroneckerFactors>> e, MultiLayerNetwork net,
                             int layer, String what) {
        Layer conf = conf(net, layer);
        boolean bias = BruteForceKronecker.hasBias(conf);
        assertEquals(bias ? Set.of("W", "b") : Set.of("W"), Set.copyOf(q.params(e, layer)), what + ": params");
        KroneckerFactors w = q.get(e, layer, "W");
        INDArray a = w.inputFactor().orElseThrow();
        INDArray b = w.outputFactor();
        List<INDArray> factors = w.factors();
        assertEquals(2, factors.size(), what + ": W has two factors");
        boolean convolution = conf instanceof ConvolutionLayer;
        assertClose(convolution ? b : a, factors.get(0), 0, 0, what + ": first factor");
        assertClose(convolution ? a : b, factors.get(1), 0, 0, what + ": second factor");
        assertEquals(net.getParam(layer + "_W").length(), w.dimension(), what + ": dimension");
        assertClose(a, a.transpose(), 1e-12, 1e-15, what + ": A symmetric");
        assertClose(b, b.transpose(), 1e-12, 1e-15, what + ": B symmetric");
        if (bias) {
            KroneckerFactors kb = q.get(e, layer, "b");
            assertEquals(1, kb.factors().size(), what + ": bias has one factor");
            assertTrue(kb.inputFactor().isEmpty(), what + ": bias has no input factor");
            assertClose(b, kb.outputFactor(), 0, 0, what + ": bias B = weight B");
            assertClose(b, kb.toMatrix(), 0, 0, what + ": bias toMatrix() = B");
        }
    }

    // ---------------------------------------------------------------- 1. one example: exact GGN blocks

    @ParameterizedTest(name = "{0}")
    @MethodSource("singleExampleCases")
    void kflrIsTheExactGgnBlockForOneExample(Net c) {
        MultiLayerNetwork net = c.build();
        INDArray x = c.features();
        INDArray y = c.labels();
        BruteForce.Jacobians jac = jacobians(c, net, x, y);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new KFLR());
        assertEquals(parametricLayers(net), q.layers(KFLR.class), c + ": KFLR layers");
        for (String key : jac.shapes.keySet()) {
            int layer = BruteForce.layerOf(key);
            String param = BruteForce.paramOf(key);
            INDArray block = BruteForceKronecker.ggnBlock(jac, c.loss, key);
            assertClose(block, q.get(KFLR.class, layer, param).toMatrix(), EXACT_RTOL, EXACT_ATOL,
                    c + ": KFLR toMatrix() vs exact GGN block of " + key);
        }
    }

    // ---------------------------------------------------------------- 2. input factors

    @ParameterizedTest(name = "{0}")
    @MethodSource("kroneckerCases")
    void inputFactorsAreDirectSumsOverInputsAndPatches(Net c) {
        MultiLayerNetwork net = c.build();
        INDArray x = c.features();
        INDArray y = c.labels();
        Map<Integer, INDArray> expected = inputFactors(c, net, x);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new KFLR(), new KFAC(2), new KFRA());
        for (Class<? extends Extension<KroneckerFactors>> e : List.of(KFLR.class, KFAC.class, KFRA.class)) {
            assertEquals(expected.keySet(), q.layers(e), c + ": " + e.getSimpleName() + " layers");
            for (int layer : expected.keySet()) {
                String what = c + ": " + e.getSimpleName() + " layer " + layer;
                assertClose(expected.get(layer), q.get(e, layer, "W").inputFactor().orElseThrow(), EXACT_RTOL,
                        EXACT_ATOL, what + " A");
                assertLayout(q, e, net, layer, what);
                KroneckerFactors w = q.get(e, layer, "W");
                if (w.inputSideFirst()) {
                    // a dense layer that saw fewer rows than inputs keeps A as its square root R, A = RᵀR
                    long nIn = expected.get(layer).rows();
                    assertEquals(x.size(0) < nIn, w.sqrtInputFactor().isPresent(), what + ": square root");
                    w.sqrtInputFactor().ifPresent(r -> assertClose(expected.get(layer), r.transpose().mmul(r),
                            EXACT_RTOL, EXACT_ATOL, what + " RᵀR"));
                }
            }
        }
    }

    // ---------------------------------------------------------------- 3. KFLR output factors

    @ParameterizedTest(name = "{0}")
    @MethodSource("kroneckerCases")
    void kflrOutputFactorsAreExactBiasGgnBlocks(Net c) {
        MultiLayerNetwork net = c.build();
        INDArray x = c.features();
        INDArray y = c.labels();
        BruteForce.Jacobians jac = jacobians(c, net, x, y);
        // second reference through explicit module Jacobians (needed for layers without bias)
        Map<Integer, INDArray> chain = BruteForceKronecker.exactOutputFactors(BruteForceKronecker.chain(net, x), c.loss);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new KFLR());
        assertEquals(parametricLayers(net), q.layers(KFLR.class), c + ": KFLR layers");
        assertEquals(parametricLayers(net), chain.keySet(), c + ": reference layers");
        for (int layer : parametricLayers(net)) {
            String what = c + ": KFLR layer " + layer;
            INDArray b = q.get(KFLR.class, layer, "W").outputFactor();
            if (BruteForceKronecker.hasBias(conf(net, layer))) {
                INDArray ggn = BruteForceKronecker.ggnBlock(jac, c.loss, layer + "_b");
                assertClose(ggn, chain.get(layer), FD_RTOL, FD_ATOL,
                        what + ": reference self-check (module chain vs bias GGN)");
                assertClose(ggn, b, EXACT_RTOL, EXACT_ATOL, what + " B vs exact GGN block of the bias");
            } else {
                assertClose(chain.get(layer), b, FD_RTOL, FD_ATOL, what + " (no bias) B vs module chain");
            }
            assertLayout(q, KFLR.class, net, layer, what);
        }
    }

    // ---------------------------------------------------------------- 4. KFRA

    @ParameterizedTest(name = "{0}")
    @MethodSource("kroneckerCases")
    void kfraMatchesBruteForceRecursion(Net c) {
        MultiLayerNetwork net = c.build();
        INDArray x = c.features();
        INDArray y = c.labels();
        BruteForceKronecker.Chain chain = BruteForceKronecker.chain(net, x);
        Map<Integer, INDArray> expectedB = BruteForceKronecker.averagedOutputFactors(chain, c.loss);
        Map<Integer, INDArray> expectedA = inputFactors(c, net, x);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new KFRA());
        assertEquals(expectedB.keySet(), q.layers(KFRA.class), c + ": KFRA layers");
        for (int layer : expectedB.keySet()) {
            String what = c + ": KFRA layer " + layer;
            KroneckerFactors w = q.get(KFRA.class, layer, "W");
            assertClose(expectedB.get(layer), w.outputFactor(), FD_RTOL, FD_ATOL, what + " B");
            assertClose(expectedA.get(layer), w.inputFactor().orElseThrow(), EXACT_RTOL, EXACT_ATOL, what + " A");
            assertLayout(q, KFRA.class, net, layer, what);
        }
    }

    // ---------------------------------------------------------------- 5. KFAC

    /** @return Σ over parametric layers of ‖B̂ − B‖_F² / ‖B‖_F² */
    static double squaredRelativeError(Quantities exact, Quantities mc, Set<Integer> layers) {
        double error = 0;
        for (int layer : layers) {
            INDArray b = exact.get(KFLR.class, layer, "W").outputFactor();
            INDArray estimate = mc.get(KFAC.class, layer, "W").outputFactor();
            error += Math.pow(estimate.sub(b).norm2Number().doubleValue() / b.norm2Number().doubleValue(), 2);
        }
        return error;
    }

    /**
     * B̂ with M samples averages M independent single-sample estimates, so its mean squared error is
     * exactly {@code E‖B̂_1 − B‖² / M}: the RMS error shrinks like {@code 1/√M}.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("kfacCases")
    void kfacErrorShrinksLikeOneOverSqrtSamples(Net c) {
        MultiLayerNetwork net = c.build();
        INDArray x = c.features();
        INDArray y = c.labels();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities exact = bp.backward(x, y, new KFLR());
        Set<Integer> layers = parametricLayers(net);
        int[] samples = {4, 256};
        int seeds = 20;
        double[] rms = new double[samples.length];
        for (int i = 0; i < samples.length; i++) {
            double sum = 0;
            for (int seed = 0; seed < seeds; seed++) {
                Nd4j.getRandom().setSeed(1000 + seed);
                sum += squaredRelativeError(exact, bp.backward(x, y, new KFAC(samples[i])), layers);
            }
            rms[i] = Math.sqrt(sum / seeds);
        }
        // 64× more samples: 8× smaller RMS error
        double ratio = rms[0] / rms[1];
        assertTrue(ratio > 4 && ratio < 16, c + ": RMS relative error ratio M=4 / M=256 is " + ratio
                + " (expected ≈ 8); RMS errors " + Arrays.toString(rms));
    }

    /** One network per sampling distribution: categorical, Bernoulli, Gaussian (σ² = C/2 and 1/2), and a CNN. */
    static Stream<Net> unbiasednessCases() {
        return kfacCases().filter(c -> c.loss != Loss.NLL);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("unbiasednessCases")
    void meanOfSingleSampleKfacIsKflr(Net c) {
        MultiLayerNetwork net = c.build();
        INDArray x = c.features();
        INDArray y = c.labels();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities exact = bp.backward(x, y, new KFLR());
        Set<Integer> layers = parametricLayers(net);
        int runs = 200;
        Map<Integer, INDArray> sum = new LinkedHashMap<>();
        Map<Integer, INDArray> sumSquares = new LinkedHashMap<>();
        Nd4j.getRandom().setSeed(7);
        for (int r = 0; r < runs; r++) {
            Quantities mc = bp.backward(x, y, new KFAC(1));
            for (int layer : layers) {
                INDArray b = mc.get(KFAC.class, layer, "W").outputFactor();
                sum.merge(layer, b.dup(), INDArray::addi);
                sumSquares.merge(layer, b.mul(b), INDArray::addi);
            }
        }
        for (int layer : layers) {
            INDArray b = exact.get(KFLR.class, layer, "W").outputFactor();
            INDArray mean = sum.get(layer).div(runs);
            INDArray sd = Transforms.sqrt(Transforms.relu(sumSquares.get(layer).div(runs).sub(mean.mul(mean))), false);
            // elementwise: |mean − B| ≤ 5 standard errors (+ rounding)
            INDArray diff = Transforms.abs(mean.sub(b));
            INDArray bound = sd.mul(5.0 / Math.sqrt(runs)).addi(1e-12 * b.amaxNumber().doubleValue());
            double worst = diff.sub(bound).maxNumber().doubleValue();
            assertTrue(worst <= 0, c + ": layer " + layer + ": mean of " + runs + " KFAC(1) B is more than 5 standard "
                    + "errors from KFLR's B (max |diff| " + diff.maxNumber() + ", max|B| " + b.amaxNumber() + ")");
            // and overall: 200 samples leave a relative Frobenius error of roughly 0.01–0.12 here
            double relative = mean.sub(b).norm2Number().doubleValue() / b.norm2Number().doubleValue();
            assertTrue(relative < 0.25, c + ": layer " + layer + ": relative error of the mean " + relative);
        }
    }

    // ---------------------------------------------------------------- 6. KFRA memory refusal

    static Net largeCnn() {
        return cnn("cnn 2x10x10 conv k3 p1 tanh (4x10x10), maxpool 2", Loss.MCXENT, 3, 2, 10, 10, 3,
                () -> new Layer[] {conv(3, 4, Activation.TANH).padding(1, 1).build(),
                    pool(PoolingType.MAX, 2, 2).build()});
    }

    @Test
    void kfraRefusesToExceedTheMemoryBudgetAndTheNetworkKeepsWorking() {
        Net c = largeCnn();
        MultiLayerNetwork net = c.build();
        INDArray x = c.features();
        INDArray y = c.labels();
        MultiLayerNetwork plain = net.clone();
        INDArray outputBefore = plain.output(x, false);
        Map<String, INDArray> gradient = BruteForce.gradientSum(plain.clone(), x, y);
        Quantities reference = BackPackNetwork.extend(net.clone()).backward(x, y, new KFLR());

        BackPackNetwork bp = BackPackNetwork.extend(net);
        // enough for KFLR's columns one at a time, not for KFRA: conv output 400 values, one 400×400
        // float64 matrix is 1.28 MB
        long budget = 500_000;
        bp.setCurvatureMemoryBudget(budget);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> bp.backward(x, y, new KFRA()));
        String message = String.valueOf(e.getMessage());
        assertTrue(message.contains("KFRA"), "message mentions KFRA: " + message);
        assertTrue(message.toLowerCase().contains("memory") && message.toLowerCase().contains("budget"),
                "message mentions the memory budget: " + message);

        // the network still works: plain inference, and another extension under the same budget
        assertClose(outputBefore, net.output(x, false), 0, 0, "output after the refusal");
        Quantities q = bp.backward(x, y, new KFLR());
        for (int layer : parametricLayers(net)) {
            KroneckerFactors expected = reference.get(KFLR.class, layer, "W");
            KroneckerFactors actual = q.get(KFLR.class, layer, "W");
            assertClose(expected.outputFactor(), actual.outputFactor(), 1e-12, 0, "KFLR B after refusal " + layer);
            assertClose(expected.inputFactor().orElseThrow(), actual.inputFactor().orElseThrow(), 1e-12, 0,
                    "KFLR A after refusal " + layer);
        }
        gradient.forEach((key, g) -> assertClose(g, net.gradient().getGradientFor(key), 1e-12, 0,
                "DL4J gradient after the refusal " + key));
        assertClose(outputBefore, net.output(x, false), 0, 0, "output after KFLR");

        // with room again, KFRA runs and matches the brute-force recursion
        bp.setCurvatureMemoryBudget(1L << 30);
        Quantities kfra = bp.backward(x, y, new KFRA());
        Map<Integer, INDArray> expectedB = BruteForceKronecker.averagedOutputFactors(
                BruteForceKronecker.chain(plain, x), c.loss);
        for (int layer : expectedB.keySet()) {
            assertClose(expectedB.get(layer), kfra.get(KFRA.class, layer, "W").outputFactor(), FD_RTOL, FD_ATOL,
                    "KFRA B after raising the budget, layer " + layer);
        }
    }

    /**
     * KFLR, KFAC and KFRA of the first layer of a network against brute-force references: its input
     * factor against {@code a}, KFLR's output factor against the exact bias GGN block (or the module
     * chain without bias), KFRA's against the averaged recursion, and every factor's layout.
     *
     * @param c the network case
     * @param net its network
     * @param a the expected input factor of the first layer
     * @param hasBias whether the first layer has a bias
     */
    static void assertFirstLayerFactors(Net c, MultiLayerNetwork net, INDArray a, boolean hasBias) {
        INDArray x = c.features();
        INDArray y = c.labels();
        BruteForceKronecker.Chain chain = BruteForceKronecker.chain(net, x);
        Map<Integer, INDArray> exactB = BruteForceKronecker.exactOutputFactors(chain, c.loss());
        Map<Integer, INDArray> averagedB = BruteForceKronecker.averagedOutputFactors(chain, c.loss());
        BruteForce.Jacobians jac = jacobians(c, net, x, y);
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new KFLR(), new KFAC(2), new KFRA());
        Map<Class<? extends Extension<KroneckerFactors>>, INDArray> expectedB = new java.util.LinkedHashMap<>();
        expectedB.put(KFLR.class, hasBias ? BruteForceKronecker.ggnBlock(jac, c.loss(), "0_b") : exactB.get(0));
        expectedB.put(KFRA.class, averagedB.get(0));
        if (hasBias) {
            assertClose(expectedB.get(KFLR.class), exactB.get(0), FD_RTOL, FD_ATOL,
                    c + ": reference self-check (module chain vs bias GGN)");
        }
        for (Class<? extends Extension<KroneckerFactors>> e : List.of(KFLR.class, KFAC.class, KFRA.class)) {
            String what = c + ": " + e.getSimpleName();
            KroneckerFactors w = q.get(e, 0, "W");
            assertClose(a, w.inputFactor().orElseThrow(), 1e-9, 1e-12, what + " A");
            if (expectedB.containsKey(e)) {
                assertClose(expectedB.get(e), w.outputFactor(), FD_RTOL, FD_ATOL, what + " B");
            }
            assertLayout(q, e, net, 0, what);
        }
    }
}
