// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.FactorKind;
import io.github.dl4jbackpack.internal.curvature.CurvaturePass;
import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.internal.graph.Topology;
import io.github.dl4jbackpack.internal.layers.ElementwiseActivations;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import io.github.dl4jbackpack.internal.layers.ReshapeDerivatives;
import io.github.dl4jbackpack.internal.layers.VertexDerivatives;
import io.github.dl4jbackpack.internal.layers.VertexKinds;
import io.github.dl4jbackpack.internal.losses.LossCurvatures;
import org.deeplearning4j.nn.conf.BackpropType;
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

    private static final String SECOND_ORDER_SUPPORTED = "layers " + LayerKinds.supportedNames() + "; vertices "
            + VertexKinds.supportedNames() + "; activations " + ElementwiseActivations.SUPPORTED
            + "; standard Dropout";

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
     * @return every part of the network an extension cannot handle (empty when all is supported)
     */
    public static List<Problem> checkNetwork(NetworkAccess access, List<Extension<?>> extensions) {
        Map<String, Problem> problems = new LinkedHashMap<>();
        if (extensions.isEmpty()) {
            return List.of();
        }
        Topology topology = access.topology();
        if (access.backpropType() != BackpropType.Standard) {
            for (Extension<?> e : extensions) {
                add(problems, new Problem("network", access.model().getClass().getSimpleName(), e.name(),
                        "backprop type " + access.backpropType() + " (truncated backpropagation through time) is "
                                + "not supported", "BackpropType.Standard"));
            }
        }
        for (Node output : topology.outputs()) {
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
                if (CurvaturePass.isParametric(node) && copies[node.position()] != 1) {
                    add(problems, new Problem(node.name(), node.typeName(), e.name(), "it sees the batch stacked "
                            + (copies[node.position()] == Math.rint(copies[node.position()])
                            ? (long) copies[node.position()] + " times " : "") + "by a StackVertex, so its weights are "
                            + "shared between rows of one example; per-example quantities of shared weights are not "
                            + "supported yet", "layers with parameters that see each example once"));
                    continue;
                }
                if (CurvaturePass.isParametric(node)) {
                    String reason = LayerKinds.whyUnsupported(node.layer());
                    if (reason != null) {
                        add(problems, new Problem(node.name(), node.typeName(), e.name(), reason,
                                "layers with parameters " + LayerKinds.supportedNames()));
                        continue;
                    }
                }
                if (e.curvatureRequests().isEmpty() || !region[node.position()]) {
                    continue;
                }
                boolean hessian = e.curvatureRequests().stream().anyMatch(r -> r.kind().equals(FactorKind.RESIDUAL));
                String reason = node.isLayer() ? secondOrderLayer(node, hessian) : secondOrderVertex(node, hessian);
                if (reason != null) {
                    add(problems, new Problem(node.name(), node.typeName(), e.name(), reason,
                            node.isOutput() ? LossCurvatures.SUPPORTED : SECOND_ORDER_SUPPORTED));
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
        List<Problem> out = new ArrayList<>(problems.values());
        return out;
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
        try {
            java.lang.reflect.Field f = org.deeplearning4j.nn.graph.vertex.impl.UnstackVertex.class
                    .getDeclaredField("stackSize");
            f.setAccessible(true);
            return f.getInt(vertex);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot read the stack size of " + vertex.getVertexName(), e);
        }
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

    private static String secondOrderLayer(Node node, boolean hessian) {
        String reason = LayerKinds.whyUnsupported(node.layer());
        if (reason != null) {
            return reason;
        }
        org.deeplearning4j.nn.conf.layers.Layer conf = node.conf().getLayer();
        if (node.isOutput()) {
            if (!(conf instanceof BaseOutputLayer) && !(conf instanceof LossLayer)) {
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
        if (dropout != null && dropout.getClass() != Dropout.class) {
            return "input noise " + dropout.getClass().getSimpleName() + " is not supported by second-order "
                    + "extensions (standard Dropout is)";
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
     * @throws IllegalArgumentException when the batch cannot be used, before the network is touched
     */
    public static void checkBatch(NetworkAccess access, INDArray[] features, INDArray[] labels) {
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
        for (int i = 0; i < features.length; i++) {
            INDArray f = features[i];
            if (f == null) {
                throw new IllegalArgumentException("feature array " + i + " is null");
            }
            if (f.rank() != 2 && f.rank() != 4) {
                throw new IllegalArgumentException("features must have rank 2 [N, nIn] or 4 [N, C, H, W]; feature "
                        + "array " + i + " has shape " + Arrays.toString(f.shape())
                        + (f.rank() == 3 ? " (time-series input is not supported yet)" : ""));
            }
            n = checkBatchSize(n, f.size(0), "feature array " + i);
        }
        for (int k = 0; k < labels.length; k++) {
            INDArray l = labels[k];
            Node out = topology.outputs().get(k);
            if (l == null) {
                throw new IllegalArgumentException("label array " + k + " (output " + out.describe() + ") is null");
            }
            if (l.rank() != 2) {
                throw new IllegalArgumentException("labels must have rank 2 [N, nOut]; label array " + k + " (output "
                        + out.describe() + ") has shape " + Arrays.toString(l.shape()));
            }
            n = checkBatchSize(n, l.size(0), "label array " + k);
            org.deeplearning4j.nn.conf.layers.Layer conf = out.conf() == null ? null : out.conf().getLayer();
            if (conf instanceof BaseOutputLayer && ((FeedForwardLayer) conf).getNOut() > 0
                    && l.size(1) != ((FeedForwardLayer) conf).getNOut()) {
                throw new IllegalArgumentException("label array " + k + " has " + l.size(1) + " columns but output "
                        + out.describe() + " has nOut=" + ((FeedForwardLayer) conf).getNOut());
            }
        }
        if (n == 0) {
            throw new IllegalArgumentException("empty batch");
        }
        for (Node node : topology.nodes()) {
            for (int slot = 0; slot < node.inputCount(); slot++) {
                int input = node.input(slot);
                if (input >= 0 || !node.isLayer() || node.preProcessor() != null) {
                    continue;
                }
                INDArray f = features[-input - 1];
                org.deeplearning4j.nn.conf.layers.Layer conf = node.conf().getLayer();
                if (f.rank() == 2 && conf instanceof FeedForwardLayer
                        && !(conf instanceof org.deeplearning4j.nn.conf.layers.ConvolutionLayer)) {
                    long nIn = ((FeedForwardLayer) conf).getNIn();
                    if (nIn > 0 && f.size(1) != nIn) {
                        throw new IllegalArgumentException("feature array " + (-input - 1) + " has " + f.size(1)
                                + " columns but " + node.describe() + " has nIn=" + nIn);
                    }
                }
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
