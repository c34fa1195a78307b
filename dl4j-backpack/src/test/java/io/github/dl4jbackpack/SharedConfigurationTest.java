// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.GraphNets.Topology;
import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.util.ModelSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The network keeps working exactly as before, for graphs as for MultiLayerNetworks, and the
 * configuration objects are never modified, not even during a pass: several networks built from one
 * configuration object, extended or not, train side by side and on two threads; checkpoints of
 * either restore.
 */
class SharedConfigurationTest {

    private static double[] exact(INDArray a) {
        return a.dup().data().asDouble();
    }

    /** The configuration's JSON without DL4J's own iteration and epoch counters, which fit advances. */
    static String json(Object configuration) {
        String j = configuration instanceof MultiLayerConfiguration ? ((MultiLayerConfiguration) configuration).toJson()
                : ((ComputationGraphConfiguration) configuration).toJson();
        return j.replaceAll("\"(iterationCount|epochCount)\" : \\d+", "\"$1\" : _");
    }

    @ParameterizedTest
    @EnumSource(value = Topology.class, names = {"RESIDUAL", "INCEPTION", "MULTI_OUTPUT"})
    void graphTrajectoryAndSavedFileAreThoseOfThePlainGraph(Topology topology, @TempDir Path dir) throws Exception {
        ComputationGraph plain = topology.build(DataType.DOUBLE, WorkspaceMode.ENABLED, 4);
        ComputationGraph extended = plain.clone();
        String json = json(extended.getConfiguration());
        BackPackNetwork bp = BackPackNetwork.extend(extended);
        List<String> during = new ArrayList<>();
        bp.addQuantitiesListener(q -> during.add(json(extended.getConfiguration())));
        bp.enable(new Variance(), new BatchL2Grad(), new DiagGGNExact(), new KFLR());
        for (int step = 0; step < 4; step++) {
            GraphNets.Data data = topology.data(plain, 5, 100 + step);
            assertArrayEquals(exact(plain.output(false, data.features())[0]),
                    exact(extended.output(false, data.features())[0]), 0.0, "output");
            plain.fit(data.features(), data.labels());
            extended.fit(data.features(), data.labels());
            assertArrayEquals(exact(plain.params()), exact(extended.params()), 0.0, "params after step " + step);
            assertEquals(plain.score(), extended.score(), 0.0);
        }
        assertEquals(4, during.size());
        for (String j : during) {
            assertEquals(json, j, "configuration during a pass");
        }
        assertEquals(json, json(extended.getConfiguration()), "configuration after the passes");
        File a = dir.resolve("plain.zip").toFile();
        File b = dir.resolve("extended.zip").toFile();
        ModelSerializer.writeModel(plain, a, true);
        ModelSerializer.writeModel(extended, b, true);
        assertSameZip(a, b);
        ComputationGraph restored = ModelSerializer.restoreComputationGraph(b, true);
        assertArrayEquals(exact(extended.params()), exact(restored.params()), 0.0);
        assertTrue(bp.unwrap() == extended);
        assertEquals(json, json(extended.getConfiguration()));
    }

    static void assertSameZip(File a, File b) throws Exception {
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
    }

    /**
     * Plain SGD: networks sharing one configuration object also share DL4J's iteration counter (kept in
     * the configuration), so an iteration-dependent updater such as Adam steps differently in each of
     * them; that is DL4J's behaviour with or without this library.
     */
    static MultiLayerConfiguration mlp() {
        return new NeuralNetConfiguration.Builder().seed(3).dataType(DataType.DOUBLE)
                .updater(new org.nd4j.linalg.learning.config.Sgd(0.1))
                .list(new DenseLayer.Builder().nOut(6).activation(Activation.TANH).build(),
                        new DenseLayer.Builder().nOut(5).activation(Activation.SIGMOID).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.feedForward(4)).build();
    }

    @Test
    void networksSharingOneConfigurationObjectTrainSideBySideAndOnTwoThreads(@TempDir Path dir) throws Exception {
        MultiLayerConfiguration conf = mlp();
        MultiLayerNetwork a = new MultiLayerNetwork(conf);
        a.init();
        MultiLayerNetwork b = new MultiLayerNetwork(conf);
        b.init(a.params().dup(), true);
        MultiLayerNetwork twin = new MultiLayerNetwork(conf);
        twin.init(a.params().dup(), true);
        String json = json(conf);
        BackPackNetwork bpA = BackPackNetwork.extend(a);
        BackPackNetwork bpB = BackPackNetwork.extend(b);
        bpA.enable(new Variance(), new DiagHessian());
        bpB.enable(new BatchGrad(), new DiagGGNExact());
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 6, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 6, 3);
        for (int step = 0; step < 3; step++) {
            a.fit(x, y);
            twin.fit(x, y);
            b.fit(x, y);
            assertEquals(json, json(conf), "shared configuration after step " + step);
        }
        assertArrayEquals(exact(twin.params()), exact(a.params()), 0.0, "extended vs plain twin");
        assertArrayEquals(exact(twin.params()), exact(b.params()), 0.0, "second extended vs plain twin");

        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            List<Future<Double>> runs = new ArrayList<>();
            for (BackPackNetwork bp : List.of(bpA, bpB)) {
                runs.add(pool.submit(() -> {
                    double sum = 0;
                    for (int i = 0; i < 20; i++) {
                        Quantities q = bp.backward(x, y, new Variance(), new DiagGGNExact(), new BatchDotGrad());
                        sum += q.score();
                    }
                    return sum;
                }));
            }
            assertEquals(runs.get(0).get(), runs.get(1).get(), 1e-12, "the same network state on both threads");
        } finally {
            pool.shutdown();
        }
        assertEquals(json, json(conf));
        File file = dir.resolve("a.zip").toFile();
        ModelSerializer.writeModel(a, file, true);
        MultiLayerNetwork restored = ModelSerializer.restoreMultiLayerNetwork(file, true);
        assertArrayEquals(exact(a.params()), exact(restored.params()), 0.0);
    }

    @Test
    void graphsSharingOneConfigurationObjectStayIndependent() {
        ComputationGraph first = Topology.RESIDUAL.build();
        ComputationGraphConfiguration conf = first.getConfiguration();
        ComputationGraph second = new ComputationGraph(conf);
        second.init(first.params().dup(), true);
        ComputationGraph twin = new ComputationGraph(conf);
        twin.init(first.params().dup(), true);
        String json = json(conf);
        BackPackNetwork.extend(first).enable(new DiagHessian(), new BatchGrad());
        GraphNets.Data data = Topology.RESIDUAL.data(first, 4, 2);
        for (int step = 0; step < 3; step++) {
            first.fit(data.features(), data.labels());
            twin.fit(data.features(), data.labels());
            second.fit(data.features(), data.labels());
        }
        assertArrayEquals(exact(twin.params()), exact(first.params()), 0.0);
        assertArrayEquals(exact(twin.params()), exact(second.params()), 0.0);
        assertEquals(json, json(conf));
    }

    @Test
    void aPassStartedFromAQuantitiesListenerIsRefused() {
        MultiLayerNetwork net = new MultiLayerNetwork(mlp());
        net.init();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 4, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 4, 3);
        INDArray other = TestNets.features(DataType.DOUBLE, 3, 4, 4);
        List<RuntimeException> refused = new ArrayList<>();
        bp.addQuantitiesListener(q -> {
            try {
                bp.backward(other, y, new BatchGrad());
            } catch (IllegalStateException e) {
                refused.add(e);
            }
        });
        MultiLayerNetwork twin = net.clone();
        bp.enable(new Variance());
        net.fit(x, y);
        twin.fit(x, y);
        assertEquals(1, refused.size());
        assertTrue(refused.get(0).getMessage().contains("listener"), refused.get(0).getMessage());
        assertArrayEquals(exact(twin.params()), exact(net.params()), 0.0, "trained on its own batch only");
        IllegalArgumentException nullExtensions = assertThrows(IllegalArgumentException.class,
                () -> bp.backward(x, y, (io.github.dl4jbackpack.extensions.Extension<?>[]) null));
        assertTrue(nullExtensions.getMessage().contains("must not be null"), nullExtensions.getMessage());
        IllegalArgumentException nullEntry = assertThrows(IllegalArgumentException.class,
                () -> bp.enable(new Variance(), null));
        assertTrue(nullEntry.getMessage().contains("is null"), nullEntry.getMessage());
    }
}
