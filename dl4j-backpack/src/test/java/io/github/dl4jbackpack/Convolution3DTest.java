// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.BruteForceKroneckerTest.Net;
import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagGGNMC;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.Convolution3D;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.Subsampling3DLayer;
import org.deeplearning4j.nn.conf.layers.Upsampling3D;
import org.deeplearning4j.nn.conf.layers.ZeroPadding3DLayer;
import org.deeplearning4j.nn.conf.layers.convolutional.Cropping3D;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * 3D convolutions ({@code Convolution3D}, NCDHW) and the parameter-free 3D layers
 * ({@code Subsampling3DLayer}, {@code Upsampling3D}, {@code ZeroPadding3DLayer}, {@code Cropping3D}) in
 * networks ending in a dense output layer, float64 against independent references: first order against
 * DL4J's single-example passes, the GGN against explicit Jacobians from DL4J's backward passes, the
 * Hessian against finite differences of DL4J's gradient, and the Kronecker factors against the
 * brute-force references of {@link BruteForceKroneckerTest}, with the input-side factor from the
 * unfolding read off DL4J's own forward pass (one-hot weights). Truncate, Strict and Same modes; stride,
 * padding, dilation; with and without bias; ties in max pooling; float32 agreement. The parameter-free
 * kinds' Jacobians are also checked against DL4J's backward step in {@link LayerKindContractTest}.
 *
 * <p>DL4J 1.0.0-M2.1's shape inference for 3D layers mislabels some outputs (stride or dilation that
 * differ between height and width; padding, cropping and upsampling layers label their output NDHWC):
 * the networks here avoid those configurations in front of the flattening.
 */
class Convolution3DTest {

    private static final long N = 3;
    private static final long[] FEATURES = {N, 2, 4, 5, 4};

    record Case(String name, Supplier<Layer[]> hidden, BruteForce.Loss loss, int nOut) {
        @Override
        public String toString() {
            return name;
        }

        MultiLayerNetwork build(DataType type, LossFunction function, Activation activation) {
            List<Layer> layers = new ArrayList<>(Arrays.asList(hidden.get()));
            layers.add(new OutputLayer.Builder(function).activation(activation).nOut(nOut).build());
            return TestNets.build(type, input(), layers.toArray(new Layer[0]));
        }

        MultiLayerNetwork build() {
            return build(DataType.DOUBLE, loss.function, loss.activation);
        }
    }

    private static InputType input() {
        return InputType.convolutional3D(Convolution3D.DataFormat.NCDHW, FEATURES[2], FEATURES[3], FEATURES[4],
                FEATURES[1]);
    }

    static Convolution3D.Builder conv3d(int kD, int kH, int kW, int nOut, Activation activation) {
        return new Convolution3D.Builder(kD, kH, kW).nOut(nOut).activation(activation);
    }

    static Subsampling3DLayer.Builder pool3d(PoolingType type, int k, int s) {
        return new Subsampling3DLayer.Builder(type).kernelSize(k, k, k).stride(s, s, s)
                .convolutionMode(ConvolutionMode.Truncate);
    }

    static Stream<Case> cases() {
        return Stream.of(
                new Case("k2 tanh, max pooling k2 s1", () -> new Layer[] {
                    conv3d(2, 2, 2, 3, Activation.TANH).build(),
                    pool3d(PoolingType.MAX, 2, 1).build()}, BruteForce.Loss.MCXENT, 3),
                new Case("k2x3x3 stride 2 same, softplus, upsampling 2, average pooling k2 s2", () -> new Layer[] {
                    conv3d(2, 3, 3, 2, Activation.SOFTPLUS).stride(2, 2, 2).convolutionMode(ConvolutionMode.Same)
                            .build(),
                    new Upsampling3D.Builder(2).build(),
                    pool3d(PoolingType.AVG, 2, 2).build()}, BruteForce.Loss.MSE, 2),
                new Case("k2 stride 2x1x1 padding 1x0x0 dilation 1x2x2, no bias, sigmoid, zero padding, cropping",
                    () -> new Layer[] {
                        conv3d(2, 2, 2, 2, Activation.SIGMOID).stride(2, 1, 1).padding(1, 0, 0).dilation(1, 2, 2)
                                .hasBias(false).build(),
                        new ZeroPadding3DLayer.Builder(1, 0, 0, 1, 1, 0).build(),
                        new Cropping3D.Builder(0, 1, 1, 0, 0, 1).build(),
                        pool3d(PoolingType.MAX, 1, 1).build()}, BruteForce.Loss.XENT, 2),
                new Case("k3 strict padding 1, elu, then a 1x1x1 convolution, max pooling k2 s2", () -> new Layer[] {
                    conv3d(3, 3, 3, 2, Activation.ELU).padding(1, 1, 1).convolutionMode(ConvolutionMode.Strict).build(),
                    conv3d(1, 1, 1, 2, Activation.TANH).build(),
                    pool3d(PoolingType.MAX, 2, 2).build()}, BruteForce.Loss.L2, 2));
    }

    @BeforeEach
    void float64Defaults() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    private static INDArray features(DataType type) {
        return TestNets.features(type, 5, FEATURES);
    }

    private static INDArray labels(Case c) {
        return TestNets.labels(DataType.DOUBLE, c.loss().function, 6, N, c.nOut());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void firstOrderQuantitiesEqualSingleExamplePasses(Case c) {
        MultiLayerNetwork net = c.build();
        INDArray x = features(DataType.DOUBLE);
        INDArray y = labels(c);
        Reference.assertFirstOrderEqualsSingleExamplePasses(net, x, y, c.toString());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void curvatureDiagonalsEqualJacobiansAndFiniteDifferences(Case c) {
        MultiLayerNetwork net = c.build();
        INDArray x = features(DataType.DOUBLE);
        INDArray y = labels(c);
        Map<String, INDArray> perExampleGgn = BruteForce.batchDiagGgn(BruteForce.jacobians(jacobianNetwork(c, net), x),
                c.loss());
        BruteForce.HessianDiagonals hessian = BruteForce.finiteDifferenceHessian(net.clone(), x, y, 1e-4);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact(),
                new DiagHessian(), new BatchDiagHessian());
        perExampleGgn.forEach((key, expected) -> {
            String what = c + " " + key;
            assertClose(expected, q.byKey(BatchDiagGGNExact.class, key), 1e-9, 1e-12, what + " BatchDiagGGNExact");
            assertClose(expected.sum(0), q.byKey(DiagGGNExact.class, key), 1e-9, 1e-12, what + " DiagGGNExact");
            assertClose(hessian.perExample.get(key), q.byKey(BatchDiagHessian.class, key), 1e-5, 1e-7,
                    what + " BatchDiagHessian");
            assertClose(hessian.batch.get(key), q.byKey(DiagHessian.class, key), 1e-5, 1e-7, what + " DiagHessian");
        });
    }

    /** @return a copy of the network whose output layer is identity + L2 (its output is the pre-activation) */
    private static MultiLayerNetwork jacobianNetwork(Case c, MultiLayerNetwork net) {
        MultiLayerNetwork identityOutput = c.build(DataType.DOUBLE, LossFunction.L2, Activation.IDENTITY);
        identityOutput.setParams(net.params());
        return identityOutput;
    }

    /** The Monte-Carlo GGN, batch and per example, with many samples approaches the exact one. */
    @Test
    void monteCarloGgnApproachesTheExactOne() {
        Case c = cases().findFirst().orElseThrow();
        MultiLayerNetwork net = c.build();
        INDArray x = features(DataType.DOUBLE);
        INDArray y = labels(c);
        Quantities exact = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact());
        TestNets.seed(99);
        Quantities mc = BackPackNetwork.extend(net).backward(x, y, new DiagGGNMC(4000), new BatchDiagGGNMC(4000));
        for (String key : exact.keys(DiagGGNExact.class)) {
            assertRoughly(exact.byKey(DiagGGNExact.class, key), mc.byKey(DiagGGNMC.class, key), "DiagGGNMC " + key);
            assertRoughly(exact.byKey(BatchDiagGGNExact.class, key), mc.byKey(BatchDiagGGNMC.class, key),
                    "BatchDiagGGNMC " + key);
        }
    }

    private static void assertRoughly(INDArray expected, INDArray actual, String what) {
        double scale = expected.norm2Number().doubleValue();
        double error = actual.sub(expected).norm2Number().doubleValue();
        assertTrue(error <= 0.15 * scale + 1e-9, what + ": error " + error + " vs norm " + scale);
    }

    /**
     * Max pooling of tied inputs (integer-valued features through a 1x1x1 convolution): the GGN of the
     * convolution below equals the one from DL4J's own backward passes, which route every tie as the
     * second-order pass does.
     */
    @Test
    void maxPoolingTiesRouteAsDl4j() {
        Case c = new Case("ties: k1 tanh, max pooling k2 s2", () -> new Layer[] {
            conv3d(1, 1, 1, 2, Activation.TANH).build(),
            pool3d(PoolingType.MAX, 2, 2).build()}, BruteForce.Loss.MCXENT, 3);
        MultiLayerNetwork net = c.build();
        INDArray x = org.nd4j.linalg.ops.transforms.Transforms.round(features(DataType.DOUBLE).muli(0.6));
        INDArray y = labels(c);
        Map<String, INDArray> perExampleGgn = BruteForce.batchDiagGgn(BruteForce.jacobians(jacobianNetwork(c, net), x),
                c.loss());
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new BatchDiagGGNExact());
        perExampleGgn.forEach((key, expected) -> assertClose(expected, q.byKey(BatchDiagGGNExact.class, key), 1e-9,
                1e-12, "ties " + key));
    }

    @Test
    void float32AgreesWithFloat64() {
        Case c = cases().skip(1).findFirst().orElseThrow();
        MultiLayerNetwork doubles = c.build();
        MultiLayerNetwork floats = c.build(DataType.FLOAT, c.loss().function, c.loss().activation);
        floats.setParams(doubles.params().castTo(DataType.FLOAT));
        INDArray y = labels(c);
        Extension<?>[] extensions = {new BatchGrad(), new BatchL2Grad(), new DiagGGNExact(), new DiagHessian(),
            new KFLR()};
        Quantities expected = BackPackNetwork.extend(doubles).backward(features(DataType.DOUBLE), y, extensions);
        Quantities actual = BackPackNetwork.extend(floats).backward(features(DataType.FLOAT),
                y.castTo(DataType.FLOAT), extensions);
        for (String key : expected.keys(BatchGrad.class)) {
            for (Class<? extends Extension<INDArray>> e : List.of(BatchGrad.class, BatchL2Grad.class,
                    DiagGGNExact.class, DiagHessian.class)) {
                assertClose(expected.byKey(e, key), actual.byKey(e, key).castTo(DataType.DOUBLE), 1e-3, 1e-5,
                        "float32 " + e.getSimpleName() + " " + key);
            }
        }
        KroneckerFactors k64 = expected.get(KFLR.class, 0, "W");
        KroneckerFactors k32 = actual.get(KFLR.class, 0, "W");
        assertClose(k64.inputFactor().orElseThrow(), k32.inputFactor().orElseThrow().castTo(DataType.DOUBLE), 1e-4,
                1e-6, "float32 KFLR A");
        assertClose(k64.outputFactor(), k32.outputFactor().castTo(DataType.DOUBLE), 1e-3, 1e-6, "float32 KFLR B");
    }

    @Test
    void ndhwcIsRefusedNamingTheLayer() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE,
                InputType.convolutional3D(Convolution3D.DataFormat.NDHWC, 4, 5, 4, 2),
                conv3d(2, 2, 2, 2, Activation.TANH).dataFormat(Convolution3D.DataFormat.NDHWC).build(),
                new OutputLayer.Builder(LossFunction.MSE).activation(Activation.IDENTITY).nOut(2).build());
        INDArray x = TestNets.features(DataType.DOUBLE, 5, N, 4, 5, 4, 2);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MSE, 6, N, 2);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(net).backward(x, y, new BatchGrad()));
        assertTrue(e.parts().stream().anyMatch(p -> p.layer().equals("0") && p.reason().contains("NDHWC")),
                e.getMessage());
    }

    // ---------------------------------------------------------------- Kronecker factors

    private static Net net3d(String name, BruteForce.Loss loss, int n, int c, int d, int h, int w, int nOut,
                             Supplier<Layer[]> hidden) {
        return new Net(name, InputType.convolutional3D(Convolution3D.DataFormat.NCDHW, d, h, w, c),
                new long[] {n, c, d, h, w}, loss, nOut, hidden);
    }

    static Stream<Net> kroneckerCases() {
        return Stream.of(
                net3d("conv3d k2 s2 tanh, dense output", BruteForce.Loss.MCXENT, 3, 2, 3, 4, 3, 3,
                        () -> new Layer[] {conv3d(2, 2, 2, 2, Activation.TANH).stride(2, 2, 2).build()}),
                net3d("conv3d k2x3x3 s2 same softplus", BruteForce.Loss.MSE, 3, 2, 3, 4, 3, 2,
                        () -> new Layer[] {conv3d(2, 3, 3, 2, Activation.SOFTPLUS).stride(2, 2, 2)
                                .convolutionMode(ConvolutionMode.Same).build()}),
                net3d("conv3d k2 s2x1x1 p1x0x0 d1x2x2 no bias sigmoid", BruteForce.Loss.XENT, 3, 2, 3, 4, 3, 2,
                        () -> new Layer[] {conv3d(2, 2, 2, 2, Activation.SIGMOID).stride(2, 1, 1).padding(1, 0, 0)
                                .dilation(1, 2, 2).hasBias(false).build()}));
    }

    /**
     * The unfolding from DL4J's own forward pass: the layer is linear in W, so with W the one-hot
     * {@code e_(0, i, kd, kh, kw)} and no bias, output channel 0 is row {@code (i, kd, kh, kw)} of U.
     *
     * @return {@code (1/N) Σ_n U_n U_nᵀ}
     */
    static INDArray inputFactor(Convolution3D conf, INDArray input) {
        Convolution3D linear = (Convolution3D) conf.clone();
        linear.setActivationFn(new ActivationIdentity());
        linear.setHasBias(false);
        MultiLayerNetwork single = BruteForceKronecker.single(linear, null);
        INDArray w = single.getParam("0_W");
        long[] s = w.shape();
        List<INDArray> rows = new ArrayList<>();
        for (long i = 0; i < s[1]; i++) {
            for (long a = 0; a < s[2]; a++) {
                for (long b = 0; b < s[3]; b++) {
                    for (long k = 0; k < s[4]; k++) {
                        single.params().assign(0);
                        w.putScalar(new long[] {0, i, a, b, k}, 1.0);
                        INDArray z = single.output(input, false).castTo(DataType.DOUBLE);
                        rows.add(z.get(NDArrayIndex.all(),
                                NDArrayIndex.point(0)).dup('c').reshape('c', z.size(0), 1,
                                z.size(2) * z.size(3) * z.size(4)));
                    }
                }
            }
        }
        INDArray u = Nd4j.concat(1, rows.toArray(new INDArray[0]));   // [N, K, P]
        return Nd4j.tensorMmul(u, u, new int[][] {{0, 2}, {0, 2}}).divi(input.size(0));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("kroneckerCases")
    void kroneckerFactorsEqualBruteForceReferences(Net c) {
        MultiLayerNetwork net = c.build();
        Convolution3D conf = (Convolution3D) BruteForceKroneckerTest.conf(net, 0);
        BruteForceKroneckerTest.assertFirstLayerFactors(c, net, inputFactor(conf, c.features()), conf.hasBias());
    }

    /** One example and one output position: KFLR's product, in paramTable() order, is the exact GGN block. */
    @Test
    void kflrIsTheExactGgnBlockForOneExampleAndOnePosition() {
        Net c = net3d("N=1, 2x1x1x1, conv3d k3 p1 to 1x1x1 tanh, dense", BruteForce.Loss.MCXENT, 1, 2, 1, 1, 1, 3,
                () -> new Layer[] {conv3d(3, 3, 3, 3, Activation.TANH).padding(1, 1, 1).build()});
        MultiLayerNetwork net = c.build();
        INDArray x = c.features();
        INDArray y = c.labels();
        BruteForce.Jacobians jac = BruteForceKroneckerTest.jacobians(c, net, x, y);
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new KFLR());
        for (String key : jac.shapes.keySet()) {
            KroneckerFactors f = q.get(KFLR.class, BruteForce.layerOf(key), BruteForce.paramOf(key));
            assertClose(BruteForceKronecker.ggnBlock(jac, c.loss(), key), f.toMatrix(), 1e-9, 1e-12,
                    "KFLR toMatrix() vs exact GGN block of " + key);
        }
        assertEquals(net.getParam("0_W").length(), q.get(KFLR.class, 0, "W").dimension(), "dimension");
    }
}
