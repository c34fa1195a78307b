// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagGGNMC;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.conf.dropout.Dropout;
import org.deeplearning4j.nn.conf.dropout.IDropout;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.conf.layers.BaseOutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.preprocessor.CnnToFeedForwardPreProcessor;
import org.deeplearning4j.nn.conf.preprocessor.FeedForwardToCnnPreProcessor;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.VertexIndices;
import org.deeplearning4j.nn.graph.vertex.impl.LayerVertex;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.zoo.model.AlexNet;
import org.deeplearning4j.zoo.model.Darknet19;
import org.deeplearning4j.zoo.model.FaceNetNN4Small2;
import org.deeplearning4j.zoo.model.InceptionResNetV1;
import org.deeplearning4j.zoo.model.LeNet;
import org.deeplearning4j.zoo.model.NASNet;
import org.deeplearning4j.zoo.model.ResNet50;
import org.deeplearning4j.zoo.model.SimpleCNN;
import org.deeplearning4j.zoo.model.SqueezeNet;
import org.deeplearning4j.zoo.model.TextGenerationLSTM;
import org.deeplearning4j.zoo.model.TinyYOLO;
import org.deeplearning4j.zoo.model.UNet;
import org.deeplearning4j.zoo.model.VGG16;
import org.deeplearning4j.zoo.model.VGG19;
import org.deeplearning4j.zoo.model.Xception;
import org.deeplearning4j.zoo.model.YOLO2;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationCube;
import org.nd4j.linalg.activations.impl.ActivationELU;
import org.nd4j.linalg.activations.impl.ActivationGELU;
import org.nd4j.linalg.activations.impl.ActivationHardSigmoid;
import org.nd4j.linalg.activations.impl.ActivationHardTanH;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.activations.impl.ActivationLReLU;
import org.nd4j.linalg.activations.impl.ActivationRationalTanh;
import org.nd4j.linalg.activations.impl.ActivationReLU;
import org.nd4j.linalg.activations.impl.ActivationReLU6;
import org.nd4j.linalg.activations.impl.ActivationRectifiedTanh;
import org.nd4j.linalg.activations.impl.ActivationSELU;
import org.nd4j.linalg.activations.impl.ActivationSigmoid;
import org.nd4j.linalg.activations.impl.ActivationSoftPlus;
import org.nd4j.linalg.activations.impl.ActivationSoftSign;
import org.nd4j.linalg.activations.impl.ActivationSoftmax;
import org.nd4j.linalg.activations.impl.ActivationSwish;
import org.nd4j.linalg.activations.impl.ActivationTanH;
import org.nd4j.linalg.activations.impl.ActivationThresholdedReLU;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.BooleanIndexing;
import org.nd4j.linalg.indexing.conditions.Conditions;
import org.nd4j.linalg.lossfunctions.ILossFunction;
import org.nd4j.linalg.lossfunctions.impl.LossBinaryXENT;
import org.nd4j.linalg.lossfunctions.impl.LossL2;
import org.nd4j.linalg.lossfunctions.impl.LossMCXENT;
import org.nd4j.linalg.lossfunctions.impl.LossMSE;
import org.nd4j.linalg.lossfunctions.impl.LossNegativeLogLikelihood;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every model of DL4J's model zoo ({@code deeplearning4j-zoo} 1.0.0-M2.1), with random weights, at the
 * smallest square input where it builds and runs a forward pass, against every extension.
 *
 * <p>For each model and extension, either
 * <ul>
 *   <li>the extension is refused with an {@link UnsupportedLayerException} whose parts name exactly the
 *       layers and vertices that this test computes as unsupported on its own, from the model's classes
 *       and the documented support rules ({@link Expectation}, written from the rules, not from the
 *       library's validation code), and the model then computes exactly the gradient (or, for the
 *       heaviest models, the output) it computed before it was extended; or</li>
 *   <li>it is accepted and a backward pass with N = 2 gives finite values shaped like the parameters,
 *       consistent with each other and with DL4J's gradient of the same pass.</li>
 * </ul>
 *
 * <p>Smallest input sizes, found by searching square inputs (channels as in the zoo: 1 for LeNet, 3
 * otherwise) upwards from 1×1 for the first size at which the zoo model both builds and runs
 * {@code output()}: LeNet, SimpleCNN, Darknet19, VGG16, VGG19, TinyYOLO, FaceNetNN4Small2 at 1×1;
 * Xception 7; UNet 16; YOLO2 17; SqueezeNet 23; AlexNet 43; ResNet50 69; InceptionResNetV1 75 (it
 * builds from 16 but its forward pass fails below 75, and at some sizes above, e.g. 40 and 64).
 * NASNet does not build at any input shape (its helper asks the graph builder for activation types
 * before {@code NASNet.init()} has added the input). TextGenerationLSTM takes {@code [N, characters, T]}
 * and builds for any size.
 *
 * <p>The whole class runs a few tens of seconds on 2 cores; the notes on {@link #CASES} say which
 * checks are reduced for the largest models, and why. The support table is written to
 * {@code target/zoo-support.md}.
 */
class ZooModelsTest {

    private static final int N = 2;
    private static final int CLASSES = 3;
    private static final long SEED = 20240601L;
    /** Seeds ND4J before every pass, so that dropout draws the same masks in every pass. */
    private static final long DROPOUT_SEED = 77L;

    /** How the test checks that a model still works after extending it and refusing extensions. */
    private enum StillWorks {
        /** {@code computeGradientAndScore} before extending and after: bit-identical gradients and scores. */
        GRADIENT,
        /**
         * The output of a training-mode forward pass before extending and after, bit-identical: for the
         * refused models whose DL4J backward pass alone costs seconds on 2 cores at their smallest input
         * (InceptionResNetV1 ~10-25 s,
         * Xception ~9 s, FaceNetNN4Small2 ~5 s, YOLO2 ~3-5 s, UNet ~3 s, Darknet19 ~2.5 s, ResNet50 ~1-4 s,
         * TinyYOLO ~1-2 s), so that the class stays well under two minutes; and for SimpleCNN, whose last
         * layer is an ActivationLayer, so that DL4J itself cannot compute a gradient for it.
         */
        OUTPUT
    }

    private record ZooCase(String name, int[] shape, Supplier<Model> build, StillWorks check, String buildFailure) {
    }

    /** All 16 models of the zoo. {@code shape} is {c, h, w} (for the LSTM {characters, T}). */
    private static final List<ZooCase> CASES = List.of(
            new ZooCase("AlexNet", new int[] {3, 43, 43},
                    () -> AlexNet.builder().numClasses(CLASSES).inputShape(new int[] {3, 43, 43}).build().init(),
                    StillWorks.GRADIENT, null),
            new ZooCase("Darknet19", new int[] {3, 1, 1},
                    () -> Darknet19.builder().numClasses(CLASSES).inputShape(new int[] {3, 1, 1}).build().init(),
                    StillWorks.OUTPUT, null),
            new ZooCase("FaceNetNN4Small2", new int[] {3, 1, 1},
                    () -> FaceNetNN4Small2.builder().numClasses(CLASSES).inputShape(new int[] {3, 1, 1}).build().init(),
                    StillWorks.OUTPUT, null),
            new ZooCase("InceptionResNetV1", new int[] {3, 75, 75},
                    () -> InceptionResNetV1.builder().numClasses(CLASSES).inputShape(new int[] {3, 75, 75}).build()
                            .init(),
                    StillWorks.OUTPUT, null),
            new ZooCase("LeNet", new int[] {1, 1, 1},
                    () -> LeNet.builder().numClasses(CLASSES).inputShape(new int[] {1, 1, 1}).build().init(),
                    StillWorks.GRADIENT, null),
            new ZooCase("NASNet", new int[] {3, 32, 32},
                    () -> NASNet.builder().numClasses(CLASSES).inputShape(new int[] {3, 32, 32}).build().init(),
                    StillWorks.OUTPUT, "Cannot calculate activation types if no inputs have been set"),
            new ZooCase("ResNet50", new int[] {3, 69, 69},
                    () -> ResNet50.builder().numClasses(CLASSES).inputShape(new int[] {3, 69, 69}).build().init(),
                    StillWorks.OUTPUT, null),
            new ZooCase("SimpleCNN", new int[] {3, 1, 1},
                    () -> SimpleCNN.builder().numClasses(CLASSES).inputShape(new int[] {3, 1, 1}).build().init(),
                    StillWorks.OUTPUT, null),
            new ZooCase("SqueezeNet", new int[] {3, 23, 23},
                    () -> SqueezeNet.builder().numClasses(CLASSES).inputShape(new int[] {3, 23, 23}).build().init(),
                    StillWorks.GRADIENT, null),
            new ZooCase("TextGenerationLSTM", new int[] {CLASSES, 1},
                    () -> TextGenerationLSTM.builder().maxLength(1).totalUniqueCharacters(CLASSES)
                            .inputShape(new int[] {1, CLASSES}).build().init(),
                    StillWorks.GRADIENT, null),
            new ZooCase("TinyYOLO", new int[] {3, 1, 1},
                    () -> TinyYOLO.builder().numClasses(CLASSES).inputShape(new int[] {3, 1, 1}).build().init(),
                    StillWorks.OUTPUT, null),
            new ZooCase("UNet", new int[] {3, 16, 16},
                    () -> UNet.builder().numClasses(CLASSES).inputShape(new int[] {3, 16, 16}).build().init(),
                    StillWorks.OUTPUT, null),
            new ZooCase("VGG16", new int[] {3, 1, 1},
                    () -> VGG16.builder().numClasses(CLASSES).inputShape(new int[] {3, 1, 1}).build().init(),
                    StillWorks.GRADIENT, null),
            new ZooCase("VGG19", new int[] {3, 1, 1},
                    () -> VGG19.builder().numClasses(CLASSES).inputShape(new int[] {3, 1, 1}).build().init(),
                    StillWorks.GRADIENT, null),
            new ZooCase("Xception", new int[] {3, 7, 7},
                    () -> Xception.builder().numClasses(CLASSES).inputShape(new int[] {3, 7, 7}).build().init(),
                    StillWorks.OUTPUT, null),
            new ZooCase("YOLO2", new int[] {3, 17, 17},
                    () -> YOLO2.builder().numClasses(CLASSES).inputShape(new int[] {3, 17, 17}).build().init(),
                    StillWorks.OUTPUT, null));

    private static final List<Class<?>> FIRST_ORDER = List.of(BatchGrad.class, BatchL2Grad.class,
            SumGradSquared.class, Variance.class, BatchDotGrad.class);
    private static final Set<Class<?>> HESSIAN = Set.of(DiagHessian.class, BatchDiagHessian.class);
    private static final Set<Class<?>> KRONECKER = Set.of(KFAC.class, KFLR.class, KFRA.class);
    private static final Set<Class<?>> PER_EXAMPLE = Set.of(BatchGrad.class, BatchDiagGGNExact.class,
            BatchDiagGGNMC.class, BatchDiagHessian.class);

    /** @return one fresh instance of every extension, first-order ones first */
    private static List<Extension<?>> allExtensions() {
        return List.of(new BatchGrad(), new BatchL2Grad(), new SumGradSquared(), new Variance(), new BatchDotGrad(),
                new DiagGGNExact(), new DiagGGNMC(1), new BatchDiagGGNExact(), new BatchDiagGGNMC(1),
                new DiagHessian(), new BatchDiagHessian(), new KFAC(1), new KFLR(), new KFRA());
    }

    /** One line of the support table, by model name. */
    private record Row(String model, String type, String input, String params, String firstOrder,
                       String secondOrder, String reasons, String running) {
    }

    private static final Map<String, Row> ROWS = new TreeMap<>();

    @TestFactory
    Stream<DynamicTest> zooModels() {
        // -Dzoo.only=LeNet,VGG19 runs a subset (for debugging; the table then lists only those)
        List<String> only = Arrays.asList(System.getProperty("zoo.only", "").split(","));
        return CASES.stream().filter(c -> only.equals(List.of("")) || only.contains(c.name()))
                .map(c -> DynamicTest.dynamicTest(c.name(), () -> timed(c)));
    }

    private static void timed(ZooCase c) {
        long start = System.nanoTime();
        try {
            check(c);
        } finally {
            Nd4j.getWorkspaceManager().destroyAllWorkspacesForCurrentThread();
            System.gc();
            System.out.printf("ZooModelsTest %s: %.1f s%n", c.name(), (System.nanoTime() - start) / 1e9);
        }
    }

    private static void check(ZooCase c) {
        Model model;
        try {
            model = c.build().get();
        } catch (RuntimeException e) {
            if (c.buildFailure() == null) {
                throw e;
            }
            assertTrue(String.valueOf(e.getMessage()).contains(c.buildFailure()), "unexpected build failure: " + e);
            ROWS.put(c.name(), new Row(c.name(), "ComputationGraph", "any", "—", "—", "—", 
                    "does not build at any input shape in deeplearning4j-zoo 1.0.0-M2.1 (`" + e.getMessage()
                            + "`: NASNetHelper asks the graph builder for activation types before `NASNet.init()` "
                            + "adds the input)", "—"));
            return;
        }
        assertTrue(c.buildFailure() == null, c.name() + " builds now: update this test and the table");

        // computed from the plain model: once extended, its layers compute with private configuration copies
        Expectation expectation = Expectation.of(model);
        Map<String, Map<String, String>> expectedByExtension = new HashMap<>();
        Map<String, Map<String, String>> expectedWithRunningStatistics = new HashMap<>();
        for (Extension<?> e : allExtensions()) {
            expectedByExtension.put(e.name(), expectation.unsupported(e));
            expectedWithRunningStatistics.put(e.name(), expectation.unsupported(e, true));
        }
        INDArray x = features(c);
        INDArray y = labels(c, model, x);

        // the reference: what the plain model computes before it is extended
        INDArray gradientBefore = null;
        double scoreBefore = Double.NaN;
        INDArray outputBefore = null;
        if (c.check() == StillWorks.GRADIENT) {
            computeGradient(model, x, y);
            gradientBefore = model.gradient().gradient().dup();
            scoreBefore = model.score();
        } else {
            outputBefore = output(model, x);
        }

        // small networks: DL4J's gradients one example at a time, from a plain clone
        Map<String, INDArray> singleExample = passesOf(c) == Passes.EACH && model instanceof MultiLayerNetwork
                ? Reference.individualGradients((MultiLayerNetwork) model, x, y) : null;

        BackPackNetwork bp = model instanceof ComputationGraph ? BackPackNetwork.extend((ComputationGraph) model)
                : BackPackNetwork.extend((MultiLayerNetwork) model);

        List<Extension<?>> accepted = new ArrayList<>();
        Map<String, Map<String, String>> refusedBy = new LinkedHashMap<>();
        for (Extension<?> e : allExtensions()) {
            Map<String, String> expected = expectedByExtension.get(e.name());
            if (expected.isEmpty()) {
                bp.enable(e);   // validates without running
                bp.disable();
                accepted.add(e);
                continue;
            }
            RuntimeException thrown = assertThrows(RuntimeException.class, () -> bp.backward(x, y, e),
                    c.name() + " " + e.name() + " should be refused for " + expected.keySet());
            UnsupportedLayerException ex = assertInstanceOf(UnsupportedLayerException.class, thrown,
                    c.name() + " " + e.name());
            Set<String> named = ex.parts().stream().map(UnsupportedLayerException.Part::layer)
                    .collect(Collectors.toCollection(TreeSet::new));
            assertEquals(new TreeSet<>(expected.keySet()), named, c.name() + " " + e.name() + ": parts " + ex.parts());
            for (UnsupportedLayerException.Part p : ex.parts()) {
                assertTrue(Arrays.asList(p.extension().split(", ")).contains(e.name()), p.toString());
                assertEquals(expectation.typeOf(p.layer()), p.type(), "type of " + p.layer());
                assertFalse(p.reason().isBlank(), p.toString());
                assertFalse(p.supported().isBlank(), p.toString());
            }
            refusedBy.put(e.name(), expected);
        }

        String firstOrder = accepted.stream().anyMatch(e -> FIRST_ORDER.contains(e.getClass())) ? "yes" : "no";
        String note = "";
        if (!accepted.isEmpty()) {
            runAccepted(c, model, bp, accepted, x, y, gradientBefore, scoreBefore, singleExample,
                    expectation.hasBatchNormalization());
        }
        String running = expectation.hasBatchNormalization()
                ? checkRunningStatistics(c, model, bp, expectedWithRunningStatistics, x, y) : "—";

        // the model still works as before
        if (c.check() == StillWorks.GRADIENT) {
            computeGradient(model, x, y);
            assertExactlyEqual(gradientBefore, model.gradient().gradient(), c.name() + ": gradient after extending");
            assertEquals(scoreBefore, model.score(), 0.0, c.name() + ": score after extending");
        } else {
            assertExactlyEqual(outputBefore, output(model, x), c.name() + ": output after extending");
        }

        ROWS.put(c.name(), row(c, model, accepted, refusedBy, firstOrder, note, running));
    }

    /**
     * Sets every BatchNormalization layer's running statistics to the statistics of a calibration
     * batch (32 examples), as a user's data would set them: at initialisation (mean 0, variance 1) a deep network such as
     * ResNet50 overflows float32 in inference mode (DL4J's own {@code output(x, false)} is NaN).
     */
    private static void calibrateRunningStatistics(Model model, INDArray x) {
        Map<String, INDArray> inputs = new HashMap<>();
        if (model instanceof ComputationGraph) {
            ComputationGraph g = (ComputationGraph) model;
            Map<String, INDArray> activations = g.feedForward(new INDArray[] {x}, true, false);
            g.getConfiguration().getVertexInputs().forEach((vertex, in) -> {
                if (in.size() == 1 && activations.containsKey(in.get(0))) {
                    inputs.put(vertex, activations.get(in.get(0)));
                }
            });
        } else {
            MultiLayerNetwork net = (MultiLayerNetwork) model;
            List<INDArray> activations = net.feedForward(x, true);
            for (int i = 0; i < net.getnLayers(); i++) {
                inputs.put(String.valueOf(i), activations.get(i));
            }
        }
        for (String key : model.paramTable().keySet()) {
            String layer = key.substring(0, key.lastIndexOf('_'));
            String param = key.substring(key.lastIndexOf('_') + 1);
            INDArray in = inputs.get(layer);
            if (in == null || !(param.equals("mean") || param.equals("var") || param.equals("log10stdev"))) {
                continue;
            }
            int[] dims = in.rank() == 4 ? new int[] {0, 2, 3} : new int[] {0};
            INDArray target = model.getParam(key);
            INDArray value = param.equals("mean") ? in.mean(dims) : in.var(false, dims);
            if (param.equals("log10stdev")) {
                value = org.nd4j.linalg.ops.transforms.Transforms.log(value, 10.0, false).muli(0.5);
            }
            target.assign(value.reshape(target.shape()));
        }
    }

    /**
     * With {@link BatchNormStatistics#RUNNING}: every extension is accepted or refused as expected, and
     * the accepted first-order extensions run in one pass whose individual gradients sum to the pass's
     * own gradient (that of the network in inference mode).
     *
     * @return the table's summary, e.g. "first order yes; second order only DiagGGNExact, ..."
     */
    private static String checkRunningStatistics(ZooCase c, Model model, BackPackNetwork bp,
                                                 Map<String, Map<String, String>> expectedByExtension,
                                                 INDArray x, INDArray y) {
        long[] calibration = x.shape().clone();
        calibration[0] = 32;
        calibrateRunningStatistics(model, TestNets.features(DataType.FLOAT, SEED + 1, calibration));
        bp.setBatchNormStatistics(BatchNormStatistics.RUNNING);
        try {
            List<Extension<?>> accepted = new ArrayList<>();
            for (Extension<?> e : allExtensions()) {
                Map<String, String> expected = expectedByExtension.get(e.name());
                if (expected.isEmpty()) {
                    bp.enable(e);
                    bp.disable();
                    accepted.add(e);
                    continue;
                }
                UnsupportedLayerException ex = assertThrows(UnsupportedLayerException.class, () -> bp.backward(x, y, e),
                        c.name() + " " + e.name() + " (running statistics) should be refused for " + expected.keySet());
                assertEquals(new TreeSet<>(expected.keySet()), ex.parts().stream().map(UnsupportedLayerException.Part::layer)
                        .collect(Collectors.toCollection(TreeSet::new)), c.name() + " " + e.name() + " (running)");
            }
            List<Extension<?>> firstOrder = filter(accepted, BatchGrad.class, BatchL2Grad.class, SumGradSquared.class,
                    Variance.class, BatchDotGrad.class);
            if (!firstOrder.isEmpty()) {
                long start = System.nanoTime();
                Quantities q = bp.backward(x, y, firstOrder.toArray(new Extension<?>[0]));
                String what = c.name() + " running statistics " + firstOrder.stream().map(Extension::name)
                        .collect(Collectors.toList());
                System.out.printf("    %s: %.2f s%n", what, (System.nanoTime() - start) / 1e9);
                for (Extension<?> e : firstOrder) {
                    checkShapesAndFinite(model, q, e, what);
                }
                for (String key : q.keys(BatchGrad.class)) {
                    if (model.getParam(key).length() <= CONSISTENCY_KEY_LIMIT) {
                        INDArray sum = q.byKey(BatchGrad.class, key).castTo(DataType.DOUBLE).sum(0);
                        INDArray expected = model.gradient().getGradientFor(key).castTo(DataType.DOUBLE).div(N);
                        assertClose(expected, sum, FLOAT_RTOL, FLOAT_ATOL, what + " Σ BatchGrad " + key);
                    }
                }
                System.gc();
            }
            String first = firstOrder.isEmpty() ? "no" : "yes";
            List<String> second = accepted.stream().filter(e -> !FIRST_ORDER.contains(e.getClass()))
                    .map(Extension::name).collect(Collectors.toList());
            return "first order " + first + "; second order " + (second.isEmpty() ? "no" : second.size() == 9 ? "yes"
                    : "only " + String.join(", ", second));
        } finally {
            bp.setBatchNormStatistics(BatchNormStatistics.BATCH);
        }
    }

    // ------------------------------------------------------------------ accepted extensions

    /** Accepted extensions that a GROUPED model validates without running (see {@link #passesOf}). */
    private static final Set<Class<?>> GROUPED_VALIDATED = Set.of(KFAC.class, KFLR.class, KFRA.class,
            DiagGGNMC.class, BatchDiagGGNMC.class, BatchDiagHessian.class);

    /** Which backward passes a model with accepted extensions runs. */
    private enum Passes {
        /** Every accepted extension in its own pass (small models). */
        EACH,
        /**
         * The first-order extensions in one pass; DiagGGNExact, BatchDiagGGNExact and DiagHessian in a
         * second; the other second-order extensions validated only.
         */
        GROUPED,
        /** Every extension validated only. */
        VALIDATE
    }

    /**
     * LeNet runs every extension on its own. The large models group them, and validate the Kronecker
     * factorisations (KFAC, KFLR, KFRA) without running them: at VGG's size their passes take 5-14 s each
     * and several GB (input-side factors of 4608² for every 512-channel convolution, 4096² for the dense
     * layers); likewise the Monte-Carlo GGNs and BatchDiagHessian, which go through the same code as the
     * extensions run here (and all run on LeNet), to keep VGG19's second-order pass to a few seconds.
     * VGG16 (33.6M parameters) is validated only: its passes take ~10 s and ~8 GB of native memory on 2
     * cores, and it has exactly the layer kinds of VGG19 (convolution, max pooling, dense with dropout,
     * softmax output), which runs them.
     */
    private static Passes passesOf(ZooCase c) {
        switch (c.name()) {
            case "LeNet":
                return Passes.EACH;
            case "VGG16":
                return Passes.VALIDATE;
            default:
                return Passes.GROUPED;
        }
    }

    /** float32 results against float64 references: relative 1e-3 of each entry, plus 1e-3 of the largest. */
    private static final double FLOAT_RTOL = 1e-3;
    private static final double FLOAT_ATOL = 1e-3;

    /** Layers with parameters of more elements than this get the shape and finiteness checks only. */
    private static final long CONSISTENCY_KEY_LIMIT = 300_000L;

    /**
     * @return whether every hidden activation of the model is piecewise linear (softmax before a
     *     cross-entropy loss counts as part of the loss) and it has no recurrent layer (whose weights multiply a
     *     state that depends on them), so that its Hessian has no residual terms
     */
    private static boolean piecewiseLinear(Model model) {
        org.deeplearning4j.nn.api.Layer[] layers = model instanceof MultiLayerNetwork
                ? ((MultiLayerNetwork) model).getLayers() : ((ComputationGraph) model).getLayers();
        for (org.deeplearning4j.nn.api.Layer l : layers) {
            org.deeplearning4j.nn.conf.layers.Layer conf = l.conf().getLayer();
            if (conf instanceof org.deeplearning4j.nn.conf.layers.BaseRecurrentLayer) {
                return false;
            }
            if (conf instanceof org.deeplearning4j.nn.conf.layers.BaseOutputLayer
                    || conf instanceof org.deeplearning4j.nn.conf.layers.LossLayer) {
                continue;
            }
            IActivation a = conf instanceof org.deeplearning4j.nn.conf.layers.ActivationLayer
                    ? ((org.deeplearning4j.nn.conf.layers.ActivationLayer) conf).getActivationFn()
                    : conf instanceof org.deeplearning4j.nn.conf.layers.DenseLayer
                    || conf instanceof org.deeplearning4j.nn.conf.layers.ConvolutionLayer
                    ? ((BaseLayer) conf).getActivationFn() : null;
            if (a != null && !(a instanceof ActivationReLU || a instanceof ActivationIdentity
                    || a instanceof org.nd4j.linalg.activations.impl.ActivationSoftmax)) {
                return false;
            }
        }
        return true;
    }

    private static void runAccepted(ZooCase c, Model model, BackPackNetwork bp, List<Extension<?>> accepted,
                                    INDArray x, INDArray y, INDArray gradientBefore, double scoreBefore,
                                    Map<String, INDArray> singleExample, boolean batchNormalization) {
        List<List<Extension<?>>> passes = new ArrayList<>();
        Passes plan = passesOf(c);
        if (plan == Passes.EACH) {
            accepted.forEach(e -> passes.add(List.of(e)));
        } else if (plan == Passes.GROUPED) {
            passes.add(filter(accepted, BatchGrad.class, BatchL2Grad.class, SumGradSquared.class, Variance.class,
                    BatchDotGrad.class));
            // the Hessian through batch statistics pushes one column per normalised element: minutes on
            // these models (docs/math.md#batch-normalization); it is validated here and run on small networks
            passes.add(batchNormalization ? filter(accepted, DiagGGNExact.class, BatchDiagGGNExact.class)
                    : filter(accepted, DiagGGNExact.class, BatchDiagGGNExact.class, DiagHessian.class));
            passes.removeIf(List::isEmpty);
        }
        Map<Class<?>, Quantities> results = new HashMap<>();
        for (List<Extension<?>> pass : passes) {
            TestNets.seed(DROPOUT_SEED);
            long start = System.nanoTime();
            Quantities q = bp.backward(x, y, pass.toArray(new Extension<?>[0]));
            String what = c.name() + " " + pass.stream().map(Extension::name).collect(Collectors.toList());
            System.out.printf("    %s: %.2f s%n", what, (System.nanoTime() - start) / 1e9);
            assertEquals(N, q.batchSize(), what);
            if (gradientBefore != null) {
                // the extended pass is DL4J's own pass: the same gradient, to the bit
                assertExactlyEqual(gradientBefore, model.gradient().gradient(), what + ": gradient");
                assertEquals(scoreBefore, q.score(), 0.0, what + ": score");
            }
            for (Extension<?> e : pass) {
                checkShapesAndFinite(model, q, e, what);
                results.put(e.getClass(), q);
            }
            if (plan != Passes.EACH) {
                System.gc();   // return the copies' native memory before the next pass
            }
            if (results.get(BatchGrad.class) == q) {
                // Σ_n g_n = ∇L = DL4J's summed gradient / N, in the same pass
                for (String key : trainableParams(model).keySet()) {
                    if (model.getParam(key).length() <= CONSISTENCY_KEY_LIMIT) {
                        INDArray sum = q.byKey(BatchGrad.class, key).castTo(DataType.DOUBLE).sum(0);
                        INDArray expected = model.gradient().getGradientFor(key).castTo(DataType.DOUBLE).div(N);
                        assertClose(expected, sum, FLOAT_RTOL, FLOAT_ATOL, what + " Σ BatchGrad " + key);
                    }
                }
            }
        }
        for (Extension<?> e : accepted) {
            if (!results.containsKey(e.getClass())) {
                boolean validatedOnly = plan == Passes.VALIDATE
                        || plan == Passes.GROUPED && (GROUPED_VALIDATED.contains(e.getClass())
                        || batchNormalization && e.getClass() == DiagHessian.class);
                assertTrue(validatedOnly, e.name() + " not run");
            }
        }
        // consistency between extensions (passes with the same dropout masks: ND4J seeded alike), with
        // float64 references (summing millions of float32 squares in float32 loses digits)
        for (String key : consistencyKeys(model, plan)) {
            String where = c.name() + " " + key;
            if (results.containsKey(BatchGrad.class)) {
                INDArray g = results.get(BatchGrad.class).byKey(BatchGrad.class, key).castTo(DataType.DOUBLE);
                if (singleExample != null) {
                    assertClose(singleExample.get(key).castTo(DataType.DOUBLE), g, FLOAT_RTOL, 1e-4,
                            where + " BatchGrad vs single-example passes");
                }
                checkAgainst(results, BatchL2Grad.class, key, Reference.squaredNorms(g), where);
                checkAgainst(results, SumGradSquared.class, key, Reference.sumGradSquared(g), where);
                checkAgainst(results, Variance.class, key, Reference.variance(g), where);
                checkAgainst(results, BatchDotGrad.class, key, Reference.dots(g), where);
            }
            if (results.containsKey(DiagGGNExact.class)) {
                INDArray diag = value(results, DiagGGNExact.class, key);
                assertTrue(diag.minNumber().doubleValue() >= 0, where + " DiagGGNExact negative");
                if (results.containsKey(BatchDiagGGNExact.class)) {
                    assertClose(value(results, BatchDiagGGNExact.class, key).sum(0), diag, FLOAT_RTOL, FLOAT_ATOL,
                            where + " Σ BatchDiagGGNExact");
                }
                if (results.containsKey(DiagHessian.class) && piecewiseLinear(model)) {
                    // ReLU, max pooling, softmax cross-entropy: the Hessian has no residual terms
                    assertClose(diag, value(results, DiagHessian.class, key), FLOAT_RTOL, FLOAT_ATOL,
                            where + " DiagHessian = DiagGGNExact");
                }
            }
            if (results.containsKey(DiagHessian.class) && results.containsKey(BatchDiagHessian.class)) {
                assertClose(value(results, BatchDiagHessian.class, key).sum(0), value(results, DiagHessian.class, key),
                        FLOAT_RTOL, FLOAT_ATOL, where + " Σ BatchDiagHessian");
            }
            for (Class<?> mc : List.of(DiagGGNMC.class, BatchDiagGGNMC.class)) {
                if (results.containsKey(mc)) {
                    assertTrue(value(results, mc, key).minNumber().doubleValue() >= 0,
                            where + " " + mc.getSimpleName() + " negative");
                }
            }
        }
    }

    /**
     * @return the keys whose values are checked against each other: all of a small model; of a large one,
     *     those of its first, middle and last layer among the layers whose parameters have at most
     *     {@link #CONSISTENCY_KEY_LIMIT} elements (each check is dozens of ND4J operations)
     */
    private static List<String> consistencyKeys(Model model, Passes plan) {
        Map<String, List<String>> byLayer = new LinkedHashMap<>();
        Map<String, Boolean> small = new HashMap<>();
        for (String key : trainableParams(model).keySet()) {
            String layer = key.substring(0, key.lastIndexOf('_'));
            byLayer.computeIfAbsent(layer, l -> new ArrayList<>()).add(key);
            small.merge(layer, model.getParam(key).length() <= CONSISTENCY_KEY_LIMIT, Boolean::logicalAnd);
        }
        List<String> layers = byLayer.keySet().stream().filter(small::get).collect(Collectors.toList());
        if (plan != Passes.EACH && layers.size() > 3) {
            layers = List.of(layers.get(0), layers.get(layers.size() / 2), layers.get(layers.size() - 1));
        }
        return layers.stream().flatMap(l -> byLayer.get(l).stream()).collect(Collectors.toList());
    }

    /** @return the value of an extension for a key, as float64 */
    private static INDArray value(Map<Class<?>, Quantities> results, Class<?> extension, String key) {
        INDArray v = byKey(results.get(extension), extension, key);
        return v.castTo(DataType.DOUBLE);
    }

    private static void checkAgainst(Map<Class<?>, Quantities> results, Class<?> extension, String key,
                                     INDArray expected, String where) {
        if (results.containsKey(extension)) {
            assertClose(expected, value(results, extension, key), FLOAT_RTOL, FLOAT_ATOL,
                    where + " " + extension.getSimpleName());
        }
    }

    private static List<Extension<?>> filter(List<Extension<?>> accepted, Class<?>... classes) {
        List<Class<?>> wanted = Arrays.asList(classes);
        return accepted.stream().filter(e -> wanted.contains(e.getClass())).collect(Collectors.toList());
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private static <T> T byKey(Quantities q, Class<?> extension, String key) {
        return (T) q.byKey((Class) extension, key);
    }

    /** Every parameter has a finite value of the extension, shaped as documented. */
    @SuppressWarnings({"unchecked", "rawtypes"})
    /**
     * @return the parameters DL4J trains by gradient, in {@code paramTable()} order: all but the running
     *     mean and variance (or log10 standard deviation) of BatchNormalization layers and the class centres
     *     of CenterLossOutputLayers
     */
    private static Map<String, INDArray> trainableParams(Model model) {
        Map<String, INDArray> out = new LinkedHashMap<>(model.paramTable());
        out.keySet().removeIf(key -> {
            String param = key.substring(key.lastIndexOf('_') + 1);
            return param.equals("mean") || param.equals("var") || param.equals("log10stdev") || param.equals("cL");
        });
        return out;
    }

    private static void checkShapesAndFinite(Model model, Quantities q, Extension<?> e, String what) {
        Class cls = e.getClass();
        Map<String, INDArray> params = trainableParams(model);
        assertEquals(params.keySet(), q.keys(cls), what + " " + e.name() + ": keys");
        for (Map.Entry<String, INDArray> param : params.entrySet()) {
            String key = param.getKey();
            long[] p = param.getValue().shape();
            Object value = q.byKey(cls, key);
            String where = what + " " + e.name() + " " + key;
            if (KRONECKER.contains(cls)) {
                KroneckerFactors kf = assertInstanceOf(KroneckerFactors.class, value, where);
                assertEquals(param.getValue().length(), kf.dimension(), where + ": dimension");
                for (INDArray f : kf.factors()) {
                    assertEquals(f.rows(), f.columns(), where + ": square factor");
                    assertFinite(f, where);
                }
                continue;
            }
            INDArray v = assertInstanceOf(INDArray.class, value, where);
            long[] expected;
            if (PER_EXAMPLE.contains(cls)) {
                expected = BruteForce.withBatch(N, p);
            } else if (cls == BatchL2Grad.class) {
                expected = new long[] {N};
            } else if (cls == BatchDotGrad.class) {
                expected = new long[] {N, N};
            } else {
                expected = p;
            }
            assertArrayEquals(expected, v.shape(), where + ": shape");
            assertFinite(v, where);
            free(v);
        }
    }

    /** Releases a copy's native memory now rather than at the next garbage collection. */
    private static void free(INDArray a) {
        if (a != null && a.closeable()) {
            a.close();
        }
    }

    private static void assertFinite(INDArray a, String what) {
        assertTrue(BooleanIndexing.and(a, Conditions.isFinite()), what + ": not finite");
    }

    private static void assertExactlyEqual(INDArray expected, INDArray actual, String what) {
        assertNotNull(actual, what);
        assertArrayEquals(expected.shape(), actual.shape(), what + ": shape");
        assertEquals(expected.dataType(), actual.dataType(), what + ": data type");
        assertFinite(actual, what);
        INDArray neq = expected.neq(actual);
        INDArray count = neq.castTo(DataType.INT32);
        long differing = count.sumNumber().longValue();
        free(neq);
        free(count);
        assertEquals(0, differing, what + ": " + differing + " elements differ");
    }

    // ------------------------------------------------------------------ data and passes

    private static INDArray features(ZooCase c) {
        int[] s = c.shape();
        if (c.name().equals("TextGenerationLSTM")) {
            return TestNets.features(DataType.FLOAT, SEED, N, s[0], s[1]);   // [N, characters, T]
        }
        if (c.name().equals("LeNet")) {
            // LeNet declares a flat input (convolutionalFlat) and reshapes it itself
            return TestNets.features(DataType.FLOAT, SEED, N, (long) s[0] * s[1] * s[2]);
        }
        return TestNets.features(DataType.FLOAT, SEED, N, s[0], s[1], s[2]);
    }

    private static INDArray labels(ZooCase c, Model model, INDArray x) {
        java.util.Random r = new java.util.Random(SEED);
        switch (c.name()) {
            case "TinyYOLO":
            case "YOLO2": {
                // Yolo2OutputLayer: [N, 4 + classes, gridH, gridW]; all zeros = no object in any cell
                INDArray out = output(model, x);
                return Nd4j.zeros(DataType.FLOAT, N, 4 + CLASSES, out.size(2), out.size(3));
            }
            case "UNet": {
                INDArray out = output(model, x);
                INDArray y = Nd4j.zeros(DataType.FLOAT, out.shape());
                for (long i = 0; i < y.length(); i++) {
                    y.putScalar(i, r.nextBoolean() ? 1.0 : 0.0);
                }
                return y;
            }
            case "TextGenerationLSTM": {
                INDArray y = Nd4j.zeros(DataType.FLOAT, N, CLASSES, x.size(2));
                for (int n = 0; n < N; n++) {
                    for (int t = 0; t < x.size(2); t++) {
                        y.putScalar(new int[] {n, r.nextInt(CLASSES), t}, 1.0);
                    }
                }
                return y;
            }
            default: {
                INDArray y = Nd4j.zeros(DataType.FLOAT, N, CLASSES);
                for (int n = 0; n < N; n++) {
                    y.putScalar(n, r.nextInt(CLASSES), 1.0);
                }
                return y;
            }
        }
    }

    private static void computeGradient(Model model, INDArray x, INDArray y) {
        TestNets.seed(DROPOUT_SEED);
        if (model instanceof ComputationGraph) {
            ComputationGraph g = (ComputationGraph) model;
            g.setInputs(x);
            g.setLabels(y);
            g.computeGradientAndScore();
        } else {
            MultiLayerNetwork net = (MultiLayerNetwork) model;
            net.setInput(x);
            net.setLabels(y);
            net.computeGradientAndScore();
        }
    }

    /**
     * @return the output of a training-mode forward pass (seeded dropout): BatchNormalization then uses
     *     the batch's statistics, as in the backward pass (its initial running statistics make ResNet50's
     *     inference output overflow to NaN)
     */
    private static INDArray output(Model model, INDArray x) {
        TestNets.seed(DROPOUT_SEED);
        return model instanceof ComputationGraph ? ((ComputationGraph) model).output(true, x)[0].dup()
                : ((MultiLayerNetwork) model).output(x, true).dup();
    }

    // ------------------------------------------------------------------ the table

    private static Row row(ZooCase c, Model model, List<Extension<?>> accepted,
                           Map<String, Map<String, String>> refusedBy, String firstOrder, String note,
                           String running) {
        String type = model.getClass().getSimpleName();
        int[] s = c.shape();
        String input = s.length == 3 ? s[0] + "×" + s[1] + "×" + s[2] : s[0] + " characters × " + s[1] + " step";
        String params = String.format("%.2fM", model.numParams() / 1e6);
        List<String> secondAccepted = accepted.stream().filter(e -> !FIRST_ORDER.contains(e.getClass()))
                .map(Extension::name).collect(Collectors.toList());
        String secondOrder = secondAccepted.isEmpty() ? "no" : secondAccepted.size() == 9 ? "yes"
                : "only " + String.join(", ", secondAccepted);

        // reasons: the first-order refusals, then what second-order extensions refuse in addition
        Map<String, String> first = refusedBy.getOrDefault("BatchGrad", Map.of());
        Map<String, String> second = new LinkedHashMap<>();
        for (Map.Entry<String, Map<String, String>> e : refusedBy.entrySet()) {
            if (FIRST_ORDER.stream().noneMatch(cl -> cl.getSimpleName().equals(e.getKey()))) {
                e.getValue().forEach((layer, reason) -> {
                    if (!first.containsKey(layer)) {
                        second.putIfAbsent(layer, reason);
                    }
                });
            }
        }
        List<String> reasons = new ArrayList<>();
        Map<String, String> parameters = new LinkedHashMap<>(first);
        parameters.values().removeIf(r -> r.startsWith(Expectation.BATCH_STATISTICS));
        if (!parameters.isEmpty()) {
            reasons.add("parameters in " + summary(parameters));
        }
        long batchStatistics = first.values().stream().filter(r -> r.startsWith(Expectation.BATCH_STATISTICS)).count();
        if (batchStatistics > 0) {
            reasons.add("per-example quantities through BatchNormalization with batch statistics ×" + batchStatistics);
        }
        second.values().removeIf(r -> r.startsWith(Expectation.BATCH_STATISTICS + " (per example)"));
        Map<String, String> secondNoKfra = new LinkedHashMap<>(second);
        secondNoKfra.values().removeIf(r -> r.startsWith(Expectation.FAN_OUT));
        if (!secondNoKfra.isEmpty()) {
            reasons.add("curvature path through " + summary(secondNoKfra));
        }
        long fanOut = second.values().stream().filter(r -> r.startsWith(Expectation.FAN_OUT)).count();
        if (fanOut > 0) {
            reasons.add("KFRA also: " + fanOut + " node(s) with fan-out");
        }
        if (!note.isEmpty()) {
            reasons.add(note);
        }
        if (reasons.isEmpty()) {
            Passes plan = passesOf(c);
            reasons.add(plan == Passes.EACH ? "all supported"
                    : plan == Passes.GROUPED ? "all supported (KFAC, KFLR, KFRA, the MC GGNs and BatchDiagHessian "
                            + "validated here, not run: size)"
                    : "all supported (validated here, not run: size; VGG19 runs the same layer kinds)");
        }
        return new Row(c.name(), type, input, params, firstOrder, secondOrder, String.join("; ", reasons), running);
    }

    /** @return e.g. "BatchNormalization ×18, GlobalPoolingLayer" */
    private static String summary(Map<String, String> reasons) {
        Map<String, Integer> counts = new TreeMap<>();
        reasons.values().forEach(r -> counts.merge(r, 1, Integer::sum));
        return counts.entrySet().stream().map(e -> e.getValue() > 1 ? e.getKey() + " ×" + e.getValue() : e.getKey())
                .collect(Collectors.joining(", "));
    }

    @AfterAll
    static void writeTable() throws IOException {
        StringBuilder md = new StringBuilder();
        md.append("| Model | Network type | Input (smallest) | Parameters | First order | Second order | Why not | "
                + "With running BatchNormalization statistics |\n");
        md.append("|---|---|---|---|---|---|---|---|\n");
        for (ZooCase c : CASES) {
            Row r = ROWS.get(c.name());
            if (r == null) {
                md.append("| ").append(c.name()).append(" | | | | | | (test failed: see the test report) | |\n");
                continue;
            }
            md.append("| ").append(r.model()).append(" | ").append(r.type()).append(" | ").append(r.input())
                    .append(" | ").append(r.params()).append(" | ").append(r.firstOrder()).append(" | ")
                    .append(r.secondOrder()).append(" | ").append(r.reasons().replace("|", "\\|")).append(" | ")
                    .append(r.running()).append(" |\n");
        }
        md.append("\nFirst order: BatchGrad, BatchL2Grad, SumGradSquared, Variance, BatchDotGrad. Second order: "
                + "DiagGGNExact, DiagGGNMC, BatchDiagGGNExact, BatchDiagGGNMC, DiagHessian, BatchDiagHessian, KFAC, "
                + "KFLR, KFRA. Generated by ZooModelsTest (random weights, deeplearning4j-zoo 1.0.0-M2.1, "
                + "N = 2).\n");
        Path target = Paths.get("target");
        Files.createDirectories(target);
        Files.write(target.resolve("zoo-support.md"), md.toString().getBytes(StandardCharsets.UTF_8));
    }

    // ------------------------------------------------------------------ expectation

    /**
     * What should be unsupported, computed from the model's own structure and the documented rules:
     * <ul>
     *   <li>every extension needs every layer with parameters to be of a supported kind (exact DL4J
     *       implementation classes: dense, output, centre-loss output, 2D/3D/transposed/depthwise/separable
     *       convolutions, PReLU, batch normalisation), and standard backpropagation;</li>
     *   <li>second-order extensions also need every layer and vertex on a path from a layer with
     *       parameters to an output to be one of the supported layers (elementwise activations only,
     *       standard input noise, preprocessors CnnToFeedForward or FeedForwardToCnn); ElementWise, Merge (not along the batch), Subset, Scale, Shift, Reshape,
     *       Preprocessor, L2Normalize, L2 and PoolHelper vertices; and each output a loss of softmax with
     *       MCXENT/NLL, identity with MSE/L2 or sigmoid with XENT. The Hessian refuses a local response
     *       normalisation with a Hessian residual below it (DL4J's backward step of it is inexact);</li>
     *   <li>KFRA also refuses every node on that path that feeds more than one node on it.</li>
     * </ul>
     */
    static final class Expectation {

        static final String FAN_OUT = "fan-out";

        private static final Set<Class<?>> PARAMETRIC_SUPPORTED = Set.of(
                org.deeplearning4j.nn.layers.feedforward.dense.DenseLayer.class,
                org.deeplearning4j.nn.layers.OutputLayer.class,
                org.deeplearning4j.nn.layers.training.CenterLossOutputLayer.class,
                org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingLayer.class,
                org.deeplearning4j.nn.layers.convolution.ConvolutionLayer.class,
                org.deeplearning4j.nn.layers.convolution.Deconvolution2DLayer.class,
                org.deeplearning4j.nn.layers.convolution.Convolution3DLayer.class,
                org.deeplearning4j.nn.layers.feedforward.PReLU.class,
                org.deeplearning4j.nn.layers.convolution.DepthwiseConvolution2DLayer.class,
                org.deeplearning4j.nn.layers.convolution.SeparableConvolution2DLayer.class,
                org.deeplearning4j.nn.layers.normalization.BatchNormalization.class,
                org.deeplearning4j.nn.layers.recurrent.LSTM.class,
                org.deeplearning4j.nn.layers.recurrent.GravesLSTM.class,
                org.deeplearning4j.nn.layers.recurrent.SimpleRnn.class,
                org.deeplearning4j.nn.layers.recurrent.RnnOutputLayer.class,
                org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingSequenceLayer.class,
                org.deeplearning4j.nn.layers.convolution.Convolution1DLayer.class);
        /** Layers with parameters whose weights have no Kronecker factorisation. */
        private static final Set<Class<?>> NO_KRONECKER = Set.of(
                org.deeplearning4j.nn.layers.feedforward.PReLU.class,
                org.deeplearning4j.nn.layers.convolution.DepthwiseConvolution2DLayer.class,
                org.deeplearning4j.nn.layers.convolution.SeparableConvolution2DLayer.class,
                org.deeplearning4j.nn.layers.recurrent.LSTM.class,
                org.deeplearning4j.nn.layers.recurrent.GravesLSTM.class,
                org.deeplearning4j.nn.layers.recurrent.SimpleRnn.class,
                org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingLayer.class,
                org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingSequenceLayer.class);
        private static final Set<Class<?>> LAYERS_SUPPORTED = Set.of(
                org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingLayer.class,
                org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingSequenceLayer.class,
                org.deeplearning4j.nn.layers.convolution.Convolution1DLayer.class,
                org.deeplearning4j.nn.layers.recurrent.LSTM.class,
                org.deeplearning4j.nn.layers.recurrent.GravesLSTM.class,
                org.deeplearning4j.nn.layers.recurrent.SimpleRnn.class,
                org.deeplearning4j.nn.layers.recurrent.RnnOutputLayer.class,
                org.deeplearning4j.nn.layers.convolution.Deconvolution2DLayer.class,
                org.deeplearning4j.nn.layers.convolution.Convolution3DLayer.class,
                org.deeplearning4j.nn.layers.feedforward.PReLU.class,
                org.deeplearning4j.nn.layers.convolution.SpaceToDepth.class,
                org.deeplearning4j.nn.layers.convolution.subsampling.Subsampling3DLayer.class,
                org.deeplearning4j.nn.layers.convolution.upsampling.Upsampling3D.class,
                org.deeplearning4j.nn.layers.convolution.ZeroPadding3DLayer.class,
                org.deeplearning4j.nn.layers.convolution.Cropping3DLayer.class,
                org.deeplearning4j.nn.layers.feedforward.dense.DenseLayer.class,
                org.deeplearning4j.nn.layers.OutputLayer.class,
                org.deeplearning4j.nn.layers.convolution.ConvolutionLayer.class,
                org.deeplearning4j.nn.layers.convolution.DepthwiseConvolution2DLayer.class,
                org.deeplearning4j.nn.layers.convolution.SeparableConvolution2DLayer.class,
                org.deeplearning4j.nn.layers.convolution.subsampling.SubsamplingLayer.class,
                org.deeplearning4j.nn.layers.ActivationLayer.class,
                org.deeplearning4j.nn.layers.DropoutLayer.class,
                org.deeplearning4j.nn.layers.LossLayer.class,
                org.deeplearning4j.nn.layers.convolution.CnnLossLayer.class,
                org.deeplearning4j.nn.layers.pooling.GlobalPoolingLayer.class,
                org.deeplearning4j.nn.layers.normalization.LocalResponseNormalization.class,
                org.deeplearning4j.nn.layers.normalization.BatchNormalization.class,
                org.deeplearning4j.nn.layers.convolution.ZeroPaddingLayer.class,
                org.deeplearning4j.nn.layers.convolution.Cropping2DLayer.class,
                org.deeplearning4j.nn.layers.convolution.upsampling.Upsampling2D.class);
        private static final Set<Class<?>> ACTIVATIONS = Set.of(ActivationIdentity.class, ActivationReLU.class,
                ActivationReLU6.class, ActivationLReLU.class, ActivationThresholdedReLU.class,
                ActivationHardTanH.class, ActivationHardSigmoid.class, ActivationSigmoid.class, ActivationTanH.class,
                ActivationSoftPlus.class, ActivationSoftSign.class, ActivationELU.class, ActivationSELU.class,
                ActivationSwish.class, ActivationGELU.class, ActivationCube.class, ActivationRationalTanh.class,
                ActivationRectifiedTanh.class);

        private static final Set<Class<?>> PIECEWISE_LINEAR = Set.of(ActivationIdentity.class, ActivationReLU.class,
                ActivationReLU6.class, ActivationLReLU.class, ActivationThresholdedReLU.class,
                ActivationHardTanH.class, ActivationHardSigmoid.class);

        /** A layer or a vertex without parameters; network inputs are not nodes. */
        private record Node(String name, String type, Layer layer, GraphVertex vertex,
                            org.deeplearning4j.nn.conf.graph.GraphVertex confVertex, InputPreProcessor preProcessor,
                            List<Integer> inputs, boolean output) {

            boolean parametric() {
                return layer != null && layer.numParams() > 0;
            }
        }

        private final List<Node> nodes;
        private final boolean[] region;
        private final int[] regionConsumers;

        private Expectation(List<Node> nodes) {
            this.nodes = nodes;
            int count = nodes.size();
            boolean[] fromParams = new boolean[count];
            for (int i = 0; i < count; i++) {
                fromParams[i] = nodes.get(i).parametric();
                for (int in : nodes.get(i).inputs()) {
                    fromParams[i] |= fromParams[in];
                }
            }
            boolean[] toOutput = new boolean[count];
            for (int i = count - 1; i >= 0; i--) {
                toOutput[i] |= nodes.get(i).output();
                if (toOutput[i]) {
                    for (int in : nodes.get(i).inputs()) {
                        toOutput[in] = true;
                    }
                }
            }
            region = new boolean[count];
            for (int i = 0; i < count; i++) {
                region[i] = fromParams[i] && toOutput[i];
            }
            regionConsumers = new int[count];
            for (int i = 0; i < count; i++) {
                if (region[i]) {
                    for (int in : nodes.get(i).inputs()) {
                        regionConsumers[in]++;
                    }
                }
            }
        }

        /** @return the structure of an initialised, not yet extended model, nodes in topological order */
        static Expectation of(Model model) {
            List<Node> nodes = new ArrayList<>();
            if (model instanceof MultiLayerNetwork) {
                MultiLayerNetwork net = (MultiLayerNetwork) model;
                Layer[] layers = net.getLayers();
                for (int i = 0; i < layers.length; i++) {
                    nodes.add(new Node(String.valueOf(i), layers[i].getClass().getSimpleName(), layers[i], null, null,
                            net.getLayerWiseConfigurations().getInputPreProcess(i),
                            i == 0 ? List.of() : List.of(i - 1), i == layers.length - 1));
                }
                return new Expectation(nodes);
            }
            ComputationGraph g = (ComputationGraph) model;
            GraphVertex[] vertices = g.getVertices();
            List<String> outputs = g.getConfiguration().getNetworkOutputs();
            Map<Integer, Integer> position = new HashMap<>();
            for (int index : g.topologicalSortOrder()) {
                GraphVertex v = vertices[index];
                if (v.isInputVertex()) {
                    continue;
                }
                List<Integer> inputs = new ArrayList<>();
                for (VertexIndices in : v.getInputVertices()) {
                    if (!vertices[in.getVertexIndex()].isInputVertex()) {
                        inputs.add(position.get(in.getVertexIndex()));
                    }
                }
                position.put(index, nodes.size());
                nodes.add(new Node(v.getVertexName(),
                        v.hasLayer() ? v.getLayer().getClass().getSimpleName() : v.getClass().getSimpleName(),
                        v.hasLayer() ? v.getLayer() : null, v,
                        g.getConfiguration().getVertices().get(v.getVertexName()),
                        v instanceof LayerVertex ? ((LayerVertex) v).getLayerPreProcessor() : null, inputs,
                        outputs.contains(v.getVertexName())));
            }
            return new Expectation(nodes);
        }

        /** @return the DL4J type name of a node ("network" parts: the model's) */
        String typeOf(String name) {
            return nodes.stream().filter(n -> n.name().equals(name)).map(Node::type).findFirst()
                    .orElse(nodes.get(0).layer() != null && nodes.get(0).vertex() == null ? "MultiLayerNetwork"
                            : "ComputationGraph");
        }

        /**
         * @return whether node i is half of a softmax layer followed by a LossLayer(identity, MCXENT or NLL)
         *     that is its only consumer: one softmax cross-entropy for the curvature
         */
        boolean splitSoftmax(int i) {
            for (int o = 0; o < nodes.size(); o++) {
                Node out = nodes.get(o);
                if (!out.output() || out.inputs().size() != 1 || out.layer() == null
                        || !(out.layer().conf().getLayer() instanceof org.deeplearning4j.nn.conf.layers.LossLayer)) {
                    continue;
                }
                org.deeplearning4j.nn.conf.layers.LossLayer conf =
                        (org.deeplearning4j.nn.conf.layers.LossLayer) out.layer().conf().getLayer();
                ILossFunction loss = conf.getLossFn();
                boolean crossEntropy = (loss.getClass() == org.nd4j.linalg.lossfunctions.impl.LossMCXENT.class
                        || loss.getClass() == org.nd4j.linalg.lossfunctions.impl.LossNegativeLogLikelihood.class)
                        && conf.getActivationFn() instanceof org.nd4j.linalg.activations.impl.ActivationIdentity;
                int p = out.inputs().get(0);
                if (!crossEntropy || p < 0) {
                    continue;
                }
                Node producer = nodes.get(p);
                long consumers = nodes.stream().filter(n -> n.inputs().contains(p)).count();
                IActivation activation = producer.layer() == null ? null
                        : producer.layer().conf().getLayer() instanceof org.deeplearning4j.nn.conf.layers.ActivationLayer
                        ? ((org.deeplearning4j.nn.conf.layers.ActivationLayer) producer.layer().conf().getLayer())
                                .getActivationFn()
                        : producer.layer().conf().getLayer() instanceof BaseLayer
                        ? ((BaseLayer) producer.layer().conf().getLayer()).getActivationFn() : null;
                if (consumers == 1 && activation instanceof org.nd4j.linalg.activations.impl.ActivationSoftmax
                        && LAYERS_SUPPORTED.contains(producer.layer().getClass()) && (i == o || i == p)) {
                    return true;
                }
            }
            return false;
        }

        static final String BATCH_STATISTICS = "BatchNormalization with batch statistics";

        /** @return whether the model has a BatchNormalization layer */
        boolean hasBatchNormalization() {
            return nodes.stream().anyMatch(n -> n.layer() instanceof org.deeplearning4j.nn.layers.normalization
                    .BatchNormalization);
        }

        /**
         * @return the parts an extension cannot handle with DL4J's batch statistics (the default): name →
         *     short reason, empty when all is supported
         */
        Map<String, String> unsupported(Extension<?> extension) {
            return unsupported(extension, false);
        }

        /**
         * @param running whether BatchNormalization layers use their running statistics
         *     ({@link BatchNormStatistics#RUNNING})
         * @return the parts an extension cannot handle: name → short reason, empty when all is supported
         */
        Map<String, String> unsupported(Extension<?> extension, boolean running) {
            Map<String, String> out = structural(extension);
            Class<?> e = extension.getClass();
            boolean perExample = FIRST_ORDER.contains(e) || PER_EXAMPLE.contains(e) || e == SumGradSquared.class
                    || e == Variance.class;
            for (Node n : nodes) {
                if (KRONECKER.contains(e) && n.layer() != null && NO_KRONECKER.contains(n.layer().getClass())
                        && !out.containsKey(n.name())) {
                    out.put(n.name(), n.type() + " (no Kronecker factors)");
                }
            }
            for (int i = 0; i < nodes.size(); i++) {
                Node n = nodes.get(i);
                if (HESSIAN.contains(e) && region[i] && !out.containsKey(n.name())
                        && n.layer() instanceof org.deeplearning4j.nn.layers.normalization.LocalResponseNormalization
                        && residualBelow(i, running)) {
                    out.put(n.name(), n.type() + " (inexact DL4J backward above a Hessian residual)");
                }
            }
            for (int i = 0; i < nodes.size(); i++) {
                Node n = nodes.get(i);
                if (!(n.layer() instanceof org.deeplearning4j.nn.layers.normalization.BatchNormalization)
                        || out.containsKey(n.name())) {
                    continue;
                }
                if (e == KFRA.class && n.parametric()) {
                    out.put(n.name(), "BatchNormalization (KFRA)");
                    continue;
                }
                if (running || !parametricBelow(i)) {
                    continue;
                }
                if (perExample) {
                    out.put(n.name(), BATCH_STATISTICS + " (per example)");
                } else if (e == KFRA.class) {
                    out.put(n.name(), BATCH_STATISTICS + " (KFRA)");
                }
            }
            return out;
        }

        /**
         * @return whether a node of the curvature region feeding node i has a Hessian residual (an activation
         *     that is not piecewise linear, p-norm pooling, local response normalisation, a normalisation with
         *     batch statistics, a product, L2-normalise or L2 vertex)
         */
        private boolean residualBelow(int i, boolean running) {
            boolean[] seen = new boolean[nodes.size()];
            java.util.ArrayDeque<Integer> todo = new java.util.ArrayDeque<>(nodes.get(i).inputs());
            while (!todo.isEmpty()) {
                int j = todo.pop();
                if (seen[j] || !region[j]) {
                    continue;
                }
                seen[j] = true;
                Node n = nodes.get(j);
                org.deeplearning4j.nn.conf.layers.Layer conf = n.layer() == null ? null : n.layer().conf().getLayer();
                IActivation activation = conf instanceof org.deeplearning4j.nn.conf.layers.ActivationLayer
                        ? ((org.deeplearning4j.nn.conf.layers.ActivationLayer) conf).getActivationFn()
                        : conf instanceof BaseLayer ? ((BaseLayer) conf).getActivationFn() : null;
                boolean residual = activation != null && !PIECEWISE_LINEAR.contains(activation.getClass())
                        || conf instanceof org.deeplearning4j.nn.conf.layers.LocalResponseNormalization
                        || conf instanceof org.deeplearning4j.nn.conf.layers.SubsamplingLayer
                        && ((org.deeplearning4j.nn.conf.layers.SubsamplingLayer) conf).getPoolingType() == PoolingType.PNORM
                        || conf instanceof org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer
                        && ((org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer) conf).getPoolingType() == PoolingType.PNORM
                        || conf instanceof org.deeplearning4j.nn.conf.layers.BatchNormalization && !running
                        || n.vertex() instanceof org.deeplearning4j.nn.graph.vertex.impl.L2NormalizeVertex
                        || n.vertex() instanceof org.deeplearning4j.nn.graph.vertex.impl.L2Vertex
                        || n.confVertex() instanceof org.deeplearning4j.nn.conf.graph.ElementWiseVertex
                        && ((org.deeplearning4j.nn.conf.graph.ElementWiseVertex) n.confVertex()).getOp()
                        == org.deeplearning4j.nn.conf.graph.ElementWiseVertex.Op.Product;
                if (residual) {
                    return true;
                }
                todo.addAll(n.inputs());
            }
            return false;
        }

        /** @return whether a layer with parameters feeds node i, directly or not */
        private boolean parametricBelow(int i) {
            boolean[] seen = new boolean[nodes.size()];
            java.util.ArrayDeque<Integer> todo = new java.util.ArrayDeque<>(nodes.get(i).inputs());
            while (!todo.isEmpty()) {
                int j = todo.pop();
                if (seen[j]) {
                    continue;
                }
                seen[j] = true;
                if (nodes.get(j).parametric()) {
                    return true;
                }
                todo.addAll(nodes.get(j).inputs());
            }
            return false;
        }

        /** @return what the layer kinds, vertices and losses alone rule out */
        private Map<String, String> structural(Extension<?> extension) {
            Class<?> e = extension.getClass();
            boolean secondOrder = !FIRST_ORDER.contains(e);
            boolean hessian = HESSIAN.contains(e);
            Map<String, String> out = new LinkedHashMap<>();
            for (int i = 0; i < nodes.size(); i++) {
                Node n = nodes.get(i);
                if (n.output() && !(n.layer() instanceof org.deeplearning4j.nn.api.layers.IOutputLayer)) {
                    out.put(n.name(), n.type() + " as output (no loss)");   // for every extension
                    continue;
                }
                if (n.parametric() && !parametricSupported(n.layer())) {
                    out.put(n.name(), n.type());
                    continue;
                }
                if (!secondOrder || !region[i] || splitSoftmax(i)) {
                    continue;
                }
                String reason = n.layer() != null ? layerReason(n, hessian) : vertexReason(n, hessian);
                if (reason != null) {
                    out.put(n.name(), reason);
                } else if (e == KFRA.class && regionConsumers[i] > 1) {
                    out.put(n.name(), FAN_OUT);
                }
            }
            return out;
        }

        private static boolean parametricSupported(Layer layer) {
            if (!PARAMETRIC_SUPPORTED.contains(layer.getClass())) {
                return false;
            }
            org.deeplearning4j.nn.conf.layers.Layer conf = layer.conf().getLayer();
            if (conf instanceof BaseLayer && ((BaseLayer) conf).getWeightNoise() != null) {
                return false;
            }
            if (conf instanceof org.deeplearning4j.nn.conf.layers.DenseLayer
                    && ((org.deeplearning4j.nn.conf.layers.DenseLayer) conf).hasLayerNorm()) {
                return false;
            }
            return true;
        }

        private static String layerReason(Node n, boolean hessian) {
            Layer layer = n.layer();
            org.deeplearning4j.nn.conf.layers.Layer conf = layer.conf().getLayer();
            if (layer instanceof org.deeplearning4j.nn.layers.training.CenterLossOutputLayer) {
                return n.type() + " (centre loss)";
            }
            if (!LAYERS_SUPPORTED.contains(layer.getClass())) {
                return n.type();
            }
            if (n.output()) {
                boolean perPosition = conf instanceof org.deeplearning4j.nn.conf.layers.CnnLossLayer;
                if (!(conf instanceof BaseOutputLayer)
                        && !(conf instanceof org.deeplearning4j.nn.conf.layers.LossLayer) && !perPosition) {
                    return n.type() + " as output (no loss)";
                }
                ILossFunction loss = conf instanceof BaseOutputLayer ? ((BaseOutputLayer) conf).getLossFn()
                        : perPosition ? ((org.deeplearning4j.nn.conf.layers.CnnLossLayer) conf).getLossFn()
                        : ((org.deeplearning4j.nn.conf.layers.LossLayer) conf).getLossFn();
                IActivation activation = ((BaseLayer) conf).getActivationFn();
                if (!lossSupported(loss, activation)) {
                    return n.type() + " (" + activation + " + " + loss.getClass().getSimpleName().replace("Loss", "")
                            + " loss)";
                }
            } else {
                IActivation activation = null;
                if (layer instanceof org.deeplearning4j.nn.layers.feedforward.dense.DenseLayer
                        || layer instanceof org.deeplearning4j.nn.layers.convolution.ConvolutionLayer) {
                    activation = ((BaseLayer) conf).getActivationFn();
                } else if (layer instanceof org.deeplearning4j.nn.layers.ActivationLayer) {
                    activation = ((org.deeplearning4j.nn.conf.layers.ActivationLayer) conf).getActivationFn();
                }
                if (activation != null && !ACTIVATIONS.contains(activation.getClass())) {
                    return n.type() + " (" + activation + ")";
                }
            }
            if (conf instanceof org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer) {
                org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer g =
                        (org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer) conf;
                int[] dims = g.getPoolingDimensions();
                boolean spatial = dims != null && dims.length == 2 && (dims[0] == 2 && dims[1] == 3
                        || dims[0] == 1 && dims[1] == 2);   // NCHW, or NHWC
                if (dims != null && !spatial) {
                    return n.type() + " (pooling dimensions)";
                }
            }
            IDropout dropout = conf.getIDropout();
            if (dropout != null && !Set.of(Dropout.class, org.deeplearning4j.nn.conf.dropout.GaussianDropout.class,
                    org.deeplearning4j.nn.conf.dropout.AlphaDropout.class,
                    org.deeplearning4j.nn.conf.dropout.SpatialDropout.class,
                    org.deeplearning4j.nn.conf.dropout.GaussianNoise.class).contains(dropout.getClass())) {
                return n.type() + " (" + dropout.getClass().getSimpleName() + ")";
            }
            return preProcessorReason(n.preProcessor(), n.type());
        }

        private static String preProcessorReason(InputPreProcessor pre, String type) {
            if (pre == null || pre instanceof FeedForwardToCnnPreProcessor) {
                return null;
            }
            if (pre instanceof CnnToFeedForwardPreProcessor
                    || pre instanceof org.deeplearning4j.nn.conf.preprocessor.RnnToFeedForwardPreProcessor) {
                // the latter is the identity on rows; on a time series the batch check refuses it
                return null;
            }
            return type + " (preprocessor " + pre.getClass().getSimpleName() + ")";
        }

        private static boolean lossSupported(ILossFunction loss, IActivation activation) {
            Class<?> l = loss.getClass();
            if ((l == LossMCXENT.class || l == LossNegativeLogLikelihood.class)
                    && activation instanceof ActivationSoftmax) {
                return ((LossMCXENT) loss).getWeights() == null;
            }
            if (l == LossMSE.class && activation instanceof ActivationIdentity) {
                return ((LossMSE) loss).getWeights() == null;
            }
            if (l == LossL2.class && activation instanceof ActivationIdentity) {
                return ((LossL2) loss).getWeights() == null;
            }
            return l == LossBinaryXENT.class && activation instanceof ActivationSigmoid
                    && ((LossBinaryXENT) loss).getWeights() == null;
        }

        private static String vertexReason(Node n, boolean hessian) {
            org.deeplearning4j.nn.conf.graph.GraphVertex conf = n.confVertex();
            switch (n.type()) {
                case "ElementWiseVertex":
                    return hessian && ((org.deeplearning4j.nn.conf.graph.ElementWiseVertex) conf).getOp()
                            == org.deeplearning4j.nn.conf.graph.ElementWiseVertex.Op.Product && n.inputs().size() > 2
                            ? n.type() + " (Product of more than two inputs, Hessian)" : null;
                case "MergeVertex":
                    return ((org.deeplearning4j.nn.conf.graph.MergeVertex) conf).getMergeAxis() == 0
                            ? n.type() + " (batch axis)" : null;
                case "SubsetVertex":
                case "ScaleVertex":
                case "ShiftVertex":
                case "ReshapeVertex":
                case "PoolHelperVertex":
                    return null;
                case "PreprocessorVertex":
                    return preProcessorReason(((org.deeplearning4j.nn.conf.graph.PreprocessorVertex) conf)
                            .getPreProcessor(), n.type());
                case "L2NormalizeVertex": {
                    int[] dims = ((org.deeplearning4j.nn.conf.graph.L2NormalizeVertex) conf).getDimension();
                    if (dims != null && dims.length > 0 && !(dims.length == 1 && dims[0] == 1)) {
                        return n.type() + " (dimensions)";
                    }
                    return null;
                }
                case "L2Vertex":
                    return null;
                default:
                    return n.type();
            }
        }
    }
}
