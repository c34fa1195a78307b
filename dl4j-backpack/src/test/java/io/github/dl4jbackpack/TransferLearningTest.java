// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.transferlearning.TransferLearning;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Networks built with DL4J's {@code TransferLearning} ({@code setFeatureExtractor}): quantities for
 * the trainable parameters only, equal to the same parameters' quantities in the network before
 * freezing (freezing changes what is trained, not the function), first order also against a loop of
 * single-example passes; the frozen part is not touched and training stays bit-identical.
 */
class TransferLearningTest {

    private static final List<Extension<?>> ALL = List.of(new BatchGrad(), new BatchL2Grad(), new Variance(),
            new DiagGGNExact(), new DiagHessian(), new KFLR());

    private static void assertSameOnTrainable(Quantities frozen, Quantities base, Set<String> trainable, String what) {
        for (Class<? extends Extension<INDArray>> e : List.of(BatchGrad.class, BatchL2Grad.class, Variance.class,
                DiagGGNExact.class, DiagHessian.class)) {
            assertEquals(trainable, new TreeSet<>(frozen.keys(e)), what + " " + e.getSimpleName() + " parameters");
            for (String key : trainable) {
                assertClose(base.byKey(e, key), frozen.byKey(e, key), 1e-12, 1e-15, what + " " + e.getSimpleName() + " "
                        + key);
            }
        }
        for (String key : trainable) {
            KroneckerFactors a = base.byKey(KFLR.class, key);
            KroneckerFactors b = frozen.byKey(KFLR.class, key);
            assertClose(a.outputFactor(), b.outputFactor(), 1e-12, 1e-15, what + " KFLR B " + key);
        }
    }

    @Test
    void multiLayerNetworkWithAFrozenFeatureExtractor() {
        MultiLayerNetwork base = TestNets.build(DataType.DOUBLE, InputType.feedForward(5),
                new DenseLayer.Builder().nOut(6).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(5).activation(Activation.SIGMOID).build(),
                new DenseLayer.Builder().nOut(4).activation(Activation.SOFTPLUS).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build());
        MultiLayerNetwork frozen = new TransferLearning.Builder(base.clone()).setFeatureExtractor(1).build();
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 4, 5);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 4, 3);
        Map<String, INDArray> loop = Reference.individualGradients(frozen, x, y);
        INDArray frozenParams = frozen.getLayer(0).params().dup();
        Quantities qf = BackPackNetwork.extend(frozen).backward(x, y, ALL.toArray(new Extension<?>[0]));
        Quantities qb = BackPackNetwork.extend(base).backward(x, y, ALL.toArray(new Extension<?>[0]));
        Set<String> trainable = new TreeSet<>(List.of("2_W", "2_b", "3_W", "3_b"));
        assertSameOnTrainable(qf, qb, trainable, "MultiLayerNetwork");
        for (String key : trainable) {
            assertClose(loop.get(key), qf.byKey(BatchGrad.class, key), 1e-10, 1e-13, "loop " + key);
        }
        MultiLayerNetwork twin = new TransferLearning.Builder(base.clone()).setFeatureExtractor(1).build();
        twin.setParams(frozen.params());
        BackPackNetwork.extend(frozen).enable(new Variance(), new DiagGGNExact());
        for (int step = 0; step < 3; step++) {
            frozen.fit(x, y);
            twin.fit(x, y);
        }
        assertArrayEquals(twin.params().data().asDouble(), frozen.params().data().asDouble(), 0.0);
        assertEquals(frozenParams, frozen.getLayer(0).params(), "the frozen layer is not trained");
    }

    @Test
    void deepFrozenPartsStayDl4jsFrozenLayersInGraphsAndClones() {
        org.deeplearning4j.nn.conf.ComputationGraphConfiguration.GraphBuilder b = GraphNets.builder(DataType.DOUBLE,
                org.deeplearning4j.nn.conf.WorkspaceMode.ENABLED, 5)
                .addInputs("in")
                .addLayer("a", GraphNets.dense(5, Activation.TANH), "in")
                .addLayer("b", GraphNets.dense(4, Activation.TANH), "a")
                .addLayer("c", GraphNets.dense(4, Activation.SIGMOID), "b")
                .addLayer("out", GraphNets.output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "c")
                .setOutputs("out")
                .setInputTypes(InputType.feedForward(3));
        ComputationGraph base = GraphNets.init(b, 5);
        ComputationGraph frozen = new TransferLearning.GraphBuilder(base.clone()).setFeatureExtractor("b").build()
                .convertDataType(DataType.DOUBLE);
        frozen.setParams(base.params());
        ComputationGraph twin = frozen.clone();
        INDArray[] x = GraphNets.features(DataType.DOUBLE, 4, 1, InputType.feedForward(3));
        INDArray[] y = GraphNets.labels(frozen, 4, 2);
        BackPackNetwork bp = BackPackNetwork.extend(frozen);
        Quantities q = bp.backward(x, y, new BatchGrad(), new DiagGGNExact());
        assertEquals(new TreeSet<>(List.of("c_W", "c_b", "out_W", "out_b")), new TreeSet<>(q.keys(BatchGrad.class)));
        twin.setInputs(x);
        twin.setLabels(y);
        twin.computeGradientAndScore();
        assertArrayEquals(twin.gradient().gradient().data().asDouble(), frozen.gradient().gradient().data().asDouble(),
                0.0, "gradient of the extended graph");
        ComputationGraph copy = frozen.clone();
        assertTrue(copy.getLayer("a") instanceof org.deeplearning4j.nn.layers.FrozenLayer, "a clone keeps the frozen layers");
        for (int step = 0; step < 2; step++) {
            frozen.fit(x, y);
            twin.fit(x, y);
        }
        assertArrayEquals(twin.params().data().asDouble(), frozen.params().data().asDouble(), 0.0, "trajectory");

        MultiLayerNetwork net = new TransferLearning.Builder(TestNets.build(DataType.DOUBLE, InputType.feedForward(3),
                new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build()))
                .setFeatureExtractor(1).build();
        BackPackNetwork.extend(net);
        assertTrue(net.clone().getLayer(0) instanceof org.deeplearning4j.nn.layers.FrozenLayer,
                "a clone of an extended network keeps the frozen layers");
    }

    @Test
    void graphWithAFrozenFeatureExtractor() {
        ComputationGraph base = GraphNets.Topology.MULTI_OUTPUT.build();
        // DL4J's graph TransferLearning builds float32 graphs: back to float64, with the base's parameters
        ComputationGraph frozen = new TransferLearning.GraphBuilder(base.clone()).setFeatureExtractor("trunk").build()
                .convertDataType(DataType.DOUBLE);
        frozen.setParams(base.params());
        GraphNets.Data data = GraphNets.Topology.MULTI_OUTPUT.data(base, 4, 3);
        assertEquals(base.getConfiguration().getDataType(), frozen.getConfiguration().getDataType(), "data type");
        assertArrayEquals(base.params().data().asDouble(), frozen.params().data().asDouble(), 0.0, "parameters");
        assertArrayEquals(base.output(false, data.features())[0].data().asDouble(),
                frozen.output(false, data.features())[0].data().asDouble(), 0.0, "outputs");
        Quantities qf = BackPackNetwork.extend(frozen).backward(data.features(), data.labels(),
                ALL.toArray(new Extension<?>[0]));
        Quantities qb = BackPackNetwork.extend(base).backward(data.features(), data.labels(),
                ALL.toArray(new Extension<?>[0]));
        assertSameOnTrainable(qf, qb, new TreeSet<>(List.of("outClass_W", "outClass_b", "outReg_W", "outReg_b")),
                "graph");
    }
}
