// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LocalResponseNormalization;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Hessian residuals of layers without parameters that are not piecewise linear in their input
 * (local response normalisation, p-norm pooling, global p-norm pooling): DiagHessian and
 * BatchDiagHessian of the layers below against five-point second differences of DL4J's own loss,
 * float64, and float32 within tolerance. Each network is chosen so that the residual matters: the
 * Hessian differs from the GGN by far more than the tolerance.
 */
class InputResidualTest {

    /**
     * @param pools whether the layer pools globally itself (else a global average pooling follows it)
     * @param below the activation of the convolution below the layer
     */
    record Case(String name, Supplier<Layer> layer, boolean pools, Activation below) {
        Case(String name, Supplier<Layer> layer) {
            this(name, layer, false, Activation.TANH);
        }

        @Override
        public String toString() {
            return name;
        }

        MultiLayerNetwork build(DataType type) {
            Layer conv = new ConvolutionLayer.Builder(2, 2).nOut(4).activation(below).build();
            Layer out = new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3).build();
            return pools ? TestNets.build(type, InputType.convolutional(6, 5, 2), conv, layer.get(), out)
                    : TestNets.build(type, InputType.convolutional(6, 5, 2), conv, layer.get(),
                    new GlobalPoolingLayer.Builder(PoolingType.AVG).build(), out);
        }
    }

    static Stream<Case> cases() {
        return Stream.of(
                new Case("local response normalisation n=3", () -> new LocalResponseNormalization.Builder().k(0.5)
                        .n(3).alpha(0.8).beta(0.75).build(), false, Activation.LEAKYRELU),
                new Case("local response normalisation n=5 (window wider than the channels)", () ->
                        new LocalResponseNormalization.Builder().k(1.0).n(5).alpha(1.5).beta(1.3).build(), false,
                        Activation.LEAKYRELU),
                new Case("p-norm pooling p=2", () -> new SubsamplingLayer.Builder(PoolingType.PNORM).pnorm(2)
                        .kernelSize(2, 2).stride(1, 1).build()),
                new Case("p-norm pooling p=3, same mode, stride 2", () -> new SubsamplingLayer.Builder(PoolingType.PNORM)
                        .pnorm(3).kernelSize(3, 2).stride(2, 2).convolutionMode(ConvolutionMode.Same).build()),
                new Case("global p-norm pooling p=2, not collapsed", () -> new GlobalPoolingLayer.Builder(PoolingType.PNORM)
                        .pnorm(2).collapseDimensions(false).build(), true, Activation.TANH),
                new Case("global p-norm pooling p=3", () -> new GlobalPoolingLayer.Builder(PoolingType.PNORM).pnorm(3)
                        .build(), true, Activation.TANH));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void hessianDiagonalsEqualFiniteDifferences(Case c) {
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        INDArray x = TestNets.features(DataType.DOUBLE, 11, 4, 2, 6, 5).muli(2.0);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 12, 4, 3);
        // five-point second differences of DL4J's loss (not of DL4J's gradient: its backward step of local
        // response normalisation is not the derivative of its forward step)
        MultiLayerNetwork ref = net.clone();
        Map<String, INDArray> batch = BatchNormalizationTest.hessianDiagonal(ref, () -> ref.score(new DataSet(x, y)));
        long n = x.size(0);
        List<Map<String, INDArray>> perExample = new ArrayList<>();
        for (int m = 0; m < n; m++) {
            DataSet example = new DataSet(Reference.example(x, m), Reference.example(y, m));
            perExample.add(BatchNormalizationTest.hessianDiagonal(ref, () -> ref.score(example) / n));
        }
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagHessian(), new BatchDiagHessian(),
                new DiagGGNExact());
        double gap = 0;
        for (String key : new String[] {"0_W", "0_b"}) {
            assertClose(batch.get(key), q.byKey(DiagHessian.class, key), 1e-5, 1e-7, c + " Hessian " + key);
            for (int m = 0; m < n; m++) {
                assertClose(perExample.get(m).get(key), q.byKey(BatchDiagHessian.class, key).slice(m)
                        .reshape(batch.get(key).shape()), 1e-5, 1e-7, c + " Hessian of example " + m + " " + key);
            }
            gap = Math.max(gap, q.byKey(DiagHessian.class, key).sub(q.byKey(DiagGGNExact.class, key)).amaxNumber()
                    .doubleValue() / q.byKey(DiagHessian.class, key).amaxNumber().doubleValue());
        }
        assertTrue(gap > 1e-2, c + ": the residual should matter here, relative gap " + gap);
    }

    /**
     * DL4J's backward step of local response normalisation is not its derivative, so a Hessian residual
     * below it (here the convolution's tanh) would use an inexact gradient: refused, naming the layer.
     */
    @Test
    void hessianResidualsBelowLocalResponseNormalisationAreRefused() {
        Case c = new Case("LRN over tanh", () -> new LocalResponseNormalization.Builder().build());
        MultiLayerNetwork net = c.build(DataType.DOUBLE);
        INDArray x = TestNets.features(DataType.DOUBLE, 11, 4, 2, 6, 5);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 12, 4, 3);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        UnsupportedLayerException e = org.junit.jupiter.api.Assertions.assertThrows(UnsupportedLayerException.class,
                () -> bp.backward(x, y, new DiagHessian()));
        org.junit.jupiter.api.Assertions.assertEquals("1", e.layerName(), e.getMessage());
        assertTrue(e.getMessage().contains("not the derivative"), e.getMessage());
        bp.backward(x, y, new DiagGGNExact());
    }

    @Test
    void float32AgreesWithFloat64() {
        for (Case c : cases().toList()) {
            MultiLayerNetwork net64 = c.build(DataType.DOUBLE);
            MultiLayerNetwork net32 = c.build(DataType.FLOAT);
            net32.setParams(net64.params().castTo(DataType.FLOAT));
            INDArray x = TestNets.features(DataType.DOUBLE, 11, 4, 2, 6, 5).muli(2.0);
            INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 12, 4, 3);
            Quantities d64 = BackPackNetwork.extend(net64).backward(x, y, new DiagHessian());
            Quantities d32 = BackPackNetwork.extend(net32).backward(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT),
                    new DiagHessian());
            for (String key : d64.keys(DiagHessian.class)) {
                assertClose(d64.byKey(DiagHessian.class, key), d32.byKey(DiagHessian.class, key).castTo(DataType.DOUBLE),
                        1e-3, 1e-5, c + " float32 " + key);
            }
        }
    }
}
