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
}
