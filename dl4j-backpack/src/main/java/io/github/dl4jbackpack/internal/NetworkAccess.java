// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.internal.graph.Topology;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.api.Trainable;
import org.deeplearning4j.nn.api.layers.IOutputLayer;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.LayerVertex;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.updater.BaseMultiLayerUpdater;
import org.deeplearning4j.nn.updater.UpdaterBlock;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;

/**
 * The one place that knows the difference between a MultiLayerNetwork and a ComputationGraph:
 * building the {@link Topology}, installing and removing the intercepting layer wrappers, running a
 * forward and backward pass, and reaching the updater. Everything else works on the topology.
 *
 * <p>Installation replaces layer objects only: {@code MultiLayerNetwork.setLayers} with wrappers;
 * in a graph {@code LayerVertex.setLayer} and the graph's {@code getLayers()} array. Configuration
 * objects are never touched (see {@link InterceptingLayer}).
 */
public abstract class NetworkAccess {

    /** Sees through the library's wrappers. */
    static final Topology.LayerResolver RESOLVER = new Topology.LayerResolver() {
        @Override
        public Layer plain(Layer layer) {
            return layer instanceof InterceptingLayer ? ((InterceptingLayer) layer).plain() : layer;
        }

        @Override
        public NeuralNetConfiguration conf(Layer layer) {
            return layer.conf();
        }
    };

    /**
     * @param net an initialised network
     * @return its access
     */
    public static NetworkAccess of(MultiLayerNetwork net) {
        return new ForMultiLayer(net);
    }

    /**
     * @param graph an initialised graph
     * @return its access
     */
    public static NetworkAccess of(ComputationGraph graph) {
        return new ForGraph(graph);
    }

    /** @return the network */
    public abstract Model model();

    /** @return the network's topology, seen through the library's wrappers */
    public abstract Topology topology();

    /**
     * @param layer a layer as the network holds it
     * @return the interceptor of the library's wrapper, or null for a plain layer
     */
    public static Interceptor interceptorOf(Layer layer) {
        return layer instanceof InterceptingLayer ? ((InterceptingLayer) layer).interceptor() : null;
    }

    /** @return the interceptor whose wrappers wrap every one of the layers, or null */
    static Interceptor common(List<Layer> layers) {
        Interceptor common = null;
        for (Layer l : layers) {
            Interceptor i = interceptorOf(l);
            if (i == null || (common != null && i != common)) {
                return null;
            }
            common = i;
        }
        return common;
    }

    /** @return the interceptor whose wrappers are installed on every layer, or null */
    public abstract Interceptor installed();

    /**
     * Installs wrappers of the given interceptor on every layer (replacing any other wrappers of the
     * library).
     *
     * @param interceptor the network's shared state
     */
    public abstract void install(Interceptor interceptor);

    /** Removes the library's wrappers: the network holds DL4J's own layer objects again. */
    public abstract void uninstall();

    /**
     * Runs DL4J's {@code computeGradientAndScore()} on a batch.
     *
     * @param features one array per network input
     * @param labels one array per network output
     * @param featuresMasks one mask per network input (entries may be null), or null: then the network's
     *     masks are left as they are
     * @param labelsMasks one mask per network output (entries may be null), or null
     */
    public abstract void computeGradientAndScore(INDArray[] features, INDArray[] labels, INDArray[] featuresMasks,
                                                 INDArray[] labelsMasks);

    /** @return DL4J's score of the last pass */
    public abstract double score();

    /** @return DL4J's iteration count */
    public abstract int iteration();

    /** @return DL4J's epoch count */
    public abstract int epoch();

    /**
     * @param node a node that is not a layer
     * @return the configuration of the graph vertex, or null
     */
    public org.deeplearning4j.nn.conf.graph.GraphVertex vertexConfiguration(Node node) {
        return null;
    }

    /** @return the updater blocks, or an empty list if the updater is not DL4J's multi-layer updater */
    public abstract List<UpdaterBlock> updaterBlocks();

    /**
     * @param trainable what an updater block names (a layer, a wrapper, or a graph vertex)
     * @return its node
     */
    public Node nodeOf(Trainable trainable) {
        Object t = trainable;
        if (t instanceof LayerVertex) {
            t = ((LayerVertex) t).getLayer();
        }
        Node n = t instanceof Layer ? topology().nodeOfLayer(RESOLVER.plain((Layer) t)) : null;
        if (n == null) {
            throw new IllegalStateException("an updater block refers to " + trainable + ", which is not in the network");
        }
        return n;
    }

    /**
     * @param layer a layer as the network holds it
     * @return whether it is one of DL4J's frozen layers, which are never wrapped: DL4J recognises them
     *     by class ({@code instanceof FrozenLayer} decides where its backward pass stops and what
     *     {@code clone()} freezes), and they have no quantities
     */
    static boolean frozen(Layer layer) {
        return layer instanceof org.deeplearning4j.nn.layers.FrozenLayer
                || layer instanceof org.deeplearning4j.nn.layers.FrozenLayerWithBackprop;
    }

    private static Layer wrap(Layer plain, Node node, Interceptor interceptor) {
        if (frozen(plain)) {
            return plain;
        }
        if (plain instanceof IOutputLayer && node.isOutput()) {
            return new InterceptingOutputLayer(plain, node, interceptor);
        }
        return plain instanceof org.deeplearning4j.nn.api.layers.RecurrentLayer
                ? new InterceptingRecurrentLayer(plain, node, interceptor)
                : new InterceptingLayer(plain, node, interceptor);
    }

    private static final class ForMultiLayer extends NetworkAccess {
        private final MultiLayerNetwork net;
        private final Topology topology;

        ForMultiLayer(MultiLayerNetwork net) {
            this.net = net;
            this.topology = Topology.of(net, RESOLVER);
        }

        @Override
        public Model model() {
            return net;
        }

        @Override
        public Topology topology() {
            return topology;
        }

        @Override
        public Interceptor installed() {
            List<Layer> layers = new java.util.ArrayList<>();
            for (Layer l : net.getLayers()) {
                if (!frozen(l)) {
                    layers.add(l);
                }
            }
            return common(layers);
        }

        @Override
        public void install(Interceptor interceptor) {
            uninstall();
            Layer[] layers = net.getLayers();
            Layer[] wrapped = new Layer[layers.length];
            for (int i = 0; i < layers.length; i++) {
                wrapped[i] = wrap(layers[i], topology.node(i), interceptor);
            }
            net.setLayers(wrapped);
        }

        @Override
        public void uninstall() {
            Layer[] layers = net.getLayers().clone();
            boolean changed = false;
            for (int i = 0; i < layers.length; i++) {
                if (layers[i] instanceof InterceptingLayer) {
                    ((InterceptingLayer) layers[i]).uninstall();
                    layers[i] = ((InterceptingLayer) layers[i]).plain();
                    changed = true;
                }
            }
            if (changed) {
                net.setLayers(layers);
            }
        }

        @Override
        public void computeGradientAndScore(INDArray[] features, INDArray[] labels, INDArray[] featuresMasks,
                                            INDArray[] labelsMasks) {
            boolean masked = featuresMasks != null || labelsMasks != null;
            if (masked) {
                net.setLayerMaskArrays(featuresMasks == null ? null : featuresMasks[0],
                        labelsMasks == null ? null : labelsMasks[0]);
            }
            try {
                net.setInput(features[0]);
                net.setLabels(labels[0]);
                net.computeGradientAndScore();
            } finally {
                if (masked) {
                    net.clearLayerMaskArrays();
                }
            }
        }

        @Override
        public double score() {
            return net.score();
        }

        @Override
        public int iteration() {
            return net.getIterationCount();
        }

        @Override
        public int epoch() {
            return net.getEpochCount();
        }

        @Override
        public List<UpdaterBlock> updaterBlocks() {
            return net.getUpdater() instanceof BaseMultiLayerUpdater
                    ? ((BaseMultiLayerUpdater<?>) net.getUpdater()).getUpdaterBlocks() : List.of();
        }
    }

    private static final class ForGraph extends NetworkAccess {
        private final ComputationGraph graph;
        private final Topology topology;

        ForGraph(ComputationGraph graph) {
            this.graph = graph;
            this.topology = Topology.of(graph, RESOLVER);
        }

        @Override
        public Model model() {
            return graph;
        }

        @Override
        public Topology topology() {
            return topology;
        }

        @Override
        public Interceptor installed() {
            List<Layer> layers = new java.util.ArrayList<>();
            for (GraphVertex v : graph.getVertices()) {
                if (v instanceof LayerVertex && !frozen(v.getLayer())) {
                    layers.add(v.getLayer());
                }
            }
            return common(layers);
        }

        @Override
        public void install(Interceptor interceptor) {
            uninstall();
            for (GraphVertex v : graph.getVertices()) {
                if (v instanceof LayerVertex) {
                    replace((LayerVertex) v, wrap(v.getLayer(), topology.node(v.getVertexName()), interceptor));
                }
            }
        }

        /** Puts {@code layer} in the vertex and at the vertex's layer's place in {@code graph.getLayers()}. */
        private void replace(LayerVertex vertex, Layer layer) {
            Layer old = vertex.getLayer();
            Layer[] layers = graph.getLayers();
            for (int i = 0; i < layers.length; i++) {
                if (layers[i] == old) {
                    layers[i] = layer;
                }
            }
            vertex.setLayer(layer);
        }

        @Override
        public void uninstall() {
            for (GraphVertex v : graph.getVertices()) {
                if (v instanceof LayerVertex && v.getLayer() instanceof InterceptingLayer) {
                    InterceptingLayer w = (InterceptingLayer) v.getLayer();
                    w.uninstall();
                    replace((LayerVertex) v, w.plain());
                }
            }
        }

        @Override
        public void computeGradientAndScore(INDArray[] features, INDArray[] labels, INDArray[] featuresMasks,
                                            INDArray[] labelsMasks) {
            boolean masked = featuresMasks != null || labelsMasks != null;
            if (masked) {
                graph.setLayerMaskArrays(featuresMasks, labelsMasks);
            }
            try {
                graph.setInputs(features);
                graph.setLabels(labels);
                graph.computeGradientAndScore();
            } finally {
                if (masked) {
                    graph.clearLayerMaskArrays();
                }
            }
        }

        @Override
        public double score() {
            return graph.score();
        }

        @Override
        public int iteration() {
            return graph.getIterationCount();
        }

        @Override
        public int epoch() {
            return graph.getEpochCount();
        }

        @Override
        public List<UpdaterBlock> updaterBlocks() {
            return graph.getUpdater() != null ? graph.getUpdater().getUpdaterBlocks() : List.of();
        }

        @Override
        public org.deeplearning4j.nn.conf.graph.GraphVertex vertexConfiguration(Node node) {
            return graph.getConfiguration().getVertices().get(node.name());
        }
    }
}
