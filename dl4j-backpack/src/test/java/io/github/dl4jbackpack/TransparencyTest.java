// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import io.github.dl4jbackpack.internal.InterceptingLayer;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.optimize.api.BaseTrainingListener;
import org.deeplearning4j.util.ModelSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.io.File;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** An extended network behaves exactly like the plain one: outputs, gradients, training, saving. */
class TransparencyTest {

    /** A small CNN, optionally with dropout on the dense layer's input. */
    static MultiLayerNetwork cnn(DataType dataType, WorkspaceMode mode, boolean dropout) {
        org.deeplearning4j.nn.conf.MultiLayerConfiguration conf = new org.deeplearning4j.nn.conf.NeuralNetConfiguration.Builder()
                .seed(42).dataType(dataType).updater(new Adam(1e-2))
                .trainingWorkspaceMode(mode).inferenceWorkspaceMode(mode)
                .list(new ConvolutionLayer.Builder(3, 3).nOut(4).activation(Activation.RELU).build(),
                        new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                        new DenseLayer.Builder().nOut(8).activation(Activation.TANH).dropOut(dropout ? 0.8 : 0.0).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(8, 8, 2))
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        return net;
    }

    static double[] exact(INDArray a) {
        return a.dup().data().asDouble();
    }

    @ParameterizedTest
    @EnumSource(value = DataType.class, names = {"DOUBLE", "FLOAT"})
    void outputsAndGradientsAreBitIdentical(DataType dataType) {
        MultiLayerNetwork plain = cnn(dataType, WorkspaceMode.ENABLED, false);
        MultiLayerNetwork extended = plain.clone();
        BackPackNetwork bp = BackPackNetwork.extend(extended);
        INDArray x = TestNets.features(dataType, 1, 6, 2, 8, 8);
        INDArray y = TestNets.labels(dataType, LossFunction.MCXENT, 2, 6, 3);

        assertArrayEquals(exact(plain.output(x)), exact(extended.output(x)), 0.0, "output");

        plain.setInput(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        Quantities q = bp.backward(x, y, new BatchGrad(), new BatchL2Grad(), new SumGradSquared(), new Variance(),
                new BatchDotGrad());
        assertArrayEquals(exact(plain.gradient().gradient()), exact(extended.gradient().gradient()), 0.0, "gradient");
        assertEquals(plain.score(), extended.score(), 0.0, "score");
        assertEquals(plain.score(), q.score(), 0.0, "quantities score");
        assertEquals(6, q.batchSize());
    }

    /**
     * The extensions scale a layer's output gradient to the mean loss in place when it is a temporary of DL4J's
     * step, and copy it otherwise: an identity activation hands back the incoming gradient, an
     * {@code ActivationLayer} returns its own as the next layer's. DL4J's gradient stays bit-identical and the
     * per-example quantities are the loop's.
     */
    @ParameterizedTest
    @EnumSource(value = WorkspaceMode.class, names = {"ENABLED", "NONE"})
    void outputGradientsAreScaledInPlaceOnlyWhereDl4jIsDoneWithThem(WorkspaceMode mode) {
        MultiLayerNetwork plain = new MultiLayerNetwork(new org.deeplearning4j.nn.conf.NeuralNetConfiguration.Builder()
                .seed(5).dataType(DataType.DOUBLE).trainingWorkspaceMode(mode).inferenceWorkspaceMode(mode)
                .list(new DenseLayer.Builder().nOut(6).activation(Activation.IDENTITY).build(),
                        new org.deeplearning4j.nn.conf.layers.ActivationLayer.Builder().activation(Activation.TANH)
                                .build(),
                        new DenseLayer.Builder().nOut(5).activation(Activation.RELU).build(),
                        new DenseLayer.Builder().nOut(4).activation(Activation.IDENTITY).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.feedForward(4)).build());
        plain.init();
        MultiLayerNetwork extended = plain.clone();
        BackPackNetwork bp = BackPackNetwork.extend(extended);
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 7, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, 7, 3);
        java.util.Map<String, INDArray> loop = Reference.individualGradients(plain, x, y);
        plain.setInput(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        Quantities q = bp.backward(x, y, new BatchL2Grad(), new io.github.dl4jbackpack.extensions.WeightedGradientSum());
        assertArrayEquals(exact(plain.gradient().gradient()), exact(extended.gradient().gradient()), 0.0, "gradient");
        INDArray weights = Reference.testWeights(7);
        for (int layer : new int[] {0, 2, 3, 4}) {
            for (String param : new String[] {"W", "b"}) {
                INDArray g = loop.get(layer + "_" + param);
                INDArray flat = g.reshape('c', 7, g.length() / 7);
                assertClose(flat.mul(flat).sum(1), q.get(BatchL2Grad.class, layer, param), 1e-10, 1e-13,
                        "norms " + layer + param);
                assertClose(Reference.weightedSum(g, weights), q.get(io.github.dl4jbackpack.extensions
                        .WeightedGradientSum.class, layer, param).of(weights), 1e-10, 1e-13, "sum " + layer + param);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(WorkspaceMode.class)
    void trainingTrajectoryIsBitIdenticalWithExtensionsEnabled(WorkspaceMode mode) {
        if (mode != WorkspaceMode.ENABLED && mode != WorkspaceMode.NONE) {
            return;
        }
        MultiLayerNetwork plain = cnn(DataType.DOUBLE, mode, true);
        MultiLayerNetwork extended = plain.clone();
        BackPackNetwork bp = BackPackNetwork.extend(extended);
        bp.enable(new Variance(), new BatchGrad(), new BatchL2Grad(), new SumGradSquared(), new BatchDotGrad());
        List<Quantities> seen = new ArrayList<>();
        bp.addQuantitiesListener(seen::add);
        for (int step = 0; step < 5; step++) {
            INDArray x = TestNets.features(DataType.DOUBLE, 10 + step, 5, 2, 8, 8);
            INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 20 + step, 5, 3);
            TestNets.seed(step);   // the same dropout masks in both runs
            plain.fit(x, y);
            TestNets.seed(step);
            extended.fit(x, y);
            assertArrayEquals(exact(plain.params()), exact(extended.params()), 0.0, "params after step " + step);
        }
        assertArrayEquals(exact(plain.getUpdater().getStateViewArray()),
                exact(extended.getUpdater().getStateViewArray()), 0.0, "updater state");
        assertEquals(5, seen.size(), "one set of quantities per iteration");
        assertSame(seen.get(4), bp.latest().orElseThrow());
        assertEquals(plain.score(), seen.get(4).score(), 0.0);
    }

    @Test
    void listenersSeeTheQuantitiesOfTheirIteration() {
        MultiLayerNetwork net = cnn(DataType.DOUBLE, WorkspaceMode.ENABLED, true);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        bp.enable(new BatchGrad());
        List<String> checked = new ArrayList<>();
        net.addListeners(new BaseTrainingListener() {
            @Override
            public void onBackwardPass(Model model) {
                if (bp.enabled().isEmpty()) {
                    return;
                }
                Quantities q = bp.latest().orElseThrow();
                MultiLayerNetwork m = (MultiLayerNetwork) model;
                for (int layer : q.layers(BatchGrad.class)) {
                    for (String p : q.params(BatchGrad.class, layer)) {
                        assertClose(m.gradient().getGradientFor(layer + "_" + p).div(q.batchSize()),
                                q.get(BatchGrad.class, layer, p).sum(0), 1e-10, 1e-13, "iteration gradient " + layer + p + " it " + checked.size());
                    }
                }
                checked.add("ok");
            }
        });
        for (int step = 0; step < 3; step++) {
            net.fit(TestNets.features(DataType.DOUBLE, step, 4, 2, 8, 8),
                    TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, step, 4, 3));
        }
        assertEquals(3, checked.size());
        bp.disable();
        Quantities last = bp.latest().orElseThrow();
        net.fit(TestNets.features(DataType.DOUBLE, 9, 4, 2, 8, 8),
                TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 9, 4, 3));
        assertSame(last, bp.latest().orElseThrow(), "no quantities once disabled");
    }

    @Test
    void savedModelIsTheSameAsThePlainNetworks(@TempDir Path dir) throws IOException {
        MultiLayerNetwork plain = cnn(DataType.DOUBLE, WorkspaceMode.ENABLED, true);
        MultiLayerNetwork extended = plain.clone();
        BackPackNetwork bp = BackPackNetwork.extend(extended);
        bp.enable(new Variance());
        for (int step = 0; step < 2; step++) {
            INDArray x = TestNets.features(DataType.DOUBLE, step, 5, 2, 8, 8);
            INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, step, 5, 3);
            TestNets.seed(step);
            plain.fit(x, y);
            TestNets.seed(step);
            extended.fit(x, y);
        }
        File a = dir.resolve("plain.zip").toFile();
        File b = dir.resolve("extended.zip").toFile();
        ModelSerializer.writeModel(plain, a, true);
        ModelSerializer.writeModel(extended, b, true);
        try (ZipFile za = new ZipFile(a); ZipFile zb = new ZipFile(b)) {
            List<String> names = new ArrayList<>();
            for (Enumeration<? extends ZipEntry> e = za.entries(); e.hasMoreElements(); ) {
                names.add(e.nextElement().getName());
            }
            assertTrue(names.contains("configuration.json"));
            for (String name : names) {
                assertArrayEquals(za.getInputStream(za.getEntry(name)).readAllBytes(),
                        zb.getInputStream(zb.getEntry(name)).readAllBytes(), "zip entry " + name);
            }
        }
        MultiLayerNetwork restored = ModelSerializer.restoreMultiLayerNetwork(b, true);
        for (Layer l : restored.getLayers()) {
            assertFalse(l instanceof InterceptingLayer, "a restored network is a plain DL4J network");
        }
    }

    @Test
    void extendIsIdempotentUnwrapRestoresAndSpendsTheHandle() {
        MultiLayerNetwork net = cnn(DataType.DOUBLE, WorkspaceMode.ENABLED, false);
        Layer[] original = net.getLayers().clone();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        assertSame(bp, BackPackNetwork.extend(net));
        MultiLayerNetwork equalCopy = net.clone();
        BackPackNetwork other = BackPackNetwork.extend(equalCopy);
        assertNotSame(bp, other, "equal but distinct networks are extended separately");
        assertSame(equalCopy, other.network());
        assertTrue(net.getLayer(0) instanceof InterceptingLayer);
        bp.unwrap();
        assertArrayEquals(original, net.getLayers());
        net.init(null, true);
        assertArrayEquals(original, net.getLayers(), "DL4J 1.0.0-M2.1 keeps its layers on a second init()");
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 3, 2, 8, 8);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 1, 3, 3);
        IllegalStateException spent = assertThrows(IllegalStateException.class,
                () -> bp.backward(x, y, new BatchL2Grad()));
        assertTrue(spent.getMessage().contains("unwrapped"), spent.getMessage());
        assertThrows(IllegalStateException.class, () -> bp.enable(new BatchL2Grad()));
        assertArrayEquals(original, net.getLayers(), "a spent handle does not touch the network");
        BackPackNetwork again = BackPackNetwork.extend(net);
        assertNotSame(bp, again);
        Quantities q = again.backward(x, y, new BatchL2Grad());
        assertTrue(net.getLayer(3) instanceof InterceptingLayer);
        assertEquals(List.of(0, 2, 3), List.copyOf(q.layers(BatchL2Grad.class)));
    }

    @Test
    void resultsAreImmutableCopies() {
        MultiLayerNetwork net = cnn(DataType.DOUBLE, WorkspaceMode.ENABLED, false);
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 3, 2, 8, 8);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 1, 3, 3);
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new Variance());
        INDArray first = q.get(Variance.class, 0, "W");
        double before = first.getDouble(0);
        first.assign(-1);
        assertEquals(before, q.get(Variance.class, 0, "W").getDouble(0), 0.0);
        assertArrayEquals(net.getLayer(0).paramTable().get("W").shape(), first.shape(), "parameter shape");
        assertEquals(List.of("b", "W"), List.copyOf(q.params(Variance.class, 0)), "convolution paramTable order");
        assertEquals(List.of("W", "b"), List.copyOf(q.params(Variance.class, 2)), "dense paramTable order");
    }
}
