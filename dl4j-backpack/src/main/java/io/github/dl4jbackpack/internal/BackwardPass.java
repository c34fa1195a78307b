// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.extensions.CurvatureRequest;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.FactorKind;
import io.github.dl4jbackpack.internal.curvature.CurvaturePass;
import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import io.github.dl4jbackpack.internal.graph.Topology;
import io.github.dl4jbackpack.internal.layers.CurvatureSink;
import io.github.dl4jbackpack.internal.layers.RecordedLayer;
import io.github.dl4jbackpack.internal.layers.VertexDerivatives;
import io.github.dl4jbackpack.internal.layers.VertexKinds;
import io.github.dl4jbackpack.internal.layers.VertexRecord;
import io.github.dl4jbackpack.internal.losses.LossCurvature;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * One extended backward pass: first-order extensions are computed layer by layer as DL4J's pass
 * goes down; what the second-order pass needs is recorded on the way (graph vertices when the pass
 * begins, while the forward activations are all alive), and that pass runs when DL4J has computed
 * the training score. Results are collected per extension, layer name and parameter.
 */
final class BackwardPass {

    private final List<Extension<?>> firstOrder = new ArrayList<>();
    private final List<Extension<?>> secondOrder = new ArrayList<>();
    private final Set<CurvatureRequest> requests = new LinkedHashSet<>();
    private final long batchSize;
    private final long memoryBudget;
    private final Topology topology;
    private final boolean[] region;
    private final double[] copies;
    private final Object[] records;
    private final Map<Integer, LossCurvature> losses = new HashMap<>();
    private final Set<Integer> outputsBegun = new HashSet<>();
    private final Set<Integer> outputsScored = new HashSet<>();
    private final Map<Class<?>, Map<String, Map<String, Object>>> results = new HashMap<>();
    private double score;
    private final Thread thread = Thread.currentThread();

    BackwardPass(List<Extension<?>> extensions, long batchSize, Topology topology, long memoryBudget) {
        for (Extension<?> e : extensions) {
            if (e.curvatureRequests().isEmpty()) {
                firstOrder.add(e);
            } else {
                secondOrder.add(e);
                requests.addAll(e.curvatureRequests());
            }
        }
        this.batchSize = batchSize;
        this.memoryBudget = memoryBudget;
        this.topology = topology;
        this.region = CurvaturePass.region(topology);
        this.copies = Validation.batchCopies(topology);
        this.records = new Object[topology.nodes().size()];
    }

    long batchSize() {
        return batchSize;
    }

    /** @return how many rows per example the node sees (StackVertex copies), 1 normally */
    long copies(Node node) {
        return Math.round(copies[node.position()]);
    }

    /** @return the thread that runs this pass */
    Thread thread() {
        return thread;
    }

    /**
     * @return whether the caller replaces DL4J's gradient with weighted sums, so that DL4J's dense weight gradients
     *     need not be computed ({@link io.github.dl4jbackpack.extensions.WeightedGradientSum#replacingGradient()})
     */
    boolean replacesGradient() {
        return firstOrder.stream().anyMatch(e -> e instanceof io.github.dl4jbackpack.extensions.WeightedGradientSum w
                && w.replacesGradient());
    }

    boolean needsFirstOrder() {
        return !firstOrder.isEmpty();
    }

    boolean needsCurvature() {
        return !requests.isEmpty();
    }

    /** @return whether the second-order pass goes through this node */
    boolean needsCurvature(Node node) {
        return needsCurvature() && region[node.position()];
    }

    boolean needsResidual() {
        return requests.stream().anyMatch(r -> r.kind().equals(FactorKind.RESIDUAL));
    }

    /**
     * @return whether the layer must keep the gradient w.r.t. its input: for the Hessian, where it
     *     feeds a graph vertex, whose residual needs the gradient at its output
     */
    boolean needsInputGradient(Node node) {
        if (!needsResidual()) {
            return false;
        }
        for (int input : node.inputs()) {
            if (input >= 0 && region[input] && !topology.node(input).isLayer()) {
                return true;
            }
        }
        return false;
    }

    /** @return whether this pass records anything at the node */
    boolean involves(Node node) {
        return node.isOutput() || needsCurvature(node) || (needsFirstOrder() && CurvaturePass.isParametric(node));
    }

    /**
     * @param output an output whose backward step begins
     * @return whether it joins this pass (false: it was already part of it, so a new pass begins)
     */
    boolean joins(Node output) {
        return outputsBegun.add(output.position());
    }

    /** The first output's backward step begins: every forward activation is still alive. */
    void begin(Node output) {
        outputsBegun.add(output.position());
        if (!needsCurvature()) {
            return;
        }
        for (Node node : topology.nodes()) {
            if (!node.isLayer() && region[node.position()]) {
                records[node.position()] = recordVertex(node);
            }
        }
    }

    /** @return the shapes, needed values and output shape of a graph vertex, copied */
    private VertexRecord recordVertex(Node node) {
        GraphVertex vertex = node.vertex();
        VertexDerivatives kind = VertexKinds.of(vertex).orElseThrow(() ->
                new IllegalStateException(node.describe() + " is not supported"));
        INDArray[] live = vertex.getInputs();
        long[][] shapes = new long[live.length][];
        INDArray[] values = kind.needsInputValues() ? new INDArray[live.length] : null;
        for (int i = 0; i < live.length; i++) {
            shapes[i] = live[i].shape().clone();
            if (values != null) {
                values[i] = Detached.copy(live[i]);
            }
        }
        return new VertexRecord(node, kind, shapes, values, outputShape(node));
    }

    /** @return the shape of a vertex's output, read from the input of a consumer */
    private long[] outputShape(Node node) {
        for (int consumer : node.consumers()) {
            Node c = topology.node(consumer);
            for (int slot = 0; slot < c.inputCount(); slot++) {
                if (c.input(slot) == node.position()) {
                    return c.vertex().getInputs()[slot].shape().clone();
                }
            }
        }
        throw new IllegalStateException(node.describe() + " has no consumer; it cannot be part of a backward pass");
    }

    void setLoss(Node output, LossCurvature loss) {
        losses.put(output.position(), loss);
    }

    void record(RecordedLayer layer) {
        records[layer.index()] = layer;
    }

    /** Computes the first-order extensions for one layer with parameters. */
    void computeAt(LayerBackprop layer) {
        for (Extension<?> extension : firstOrder) {
            store(extension, layer);
        }
    }

    /**
     * @return whether every output has now computed its score (the pass is complete)
     */
    boolean addScore(Node output, double outputScore) {
        if (!outputsBegun.contains(output.position()) || !outputsScored.add(output.position())) {
            return false;
        }
        score += outputScore;
        return outputsScored.size() == topology.outputs().size();
    }

    /** Runs the second-order pass, if any, and its extensions; returns the results. */
    PassResult finish() {
        if (needsCurvature()) {
            // values the curvature part caches per layer live in a workspace reused from pass to pass until its end
            try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces();
                 ScratchWorkspace cache = ScratchWorkspace.openAsideLearned(ScratchWorkspace.PASS_CACHE)) {
                Map<FactorKind, Map<String, CurvatureSink>> curvature =
                        new CurvaturePass(topology, region, records, losses, memoryBudget, batchSize, copies).run(requests);
                for (Node node : topology.nodes()) {
                    if (!CurvaturePass.isParametric(node)) {
                        continue;
                    }
                    RecordedLayer r = (RecordedLayer) records[node.position()];
                    Map<FactorKind, CurvatureSink> sinks = new HashMap<>();
                    curvature.forEach((kind, byLayer) -> sinks.put(kind, byLayer.get(node.name())));
                    LayerBackprop layer = new LayerBackprop(r, sinks);
                    for (Extension<?> extension : secondOrder) {
                        store(extension, layer);
                    }
                }
            }
        }
        Map<Class<?>, Map<String, Map<String, Object>>> ordered = new LinkedHashMap<>();
        for (Extension<?> e : firstOrder) {
            ordered.put(e.getClass(), inTopologicalOrder(results.getOrDefault(e.getClass(), Map.of())));
        }
        for (Extension<?> e : secondOrder) {
            ordered.put(e.getClass(), inTopologicalOrder(results.getOrDefault(e.getClass(), Map.of())));
        }
        return new PassResult(score, batchSize, ordered);
    }

    private Map<String, Map<String, Object>> inTopologicalOrder(Map<String, Map<String, Object>> byLayer) {
        Map<String, Map<String, Object>> out = new LinkedHashMap<>();
        for (Node n : topology.nodes()) {
            Map<String, Object> v = byLayer.get(n.name());
            if (v != null) {
                out.put(n.name(), v);
            }
        }
        return out;
    }

    private void store(Extension<?> extension, LayerBackprop layer) {
        Map<String, ?> values = extension.compute(layer);
        Map<String, Object> ordered = new LinkedHashMap<>();
        for (String param : layer.parameterNames()) {
            Object value = values.get(param);
            if (value != null) {
                // computed in a scratch workspace: the results outlive it
                ordered.put(param, value instanceof INDArray ? ScratchWorkspace.outside((INDArray) value) : value);
            }
        }
        if (ordered.size() != values.size()) {
            throw new IllegalStateException(extension.name() + " returned values for " + values.keySet()
                    + " but layer " + layer.layerName() + " has parameters " + layer.parameterNames());
        }
        results.computeIfAbsent(extension.getClass(), k -> new HashMap<>()).put(layer.layerName(), ordered);
    }
}
