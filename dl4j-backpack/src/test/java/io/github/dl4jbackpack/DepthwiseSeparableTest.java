// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.KFLR;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.DepthwiseConvolution2D;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SeparableConvolution2D;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
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

/**
 * Depthwise and separable convolutions, float64: first order against DL4J's single-example passes,
 * the GGN against explicit Jacobians from DL4J's backward passes, the Hessian against finite
 * differences of DL4J's gradient, and (below a batch normalisation) the batch GGN against central
 * differences of the whole batch's outputs.
 */
class DepthwiseSeparableTest {

    record Case(String name, Supplier<Layer[]> hidden, BruteForce.Loss loss, int nOut) {
        @Override
        public String toString() {
            return name;
        }

        MultiLayerNetwork build(LossFunction function, Activation activation) {
            List<Layer> layers = new ArrayList<>(Arrays.asList(hidden.get()));
            layers.add(new OutputLayer.Builder(function).activation(activation).nOut(nOut).build());
            MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.convolutional(6, 5, 2),
                    layers.toArray(new Layer[0]));
            BatchNormalizationTest.positiveVariances(net);
            return net;
        }
    }

    static Stream<Case> cases() {
        return Stream.of(
                new Case("depthwise x2, tanh", () -> new Layer[] {
                    new DepthwiseConvolution2D.Builder(2, 2).depthMultiplier(2).nOut(4).activation(Activation.TANH)
                            .build(),
                    new GlobalPoolingLayer.Builder(PoolingType.AVG).build()}, BruteForce.Loss.MCXENT, 3),
                new Case("separable x2 same stride 2, softplus", () -> new Layer[] {
                    new SeparableConvolution2D.Builder(3, 3).depthMultiplier(2).nOut(3).stride(2, 2)
                            .convolutionMode(ConvolutionMode.Same).activation(Activation.SOFTPLUS).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.MAX).build()}, BruteForce.Loss.MSE, 2),
                new Case("separable x1 without bias, sigmoid", () -> new Layer[] {
                    new SeparableConvolution2D.Builder(2, 2).depthMultiplier(1).nOut(3).hasBias(false)
                            .activation(Activation.SIGMOID).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.AVG).build()}, BruteForce.Loss.XENT, 2));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void everyQuantityEqualsTheReferences(Case c) {
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 4, 2, 6, 5);
        INDArray y = TestNets.labels(DataType.DOUBLE, c.loss().function, 4, 4, c.nOut());
        MultiLayerNetwork plain = net.clone();
        MultiLayerNetwork ref = c.build(LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        Map<String, INDArray> batchGgn = BruteForce.batchDiagGgn(BruteForce.jacobians(ref, x), c.loss());
        BruteForce.HessianDiagonals fd = BruteForce.finiteDifferenceHessian(plain.clone(), x, y, 1e-4);
        Map<String, INDArray> loop = Reference.individualGradients(plain, x, y);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact(),
                new DiagHessian(), new BatchDiagHessian(), new BatchGrad());
        for (String key : batchGgn.keySet()) {
            assertClose(batchGgn.get(key).sum(0), q.byKey(DiagGGNExact.class, key), 1e-9, 1e-12, c + " GGN " + key);
            assertClose(batchGgn.get(key), q.byKey(BatchDiagGGNExact.class, key), 1e-9, 1e-12,
                    c + " per-example GGN " + key);
            assertClose(fd.batch.get(key), q.byKey(DiagHessian.class, key), 1e-5, 1e-7, c + " Hessian " + key);
            assertClose(fd.perExample.get(key), q.byKey(BatchDiagHessian.class, key), 1e-5, 1e-7,
                    c + " per-example Hessian " + key);
            assertClose(loop.get(key), q.byKey(BatchGrad.class, key), 1e-10, 1e-12, c + " BatchGrad " + key);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void belowABatchNormalisationTheColumnsSpanTheBatch(Case c) {
        Supplier<Layer[]> withNormalisation = () -> {
            List<Layer> layers = new ArrayList<>(Arrays.asList(c.hidden().get()));
            layers.add(1, new BatchNormalization.Builder().build());
            return layers.toArray(new Layer[0]);
        };
        Case normalised = new Case(c.name() + " + BN", withNormalisation, c.loss(), c.nOut());
        MultiLayerNetwork net = normalised.build(c.loss().function, c.loss().activation);
        MultiLayerNetwork ref = normalised.build(LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 4, 2, 6, 5);
        INDArray y = TestNets.labels(DataType.DOUBLE, c.loss().function, 4, 4, c.nOut());
        Map<String, INDArray> ggn = BruteForce.sumOverBatch(BruteForce.batchDiagGgn(
                BatchNormalizationTest.jacobians(ref, x, true), c.loss()));
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact());
        for (String key : ggn.keySet()) {
            assertClose(ggn.get(key), q.byKey(DiagGGNExact.class, key), 1e-6, 1e-9, normalised + " GGN " + key);
        }
    }

    @Test
    void kroneckerFactorsAreRefusedNamingTheLayer() {
        Case c = cases().findFirst().orElseThrow();
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 4, 2, 6, 5);
        INDArray y = TestNets.labels(DataType.DOUBLE, c.loss().function, 4, 4, c.nOut());
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(net).backward(x, y, new KFLR()));
        assertEquals("0", e.layerName(), e.getMessage());
    }

    /** The element-wise multiplication layer, feed-forward, with and without a normalisation above it. */
    @Test
    void elementWiseMultiplicationEqualsTheReferences() {
        for (boolean normalised : new boolean[] {false, true}) {
            Supplier<MultiLayerNetwork> build = () -> {
                List<Layer> layers = new ArrayList<>();
                layers.add(new org.deeplearning4j.nn.conf.layers.DenseLayer.Builder().nOut(5)
                        .activation(Activation.TANH).build());
                layers.add(new org.deeplearning4j.nn.conf.layers.misc.ElementWiseMultiplicationLayer.Builder()
                        .nOut(5).activation(Activation.SIGMOID).build());
                if (normalised) {
                    layers.add(new BatchNormalization.Builder().build());
                }
                layers.add(new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3)
                        .build());
                return TestNets.build(DataType.DOUBLE, InputType.feedForward(4), layers.toArray(new Layer[0]));
            };
            MultiLayerNetwork net = build.get();
            BatchNormalizationTest.positiveVariances(net);
            INDArray x = TestNets.features(DataType.DOUBLE, 3, 5, 4);
            INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, 5, 3);
            MultiLayerNetwork identity = identityCopy(net);
            if (!normalised) {
                MultiLayerNetwork plain = net.clone();
                Map<String, INDArray> batchGgn = BruteForce.batchDiagGgn(BruteForce.jacobians(identity, x),
                        BruteForce.Loss.MCXENT);
                BruteForce.HessianDiagonals fd = BruteForce.finiteDifferenceHessian(plain.clone(), x, y, 1e-4);
                Map<String, INDArray> loop = Reference.individualGradients(plain, x, y);
                Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact(),
                        new DiagHessian(), new BatchGrad());
                for (String key : batchGgn.keySet()) {
                    assertClose(batchGgn.get(key).sum(0), q.byKey(DiagGGNExact.class, key), 1e-9, 1e-12, "GGN " + key);
                    assertClose(batchGgn.get(key), q.byKey(BatchDiagGGNExact.class, key), 1e-9, 1e-12,
                            "per-example GGN " + key);
                    // the references come from clones, whose parameters DL4J shapes [n] rather than [1, n] for
                    // this layer: compare values in the extended network's shapes
                    INDArray hessian = q.byKey(DiagHessian.class, key);
                    INDArray gradients = q.byKey(BatchGrad.class, key);
                    assertClose(fd.batch.get(key).reshape(hessian.shape()), hessian, 1e-5, 1e-7, "Hessian " + key);
                    assertClose(loop.get(key).reshape(gradients.shape()), gradients, 1e-10, 1e-12, "BatchGrad " + key);
                }
            } else {
                Map<String, INDArray> ggn = BruteForce.sumOverBatch(BruteForce.batchDiagGgn(
                        BatchNormalizationTest.jacobians(identity, x, true), BruteForce.Loss.MCXENT));
                Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact());
                for (String key : ggn.keySet()) {
                    assertClose(ggn.get(key), q.byKey(DiagGGNExact.class, key), 1e-6, 1e-9, "BN GGN " + key);
                }
            }
        }
    }

    /** @return a plain copy whose output layer is identity + L2 (its output is the pre-activation z) */
    private static MultiLayerNetwork identityCopy(MultiLayerNetwork net) {
        org.deeplearning4j.nn.conf.MultiLayerConfiguration conf = net.getLayerWiseConfigurations().clone();
        int last = conf.getConfs().size() - 1;
        OutputLayer out = (OutputLayer) conf.getConf(last).getLayer();
        out.setActivationFn(Activation.IDENTITY.getActivationFunction());
        out.setLossFn(LossFunction.L2.getILossFunction());
        MultiLayerNetwork copy = new MultiLayerNetwork(conf);
        copy.init();
        copy.setParams(net.params());
        return copy;
    }
}
