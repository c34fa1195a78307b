// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.weightnoise.DropConnect;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;


import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Unsupported networks, modes and inputs fail with a clear message before anything is computed,
 * and the network stays usable afterwards.
 */
class BadInputTest {

    static final INDArray X = TestNets.features(DataType.DOUBLE, 1, 4, 5);
    static final INDArray Y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 1, 4, 3);

    static OutputLayer out() {
        return new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build();
    }

    /** Asserts the message names the layer index, its type, the extension and what is supported. */
    static void assertNames(UnsupportedLayerException e, int layer, String type, String extension) {
        String m = e.getMessage();
        assertTrue(m.contains("\"" + layer + "\" (" + type + ")"), m);
        assertTrue(m.contains(type), m);
        assertTrue(m.contains(extension), m);
        assertTrue(m.contains("Supported"), m);
        assertEquals(String.valueOf(layer), e.layerName());
        assertEquals(type, e.layerType());
        assertEquals(extension, e.extension());
    }

    /** The network still computes a correct plain gradient and works with supported use afterwards. */
    static void assertStillUsable(MultiLayerNetwork net, INDArray x, INDArray y) {
        MultiLayerNetwork plain = net.clone();
        plain.setInput(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        net.output(x);
        net.setInput(x);
        net.setLabels(y);
        net.computeGradientAndScore();
        assertEquals(plain.score(), net.score(), 0.0);
        assertClose(plain.gradient().gradient(), net.gradient().gradient(), 0, 0, "gradient after a rejected call");
        net.fit(x, y);
    }

    @Test
    void perExampleQuantitiesThroughBatchStatisticsAreRejectedNamingTheReasonAndTheAlternatives() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.feedForward(5),
                new DenseLayer.Builder().nOut(6).activation(Activation.RELU).build(),
                new BatchNormalization.Builder().build(), out());
        BackPackNetwork bp = BackPackNetwork.extend(net);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> bp.backward(X, Y, new Variance()));
        assertNames(e, 1, "BatchNormalization", "Variance");
        assertTrue(e.getMessage().contains("batch's statistics") && e.getMessage().contains("[0]")
                && e.getMessage().contains("BatchNormStatistics.RUNNING"), e.getMessage());
        assertThrows(UnsupportedLayerException.class, () -> bp.enable(new BatchGrad()));
        assertTrue(bp.enabled().isEmpty());
        assertStillUsable(net, X, Y);
    }

    @Test
    void otherLayerTypesAreRejected() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.convolutional(6, 6, 2),
                new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.RELU).build(),
                new org.deeplearning4j.nn.conf.layers.LocallyConnected2D.Builder().kernelSize(2, 2).nOut(2)
                        .build(), out());
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 4, 2, 6, 6);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(net).backward(x, Y, new DiagHessian()));
        assertNames(e, 1, "LocallyConnected2D", "DiagHessian");
        assertTrue(e.getMessage().contains("ConvolutionLayer"), "lists supported layers: " + e.getMessage());
        assertStillUsable(net, x, Y);
    }

    @Test
    void timeSeriesIntoDenseLayersAreRejected() {
        MultiLayerNetwork ff = TestNets.build(DataType.DOUBLE, InputType.feedForward(5), out());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> BackPackNetwork.extend(ff).backward(Nd4j.rand(DataType.DOUBLE, 4, 5, 2), Y, new BatchGrad()));
        assertTrue(e.getMessage().contains("InputTypeRecurrent") && e.getMessage().contains("dense layer needs [N, nIn]"),
                e.getMessage());
    }


    @Test
    void unsupportedConfigurationsNameTheReason() {
        MultiLayerNetwork noisy = TestNets.build(DataType.DOUBLE, InputType.feedForward(5),
                new DenseLayer.Builder().nOut(4).weightNoise(new DropConnect(0.5)).build(), out());
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(noisy).backward(X, Y, new BatchGrad()));
        assertNames(e, 0, "DenseLayer", "BatchGrad");
        assertTrue(e.getMessage().contains("weight noise"), e.getMessage());

        MultiLayerNetwork layerNorm = TestNets.build(DataType.DOUBLE, InputType.feedForward(5),
                new DenseLayer.Builder().nOut(4).hasLayerNorm(true).build(), out());
        e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(layerNorm).backward(X, Y, new BatchGrad()));
        assertTrue(e.getMessage().contains("layer normalisation"), e.getMessage());

    }

    @Test
    void duplicatesAndMismatchedShapesFailBeforeTouchingTheNetwork() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.feedForward(5),
                new DenseLayer.Builder().nOut(6).activation(Activation.TANH).build(), out());
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities good = bp.backward(X, Y, new BatchGrad());
        INDArray params = net.params().dup();
        INDArray gradient = net.gradient().gradient().dup();

        IllegalArgumentException dup = assertThrows(IllegalArgumentException.class,
                () -> bp.backward(X, Y, new Variance(), new Variance()));
        assertTrue(dup.getMessage().contains("twice"), dup.getMessage());

        IllegalArgumentException rows = assertThrows(IllegalArgumentException.class,
                () -> bp.backward(X, Y.get(org.nd4j.linalg.indexing.NDArrayIndex.interval(0, 3)), new BatchGrad()));
        assertTrue(rows.getMessage().contains("label array 0 has 3 examples but an earlier array has 4"),
                rows.getMessage());

        IllegalArgumentException cols = assertThrows(IllegalArgumentException.class,
                () -> bp.backward(X, Nd4j.zeros(DataType.DOUBLE, 4, 2), new BatchGrad()));
        assertTrue(cols.getMessage().contains("nOut=3"), cols.getMessage());

        IllegalArgumentException width = assertThrows(IllegalArgumentException.class,
                () -> bp.backward(Nd4j.zeros(DataType.DOUBLE, 4, 7), Y, new BatchGrad()));
        assertTrue(width.getMessage().contains("nIn=5"), width.getMessage());

        assertClose(params, net.params(), 0, 0, "parameters untouched");
        assertClose(gradient, net.gradient().gradient(), 0, 0, "gradient untouched");
        assertClose(good.get(BatchGrad.class, 0, "W"), bp.latest().orElseThrow().get(BatchGrad.class, 0, "W"), 0, 0,
                "latest quantities untouched");
        assertStillUsable(net, X, Y);
    }

    @Test
    void maskedDataDuringTrainingWithCurvatureIsRejectedAndTheNetworkRecovers() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.feedForward(5),
                new DenseLayer.Builder().nOut(6).activation(Activation.TANH).build(), out());
        BackPackNetwork bp = BackPackNetwork.extend(net);
        bp.enable(new io.github.dl4jbackpack.extensions.DiagGGNMC());
        DataSet masked = new DataSet(X, Y, Nd4j.ones(DataType.DOUBLE, 4, 1), null);
        UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, () -> net.fit(masked));
        assertTrue(e.getMessage().contains("mask"), e.getMessage());
        bp.disable();
        assertStillUsable(net, X, Y);
        Quantities q = bp.backward(X, Y, new BatchGrad());
        assertEquals(4, q.batchSize());
    }

    @Test
    void quantitiesExplainWhatIsMissing() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.feedForward(5),
                new DenseLayer.Builder().nOut(6).activation(Activation.TANH).build(), out());
        Quantities q = BackPackNetwork.extend(net).backward(X, Y, new BatchGrad());
        IllegalArgumentException notComputed = assertThrows(IllegalArgumentException.class,
                () -> q.get(Variance.class, 0, "W"));
        assertTrue(notComputed.getMessage().contains("Variance was not computed"), notComputed.getMessage());
        IllegalArgumentException noLayer = assertThrows(IllegalArgumentException.class,
                () -> q.get(BatchGrad.class, 7, "W"));
        assertTrue(noLayer.getMessage().contains("layers with values: [0, 1]"), noLayer.getMessage());
        IllegalArgumentException noParam = assertThrows(IllegalArgumentException.class,
                () -> q.get(BatchGrad.class, 0, "gamma"));
        assertTrue(noParam.getMessage().contains("[W, b]"), noParam.getMessage());
        Quantities none = BackPackNetwork.extend(net).backward(X, Y);
        assertTrue(none.extensions().isEmpty());
        assertEquals(net.score(), none.score(), 0.0);
    }

    @Test
    void uninitialisedNetworkIsRejected() {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder().list(out())
                .setInputType(InputType.feedForward(5)).build();
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> BackPackNetwork.extend(new MultiLayerNetwork(conf)));
        assertTrue(e.getMessage().contains("init()"), e.getMessage());
    }
}
