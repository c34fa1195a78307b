// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.KFLR;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PReLULayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SpaceToBatchLayer;
import org.deeplearning4j.nn.conf.layers.SpaceToDepthLayer;
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
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * PReLU layers (dense and convolutional inputs, alpha per feature or shared over axes) and space-to-depth,
 * float64: first order against DL4J's single-example passes, the GGN against explicit Jacobians from
 * DL4J's backward passes, the Hessian against finite differences of DL4J's gradient; below a batch
 * normalisation the batch GGN against central differences of the whole batch's outputs. Space-to-batch
 * and Kronecker factors of PReLU are refused.
 */
class PReluAndSpaceToDepthTest {

    /**
     * DL4J's PReLU backward step (libnd4j's {@code prelu_bp}) fails when the layer input has more than 64
     * elements per alpha, so batches and shared axes are kept small.
     */
    record Case(String name, Supplier<Layer[]> hidden, InputType input, long[] features, BruteForce.Loss loss,
                int nOut) {
        @Override
        public String toString() {
            return name;
        }

        MultiLayerNetwork build(LossFunction function, Activation activation, DataType type) {
            List<Layer> layers = new ArrayList<>(Arrays.asList(hidden.get()));
            layers.add(new OutputLayer.Builder(function).activation(activation).nOut(nOut).build());
            MultiLayerNetwork net = TestNets.build(type, input, layers.toArray(new Layer[0]));
            BatchNormalizationTest.positiveVariances(net);
            return net;
        }

        INDArray x(DataType type) {
            return TestNets.features(type, 3, features);
        }

        INDArray y(DataType type) {
            return TestNets.labels(type, loss.function, 4, features[0], nOut);
        }
    }

    static Stream<Case> cases() {
        return Stream.of(
                new Case("dense, alpha per feature", () -> new Layer[] {
                    new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                    new PReLULayer.Builder().inputShape(5).build(),
                    new DenseLayer.Builder().nOut(4).activation(Activation.SIGMOID).build()},
                        InputType.feedForward(4), new long[] {4, 4}, BruteForce.Loss.MCXENT, 3),
                new Case("dense, one shared alpha", () -> new Layer[] {
                    new DenseLayer.Builder().nOut(5).activation(Activation.IDENTITY).build(),
                    new PReLULayer.Builder().inputShape(5).sharedAxes(1).build()},
                        InputType.feedForward(4), new long[] {4, 4}, BruteForce.Loss.MSE, 2),
                new Case("convolutional, alpha per element", () -> new Layer[] {
                    new ConvolutionLayer.Builder(2, 2).nOut(3).activation(Activation.IDENTITY).build(),
                    new PReLULayer.Builder().inputShape(3, 5, 4).build(),
                    new GlobalPoolingLayer.Builder(PoolingType.AVG).build()},
                        InputType.convolutional(6, 5, 2), new long[] {3, 2, 6, 5}, BruteForce.Loss.MCXENT, 3),
                new Case("convolutional, alpha per channel", () -> new Layer[] {
                    new ConvolutionLayer.Builder(2, 2).nOut(3).activation(Activation.IDENTITY).build(),
                    new PReLULayer.Builder().inputShape(3, 5, 4).sharedAxes(2, 3).build(),
                    new ConvolutionLayer.Builder(2, 2).nOut(2).activation(Activation.SOFTPLUS).build()},
                        InputType.convolutional(6, 5, 2), new long[] {3, 2, 6, 5}, BruteForce.Loss.XENT, 2),
                new Case("space to depth between convolutions", () -> new Layer[] {
                    new ConvolutionLayer.Builder(1, 1).nOut(2).activation(Activation.TANH).build(),
                    new SpaceToDepthLayer.Builder(2, CNN2DFormat.NCHW).build(),
                    new ConvolutionLayer.Builder(2, 2).nOut(3).activation(Activation.SIGMOID).build()},
                        InputType.convolutional(6, 4, 2), new long[] {3, 2, 6, 4}, BruteForce.Loss.MCXENT, 3));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void everyQuantityEqualsTheReferences(Case c) {
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation, DataType.DOUBLE);
        INDArray x = c.x(DataType.DOUBLE);
        INDArray y = c.y(DataType.DOUBLE);
        MultiLayerNetwork plain = net.clone();
        MultiLayerNetwork ref = c.build(LossFunction.L2, Activation.IDENTITY, DataType.DOUBLE);
        ref.setParams(net.params());
        Map<String, INDArray> batchGgn = BruteForce.batchDiagGgn(BruteForce.jacobians(ref, x), c.loss());
        BruteForce.HessianDiagonals fd = BruteForce.finiteDifferenceHessian(plain.clone(), x, y, 1e-4);
        Map<String, INDArray> loop = Reference.individualGradients(plain, x, y);

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact(),
                new DiagHessian(), new BatchDiagHessian(), new BatchGrad());
        assertTrue(batchGgn.keySet().stream().anyMatch(k -> k.endsWith("_W")), c + " has weights");
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

    /** Float32 networks give the float64 values to float32 accuracy. */
    @Test
    void float32AgreesWithFloat64() {
        for (Case c : cases().toList()) {
            MultiLayerNetwork wide = c.build(c.loss().function, c.loss().activation, DataType.DOUBLE);
            MultiLayerNetwork narrow = c.build(c.loss().function, c.loss().activation, DataType.FLOAT);
            narrow.setParams(wide.params().castTo(DataType.FLOAT));
            Quantities q64 = BackPackNetwork.extend(wide).backward(c.x(DataType.DOUBLE), c.y(DataType.DOUBLE),
                    new DiagGGNExact(), new BatchGrad());
            Quantities q32 = BackPackNetwork.extend(narrow).backward(c.x(DataType.FLOAT), c.y(DataType.FLOAT),
                    new DiagGGNExact(), new BatchGrad());
            for (String key : wide.paramTable().keySet()) {
                INDArray[][] pairs = {{q64.byKey(DiagGGNExact.class, key), q32.byKey(DiagGGNExact.class, key)},
                    {q64.byKey(BatchGrad.class, key), q32.byKey(BatchGrad.class, key)}};
                for (INDArray[] pair : pairs) {
                    assertEquals(DataType.FLOAT, pair[1].dataType(), c + " " + key);
                    assertClose(pair[0], pair[1].castTo(DataType.DOUBLE), 1e-3, 1e-5, c + " float32 " + key);
                }
            }
        }
    }

    /** Below a batch normalisation with the batch's statistics every column spans the batch. */
    @Test
    void belowABatchNormalisationTheColumnsSpanTheBatch() {
        for (Case c : cases().limit(4).toList()) {
            Supplier<Layer[]> withNormalisation = () -> {
                List<Layer> layers = new ArrayList<>(Arrays.asList(c.hidden().get()));
                layers.add(2, new BatchNormalization.Builder().build());
                return layers.toArray(new Layer[0]);
            };
            Case normalised = new Case(c.name() + " + BN", withNormalisation, c.input(), c.features(), c.loss(),
                    c.nOut());
            MultiLayerNetwork net = normalised.build(c.loss().function, c.loss().activation, DataType.DOUBLE);
            MultiLayerNetwork ref = normalised.build(LossFunction.L2, Activation.IDENTITY, DataType.DOUBLE);
            ref.setParams(net.params());
            INDArray x = normalised.x(DataType.DOUBLE);
            Map<String, INDArray> ggn = BruteForce.sumOverBatch(BruteForce.batchDiagGgn(
                    BatchNormalizationTest.jacobians(ref, x, true), c.loss()));
            Quantities q = BackPackNetwork.extend(net).backward(x, normalised.y(DataType.DOUBLE), new DiagGGNExact());
            for (String key : ggn.keySet()) {
                assertClose(ggn.get(key), q.byKey(DiagGGNExact.class, key), 1e-6, 1e-9, normalised + " GGN " + key);
            }
        }
    }

    @Test
    void kroneckerFactorsAreRefusedNamingThePReluLayer() {
        Case c = cases().findFirst().orElseThrow();
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation, DataType.DOUBLE);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(net).backward(c.x(DataType.DOUBLE), c.y(DataType.DOUBLE), new KFLR()));
        assertEquals("1", e.layerName(), e.getMessage());
    }

    /** Space to batch turns blocks of each example into rows of the batch: every extension refuses it. */
    @Test
    void spaceToBatchIsRefusedByEveryExtension() {
        Case c = new Case("space to batch", () -> new Layer[] {
            new ConvolutionLayer.Builder(1, 1).nOut(2).activation(Activation.TANH).build(),
            new SpaceToBatchLayer.Builder(new int[] {2, 2}).build(),
            new GlobalPoolingLayer.Builder(PoolingType.AVG).build()},
                InputType.convolutional(6, 4, 2), new long[] {3, 2, 6, 4}, BruteForce.Loss.MCXENT, 3);
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation, DataType.DOUBLE);
        for (io.github.dl4jbackpack.extensions.Extension<?> extension
                : List.<io.github.dl4jbackpack.extensions.Extension<?>>of(new BatchGrad(), new DiagGGNExact())) {
            UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                    () -> BackPackNetwork.extend(net).backward(c.x(DataType.DOUBLE), c.y(DataType.DOUBLE), extension));
            assertEquals("1", e.layerName(), e.getMessage());
            assertTrue(e.getMessage().contains("not examples"), e.getMessage());
        }
    }
}
