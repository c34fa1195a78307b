// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.CurvatureRequest;
import io.github.dl4jbackpack.extensions.FactorKind;
import io.github.dl4jbackpack.internal.curvature.CurvaturePass;
import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.internal.graph.Topology;
import io.github.dl4jbackpack.internal.layers.ChannelsLastKind;
import io.github.dl4jbackpack.internal.layers.ElementwiseActivations;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import io.github.dl4jbackpack.internal.layers.ReshapeDerivatives;
import io.github.dl4jbackpack.internal.layers.VertexDerivatives;
import io.github.dl4jbackpack.internal.layers.VertexKinds;
import io.github.dl4jbackpack.internal.losses.LossCurvatures;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.conf.preprocessor.CnnToFeedForwardPreProcessor;
import org.deeplearning4j.nn.conf.preprocessor.FeedForwardToCnnPreProcessor;
import org.deeplearning4j.nn.conf.dropout.Dropout;
import org.deeplearning4j.nn.conf.dropout.IDropout;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.conf.layers.BaseOutputLayer;
import org.deeplearning4j.nn.conf.layers.FeedForwardLayer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Checks, before anything runs, that a network, a set of extensions and a batch can be handled, and
 * explains precisely what cannot: every unsupported part of the network at once.
 */
public final class Validation {

    /**
     * One unsupported part, as the public exception reports it.
     *
     * @param layer the layer or vertex name, or {@code "network"}
     * @param type the DL4J class
     * @param extension the extensions that cannot handle it, comma-separated
     * @param reason why
     * @param supported what is supported instead
     */
    public record Problem(String layer, String type, String extension, String reason, String supported) {
    }

    /** Input noise whose Jacobian in the pass the second-order pass applies (InterceptingLayer#inputNoiseJacobian). */
    private static final Set<Class<?>> SUPPORTED_NOISE = Set.of(Dropout.class,
            org.deeplearning4j.nn.conf.dropout.GaussianDropout.class, org.deeplearning4j.nn.conf.dropout.AlphaDropout.class,
            org.deeplearning4j.nn.conf.dropout.SpatialDropout.class, org.deeplearning4j.nn.conf.dropout.GaussianNoise.class);
    private static final String NOISE_NAMES = "Dropout, GaussianDropout, AlphaDropout, SpatialDropout, GaussianNoise";

    private static final String SECOND_ORDER_SUPPORTED = "layers " + LayerKinds.supportedNames() + "; vertices "
            + VertexKinds.supportedNames() + "; activations " + ElementwiseActivations.SUPPORTED
            + "; input noise " + NOISE_NAMES;

    private Validation() {
    }

    /**
     * @param extensions requested extensions
     * @throws IllegalArgumentException on a null array or entry, or the same extension class twice
     */
    public static void checkDistinct(Extension<?>[] extensions) {
        if (extensions == null) {
            throw new IllegalArgumentException("extensions must not be null; pass none to compute only the gradient");
        }
        Set<Class<?>> seen = new HashSet<>();
        for (int i = 0; i < extensions.length; i++) {
            Extension<?> e = extensions[i];
            if (e == null) {
                throw new IllegalArgumentException("extension " + i + " of " + Arrays.toString(extensions) + " is null");
            }
            if (!seen.add(e.getClass())) {
                throw new IllegalArgumentException("Extension " + e.name() + " was requested twice; each extension "
                        + "class may appear once per pass (results are keyed by class)");
            }
        }
    }

    /**
     * @param access the network
     * @param extensions the requested extensions
     * @param fixedStatistics whether layers that normalise over the batch use fixed statistics in passes
     *     with extensions (their running statistics, or the batch's treated as constants), so that they do
     *     not couple the examples
     * @return every part of the network an extension cannot handle (empty when all is supported)
     */
    public static List<Problem> checkNetwork(NetworkAccess access, List<Extension<?>> extensions,
                                             boolean fixedStatistics) {
        Map<String, Problem> problems = new LinkedHashMap<>();
        if (extensions.isEmpty()) {
            return List.of();
        }
        Topology topology = access.topology();
        for (Node output : topology.outputs()) {
            if (output.isFrozen()) {
                for (Extension<?> e : extensions) {
                    add(problems, new Problem(output.name(), output.typeName(), e.name(), "a frozen output layer is "
                            + "not supported (the library's pass starts at trainable output layers)",
                            "networks whose output layers are trainable"));
                }
                continue;
            }
            if (!output.isLayer() || !(output.layer() instanceof org.deeplearning4j.nn.api.layers.IOutputLayer)) {
                for (Extension<?> e : extensions) {
                    add(problems, new Problem(output.name(), output.typeName(), e.name(), "it is a network output but "
                            + "not an output or loss layer, so the network has no loss to differentiate",
                            "networks whose outputs are output or loss layers (OutputLayer, LossLayer, ...)"));
                }
            }
        }
        boolean[] region = CurvaturePass.region(topology);
        double[] copies = batchCopies(topology);
        for (Extension<?> e : extensions) {
            for (Node node : topology.nodes()) {
                double k = copies[node.position()];
                boolean averaged = e.curvatureRequests().stream().anyMatch(r -> r.kind().equals(FactorKind.AVERAGED));
                if (CurvaturePass.isParametric(node) && k != 1 && (k != Math.rint(k) || averaged)) {
                    add(problems, new Problem(node.name(), node.typeName(), e.name(), "it sees the batch stacked "
                            + (k == Math.rint(k) ? (long) k + " times " : "") + "by a StackVertex, so its weights are "
                            + "shared between rows of one example; "
                            + (k == Math.rint(k) ? "KFRA's batch-averaged recursion does not support that"
                            : "the rows do not divide into whole examples"),
                            "first-order extensions, the curvature diagonals (per example too) and KFLR/KFAC (they sum "
                            + "each example's copies)"));
                    continue;
                }
                if (!node.isLayer() && region[node.position()] && averaged
                        && VertexKinds.of(node.vertex()).map(VertexDerivatives::requiresSpanningColumns).orElse(false)) {
                    add(problems, new Problem(node.name(), node.typeName(), e.name(), "below it an example's curvature "
                            + "columns reach several rows of a stacked batch, which KFRA's batch-averaged recursion does "
                            + "not support", "KFLR, KFAC and the curvature diagonals (per example too)"));
                    continue;
                }
                if (node.isLayer() && !CurvaturePass.isParametric(node)) {
                    // a layer without parameters that no extension can pass (SpaceToBatch changes what a row is)
                    String refused = LayerKinds.of(node.layer()).map(kind -> kind.unsupportedConfiguration(node.layer()))
                            .orElse(null);
                    if (refused != null) {
                        add(problems, new Problem(node.name(), node.typeName(), e.name(), refused,
                                "layers whose output rows are the examples of the batch"));
                        continue;
                    }
                }
                if (CurvaturePass.isParametric(node)) {
                    String reason = LayerKinds.whyUnsupported(node.layer());
                    if (reason != null) {
                        add(problems, new Problem(node.name(), node.typeName(), e.name(), reason,
                                "layers with parameters " + LayerKinds.supportedNames()));
                        continue;
                    }
                    LayerDerivatives kind = LayerKinds.of(node.layer()).orElseThrow();
                    String noFactors = kind.noKroneckerFactors(node.layer());
                    if (noFactors != null && e.curvatureRequests().stream()
                            .anyMatch(r -> r.statistic() == CurvatureRequest.Statistic.OUTPUT_FACTOR)) {
                        add(problems, new Problem(node.name(), node.typeName(), e.name(), kind.kindName()
                                + " has no Kronecker factorisation (" + noFactors + ")", "the diagonal curvature "
                                + (kind.secondOrderUnsupported(node.layer(), true) == null
                                ? "(DiagGGNExact, DiagGGNMC, DiagHessian)" : "(DiagGGNExact, DiagGGNMC)")
                                + " for this layer"));
                        continue;
                    }
                }
                if (e.curvatureRequests().isEmpty() || !region[node.position()]) {
                    continue;
                }
                boolean hessian = e.curvatureRequests().stream().anyMatch(r -> r.kind().equals(FactorKind.RESIDUAL));
                String reason = fusedSoftmaxPart(topology, node) ? null
                        : node.isLayer() ? secondOrderLayer(node, hessian) : secondOrderVertex(node, hessian);
                if (reason != null) {
                    add(problems, new Problem(node.name(), node.typeName(), e.name(), reason,
                            node.isOutput() ? LossCurvatures.SUPPORTED : SECOND_ORDER_SUPPORTED));
                } else if (hessian && node.isLayer()) {
                    String below = residualBelowInexactBackward(topology, node, region, fixedStatistics);
                    if (below != null) {
                        add(problems, new Problem(node.name(), node.typeName(), e.name(), "DL4J's backward step of "
                                + "this layer is not the derivative of its forward step, so the gradient it passes "
                                + "down is not exact, and " + below + " below it needs that gradient for its Hessian "
                                + "residual (docs/math.md#local-response-normalisation)", "DiagHessian where the "
                                + "layers below have piecewise-linear activations (such as ReLU); DiagGGNExact, "
                                + "DiagGGNMC, KFLR, KFAC"));
                    }
                }
                if (e.curvatureRequests().stream().anyMatch(r -> r.kind().equals(FactorKind.AVERAGED))) {
                    long consumers = node.consumers().stream().filter(c -> region[c]).count();
                    if (consumers > 1) {
                        add(problems, new Problem(node.name(), node.typeName(), e.name(), "its output feeds "
                                + consumers + " vertices; KFRA's batch-averaged recursion has no cross terms between "
                                + "consumers, so it is not defined there (docs/math.md#graphs)",
                                "KFRA where every node has one consumer; KFLR or KFAC on any graph"));
                    }
                }
            }
        }
        for (Node node : topology.nodes()) {
            checkBatchStatistics(topology, node, extensions, fixedStatistics, region, problems);
        }
        return new ArrayList<>(problems.values());
    }

    private static final String BATCH_STATISTICS_ALTERNATIVES = "BackPackNetwork.setBatchNormStatistics("
            + "BatchNormStatistics.RUNNING) (passes with extensions normalise with the running statistics, as in "
            + "inference: every extension is defined); BatchNormStatistics.BATCH_AS_CONSTANTS (the batch's "
            + "statistics differentiated as constants: an approximation); or the batch-level curvature DiagGGNExact, DiagGGNMC, "
            + "DiagHessian, KFLR, KFAC, which include the coupling (docs/math.md#batch-normalization)";

    /**
     * A layer that normalises over the batch with the batch's statistics (BatchNormalization in
     * training mode) makes every example's loss depend on every example through the layers with
     * parameters below it: per-example quantities are not defined there, nor is KFRA's averaged
     * recursion; the batch-level GGN, Hessian diagonal and Kronecker factors are.
     */
    private static void checkBatchStatistics(Topology topology, Node node, List<Extension<?>> extensions,
                                             boolean fixedStatistics, boolean[] region, Map<String, Problem> problems) {
        if (!node.isLayer()) {
            return;
        }
        org.deeplearning4j.nn.api.Layer layer = node.layer();
        boolean frozenWithBackprop = layer instanceof org.deeplearning4j.nn.layers.FrozenLayerWithBackprop;
        if (frozenWithBackprop) {
            layer = ((org.deeplearning4j.nn.layers.FrozenLayerWithBackprop) layer).getUnderlying();
        } else if (node.isFrozen()) {
            return;     // a FrozenLayer normalises with the running statistics and stops DL4J's backward pass
        }
        LayerDerivatives kind = LayerKinds.of(layer).orElse(null);
        if (kind == null || !kind.normalisesOverBatch(layer)) {
            return;
        }
        if (!frozenWithBackprop && CurvaturePass.isParametric(node)) {
            for (Extension<?> e : extensions) {
                if (e.curvatureRequests().stream().anyMatch(r -> r.kind().equals(FactorKind.AVERAGED))) {
                    add(problems, new Problem(node.name(), node.typeName(), e.name(), "KFRA's batch-averaged "
                            + "matrices do not keep the per-example normalised inputs that the blocks of gamma and "
                            + "beta need", "KFLR or KFAC (exact blocks of gamma and beta)"));
                }
            }
        }
        List<String> below = new ArrayList<>();
        List<Node> belowNodes = new ArrayList<>();
        boolean[] ancestors = topology.ancestorsOf(n -> n == node);
        for (Node n : topology.nodes()) {
            if (n != node && ancestors[n.position()] && CurvaturePass.isParametric(n)) {
                below.add(n.name());
                belowNodes.add(n);
            }
        }
        if (below.isEmpty()) {
            return;
        }
        if (frozenWithBackprop) {
            for (Extension<?> e : extensions) {
                add(problems, new Problem(node.name(), node.typeName(), e.name(), "DL4J's backward step through a "
                        + "frozen BatchNormalization (FrozenLayerWithBackprop) uses the batch-statistics formula while "
                        + "its forward step normalised with the running statistics, so the gradient reaching layers "
                        + below + " below it belongs to neither function", "freeze the layers below it too "
                        + "(FrozenLayer, TransferLearning.setFeatureExtractor), or train the BatchNormalization"));
            }
            return;
        }
        if (fixedStatistics) {
            return;
        }
        String coupled = "in training mode it normalises with the batch's statistics, so every example's loss "
                + "depends on the whole batch through layers " + below + " below it: ";
        for (Extension<?> e : extensions) {
            List<CurvatureRequest> requests = e.curvatureRequests();
            boolean perExample = requests.isEmpty()
                    || requests.stream().anyMatch(r -> r.statistic() == CurvatureRequest.Statistic.BATCH_DIAGONAL);
            String reason = null;
            if (perExample) {
                reason = coupled + "per-example quantities (individual gradients and what is built on them) are "
                        + "not defined there";
            } else if (requests.stream().anyMatch(r -> r.kind().equals(FactorKind.AVERAGED))) {
                reason = coupled + "KFRA's batch-averaged recursion needs per-example Jacobians, which the batch "
                        + "statistics do not have";
            }
            if (reason != null) {
                add(problems, new Problem(node.name(), node.typeName(), e.name(), reason, BATCH_STATISTICS_ALTERNATIVES));
                continue;
            }
            for (Node n : belowNodes) {
                LayerDerivatives k = LayerKinds.of(n.layer()).orElse(null);
                if (k != null && region[n.position()] && !k.supportsSharedColumns(n.layer())) {
                    add(problems, new Problem(n.name(), n.typeName(), e.name(), "it lies below BatchNormalization "
                            + node.name() + " in training mode, where curvature columns span the whole batch; "
                            + k.kindName() + " does not support that yet", BATCH_STATISTICS_ALTERNATIVES));
                }
            }
        }
    }

    /**
     * @return per node, how many rows per example its output has: 1, except below a
     *     {@code StackVertex} (the sum over its inputs) until an {@code UnstackVertex} divides it again
     */
    static double[] batchCopies(Topology topology) {
        double[] copies = new double[topology.nodes().size()];
        for (Node node : topology.nodes()) {
            double in = 0;
            double max = 0;
            for (int input : node.inputs()) {
                double c = input >= 0 ? copies[input] : 1;
                in += c;
                max = Math.max(max, c);
            }
            GraphVertex v = node.vertex();
            if (v instanceof org.deeplearning4j.nn.graph.vertex.impl.StackVertex) {
                copies[node.position()] = in;
            } else if (v instanceof org.deeplearning4j.nn.graph.vertex.impl.UnstackVertex) {
                copies[node.position()] = max / unstackSize(v);
            } else {
                copies[node.position()] = node.inputCount() == 0 ? 1 : max;
            }
        }
        return copies;
    }

    private static int unstackSize(GraphVertex vertex) {
        return io.github.dl4jbackpack.internal.layers.VertexSettings.<Integer>read(
                org.deeplearning4j.nn.graph.vertex.impl.UnstackVertex.class, vertex, "stackSize");
    }

    /**
     * @return whether the node is either half of a softmax and a cross-entropy on probabilities that the
     *     second-order pass treats as one softmax cross-entropy ({@link CurvaturePass#fusedSoftmax})
     */
    private static boolean fusedSoftmaxPart(Topology topology, Node node) {
        for (Node output : topology.outputs()) {
            Node fused = CurvaturePass.fusedSoftmax(topology, output);
            if (fused != null && (node == output || node == fused)) {
                return fusedSoftmaxLayerSupported(fused);
            }
        }
        return false;
    }

    /** The layer whose softmax is fused into the loss must otherwise be supported (its kind, dropout). */
    private static boolean fusedSoftmaxLayerSupported(Node layer) {
        return LayerKinds.whyUnsupported(layer.layer()) == null
                && (layer.conf().getLayer().getIDropout() == null
                || SUPPORTED_NOISE.contains(layer.conf().getLayer().getIDropout().getClass()))
                && (layer.preProcessor() == null || ReshapeDerivatives.unsupportedPreprocessor(layer.preProcessor()) == null);
    }

    /** Merges problems of one part and reason over extensions. */
    private static void add(Map<String, Problem> problems, Problem p) {
        String key = p.layer() + "\u0000" + p.reason();
        Problem known = problems.get(key);
        if (known == null) {
            problems.put(key, p);
        } else if (!Arrays.asList(known.extension().split(", ")).contains(p.extension())) {
            problems.put(key, new Problem(known.layer(), known.type(), known.extension() + ", " + p.extension(),
                    known.reason(), known.supported()));
        }
    }

    /**
     * @return for a layer whose DL4J backward step is not its derivative, a node below it (in the
     *     curvature region) with a Hessian residual, described; or null
     */
    private static String residualBelowInexactBackward(Topology topology, Node node, boolean[] region,
                                                       boolean fixedStatistics) {
        LayerDerivatives kind = LayerKinds.of(node.layer()).orElse(null);
        if (kind == null || kind.backwardIsDerivative(node.layer())) {
            return null;
        }
        java.util.Deque<Integer> pending = new java.util.ArrayDeque<>();
        java.util.Set<Integer> seen = new java.util.HashSet<>();
        for (int i = 0; i < node.inputCount(); i++) {
            pending.push(node.input(i));
        }
        while (!pending.isEmpty()) {
            int p = pending.pop();
            if (p < 0 || !region[p] || !seen.add(p)) {
                continue;
            }
            Node below = topology.node(p);
            if (hasResidual(below, fixedStatistics)) {
                return below.describe();
            }
            for (int i = 0; i < below.inputCount(); i++) {
                pending.push(below.input(i));
            }
        }
        return null;
    }

    /** @return whether a node of the curvature region adds a Hessian residual */
    private static boolean hasResidual(Node node, boolean fixedStatistics) {
        if (!node.isLayer()) {
            return VertexKinds.of(node.vertex()).map(k -> k.hasResidual(node.vertex())).orElse(false);
        }
        LayerDerivatives kind = LayerKinds.of(node.layer()).orElse(null);
        if (kind == null) {
            return false;
        }
        org.nd4j.linalg.activations.IActivation activation = kind.activation(node.layer());
        return kind.hasInputResidual(node.layer()) || kind.hasInternalResidual(node.layer())
                || kind.normalisesOverBatch(node.layer()) && !fixedStatistics
                || activation != null && !ElementwiseActivations.isPiecewiseLinear(activation);
    }

    private static String secondOrderLayer(Node node, boolean hessian) {
        String reason = LayerKinds.whyUnsupported(node.layer());
        if (reason != null) {
            return reason;
        }
        org.deeplearning4j.nn.conf.layers.Layer conf = node.conf().getLayer();
        if (node.isOutput()) {
            if (!(conf instanceof BaseOutputLayer) && !(conf instanceof LossLayer)
                    && !(conf instanceof org.deeplearning4j.nn.conf.layers.CnnLossLayer)
                    && !(conf instanceof org.deeplearning4j.nn.conf.layers.RnnLossLayer)) {
                return node.layer() instanceof org.deeplearning4j.nn.api.layers.IOutputLayer
                        ? "output layer type " + node.typeName() + " has no implemented loss Hessian" : null;
            }
            if (LossCurvatures.of(InterceptingLayer.lossFunction(conf), ((BaseLayer) conf).getActivationFn()).isEmpty()) {
                return "loss " + InterceptingLayer.lossFunction(conf) + " with activation "
                        + ((BaseLayer) conf).getActivationFn() + " has no implemented Hessian factor";
            }
        }
        LayerDerivatives kind = LayerKinds.of(node.layer()).orElseThrow();
        reason = kind.secondOrderUnsupported(node.layer(), hessian);
        if (reason != null) {
            return reason;
        }
        IDropout dropout = conf.getIDropout();
        if (dropout != null && !SUPPORTED_NOISE.contains(dropout.getClass())) {
            return "input noise " + dropout.getClass().getSimpleName() + " is not supported by second-order "
                    + "extensions (" + NOISE_NAMES + " are)";
        }
        if (dropout instanceof Dropout && ((Dropout) dropout).getHelper() != null) {
            return "dropout computed by a CuDNN helper keeps its mask hidden; second-order extensions need it";
        }
        if (node.preProcessor() != null) {
            return ReshapeDerivatives.unsupportedPreprocessor(node.preProcessor());
        }
        return null;
    }

    private static String secondOrderVertex(Node node, boolean hessian) {
        GraphVertex vertex = node.vertex();
        Optional<VertexDerivatives> kind = VertexKinds.of(vertex);
        if (kind.isEmpty()) {
            return "vertex type " + vertex.getClass().getSimpleName() + " is not supported by second-order extensions";
        }
        return kind.get().secondOrderUnsupported(vertex, hessian);
    }

    /**
     * @param access the network
     * @param features one array per network input
     * @param labels one array per network output
     * @param featuresMasks one mask per network input (entries may be null), or null
     * @param labelsMasks one mask per network output (entries may be null), or null
     * @param extensions the requested extensions
     * @throws IllegalArgumentException when the batch cannot be used, before the network is touched
     */
    public static void checkBatch(NetworkAccess access, INDArray[] features, INDArray[] labels,
                                  INDArray[] featuresMasks, INDArray[] labelsMasks, List<Extension<?>> extensions) {
        Topology topology = access.topology();
        if (features == null || labels == null) {
            throw new IllegalArgumentException("features and labels must not be null");
        }
        if (features.length != topology.inputCount()) {
            throw new IllegalArgumentException("the network has " + topology.inputCount() + " input(s) but "
                    + features.length + " feature array(s) were given");
        }
        if (labels.length != topology.outputs().size()) {
            throw new IllegalArgumentException("the network has " + topology.outputs().size() + " output(s) but "
                    + labels.length + " label array(s) were given");
        }
        long n = -1;
        boolean sequences = false;
        for (int i = 0; i < features.length; i++) {
            INDArray f = features[i];
            if (f == null) {
                throw new IllegalArgumentException("feature array " + i + " is null");
            }
            if (f.rank() < 2 || f.rank() > 5) {
                throw new IllegalArgumentException("features must have rank 2 [N, nIn], 3 [N, nIn, T], 4 [N, C, H, W] "
                        + "or 5 [N, C, D, H, W]; feature array " + i + " has shape " + Arrays.toString(f.shape()));
            }
            sequences |= f.rank() == 3;
            n = checkBatchSize(n, f.size(0), "feature array " + i);
        }
        for (int k = 0; k < labels.length; k++) {
            INDArray l = labels[k];
            Node out = topology.outputs().get(k);
            if (l == null) {
                throw new IllegalArgumentException("label array " + k + " (output " + out.describe() + ") is null");
            }
            if (l.rank() < 2 || l.rank() > 4) {
                throw new IllegalArgumentException("labels must have rank 2 [N, nOut], 3 [N, nOut, T] (per-step "
                        + "outputs) or 4 [N, C, H, W] (per-pixel outputs); label array " + k + " (output "
                        + out.describe() + ") has shape " + Arrays.toString(l.shape()));
            }
            n = checkBatchSize(n, l.size(0), "label array " + k);
        }
        if (n == 0) {
            throw new IllegalArgumentException("empty batch");
        }
        sequences |= checkMasks("feature", featuresMasks, features, topology, true);
        sequences |= checkMasks("label", labelsMasks, labels, topology, false);
        List<String> curvature = extensions.stream().filter(e -> !e.curvatureRequests().isEmpty())
                .map(Extension::name).collect(java.util.stream.Collectors.toList());
        checkLabelWidths(topology, labels);
        Shapes shapes = checkShapes(access, features, labels);
        if (sequences && !curvature.isEmpty()) {
            for (int k = 0; labelsMasks != null && k < labelsMasks.length; k++) {
                if (labelsMasks[k] != null && labels[k].rank() != 3) {
                    throw new IllegalArgumentException("curvature extensions (" + String.join(", ", curvature)
                            + ") support label masks on per-step outputs ([N, nOut, T] labels) only; label mask " + k
                            + " is for labels of shape " + Arrays.toString(labels[k].shape()) + " (the loss Hessian of a "
                            + "masked [N, nOut] output is not implemented); the first-order extensions support it");
                }
            }
            List<String> averaged = extensions.stream().filter(e -> e.curvatureRequests().stream()
                    .anyMatch(r -> r.kind().type() == FactorKind.Type.AVERAGED)).map(Extension::name)
                    .collect(java.util.stream.Collectors.toList());
            if (!averaged.isEmpty()) {
                throw new IllegalArgumentException(String.join(", ", averaged) + " on sequence data is not supported: "
                        + "KFRA's batch-averaged recursion is not defined over time steps here; KFLR and KFAC are "
                        + "(the \"expand\" setting, docs/math.md#sequences-and-weight-sharing)");
            }
            checkSequenceCurvature(topology, curvature, shapes, features);
            checkMaskedHessian(topology, featuresMasks, extensions);
        }
    }

    /** Refuses the Hessian through a layer that a wrapper would hand the batch's feature mask, where it needs none. */
    private static void checkMaskedHessian(Topology topology, INDArray[] featuresMasks, List<Extension<?>> extensions) {
        if (featuresMasks == null || Arrays.stream(featuresMasks).allMatch(java.util.Objects::isNull)) {
            return;
        }
        List<String> hessian = extensions.stream().filter(e -> e.curvatureRequests().stream()
                .anyMatch(r -> r.kind().type() == FactorKind.Type.RESIDUAL)).map(Extension::name)
                .collect(java.util.stream.Collectors.toList());
        if (hessian.isEmpty()) {
            return;
        }
        boolean[] region = CurvaturePass.region(topology);
        List<String> refused = new ArrayList<>();
        for (Node node : topology.nodes()) {
            if (region[node.position()] && node.isLayer()) {
                String reason = LayerKinds.of(node.layer()).map(k -> k.hessianWithFeatureMaskUnsupported(node.layer()))
                        .orElse(null);
                if (reason != null) {
                    refused.add(node.describe() + " (" + reason + ")");
                }
            }
        }
        if (!refused.isEmpty()) {
            throw new IllegalArgumentException(String.join(", ", hessian) + " on a batch with a feature mask is not "
                    + "supported through " + String.join(", ", refused) + "; without the feature mask, or with "
                    + "DiagGGNExact, DiagGGNMC and their per-example versions, it is");
        }
    }

    /** The layers and vertices the curvature extensions pass on sequence data, for messages. */
    static final String SEQUENCE_CURVATURE_SUPPORTED = "LSTM, GravesLSTM, SimpleRnn, LastTimeStep around them, "
            + "RnnOutputLayer, RnnLossLayer, GlobalPoolingLayer (average, sum, max) over time, hidden DenseLayer, "
            + "ActivationLayer and DropoutLayer at every step (DL4J's NCW RnnToFeedForward/FeedForwardToRnn "
            + "preprocessors), Convolution1DLayer (NCW), ZeroPadding1DLayer, Cropping1D, Upsampling1D, "
            + "EmbeddingSequenceLayer, LastTimeStepVertex, "
            + "DuplicateToTimeSeriesVertex, MergeVertex, "
            + "ElementWiseVertex, and "
            + "after the time axis is gone the usual layers";

    /**
     * @throws IllegalArgumentException naming every node the curvature pass would walk on sequence data whose
     *     derivatives do not know time axes and masks
     */
    /**
     * What the batch's shapes are at every node.
     *
     * @param steps per node position, the time steps of the sequences its output rows or series come from: 0
     *     for none, −1 where DL4J's shape inference does not know the node
     * @param rows per node position, whether its output is the steps of series flattened into rows
     *     ({@code t·N + n})
     */
    private record Shapes(long[] steps, boolean[] rows) {
    }

    /**
     * @return why the curvature extensions cannot pass a layer on sequence data where it sees rows, or null: the
     *     flattened steps of series (behind an NCW {@code RnnToFeedForwardPreProcessor}, or after a layer that
     *     saw them) pass hidden layers that map every row alone; an NCW {@code FeedForwardToRnnPreProcessor}
     *     makes them series again; rows that are examples pass as usual
     */
    private static String flattenedStepsUnsupported(Node node, Shapes shapes, INDArray[] features) {
        org.deeplearning4j.nn.conf.InputPreProcessor pre = node.preProcessor();
        int producer = node.input(0);
        long producerSteps = producer >= 0 ? shapes.steps()[producer] : features[-producer - 1].rank() == 3 ? 1 : 0;
        boolean producerRows = producer >= 0 && shapes.rows()[producer];
        if (producerSteps < 0 && pre != null) {
            return "a preprocessor whose input DL4J's shape inference does not know";
        }
        if (pre instanceof org.deeplearning4j.nn.conf.preprocessor.FeedForwardToRnnPreProcessor) {
            if (!producerRows) {
                return "rows that are not the flattened steps of series made into series";
            }
            return ((org.deeplearning4j.nn.conf.preprocessor.FeedForwardToRnnPreProcessor) pre).getRnnDataFormat()
                    == org.deeplearning4j.nn.conf.RNNFormat.NCW ? null
                    : "making NWC series from rows: only NCW series are supported";
        }
        boolean flattening = pre instanceof org.deeplearning4j.nn.conf.preprocessor.RnnToFeedForwardPreProcessor
                && producerSteps > 0 && !producerRows;
        if (pre != null && !flattening && !(pre instanceof org.deeplearning4j.nn.conf.preprocessor
                .RnnToFeedForwardPreProcessor && producerRows) && producerSteps != 0) {
            return "a preprocessor in front of a series";
        }
        if (!flattening && !producerRows) {
            return null;
        }
        if (flattening && ((org.deeplearning4j.nn.conf.preprocessor.RnnToFeedForwardPreProcessor) pre)
                .getRnnDataFormat() != org.deeplearning4j.nn.conf.RNNFormat.NCW) {
            return "flattening NWC series: only NCW series are supported";
        }
        boolean perRow = node.isLayer() && !node.isOutput() && LayerKinds.of(node.layer())
                .map(k -> k.supportsFlattenedSteps(node.layer())).orElse(false);
        if (!perRow) {
            return "applied to the flattened steps of a series: supported for hidden DenseLayer, ActivationLayer and "
                    + "DropoutLayer; an output layer there would take every step as an example";
        }
        return null;
    }

    private static void checkSequenceCurvature(Topology topology, List<String> curvature, Shapes shapes,
                                               INDArray[] features) {
        boolean[] region = CurvaturePass.region(topology);
        List<String> refused = new ArrayList<>();
        for (Node node : topology.nodes()) {
            if (!region[node.position()]) {
                continue;
            }
            if (node.isLayer()) {
                String reason = flattenedStepsUnsupported(node, shapes, features);
                if (reason != null) {
                    refused.add(node.describe() + (node.preProcessor() == null ? "" : " with its "
                            + node.preProcessor().getClass().getSimpleName()) + " (" + reason + ")");
                    continue;
                }
            }
            boolean supported = node.isLayer()
                    ? LayerKinds.of(node.layer()).map(k -> k.supportsSequences(node.layer())).orElse(false)
                    : VertexKinds.of(node.vertex()).map(k -> k.supportsSequences(node.vertex())).orElse(false);
            if (!supported) {
                refused.add(node.describe());
            }
        }
        if (!refused.isEmpty()) {
            throw new IllegalArgumentException("curvature extensions (" + String.join(", ", curvature) + ") on "
                    + "sequence data (rank-3 features or masks) are not implemented for " + String.join(", ", refused)
                    + "; on sequences they support " + SEQUENCE_CURVATURE_SUPPORTED + "; the first-order extensions "
                    + "(BatchGrad, BatchL2Grad, BatchDotGrad, SumGradSquared, Variance) support every sequence layer");
        }
    }

    /**
     * @return whether any mask is given
     * @throws IllegalArgumentException for a mask that does not fit its array
     */
    private static boolean checkMasks(String what, INDArray[] masks, INDArray[] arrays, Topology topology,
                                      boolean features) {
        if (masks == null) {
            return false;
        }
        if (masks.length != arrays.length) {
            throw new IllegalArgumentException(masks.length + " " + what + " mask(s) were given for " + arrays.length
                    + " " + what + " array(s)");
        }
        boolean any = false;
        for (int i = 0; i < masks.length; i++) {
            INDArray m = masks[i];
            if (m == null) {
                continue;
            }
            any = true;
            INDArray a = arrays[i];
            String name = what + " mask " + i + " " + Arrays.toString(m.shape());
            if (m.rank() != 2 || m.size(0) != a.size(0)) {
                throw new IllegalArgumentException(name + " must be [N, T] with N = " + a.size(0) + " (the " + what
                        + " array has shape " + Arrays.toString(a.shape()) + ")");
            }
            if (a.rank() == 3) {
                boolean nwc = features ? readsNwc(firstConsumer(topology, i)) : readsNwc(topology.outputs().get(i));
                long steps = a.size(nwc ? 1 : 2);
                if (m.size(1) != steps) {
                    throw new IllegalArgumentException(name + " has " + m.size(1) + " steps but the " + what
                            + " array " + Arrays.toString(a.shape()) + " has T = " + steps
                            + (nwc ? " (NWC layout)" : " (NCW layout)"));
                }
            } else if (features && a.rank() == 2) {
                // index sequences [N, T] (EmbeddingSequenceLayer)
                if (m.size(1) != a.size(1)) {
                    throw new IllegalArgumentException(name + " has " + m.size(1) + " steps but the " + what
                            + " array " + Arrays.toString(a.shape()) + " has T = " + a.size(1));
                }
            } else if (features || a.rank() != 2 || (m.size(1) != 1 && m.size(1) != a.size(1))) {
                throw new IllegalArgumentException(name + " does not fit the " + what + " array of shape "
                        + Arrays.toString(a.shape()) + ": masks are [N, T] for time series"
                        + (features ? "" : ", [N, 1] or [N, nOut] for labels [N, nOut]"));
            }
        }
        return any;
    }

    /** @return the first node that reads network input i, or null */
    private static Node firstConsumer(Topology topology, int input) {
        for (Node node : topology.nodes()) {
            for (int j = 0; j < node.inputCount(); j++) {
                if (node.input(j) == -input - 1) {
                    return node;
                }
            }
        }
        return null;
    }

    /** @return whether the layer reads or writes time series in NWC layout */
    private static boolean readsNwc(Node node) {
        if (node == null || !node.isLayer()) {
            return false;
        }
        org.deeplearning4j.nn.conf.layers.Layer conf = node.conf().getLayer();
        org.deeplearning4j.nn.conf.RNNFormat format = null;
        if (node.preProcessor() instanceof org.deeplearning4j.nn.conf.preprocessor.RnnToFeedForwardPreProcessor) {
            format = ((org.deeplearning4j.nn.conf.preprocessor.RnnToFeedForwardPreProcessor) node.preProcessor())
                    .getRnnDataFormat();
        } else if (conf instanceof org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional) {
            format = ((org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional) conf).getRNNDataFormat();
        } else if (conf instanceof org.deeplearning4j.nn.conf.layers.BaseRecurrentLayer) {
            format = ((org.deeplearning4j.nn.conf.layers.BaseRecurrentLayer) conf).getRnnDataFormat();
        } else if (conf instanceof org.deeplearning4j.nn.conf.layers.RnnOutputLayer) {
            format = ((org.deeplearning4j.nn.conf.layers.RnnOutputLayer) conf).getRnnDataFormat();
        } else if (conf instanceof org.deeplearning4j.nn.conf.layers.RnnLossLayer) {
            format = ((org.deeplearning4j.nn.conf.layers.RnnLossLayer) conf).getRnnDataFormat();
        }
        return format == org.deeplearning4j.nn.conf.RNNFormat.NWC;
    }

    private static void checkLabelWidths(Topology topology, INDArray[] labels) {
        for (int k = 0; k < labels.length; k++) {
            INDArray l = labels[k];
            Node out = topology.outputs().get(k);
            org.deeplearning4j.nn.conf.layers.Layer conf = out.conf() == null ? null : out.conf().getLayer();
            if (conf instanceof BaseOutputLayer && ((FeedForwardLayer) conf).getNOut() > 0) {
                long nOut = ((FeedForwardLayer) conf).getNOut();
                boolean perStep = conf instanceof org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
                long width = l.size(perStep && readsNwc(out) ? 2 : 1);
                if (l.rank() != (perStep ? 3 : 2) && !(conf instanceof org.deeplearning4j.nn.conf.layers.objdetect
                        .Yolo2OutputLayer) && !(conf instanceof org.deeplearning4j.nn.conf.layers.CnnLossLayer)) {
                    throw new IllegalArgumentException("label array " + k + " has shape " + Arrays.toString(l.shape())
                            + " but output " + out.describe() + " needs " + (perStep ? (readsNwc(out)
                            ? "[N, T, nOut] (per-step labels, NWC)" : "[N, nOut, T] (per-step labels)") : "[N, nOut]"));
                }
                if (width != nOut) {
                    throw new IllegalArgumentException("label array " + k + " has " + width + (perStep ? " outputs "
                            + "per step" : " columns") + " but output " + out.describe() + " has nOut=" + nOut);
                }
            }
        }
    }

    /**
     * Follows the shapes of the batch through the network as DL4J's own shape inference does, and
     * checks what DL4J would otherwise only find inside the pass: the width (or channels) each layer
     * with parameters expects, the fixed shapes of reshaping preprocessors, and the width of every
     * output's labels.
     *
     * @return per node position, the time steps its output rows or series come from, and whether its output
     *     is the steps of series flattened into rows
     */
    private static Shapes checkShapes(NetworkAccess access, INDArray[] features, INDArray[] labels) {
        Topology topology = access.topology();
        org.deeplearning4j.nn.conf.inputs.InputType[] types =
                new org.deeplearning4j.nn.conf.inputs.InputType[topology.nodes().size()];
        // the time steps of the sequences a node's output rows or series come from (0: none), which DL4J's
        // shape inference forgets where a time series is flattened into rows and back
        long[] steps = new long[types.length];
        for (Node node : topology.nodes()) {
            org.deeplearning4j.nn.conf.inputs.InputType[] in =
                    new org.deeplearning4j.nn.conf.inputs.InputType[node.inputCount()];
            boolean known = true;
            long inSteps = 0;
            for (int i = 0; i < in.length; i++) {
                int producer = node.input(i);
                in[i] = producer >= 0 ? types[producer] : typeOf(features[-producer - 1], node);
                known &= in[i] != null;
                inSteps = Math.max(inSteps, producer >= 0 ? steps[producer] : stepsOf(in[i]));
            }
            if (!known) {
                continue;
            }
            try {
                org.deeplearning4j.nn.conf.inputs.InputType out;
                boolean rowsIn = in.length > 0 && Arrays.stream(in)
                        .allMatch(t -> t instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward);
                if (node.isLayer()) {
                    org.deeplearning4j.nn.conf.inputs.InputType x = in[0];
                    if (node.preProcessor() != null) {
                        checkPreprocessor(node, x);
                        x = node.preProcessor().getOutputType(x);
                    }
                    rowsIn = x instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward;
                    if (node.layer() instanceof org.deeplearning4j.nn.layers.recurrent.TimeDistributedLayer
                            && x instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent) {
                        // the wrapper applies its layer, whose configuration node.conf() is, at every step
                        org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent r =
                                (org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent) x;
                        org.deeplearning4j.nn.conf.inputs.InputType row =
                                org.deeplearning4j.nn.conf.inputs.InputType.feedForward(r.getSize());
                        checkLayerInput(node, row);
                        out = org.deeplearning4j.nn.conf.inputs.InputType.recurrent(node.conf().getLayer()
                                .getOutputType(node.position(), row).arrayElementsPerExample(), r.getTimeSeriesLength(),
                                r.getFormat());
                    } else {
                        checkLayerInput(node, x);
                        // DL4J's shape inference mislabels the layout of 3D outputs: nothing below them is checked
                        out = x instanceof org.deeplearning4j.nn.conf.inputs.InputType
                                .InputTypeConvolutional3D ? null : node.conf().getLayer() instanceof LossLayer ? x
                                : node.conf().getLayer().getOutputType(node.position(), x);
                    }
                    out = correctedOutputType(node, x, out);
                } else {
                    org.deeplearning4j.nn.conf.graph.GraphVertex conf = access.vertexConfiguration(node);
                    out = conf == null ? null : conf.getOutputType(-1, in);
                }
                if (out instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent) {
                    org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent r =
                            (org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent) out;
                    if (r.getTimeSeriesLength() <= 0 && inSteps > 0) {
                        out = org.deeplearning4j.nn.conf.inputs.InputType.recurrent(r.getSize(), inSteps, r.getFormat());
                    }
                    steps[node.position()] = stepsOf(out);
                } else {
                    // rows in, rows out keep their steps; a series reduced to one row per example has none
                    steps[node.position()] = rowsIn ? inSteps : 0;
                }
                types[node.position()] = out;
            } catch (IllegalArgumentException e) {
                throw e;
            } catch (RuntimeException e) {
                // DL4J's shape inference does not know this layer or vertex: check nothing below it
                types[node.position()] = null;
            }
        }
        boolean[] rows = new boolean[types.length];
        for (Node node : topology.nodes()) {
            if (types[node.position()] == null) {
                steps[node.position()] = -1;
            }
            rows[node.position()] = steps[node.position()] > 0
                    && types[node.position()] instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward;
        }
        for (int k = 0; k < labels.length; k++) {
            Node out = topology.outputs().get(k);
            org.deeplearning4j.nn.conf.inputs.InputType t = types[out.position()];
            if (out.conf() != null && out.conf().getLayer()
                    instanceof org.deeplearning4j.nn.conf.layers.objdetect.Yolo2OutputLayer) {
                continue;   // bounding-box labels [N, 4 + C, H, W], not shaped like the output
            }
            if (t instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional) {
                org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional c =
                        (org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional) t;
                long[] expected = c.getFormat() == org.deeplearning4j.nn.conf.CNN2DFormat.NHWC
                        ? new long[] {labels[k].size(0), c.getHeight(), c.getWidth(), c.getChannels()}
                        : new long[] {labels[k].size(0), c.getChannels(), c.getHeight(), c.getWidth()};
                if (!Arrays.equals(expected, labels[k].shape())) {
                    throw new IllegalArgumentException("label array " + k + " has shape " + Arrays.toString(
                            labels[k].shape()) + " but output " + out.describe() + " produces " + Arrays.toString(
                            expected) + " (per-pixel labels)");
                }
                continue;
            }
            if (t instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent) {
                org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent r =
                        (org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent) t;
                boolean nwc = r.getFormat() == org.deeplearning4j.nn.conf.RNNFormat.NWC;
                long length = r.getTimeSeriesLength() > 0 ? r.getTimeSeriesLength() : labels[k].size(nwc ? 1 : 2);
                long[] expected = nwc ? new long[] {labels[k].size(0), length, r.getSize()}
                        : new long[] {labels[k].size(0), r.getSize(), length};
                if (!Arrays.equals(expected, labels[k].shape())) {
                    throw new IllegalArgumentException("label array " + k + " has shape " + Arrays.toString(
                            labels[k].shape()) + " but output " + out.describe() + " produces " + Arrays.toString(
                            expected) + " (per-step labels" + (nwc ? ", NWC)" : ")"));
                }
                continue;
            }
            if (labels[k].rank() != 2 && t != null) {
                throw new IllegalArgumentException("label array " + k + " has rank " + labels[k].rank() + " but output "
                        + out.describe() + " produces " + t + "; labels must be [N, nOut]");
            }
            if (t instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward
                    && labels[k].size(1) != ((org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward) t).getSize()) {
                throw new IllegalArgumentException("label array " + k + " has " + labels[k].size(1) + " columns but output "
                        + out.describe() + " produces " + ((org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward) t)
                        .getSize() + " per example");
            }
        }
        return new Shapes(steps, rows);
    }

    /**
     * Where DL4J's shape inference does not describe what a layer's forward step produces: the output of a
     * {@code LastTimeStep} wrapper is its last step (DL4J types it as the wrapped series), a global pooling
     * of a series collapses the time axis (DL4J types it as the series), and an
     * {@code EmbeddingSequenceLayer} emits as many steps as its input has (DL4J types them as its configured
     * {@code inputLength}, which the forward step replaces by the input's).
     */
    private static org.deeplearning4j.nn.conf.inputs.InputType correctedOutputType(Node node,
            org.deeplearning4j.nn.conf.inputs.InputType x, org.deeplearning4j.nn.conf.inputs.InputType out) {
        org.deeplearning4j.nn.api.Layer layer = node.layer();
        if (!(out instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent)) {
            return out;
        }
        org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent r =
                (org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent) out;
        if (layer instanceof org.deeplearning4j.nn.layers.recurrent.LastTimeStepLayer) {
            return org.deeplearning4j.nn.conf.inputs.InputType.feedForward(r.getSize());
        }
        if (layer instanceof org.deeplearning4j.nn.layers.pooling.GlobalPoolingLayer
                && ((org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer) node.conf().getLayer()).isCollapseDimensions()) {
            return org.deeplearning4j.nn.conf.inputs.InputType.feedForward(r.getSize());
        }
        if (layer instanceof org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingSequenceLayer) {
            long steps = x instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward
                    ? ((org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward) x).getSize() : stepsOf(x);
            return steps > 0 ? org.deeplearning4j.nn.conf.inputs.InputType.recurrent(r.getSize(), steps, r.getFormat())
                    : org.deeplearning4j.nn.conf.inputs.InputType.recurrent(r.getSize(), r.getFormat());
        }
        return out;
    }

    /** @return the known time steps of a recurrent type, else 0 */
    private static long stepsOf(org.deeplearning4j.nn.conf.inputs.InputType t) {
        return t instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent
                ? Math.max(0, ((org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent) t).getTimeSeriesLength())
                : 0;
    }

    private static org.deeplearning4j.nn.conf.inputs.InputType typeOf(INDArray f, Node consumer) {
        if (f.rank() == 5) {
            // NCDHW, the only 3D layout the library supports (a layer's own NDHWC setting is refused by name)
            return org.deeplearning4j.nn.conf.inputs.InputType.convolutional3D(
                    org.deeplearning4j.nn.conf.layers.Convolution3D.DataFormat.NCDHW, f.size(2), f.size(3), f.size(4),
                    f.size(1));
        }
        if (f.rank() == 4 && consumer.isLayer() && ChannelsLastKind.isChannelsLast(consumer.conf().getLayer())) {
            // nor does a rank-4 one tell NCHW from NHWC: the layer reading it does
            return org.deeplearning4j.nn.conf.inputs.InputType.convolutional(f.size(1), f.size(2), f.size(3),
                    org.deeplearning4j.nn.conf.CNN2DFormat.NHWC);
        }
        if (f.rank() == 3) {
            return readsNwc(consumer) ? org.deeplearning4j.nn.conf.inputs.InputType.recurrent(f.size(2), f.size(1),
                    org.deeplearning4j.nn.conf.RNNFormat.NWC)
                    : org.deeplearning4j.nn.conf.inputs.InputType.recurrent(f.size(1), f.size(2));
        }
        return f.rank() == 2 ? org.deeplearning4j.nn.conf.inputs.InputType.feedForward(f.size(1))
                : org.deeplearning4j.nn.conf.inputs.InputType.convolutional(f.size(2), f.size(3), f.size(1));
    }

    private static String where(Node node) {
        return node.isLayer() && node.inputCount() == 1 && node.input(0) < 0
                ? "feature array " + (-node.input(0) - 1) + " (input of " + node.describe() + ")"
                : "the input of " + node.describe();
    }

    /** The fixed shapes of DL4J's reshaping preprocessors. */
    private static void checkPreprocessor(Node node, org.deeplearning4j.nn.conf.inputs.InputType x) {
        InputPreProcessor pre = node.preProcessor();
        if (pre instanceof CnnToFeedForwardPreProcessor) {
            CnnToFeedForwardPreProcessor p = (CnnToFeedForwardPreProcessor) pre;
            if (x instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional) {
                org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional c =
                        (org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional) x;
                if (c.getChannels() != p.getNumChannels() || c.getHeight() != p.getInputHeight()
                        || c.getWidth() != p.getInputWidth()) {
                    throw new IllegalArgumentException(where(node) + " is [C=" + c.getChannels() + ", H=" + c.getHeight()
                            + ", W=" + c.getWidth() + "] per example but the network expects [C=" + p.getNumChannels()
                            + ", H=" + p.getInputHeight() + ", W=" + p.getInputWidth() + "] there");
                }
            }
        } else if (pre instanceof FeedForwardToCnnPreProcessor) {
            FeedForwardToCnnPreProcessor p = (FeedForwardToCnnPreProcessor) pre;
            long expected = p.getNumChannels() * p.getInputHeight() * p.getInputWidth();
            if (x instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward
                    && ((org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward) x).getSize() != expected) {
                throw new IllegalArgumentException(where(node) + " has " + ((org.deeplearning4j.nn.conf.inputs.InputType
                        .InputTypeFeedForward) x).getSize() + " values per example but the network reshapes " + expected
                        + " to [C=" + p.getNumChannels() + ", H=" + p.getInputHeight() + ", W=" + p.getInputWidth() + "]");
            }
        }
    }

    /** What the supported layers with a fixed input width (or channel count) expect. */
    private static void checkLayerInput(Node node, org.deeplearning4j.nn.conf.inputs.InputType x) {
        org.deeplearning4j.nn.conf.layers.Layer conf = node.conf().getLayer();
        boolean volume = conf instanceof org.deeplearning4j.nn.conf.layers.Convolution3D
                || conf instanceof org.deeplearning4j.nn.conf.layers.Deconvolution3D;
        boolean overTime = conf instanceof org.deeplearning4j.nn.conf.layers.Convolution1DLayer;
        boolean convolution = conf instanceof org.deeplearning4j.nn.conf.layers.ConvolutionLayer && !volume
                && !overTime;
        boolean perStep = conf instanceof org.deeplearning4j.nn.conf.layers.RnnOutputLayer || overTime;
        boolean dense = !perStep && (conf instanceof org.deeplearning4j.nn.conf.layers.DenseLayer
                || conf instanceof BaseOutputLayer);
        if (perStep && !(x instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent)) {
            throw new IllegalArgumentException(where(node) + " is " + x + " but " + (overTime ? "a Convolution1DLayer"
                    : "an RnnOutputLayer") + " needs time series [N, nIn, T]");
        }
        if (convolution && !(x instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional)) {
            throw new IllegalArgumentException(where(node) + " is " + x + " but a convolution needs [N, C, H, W]");
        }
        if (volume && !(x instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional3D)) {
            throw new IllegalArgumentException(where(node) + " is " + x + " but a 3D convolution needs [N, C, D, H, W]");
        }
        if (dense && !(x instanceof org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward)) {
            throw new IllegalArgumentException(where(node) + " is " + x + " but a dense layer needs [N, nIn]");
        }
        long nIn = conf instanceof FeedForwardLayer ? ((FeedForwardLayer) conf).getNIn() : 0;
        if (nIn <= 0) {
            return;
        }
        if (convolution || volume) {
            long channels = volume ? ((org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional3D) x)
                    .getChannels() : ((org.deeplearning4j.nn.conf.inputs.InputType.InputTypeConvolutional) x)
                    .getChannels();
            if (channels != nIn) {
                throw new IllegalArgumentException(where(node) + " has " + channels + " channels but the layer has nIn="
                        + nIn);
            }
        } else if (dense || perStep) {
            long size = perStep ? ((org.deeplearning4j.nn.conf.inputs.InputType.InputTypeRecurrent) x).getSize()
                    : ((org.deeplearning4j.nn.conf.inputs.InputType.InputTypeFeedForward) x).getSize();
            if (size != nIn) {
                throw new IllegalArgumentException(where(node) + " has " + size + (perStep ? " values per step"
                        : " values per example") + " but the layer "
                        + "has nIn=" + nIn);
            }
        }
    }

    private static long checkBatchSize(long n, long size, String what) {
        if (n >= 0 && size != n) {
            throw new IllegalArgumentException(what + " has " + size + " examples but an earlier array has " + n);
        }
        return size;
    }
}
