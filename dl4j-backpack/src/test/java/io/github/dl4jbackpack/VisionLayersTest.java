// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.Upsampling2D;
import org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer;
import org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
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

/**
 * Second order through the parameter-free vision layers (global max/average/sum pooling, zero
 * padding, cropping, nearest-neighbour upsampling): the GGN diagonal against explicit Jacobians from
 * DL4J, the Hessian diagonal against finite differences of DL4J's gradient, first order against a loop
 * of single-example passes, in float64.
 */
class VisionLayersTest {

    record Case(String name, Supplier<Layer[]> hidden, BruteForce.Loss loss, int nOut) {
        @Override
        public String toString() {
            return name;
        }

        MultiLayerNetwork build(LossFunction function, Activation activation) {
            List<Layer> layers = new ArrayList<>(Arrays.asList(hidden.get()));
            layers.add(new OutputLayer.Builder(function).activation(activation).nOut(nOut).build());
            return TestNets.build(DataType.DOUBLE, InputType.convolutional(6, 6, 2), layers.toArray(new Layer[0]));
        }
    }

    static Stream<Case> cases() {
        return Stream.of(
                new Case("pad-crop-upsample-globalavg", () -> new Layer[] {
                    new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.TANH).build(),
                    new ZeroPaddingLayer.Builder(1, 1, 1, 1).build(),
                    new Cropping2D.Builder(1, 0, 0, 1).build(),
                    new Upsampling2D.Builder(2).build(),
                    new ConvolutionLayer.Builder(3, 3).stride(2, 2).nOut(2).activation(Activation.SOFTPLUS).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.AVG).build()},
                        BruteForce.Loss.MCXENT, 3),
                new Case("globalmax-dense", () -> new Layer[] {
                    new ConvolutionLayer.Builder(3, 3).nOut(4).activation(Activation.SIGMOID).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.MAX).build(),
                    new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build()},
                        BruteForce.Loss.MSE, 2),
                new Case("globalsum-uncollapsed", () -> new Layer[] {
                    new ConvolutionLayer.Builder(2, 2).nOut(3).activation(Activation.ELU).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.SUM).collapseDimensions(false).build()},
                        BruteForce.Loss.XENT, 2));
    }

    @org.junit.jupiter.api.Test
    void localResponseNormalisationGgnEqualsCentralDifferencesOfTheForwardPass() {
        Case c = new Case("lrn", () -> new Layer[] {
            new ConvolutionLayer.Builder(3, 3).nOut(5).activation(Activation.RELU).build(),
            new org.deeplearning4j.nn.conf.layers.LocalResponseNormalization.Builder().k(1.5).n(3).alpha(0.3)
                    .beta(0.75).build()}, BruteForce.Loss.MCXENT, 3);
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 3, 2, 6, 6);
        INDArray y = TestNets.labels(DataType.DOUBLE, c.loss().function, 4, 3, c.nOut());
        MultiLayerNetwork ref = c.build(LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        // Jacobians by central differences of the forward pass: DL4J's backward step of LRN is not its
        // derivative (LayerKindContractTest), so Jacobians from DL4J's backward passes would not do
        Map<String, INDArray> ggn = BruteForce.sumOverBatch(BruteForce.batchDiagGgn(
                BatchNormalizationTest.jacobians(ref, x, false), c.loss()));
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities q = bp.backward(x, y, new DiagGGNExact(), new KFLR());
        for (String key : ggn.keySet()) {
            assertClose(ggn.get(key), q.get(DiagGGNExact.class, BruteForce.layerOf(key), BruteForce.paramOf(key)),
                    1e-7, 1e-10, "LRN GGN " + key);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void curvatureAndFirstOrderEqualTheReferences(Case c) {
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 3, 2, 6, 6);
        INDArray y = TestNets.labels(DataType.DOUBLE, c.loss().function, 4, 3, c.nOut());
        MultiLayerNetwork plain = net.clone();
        MultiLayerNetwork ref = c.build(LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        BruteForce.Jacobians jac = BruteForce.jacobians(ref, x);
        Map<String, INDArray> batchGgn = BruteForce.batchDiagGgn(jac, c.loss());
        Map<String, INDArray> ggn = BruteForce.sumOverBatch(batchGgn);
        BruteForce.HessianDiagonals fd = BruteForce.finiteDifferenceHessian(plain.clone(), x, y, 1e-4);
        Map<String, INDArray> loop = Reference.individualGradients(plain, x, y);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact(),
                new DiagHessian(), new BatchGrad(), new KFLR(), new KFRA());
        for (String key : ggn.keySet()) {
            int layer = BruteForce.layerOf(key);
            String param = BruteForce.paramOf(key);
            assertClose(ggn.get(key), q.get(DiagGGNExact.class, layer, param), 1e-9, 1e-13, c + " GGN " + key);
            assertClose(batchGgn.get(key), q.get(BatchDiagGGNExact.class, layer, param), 1e-9, 1e-13,
                    c + " per-example GGN " + key);
            assertClose(fd.batch.get(key), q.get(DiagHessian.class, layer, param), 1e-5, 1e-7, c + " Hessian " + key);
            assertClose(loop.get(key), q.get(BatchGrad.class, layer, param), 1e-10, 1e-13, c + " BatchGrad " + key);
        }
    }
}
