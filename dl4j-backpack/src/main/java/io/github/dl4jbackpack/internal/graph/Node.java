// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.graph;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * One computation of a network, in topological order: a layer (with the input preprocessor in
 * front of it) or, in a ComputationGraph, a vertex without parameters. A MultiLayerNetwork's layer
 * {@code i} is the node named {@code "i"} whose only input is node {@code i − 1} (or the network
 * input); a graph's vertex is the node named like the vertex.
 */
public final class Node {

    /** Encodes network input {@code k} in {@link #inputs()}: {@code -(k + 1)}. */
    public static int networkInput(int k) {
        return -(k + 1);
    }

    private final String name;
    private final int position;
    private final Layer layer;
    private final NeuralNetConfiguration conf;
    private final GraphVertex vertex;
    private final int[] inputs;
    private final InputPreProcessor preProcessor;
    private final int outputNumber;
    private final List<Integer> consumers = new ArrayList<>();

    Node(String name, int position, Layer layer, NeuralNetConfiguration conf, GraphVertex vertex, int[] inputs, InputPreProcessor preProcessor,
         int outputNumber) {
        this.name = name;
        this.position = position;
        this.layer = layer;
        this.conf = conf;
        this.vertex = vertex;
        this.inputs = inputs.clone();
        this.preProcessor = preProcessor;
        this.outputNumber = outputNumber;
    }

    void addConsumer(int consumer) {
        consumers.add(consumer);
    }

    /** @return the stable name: the layer index in a MultiLayerNetwork, the vertex name in a graph */
    public String name() {
        return name;
    }

    /** @return the position in topological order */
    public int position() {
        return position;
    }

    /** @return whether this node is a layer */
    public boolean isLayer() {
        return layer != null;
    }

    /**
     * @return whether DL4J keeps the node's parameters fixed: a {@code FrozenLayer} or
     *     {@code FrozenLayerWithBackprop} (as {@code TransferLearning.setFeatureExtractor} makes them),
     *     or a {@code FrozenVertex}
     */
    public boolean isFrozen() {
        return layer instanceof org.deeplearning4j.nn.layers.FrozenLayer
                || layer instanceof org.deeplearning4j.nn.layers.FrozenLayerWithBackprop
                || vertex instanceof org.deeplearning4j.nn.graph.vertex.impl.FrozenVertex;
    }

    /** @return the DL4J layer implementation (never one of the library's wrappers), or null for a vertex */
    public Layer layer() {
        return layer;
    }

    /**
     * @return the network's own configuration of the layer (never the private copy an extended
     *     layer computes with), or null for a vertex
     */
    public NeuralNetConfiguration conf() {
        return conf;
    }

    /** @return the DL4J vertex of the node in a ComputationGraph (also for layers), or null in a MultiLayerNetwork */
    public GraphVertex vertex() {
        return vertex;
    }

    /**
     * @return the producers of the inputs, in input order: positions of nodes, or
     *     {@link #networkInput(int)} codes for network inputs
     */
    public int[] inputs() {
        return inputs.clone();
    }

    /** @return the number of inputs */
    public int inputCount() {
        return inputs.length;
    }

    /**
     * @param i an input slot
     * @return the producer of that input (a node position, or a negative network-input code)
     */
    public int input(int i) {
        return inputs[i];
    }

    /** @return the positions of the nodes that consume this node's output (a node may appear twice) */
    public List<Integer> consumers() {
        return Collections.unmodifiableList(consumers);
    }

    /** @return the input preprocessor in front of the layer, or null */
    public InputPreProcessor preProcessor() {
        return preProcessor;
    }

    /** @return whether the node is a network output */
    public boolean isOutput() {
        return outputNumber >= 0;
    }

    /** @return the index of the network output this node is, or −1 */
    public int outputNumber() {
        return outputNumber;
    }

    /**
     * @return the simple class name of the DL4J layer or vertex, for messages; for layers DL4J implements
     *     with SameDiff (whose implementation class is generic), the configuration's class name
     */
    public String typeName() {
        if (layer == null) {
            return vertex.getClass().getSimpleName();
        }
        if (layer.conf().getLayer() instanceof org.deeplearning4j.nn.conf.layers.samediff.AbstractSameDiffLayer) {
            return layer.conf().getLayer().getClass().getSimpleName();
        }
        return layer.getClass().getSimpleName();
    }

    /** @return e.g. {@code layer "3" (DenseLayer)} or {@code vertex "add" (ElementWiseVertex)}, for messages */
    public String describe() {
        return (layer != null ? "layer" : "vertex") + " \"" + name + "\" (" + typeName() + ")";
    }

    @Override
    public String toString() {
        return describe();
    }
}
