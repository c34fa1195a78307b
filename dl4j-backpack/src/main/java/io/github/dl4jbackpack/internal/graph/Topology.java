// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.graph;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.VertexIndices;
import org.deeplearning4j.nn.graph.vertex.impl.LayerVertex;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * A network as a directed acyclic graph of {@link Node}s in topological order: the single code path
 * for both network types. A MultiLayerNetwork is the chain case (node {@code i} consumes node
 * {@code i − 1}); a ComputationGraph's input vertices become network inputs and its other vertices
 * nodes.
 */
public final class Topology {

    private final List<Node> nodes;
    private final Map<String, Node> byName;
    private final int inputCount;
    private final List<Node> outputs;

    private Topology(List<Node> nodes, int inputCount) {
        this.nodes = Collections.unmodifiableList(nodes);
        Map<String, Node> names = new LinkedHashMap<>();
        List<Node> outs = new ArrayList<>();
        for (Node n : nodes) {
            names.put(n.name(), n);
            for (int input : n.inputs()) {
                if (input >= 0) {
                    nodes.get(input).addConsumer(n.position());
                }
            }
            if (n.isOutput()) {
                outs.add(n);
            }
        }
        outs.sort((a, b) -> Integer.compare(a.outputNumber(), b.outputNumber()));
        this.byName = Collections.unmodifiableMap(names);
        this.inputCount = inputCount;
        this.outputs = Collections.unmodifiableList(outs);
    }

    /**
     * @param net an initialised MultiLayerNetwork
     * @param unwrap maps a layer in {@code net.getLayers()} to the DL4J layer it stands for
     * @return its chain topology
     */
    public static Topology of(MultiLayerNetwork net, LayerResolver unwrap) {
        MultiLayerConfiguration conf = net.getLayerWiseConfigurations();
        Layer[] layers = net.getLayers();
        List<Node> nodes = new ArrayList<>();
        for (int i = 0; i < layers.length; i++) {
            int[] inputs = {i == 0 ? Node.networkInput(0) : i - 1};
            nodes.add(new Node(String.valueOf(i), i, unwrap.plain(layers[i]), unwrap.conf(layers[i]), null, inputs,
                    conf.getInputPreProcess(i),
                    i == layers.length - 1 ? 0 : -1));
        }
        return new Topology(nodes, 1);
    }

    /**
     * @param graph an initialised ComputationGraph
     * @param unwrap maps a layer held by a {@code LayerVertex} to the DL4J layer it stands for
     * @return its topology
     */
    public static Topology of(ComputationGraph graph, LayerResolver unwrap) {
        GraphVertex[] vertices = graph.getVertices();
        List<String> inputNames = graph.getConfiguration().getNetworkInputs();
        List<String> outputNames = graph.getConfiguration().getNetworkOutputs();
        Map<Integer, Integer> positionOfVertex = new HashMap<>();
        List<Node> nodes = new ArrayList<>();
        for (int vertexIndex : graph.topologicalSortOrder()) {
            GraphVertex v = vertices[vertexIndex];
            if (v.isInputVertex()) {
                positionOfVertex.put(vertexIndex, Node.networkInput(inputNames.indexOf(v.getVertexName())));
                continue;
            }
            VertexIndices[] from = v.getInputVertices();
            int[] inputs = new int[from == null ? 0 : from.length];
            for (int i = 0; i < inputs.length; i++) {
                inputs[i] = positionOfVertex.get(from[i].getVertexIndex());
            }
            int position = nodes.size();
            positionOfVertex.put(vertexIndex, position);
            // a FrozenVertex around a layer is a vertex here: DL4J never backpropagates through it
            Layer layer = v instanceof LayerVertex ? unwrap.plain(v.getLayer()) : null;
            nodes.add(new Node(v.getVertexName(), position, layer, layer != null ? unwrap.conf(v.getLayer()) : null, v,
                    inputs,
                    v instanceof LayerVertex ? ((LayerVertex) v).getLayerPreProcessor() : null,
                    outputNames.indexOf(v.getVertexName())));
        }
        return new Topology(nodes, inputNames.size());
    }

    /** @return the nodes in topological order */
    public List<Node> nodes() {
        return nodes;
    }

    /**
     * @param position a position in topological order
     * @return the node there
     */
    public Node node(int position) {
        return nodes.get(position);
    }

    /**
     * @param name a node name
     * @return the node, or null
     */
    public Node node(String name) {
        return byName.get(name);
    }

    /** @return the number of network inputs */
    public int inputCount() {
        return inputCount;
    }

    /** @return the output nodes, in DL4J's order of network outputs */
    public List<Node> outputs() {
        return outputs;
    }

    /**
     * @param from a set of nodes, by predicate
     * @return the positions of every node from which one of them can be reached (including them):
     *     where a backward pass that starts at those nodes arrives
     */
    public boolean[] ancestorsOf(Predicate<Node> from) {
        boolean[] marked = new boolean[nodes.size()];
        for (int p = nodes.size() - 1; p >= 0; p--) {
            Node n = nodes.get(p);
            if (from.test(n)) {
                marked[p] = true;
            }
            if (marked[p]) {
                for (int input : n.inputs()) {
                    if (input >= 0) {
                        marked[input] = true;
                    }
                }
            }
        }
        return marked;
    }

    /**
     * @param to a set of nodes, by predicate
     * @return the positions of every node that can be reached from one of them (including them)
     */
    public boolean[] descendantsOf(Predicate<Node> to) {
        boolean[] marked = new boolean[nodes.size()];
        for (Node n : nodes) {
            boolean m = to.test(n);
            for (int input : n.inputs()) {
                m |= input >= 0 && marked[input];
            }
            marked[n.position()] = m;
        }
        return marked;
    }

    /** Sees through the library's own layer wrappers. */
    public interface LayerResolver {
        /**
         * @param layer a layer as the network holds it
         * @return the DL4J layer implementation it stands for
         */
        Layer plain(Layer layer);

        /**
         * @param layer a layer as the network holds it
         * @return the network's own configuration of that layer
         */
        org.deeplearning4j.nn.conf.NeuralNetConfiguration conf(Layer layer);
    }

    /**
     * @param plain a DL4J layer implementation
     * @return the node whose layer it is, or null
     */
    public Node nodeOfLayer(Layer plain) {
        for (Node n : nodes) {
            if (n.layer() == plain) {
                return n;
            }
        }
        return null;
    }
}
