// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.BruteForceKroneckerTest.Net;
import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.Deconvolution2D;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
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
 * Transposed convolutions ({@code Deconvolution2D}), float64 against independent references: first
 * order against DL4J's single-example passes, the GGN against explicit Jacobians from DL4J's backward
 * passes, the Hessian against finite differences of DL4J's gradient, and the Kronecker factors against
 * the brute-force references of {@link BruteForceKroneckerTest}, with the input-side factor from a
 * transposed unfolding read off DL4J's own forward pass (one-hot weights). Truncate, Strict and Same
 * modes; stride, padding, dilation; with and without bias; float32 agreement.
 */
class DeconvolutionTest {

    private static final long N = 3;
    private static final long[] FEATURES = {N, 2, 4, 3};

    record Case(String name, Supplier<Layer[]> hidden, BruteForce.Loss loss, int nOut) {
        @Override
        public String toString() {
            return name;
        }

        MultiLayerNetwork build(DataType type, LossFunction function, Activation activation) {
            List<Layer> layers = new ArrayList<>(Arrays.asList(hidden.get()));
            layers.add(new OutputLayer.Builder(function).activation(activation).nOut(nOut).build());
            return TestNets.build(type, InputType.convolutional(FEATURES[2], FEATURES[3], FEATURES[1]),
                    layers.toArray(new Layer[0]));
        }

        MultiLayerNetwork build() {
            return build(DataType.DOUBLE, loss.function, loss.activation);
        }
    }

    static Deconvolution2D.Builder deconv(int kH, int kW, int nOut, Activation activation) {
        return new Deconvolution2D.Builder(kH, kW).nOut(nOut).activation(activation);
    }

    static Stream<Case> cases() {
        return Stream.of(
                new Case("k2 stride 2, tanh, global average pooling", () -> new Layer[] {
                    deconv(2, 2, 3, Activation.TANH).stride(2, 2).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.AVG).build()}, BruteForce.Loss.MCXENT, 3),
                new Case("k3 stride 2 same, softplus, global max pooling", () -> new Layer[] {
                    deconv(3, 3, 2, Activation.SOFTPLUS).stride(2, 2).convolutionMode(ConvolutionMode.Same).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.MAX).build()}, BruteForce.Loss.MSE, 2),
                new Case("k2x3 stride 2x1 padding 1x0 dilation 1x2, no bias, sigmoid", () -> new Layer[] {
                    deconv(2, 3, 2, Activation.SIGMOID).stride(2, 1).padding(1, 0).dilation(1, 2).hasBias(false)
                            .build()}, BruteForce.Loss.XENT, 2),
                new Case("k3 strict padding 1, elu, then a 1x1 convolution", () -> new Layer[] {
                    deconv(3, 3, 2, Activation.ELU).padding(1, 1).convolutionMode(ConvolutionMode.Strict).build(),
                    new ConvolutionLayer.Builder(1, 1).nOut(2).activation(Activation.TANH).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.AVG).build()}, BruteForce.Loss.L2, 2),
                new Case("k1 stride 3 same (negative padding), identity", () -> new Layer[] {
                    deconv(1, 1, 2, Activation.IDENTITY).stride(3, 3).convolutionMode(ConvolutionMode.Same).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.AVG).build()}, BruteForce.Loss.MCXENT, 2));
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
        MultiLayerNetwork identityOutput = c.build(DataType.DOUBLE, LossFunction.L2, Activation.IDENTITY);
        identityOutput.setParams(net.params());
        Map<String, INDArray> perExampleGgn = BruteForce.batchDiagGgn(BruteForce.jacobians(identityOutput, x), c.loss());
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

    /** Below a batch normalisation with the batch's statistics, the columns span the batch. */
    @Test
    void belowABatchNormalisationTheGgnEqualsWholeBatchJacobians() {
        Case c = new Case("k2 stride 2 tanh, batch normalisation", () -> new Layer[] {
            deconv(2, 2, 3, Activation.TANH).stride(2, 2).build(),
            new org.deeplearning4j.nn.conf.layers.BatchNormalization.Builder().build(),
            new GlobalPoolingLayer.Builder(PoolingType.AVG).build()}, BruteForce.Loss.MCXENT, 3);
        MultiLayerNetwork net = c.build();
        BatchNormalizationTest.positiveVariances(net);
        MultiLayerNetwork identityOutput = c.build(DataType.DOUBLE, LossFunction.L2, Activation.IDENTITY);
        identityOutput.setParams(net.params());
        INDArray x = features(DataType.DOUBLE);
        Map<String, INDArray> ggn = BruteForce.sumOverBatch(BruteForce.batchDiagGgn(
                BatchNormalizationTest.jacobians(identityOutput, x, true), c.loss()));
        Quantities q = BackPackNetwork.extend(net).backward(x, labels(c), new DiagGGNExact());
        ggn.forEach((key, expected) -> assertClose(expected, q.byKey(DiagGGNExact.class, key), 1e-6, 1e-9,
                c + " DiagGGNExact " + key));
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

    // ---------------------------------------------------------------- Kronecker factors

    static Stream<Net> kroneckerCases() {
        return Stream.of(
                BruteForceKroneckerTest.cnn("deconv k2 s2 tanh, dense output", BruteForce.Loss.MCXENT, 3, 2, 3, 2, 3,
                        () -> new Layer[] {deconv(2, 2, 2, Activation.TANH).stride(2, 2).build()}),
                BruteForceKroneckerTest.cnn("deconv k3 s2 same softplus, maxpool 2 s2", BruteForce.Loss.MSE, 3, 2, 3, 2, 2,
                        () -> new Layer[] {deconv(3, 3, 2, Activation.SOFTPLUS).stride(2, 2)
                                .convolutionMode(ConvolutionMode.Same).build(),
                            BruteForceKroneckerTest.pool(PoolingType.MAX, 2, 2).build()}),
                BruteForceKroneckerTest.cnn("deconv k2x3 s2x1 p1x0 d1x2 no bias sigmoid", BruteForce.Loss.XENT, 3, 2,
                        3, 2, 2, () -> new Layer[] {deconv(2, 3, 2, Activation.SIGMOID).stride(2, 1).padding(1, 0)
                                .dilation(1, 2).hasBias(false).build()}));
    }

    /**
     * The transposed unfolding from DL4J's own forward pass: the layer is linear in W, so with W the
     * one-hot {@code e_(i, 0, kh, kw)} and no bias, output channel 0 is row {@code (i, kh, kw)} of Ũ.
     *
     * @return {@code (1/N) Σ_n Ũ_n Ũ_nᵀ}
     */
    static INDArray inputFactor(Deconvolution2D conf, INDArray input) {
        Deconvolution2D linear = (Deconvolution2D) conf.clone();
        linear.setActivationFn(new ActivationIdentity());
        MultiLayerNetwork single = BruteForceKronecker.single(linear, null);
        INDArray w = single.getParam("0_W");
        long c = w.size(0);
        long kh = w.size(2);
        long kw = w.size(3);
        List<INDArray> rows = new ArrayList<>();
        for (long i = 0; i < c; i++) {
            for (long a = 0; a < kh; a++) {
                for (long b = 0; b < kw; b++) {
                    single.params().assign(0);
                    w.putScalar(new long[] {i, 0, a, b}, 1.0);
                    INDArray z = single.output(input, false).castTo(DataType.DOUBLE);
                    rows.add(z.get(NDArrayIndex.all(), NDArrayIndex.point(0)).dup('c')
                            .reshape('c', z.size(0), 1, z.size(2) * z.size(3)));
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
        Deconvolution2D conf = (Deconvolution2D) BruteForceKroneckerTest.conf(net, 0);
        BruteForceKroneckerTest.assertFirstLayerFactors(c, net, inputFactor(conf, c.features()), conf.hasBias());
    }

    /** One example and one output position: KFLR's product, in paramTable() order, is the exact GGN block. */
    @Test
    void kflrIsTheExactGgnBlockForOneExampleAndOnePosition() {
        Net c = BruteForceKroneckerTest.cnn("N=1, 2x1x1, deconv k3 p1 to 1x1 tanh, dense", BruteForce.Loss.MCXENT, 1,
                2, 1, 1, 3, () -> new Layer[] {deconv(3, 3, 3, Activation.TANH).padding(1, 1).build()});
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
