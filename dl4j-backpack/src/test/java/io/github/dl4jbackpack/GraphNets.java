// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration.GraphBuilder;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.graph.ElementWiseVertex;
import org.deeplearning4j.nn.conf.graph.GraphVertex;
import org.deeplearning4j.nn.conf.graph.L2NormalizeVertex;
import org.deeplearning4j.nn.conf.graph.L2Vertex;
import org.deeplearning4j.nn.conf.graph.LayerVertex;
import org.deeplearning4j.nn.conf.graph.MergeVertex;
import org.deeplearning4j.nn.conf.graph.PreprocessorVertex;
import org.deeplearning4j.nn.conf.graph.ScaleVertex;
import org.deeplearning4j.nn.conf.graph.ShiftVertex;
import org.deeplearning4j.nn.conf.graph.StackVertex;
import org.deeplearning4j.nn.conf.graph.SubsetVertex;
import org.deeplearning4j.nn.conf.graph.UnstackVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.BaseOutputLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.conf.preprocessor.CnnToFeedForwardPreProcessor;
import org.deeplearning4j.nn.conf.preprocessor.FeedForwardToCnnPreProcessor;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.ILossFunction;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;
import org.nd4j.linalg.lossfunctions.impl.LossBinaryXENT;
import org.nd4j.linalg.lossfunctions.impl.LossMCXENT;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Builders for small test {@link ComputationGraph}s with random parameters, and matching random data.
 *
 * <p>Every builder has a default form (float64, workspaces {@link WorkspaceMode#ENABLED}, seed 12345)
 * and a form taking the data type, workspace mode and seed. Parameters are drawn like
 * {@link TestNets#randomiseParameters}: every parameter (biases too) from N(0, 0.5²), with ND4J's
 * generator seeded by {@link TestNets#seed}. All graphs are built with {@code setInputTypes}, so DL4J
 * adds the preprocessors and sets every {@code nIn}.
 *
 * <p>Vertex names and parameter keys (DL4J's graph keys are {@code "<vertexName>_<param>"}):
 * <ul>
 *   <li>{@link #chain}: input {@code "input"}, layer i is vertex {@code "layer<i>"} (keys
 *       {@code "layer0_W"}, {@code "layer0_b"}, ...); the equivalent {@link MultiLayerNetwork} from
 *       {@link #chainNetwork} has keys {@code "<i>_W"}, mapped by {@link #networkKey} / {@link #graphKey};</li>
 *   <li>{@link #residual}: {@code in → dense1 (tanh) → dense2 (relu)}, {@code add = dense2 + dense1},
 *       {@code add → out} (softmax + MCXENT);</li>
 *   <li>{@link #inception}: {@code in [N,2,6,6] → conv1x1 (relu, 2 ch)} and {@code in → conv3x3
 *       (Same, tanh, 3 ch)}, {@code merge} (channels), {@code pool} (max 3×3, s3), {@code out};</li>
 *   <li>{@link #multiInput}: {@code inA → denseA (tanh)}, {@code inB → denseB (sigmoid)}, {@code merge},
 *       {@code out};</li>
 *   <li>{@link #multiOutput}: {@code in → trunk (tanh)}, {@code trunk → outClass} (softmax + MCXENT) and
 *       {@code trunk → outReg} (identity + MSE), outputs in that order;</li>
 *   <li>{@link #vertexZoo}: see its Javadoc.</li>
 * </ul>
 */
final class GraphNets {

    static final long DEFAULT_SEED = 12345;

    static final InputType[] RESIDUAL_INPUTS = {InputType.feedForward(4)};
    static final InputType[] INCEPTION_INPUTS = {InputType.convolutional(6, 6, 2)};
    static final InputType[] MULTI_INPUT_INPUTS = {InputType.feedForward(3), InputType.feedForward(4)};
    static final InputType[] MULTI_OUTPUT_INPUTS = {InputType.feedForward(4)};
    static final InputType[] VERTEX_ZOO_INPUTS = {InputType.feedForward(4)};

    private GraphNets() {
    }

    /** The fixed topologies, with their input types, for parameterised tests. */
    enum Topology {
        RESIDUAL(RESIDUAL_INPUTS),
        INCEPTION(INCEPTION_INPUTS),
        MULTI_INPUT(MULTI_INPUT_INPUTS),
        MULTI_OUTPUT(MULTI_OUTPUT_INPUTS),
        VERTEX_ZOO(VERTEX_ZOO_INPUTS);

        private final InputType[] inputs;

        Topology(InputType[] inputs) {
            this.inputs = inputs;
        }

        InputType[] inputs() {
            return inputs.clone();
        }

        ComputationGraph build() {
            return build(DataType.DOUBLE, WorkspaceMode.ENABLED, DEFAULT_SEED);
        }

        ComputationGraph build(DataType dataType, WorkspaceMode workspaces, long seed) {
            switch (this) {
                case RESIDUAL:
                    return residual(dataType, workspaces, seed);
                case INCEPTION:
                    return inception(dataType, workspaces, seed);
                case MULTI_INPUT:
                    return multiInput(dataType, workspaces, seed);
                case MULTI_OUTPUT:
                    return multiOutput(dataType, workspaces, seed);
                case VERTEX_ZOO:
                    return vertexZoo(dataType, workspaces, seed);
                default:
                    throw new IllegalStateException();
            }
        }

        /** @return random features and labels for {@code graph} (built by this topology) */
        Data data(ComputationGraph graph, int n, long seed) {
            return GraphNets.data(graph, n, seed, inputs);
        }

        @Override
        public String toString() {
            return name().toLowerCase().replace('_', ' ');
        }
    }

    /** Features (one array per network input) and labels (one per network output, in output order). */
    record Data(INDArray[] features, INDArray[] labels) {
        long n() {
            return features[0].size(0);
        }
    }

    // ---------------------------------------------------------------- common

    /** @return a graph builder with the settings of {@link TestNets#build} */
    static GraphBuilder builder(DataType dataType, WorkspaceMode workspaces, long seed) {
        return new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(dataType)
                .weightInit(WeightInit.XAVIER)
                .updater(new Sgd(0.1))
                .trainingWorkspaceMode(workspaces)
                .inferenceWorkspaceMode(workspaces)
                .graphBuilder();
    }

    /** @return the initialised graph of {@code builder}, with random parameters */
    static ComputationGraph init(GraphBuilder builder, long seed) {
        ComputationGraph graph = new ComputationGraph(builder.build());
        graph.init();
        randomiseParameters(graph, seed);
        return graph;
    }

    /** Draws every parameter (biases too) from N(0, 0.5²), as {@link TestNets#randomiseParameters}. */
    static void randomiseParameters(ComputationGraph graph, long seed) {
        INDArray params = graph.params();
        TestNets.seed(seed);
        graph.setParams(Nd4j.randn(params.dataType(), params.shape()).muli(0.5));
    }

    static DenseLayer dense(int nOut, Activation activation) {
        return new DenseLayer.Builder().nOut(nOut).activation(activation).build();
    }

    static OutputLayer output(LossFunction loss, Activation activation, int nOut) {
        return new OutputLayer.Builder(loss).activation(activation).nOut(nOut).build();
    }

    // ---------------------------------------------------------------- (a) chain

    /** @return the vertex name of layer {@code i} of a chain graph */
    static String layerName(int i) {
        return "layer" + i;
    }

    /** @return the graph key of a {@link MultiLayerNetwork} key: {@code "3_W" → "layer3_W"} */
    static String graphKey(String networkKey) {
        int u = networkKey.indexOf('_');
        return layerName(Integer.parseInt(networkKey.substring(0, u))) + networkKey.substring(u);
    }

    /** @return the {@link MultiLayerNetwork} key of a chain-graph key: {@code "layer3_W" → "3_W"} */
    static String networkKey(String graphKey) {
        if (!graphKey.startsWith("layer")) {
            throw new IllegalArgumentException("not a chain-graph key: " + graphKey);
        }
        return graphKey.substring("layer".length());
    }

    /**
     * A chain-shaped graph equivalent to {@code TestNets.build(dataType, input, workspaces, seed, layers)}:
     * input vertex {@code "input"}, layer i is vertex {@code "layer<i>"} fed by layer i−1, the last
     * layer is the output. The layers are cloned (the caller's objects are not modified).
     */
    static ComputationGraph chain(DataType dataType, WorkspaceMode workspaces, long seed, InputType input,
                                  Layer... layers) {
        GraphBuilder b = builder(dataType, workspaces, seed).addInputs("input");
        String previous = "input";
        for (int i = 0; i < layers.length; i++) {
            b.addLayer(layerName(i), layers[i].clone(), previous);
            previous = layerName(i);
        }
        b.setOutputs(previous).setInputTypes(input);
        return init(b, seed);
    }

    static ComputationGraph chain(InputType input, Layer... layers) {
        return chain(DataType.DOUBLE, WorkspaceMode.ENABLED, DEFAULT_SEED, input, layers);
    }

    /**
     * @param chain a graph built by {@link #chain} (or a modification of one, e.g.
     *     {@link GraphBruteForce#jacobianGraph}: its layer configurations are used as they are)
     * @param input the input type the chain was built with
     * @return the equivalent {@link MultiLayerNetwork}: same layer configurations (cloned), data type and
     *     workspace modes, and identical parameters, copied key by key ({@code "layer<i>_W" → "<i>_W"})
     */
    static MultiLayerNetwork chainNetwork(ComputationGraph chain, InputType input) {
        ComputationGraphConfiguration conf = chain.getConfiguration();
        List<Layer> layers = new ArrayList<>();
        for (int i = 0; conf.getVertices().containsKey(layerName(i)); i++) {
            GraphVertex v = conf.getVertices().get(layerName(i));
            layers.add(((LayerVertex) v).getLayerConf().getLayer().clone());
        }
        long others = conf.getVertices().keySet().stream().filter(v -> !conf.getNetworkInputs().contains(v)).count();
        for (int i = 0; i < layers.size(); i++) {
            String from = i == 0 ? "input" : layerName(i - 1);
            if (!List.of(from).equals(conf.getVertexInputs().get(layerName(i)))) {
                throw new IllegalArgumentException("not a chain graph: " + conf.getVertexInputs());
            }
        }
        if (others != layers.size() || !conf.getNetworkInputs().equals(List.of("input"))) {
            throw new IllegalArgumentException("not a chain graph: " + conf.getVertices().keySet());
        }
        MultiLayerConfiguration mc = new NeuralNetConfiguration.Builder()
                .dataType(conf.getDataType())
                .trainingWorkspaceMode(conf.getTrainingWorkspaceMode())
                .inferenceWorkspaceMode(conf.getInferenceWorkspaceMode())
                .list(layers.toArray(new Layer[0]))
                .setInputType(input)
                .validateOutputLayerConfig(false)
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(mc);
        net.init();
        if (net.numParams() != chain.numParams()) {
            throw new IllegalStateException("network has " + net.numParams() + " parameters, graph "
                    + chain.numParams());
        }
        for (String key : net.paramTable().keySet()) {
            net.getParam(key).assign(chain.getParam(graphKey(key)));
        }
        return net;
    }

    // ---------------------------------------------------------------- (b)–(f) fixed topologies

    static ComputationGraph residual() {
        return residual(DataType.DOUBLE, WorkspaceMode.ENABLED, DEFAULT_SEED);
    }

    /**
     * {@code in (4) → dense1 (5, tanh) → dense2 (5, relu)}; {@code add = ElementWiseVertex(Add)(dense2,
     * dense1)} (the identity path); {@code add → out (3, softmax + MCXENT)}. Keys dense1_W, dense1_b,
     * dense2_W, dense2_b, out_W, out_b.
     */
    static ComputationGraph residual(DataType dataType, WorkspaceMode workspaces, long seed) {
        GraphBuilder b = builder(dataType, workspaces, seed)
                .addInputs("in")
                .addLayer("dense1", dense(5, Activation.TANH), "in")
                .addLayer("dense2", dense(5, Activation.RELU), "dense1")
                .addVertex("add", new ElementWiseVertex(ElementWiseVertex.Op.Add), "dense2", "dense1")
                .addLayer("out", output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "add")
                .setOutputs("out")
                .setInputTypes(RESIDUAL_INPUTS);
        return init(b, seed);
    }

    static ComputationGraph inception() {
        return inception(DataType.DOUBLE, WorkspaceMode.ENABLED, DEFAULT_SEED);
    }

    /**
     * {@code in [N,2,6,6]}; {@code conv1x1} (1×1, 2 channels, relu) and {@code conv3x3} (3×3, Same,
     * 3 channels, tanh) both from {@code in}; {@code merge = MergeVertex(conv1x1, conv3x3)} (channel
     * concatenation, [N,5,6,6]); {@code pool} (max 3×3 stride 3, [N,5,2,2]); {@code out} (3, softmax +
     * MCXENT, with DL4J's CnnToFeedForward preprocessor). Keys conv1x1_W [2,2,1,1], conv1x1_b,
     * conv3x3_W [3,2,3,3], conv3x3_b, out_W [20,3], out_b. (Small fan-ins keep the softmax away from
     * DL4J's clipping at 1e-10, which makes the score flat where the gradient is not.)
     */
    static ComputationGraph inception(DataType dataType, WorkspaceMode workspaces, long seed) {
        GraphBuilder b = builder(dataType, workspaces, seed)
                .addInputs("in")
                .addLayer("conv1x1", new ConvolutionLayer.Builder(1, 1).nOut(2).activation(Activation.RELU).build(),
                        "in")
                .addLayer("conv3x3", new ConvolutionLayer.Builder(3, 3).convolutionMode(ConvolutionMode.Same).nOut(3)
                        .activation(Activation.TANH).build(), "in")
                .addVertex("merge", new MergeVertex(), "conv1x1", "conv3x3")
                .addLayer("pool", new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(3, 3).stride(3, 3).build(),
                        "merge")
                .addLayer("out", output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "pool")
                .setOutputs("out")
                .setInputTypes(INCEPTION_INPUTS);
        return init(b, seed);
    }

    static ComputationGraph multiInput() {
        return multiInput(DataType.DOUBLE, WorkspaceMode.ENABLED, DEFAULT_SEED);
    }

    /**
     * {@code inA (3) → denseA (4, tanh)}, {@code inB (4) → denseB (3, sigmoid)}, {@code merge =
     * MergeVertex(denseA, denseB)} (7), {@code merge → out (3, softmax + MCXENT)}. Inputs in the order
     * inA, inB. Keys denseA_W, denseA_b, denseB_W, denseB_b, out_W, out_b.
     */
    static ComputationGraph multiInput(DataType dataType, WorkspaceMode workspaces, long seed) {
        GraphBuilder b = builder(dataType, workspaces, seed)
                .addInputs("inA", "inB")
                .addLayer("denseA", dense(4, Activation.TANH), "inA")
                .addLayer("denseB", dense(3, Activation.SIGMOID), "inB")
                .addVertex("merge", new MergeVertex(), "denseA", "denseB")
                .addLayer("out", output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "merge")
                .setOutputs("out")
                .setInputTypes(MULTI_INPUT_INPUTS);
        return init(b, seed);
    }

    static ComputationGraph multiOutput() {
        return multiOutput(DataType.DOUBLE, WorkspaceMode.ENABLED, DEFAULT_SEED);
    }

    /**
     * {@code in (4) → trunk (5, tanh)}; {@code trunk → outClass (3, softmax + MCXENT)} and
     * {@code trunk → outReg (2, identity + MSE)}; outputs (and labels) in the order outClass, outReg.
     * Keys trunk_W, trunk_b, outClass_W, outClass_b, outReg_W, outReg_b.
     */
    static ComputationGraph multiOutput(DataType dataType, WorkspaceMode workspaces, long seed) {
        GraphBuilder b = builder(dataType, workspaces, seed)
                .addInputs("in")
                .addLayer("trunk", dense(5, Activation.TANH), "in")
                .addLayer("outClass", output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "trunk")
                .addLayer("outReg", output(LossFunction.MSE, Activation.IDENTITY, 2), "trunk")
                .setOutputs("outClass", "outReg")
                .setInputTypes(MULTI_OUTPUT_INPUTS);
        return init(b, seed);
    }

    static ComputationGraph vertexZoo() {
        return vertexZoo(DataType.DOUBLE, WorkspaceMode.ENABLED, DEFAULT_SEED);
    }

    /**
     * A feed-forward graph through every parameter-free vertex that fits feed-forward activations:
     * <pre>
     * in (4) → a (dense 4, tanh), b (dense 4, sigmoid)
     * sub     = ElementWiseVertex(Subtract)(a, b)
     * prod    = ElementWiseVertex(Product)(a, b)
     * avg     = ElementWiseVertex(Average)(a, b, sub)
     * max     = ElementWiseVertex(Max)(prod, avg)
     * subset  = SubsetVertex(1, 3)(max)                   units 1..3 (inclusive): 3
     * scale   = ScaleVertex(0.7)(subset)
     * shift   = ShiftVertex(-0.3)(scale)
     * norm    = L2NormalizeVertex()(sub)                  4
     * dist    = L2Vertex(a, b)                            1
     * toCnn   = PreprocessorVertex(FeedForwardToCnn 2×2×1)(prod)   [N,1,2,2]
     * toFf    = PreprocessorVertex(CnnToFeedForward 2×2×1)(toCnn)  [N, 4]
     * merge   = MergeVertex(shift, norm, dist, toFf)       3+4+1+4 = 12
     * out     = output 3, softmax + MCXENT
     * </pre>
     * Keys a_W, a_b, b_W, b_b, out_W, out_b. (Stack/Unstack change the batch axis: see {@link #stacked}.)
     */
    static ComputationGraph vertexZoo(DataType dataType, WorkspaceMode workspaces, long seed) {
        GraphBuilder b = builder(dataType, workspaces, seed)
                .addInputs("in")
                .addLayer("a", dense(4, Activation.TANH), "in")
                .addLayer("b", dense(4, Activation.SIGMOID), "in")
                .addVertex("sub", new ElementWiseVertex(ElementWiseVertex.Op.Subtract), "a", "b")
                .addVertex("prod", new ElementWiseVertex(ElementWiseVertex.Op.Product), "a", "b")
                .addVertex("avg", new ElementWiseVertex(ElementWiseVertex.Op.Average), "a", "b", "sub")
                .addVertex("max", new ElementWiseVertex(ElementWiseVertex.Op.Max), "prod", "avg")
                .addVertex("subset", new SubsetVertex(1, 3), "max")
                .addVertex("scale", new ScaleVertex(0.7), "subset")
                .addVertex("shift", new ShiftVertex(-0.3), "scale")
                .addVertex("norm", new L2NormalizeVertex(), "sub")
                .addVertex("dist", new L2Vertex(), "a", "b")
                .addVertex("toCnn", new PreprocessorVertex(new FeedForwardToCnnPreProcessor(2, 2, 1)), "prod")
                .addVertex("toFf", new PreprocessorVertex(new CnnToFeedForwardPreProcessor(2, 2, 1)), "toCnn")
                .addVertex("merge", new MergeVertex(), "shift", "norm", "dist", "toFf")
                .addLayer("out", output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "merge")
                .setOutputs("out")
                .setInputTypes(VERTEX_ZOO_INPUTS);
        return init(b, seed);
    }

    /**
     * A siamese-style graph whose dense layer {@code shared} sees the batch twice, stacked by a
     * {@code StackVertex}: {@code in → a (dense 4)}, {@code stack(a, in) → shared (dense 3) →
     * unstack0, unstack1 → merge → out}. Keys a_W, a_b, shared_W, shared_b, out_W, out_b.
     */
    static ComputationGraph stacked() {
        GraphBuilder b = builder(DataType.DOUBLE, WorkspaceMode.ENABLED, DEFAULT_SEED)
                .addInputs("in")
                .addLayer("a", dense(4, Activation.TANH), "in")
                .addVertex("stack", new StackVertex(), "a", "in")
                .addLayer("shared", dense(3, Activation.TANH), "stack")
                .addVertex("unstack0", new UnstackVertex(0, 2), "shared")
                .addVertex("unstack1", new UnstackVertex(1, 2), "shared")
                .addVertex("merge", new MergeVertex(), "unstack0", "unstack1")
                .addLayer("out", output(LossFunction.MCXENT, Activation.SOFTMAX, 3), "merge")
                .setOutputs("out")
                .setInputTypes(VERTEX_ZOO_INPUTS);
        return init(b, DEFAULT_SEED);
    }

    // ---------------------------------------------------------------- data

    /**
     * @return one feature array per input type, N(0,1) entries from {@code java.util.Random(seed + 1000 i)}
     *     for input i: feed-forward {@code [n, size]}, convolutional {@code [n, C, H, W]} (NCHW),
     *     convolutional-flat {@code [n, H·W·C]}
     */
    static INDArray[] features(DataType dataType, int n, long seed, InputType... inputs) {
        INDArray[] out = new INDArray[inputs.length];
        for (int i = 0; i < inputs.length; i++) {
            long[] shape = featureShape(n, inputs[i]);
            Random r = new Random(seed + 1000L * i);
            long length = 1;
            for (long s : shape) {
                length *= s;
            }
            double[] values = new double[(int) length];
            for (int k = 0; k < values.length; k++) {
                values[k] = r.nextGaussian();
            }
            out[i] = Nd4j.createFromArray(values).reshape('c', shape).castTo(dataType);
        }
        return out;
    }

    static long[] featureShape(int n, InputType input) {
        if (input instanceof InputType.InputTypeFeedForward) {
            return new long[] {n, ((InputType.InputTypeFeedForward) input).getSize()};
        }
        if (input instanceof InputType.InputTypeConvolutional) {
            InputType.InputTypeConvolutional c = (InputType.InputTypeConvolutional) input;
            return new long[] {n, c.getChannels(), c.getHeight(), c.getWidth()};
        }
        if (input instanceof InputType.InputTypeConvolutionalFlat) {
            InputType.InputTypeConvolutionalFlat c = (InputType.InputTypeConvolutionalFlat) input;
            return new long[] {n, c.getFlattenedSize()};
        }
        throw new IllegalArgumentException("unsupported input type " + input);
    }

    /**
     * @return one label array per network output (in {@code getNetworkOutputs()} order), {@code [n, nOut]},
     *     drawn from {@code java.util.Random(seed + 1000 k)} for output k: one-hot for MCXENT / NLL,
     *     binary for XENT, N(0,1) otherwise; in the graph's data type
     */
    static INDArray[] labels(ComputationGraph graph, int n, long seed) {
        ComputationGraphConfiguration conf = graph.getConfiguration();
        List<String> outputs = conf.getNetworkOutputs();
        INDArray[] out = new INDArray[outputs.size()];
        for (int k = 0; k < outputs.size(); k++) {
            Layer layer = ((LayerVertex) conf.getVertices().get(outputs.get(k))).getLayerConf().getLayer();
            ILossFunction loss;
            long nOut;
            if (layer instanceof BaseOutputLayer) {
                loss = ((BaseOutputLayer) layer).getLossFn();
                nOut = ((BaseOutputLayer) layer).getNOut();
            } else if (layer instanceof LossLayer) {
                loss = ((LossLayer) layer).getLossFn();
                nOut = ((LossLayer) layer).getNOut();
            } else {
                throw new IllegalArgumentException("output " + outputs.get(k) + " is not an output layer");
            }
            if (nOut <= 0) {
                throw new IllegalArgumentException("output " + outputs.get(k) + ": unknown width");
            }
            Random r = new Random(seed + 1000L * k);
            double[][] y = new double[n][(int) nOut];
            for (int i = 0; i < n; i++) {
                if (loss instanceof LossMCXENT) {   // also LossNegativeLogLikelihood
                    y[i][r.nextInt((int) nOut)] = 1.0;
                } else {
                    for (int j = 0; j < nOut; j++) {
                        y[i][j] = loss instanceof LossBinaryXENT ? (r.nextBoolean() ? 1.0 : 0.0) : r.nextGaussian();
                    }
                }
            }
            out[k] = Nd4j.createFromArray(y).castTo(conf.getDataType());
        }
        return out;
    }

    /** @return features for {@code inputs} and labels for {@code graph}, {@code n} examples */
    static Data data(ComputationGraph graph, int n, long seed, InputType... inputs) {
        return new Data(features(graph.getConfiguration().getDataType(), n, seed, inputs), labels(graph, n, seed + 1));
    }
}
