// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.conf.ComputationGraphConfiguration.GraphBuilder;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.graph.ElementWiseVertex;
import org.deeplearning4j.nn.conf.graph.MergeVertex;
import org.deeplearning4j.nn.conf.graph.ScaleVertex;
import org.deeplearning4j.nn.conf.graph.ShiftVertex;
import org.deeplearning4j.nn.conf.graph.SubsetVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Seeded random {@link ComputationGraph}s (directed acyclic graphs of feed-forward activations) over the
 * parts the library supports for every extension:
 * <ul>
 *   <li>1-3 network inputs of width 2-4, each feeding at least one dense layer (possibly through a
 *       parameter-free vertex first);</li>
 *   <li>dense layers of width 2-4 with activations tanh, sigmoid, relu, softplus or identity;</li>
 *   <li>ElementWiseVertex Add, Subtract, Average, Max, Product (2-3 inputs of one width, occasionally the
 *       same input twice), MergeVertex (2-3 inputs), ScaleVertex, ShiftVertex and SubsetVertex;</li>
 *   <li>fan-out wherever a node is picked more than once;</li>
 *   <li>one or two output layers (softmax + MCXENT or NLL, identity + MSE or L2, sigmoid + XENT) of width
 *       2-3; every node that no other node consumes is merged into an output, so every node reaches
 *       one.</li>
 * </ul>
 * Parameters are drawn like {@link GraphNets#randomiseParameters} (every one, biases too, from
 * N(0, 0.5²)). The same seed gives the same graph, parameters and description.
 */
final class RandomGraphs {

    private static final Activation[] ACTIVATIONS = {Activation.TANH, Activation.SIGMOID, Activation.RELU,
        Activation.SOFTPLUS, Activation.IDENTITY};
    private static final ElementWiseVertex.Op[] OPS = {ElementWiseVertex.Op.Add, ElementWiseVertex.Op.Subtract,
        ElementWiseVertex.Op.Average, ElementWiseVertex.Op.Max, ElementWiseVertex.Op.Product};
    private static final LossFunction[] LOSSES = {LossFunction.MCXENT, LossFunction.NEGATIVELOGLIKELIHOOD,
        LossFunction.MSE, LossFunction.L2, LossFunction.XENT};
    private static final int MAX_MERGE_WIDTH = 12;

    private RandomGraphs() {
    }

    /** A generated graph, its input types (for {@link GraphNets#data}) and a readable description. */
    record Case(long seed, ComputationGraph graph, InputType[] inputs, String description) {

        /** @return random features and labels for the graph, {@code n} examples */
        GraphNets.Data data(int n) {
            return GraphNets.data(graph, n, seed, inputs);
        }

        @Override
        public String toString() {
            return "seed " + seed + ": " + description;
        }
    }

    /** A node the generator can feed into others: a network input, a layer or a vertex. */
    private record Item(String name, int width, boolean input) {
    }

    /**
     * @param seed the seed of the structure and the parameters
     * @param dataType parameter type
     * @param workspaces workspace mode for training and inference
     * @param elementWise whether ElementWiseVertex may be used
     * @return the graph, initialised with random parameters
     */
    static Case generate(long seed, DataType dataType, WorkspaceMode workspaces, boolean elementWise) {
        return new Generator(seed, dataType, workspaces, elementWise).build();
    }

    private static final class Generator {
        private final long seed;
        private final Random r;
        private final GraphBuilder b;
        private final boolean elementWise;
        private final List<Item> pool = new ArrayList<>();
        private final Map<String, Integer> uses = new HashMap<>();
        private final Map<String, String> description = new LinkedHashMap<>();
        private int counter;

        Generator(long seed, DataType dataType, WorkspaceMode workspaces, boolean elementWise) {
            this.seed = seed;
            this.r = new Random(seed * 7919 + 17);
            this.b = GraphNets.builder(dataType, workspaces, seed);
            this.elementWise = elementWise;
        }

        Case build() {
            int inputCount = 1 + r.nextInt(3);
            InputType[] types = new InputType[inputCount];
            String[] names = new String[inputCount];
            int[] widths = new int[inputCount];
            for (int i = 0; i < inputCount; i++) {
                int width = 2 + r.nextInt(3);
                widths[i] = width;
                types[i] = InputType.feedForward(width);
                names[i] = "in" + i;
                description.put(names[i], "input(" + width + ")");
            }
            b.addInputs(names);
            for (int i = 0; i < inputCount; i++) {
                Item in = new Item(names[i], widths[i], true);
                pool.add(in);
                // every input reaches a dense layer, sometimes through a parameter-free vertex
                Item first = r.nextInt(10) < 3 ? unaryVertex(in) : in;
                dense(first);
            }
            int steps = 3 + r.nextInt(6);
            for (int s = 0; s < steps; s++) {
                int op = r.nextInt(100);
                if (op < 35) {
                    dense(pick());
                } else if (op < 60 && elementWise) {
                    elementWiseVertex();
                } else if (op < 75) {
                    merge();
                } else {
                    unaryVertex(pick());
                }
            }
            outputs();
            ComputationGraph graph = GraphNets.init(b.setInputTypes(types), seed);
            StringBuilder text = new StringBuilder();
            description.forEach((name, what) -> text.append(text.length() == 0 ? "" : "; ").append(name).append(" = ")
                    .append(what));
            return new Case(seed, graph, types, text.toString());
        }

        private Item pick() {
            return pool.get(r.nextInt(pool.size()));
        }

        private Item add(String name, int width, String what, Item... inputs) {
            String[] names = new String[inputs.length];
            for (int i = 0; i < inputs.length; i++) {
                names[i] = inputs[i].name();
                uses.merge(inputs[i].name(), 1, Integer::sum);
            }
            description.put(name, what + "(" + String.join(", ", names) + ")");
            Item item = new Item(name, width, false);
            pool.add(item);
            return item;
        }

        private static String[] names(Item... items) {
            String[] out = new String[items.length];
            for (int i = 0; i < items.length; i++) {
                out[i] = items[i].name();
            }
            return out;
        }

        private Item dense(Item in) {
            return dense(in, 2 + r.nextInt(3));
        }

        private Item dense(Item in, int width) {
            String name = "dense" + counter++;
            Activation activation = ACTIVATIONS[r.nextInt(ACTIVATIONS.length)];
            b.addLayer(name, GraphNets.dense(width, activation), in.name());
            return add(name, width, "Dense[" + width + ", " + activation.name().toLowerCase() + "]", in);
        }

        private Item unaryVertex(Item in) {
            int kind = r.nextInt(3);
            String name = "v" + counter++;
            if (kind == 0) {
                double factor = (r.nextBoolean() ? 1 : -1) * (0.3 + r.nextInt(13) / 10.0);
                b.addVertex(name, new ScaleVertex(factor), in.name());
                return add(name, in.width(), "Scale[" + factor + "]", in);
            }
            if (kind == 1) {
                double shift = (r.nextInt(21) - 10) / 10.0;
                b.addVertex(name, new ShiftVertex(shift), in.name());
                return add(name, in.width(), "Shift[" + shift + "]", in);
            }
            int from = r.nextInt(in.width());
            int to = from + r.nextInt(in.width() - from);
            b.addVertex(name, new SubsetVertex(from, to), in.name());
            return add(name, to - from + 1, "Subset[" + from + ".." + to + "]", in);
        }

        private void elementWiseVertex() {
            ElementWiseVertex.Op op = OPS[r.nextInt(OPS.length)];
            int k = op == ElementWiseVertex.Op.Subtract ? 2 : 2 + r.nextInt(2);
            Item first = pick();
            List<Item> same = new ArrayList<>();
            for (Item i : pool) {
                if (i.width() == first.width() && i != first) {
                    same.add(i);
                }
            }
            Collections.shuffle(same, r);
            Item[] inputs = new Item[k];
            inputs[0] = first;
            for (int i = 1; i < k; i++) {
                if (r.nextInt(10) == 0) {
                    inputs[i] = first;                       // the same input twice
                } else if (!same.isEmpty()) {
                    inputs[i] = same.remove(same.size() - 1);
                } else {
                    inputs[i] = dense(pick(), first.width());   // make a partner of the right width
                }
            }
            String name = "ew" + counter++;
            b.addVertex(name, new ElementWiseVertex(op), names(inputs));
            add(name, first.width(), "ElementWise[" + op + "]", inputs);
        }

        private void merge() {
            int k = 2 + r.nextInt(2);
            List<Item> candidates = new ArrayList<>(pool);
            Collections.shuffle(candidates, r);
            List<Item> inputs = new ArrayList<>();
            int width = 0;
            for (Item i : candidates) {
                if (inputs.size() < k && width + i.width() <= MAX_MERGE_WIDTH) {
                    inputs.add(i);
                    width += i.width();
                }
            }
            if (inputs.size() < 2) {
                dense(pick());
                return;
            }
            String name = "merge" + counter++;
            Item[] in = inputs.toArray(new Item[0]);
            b.addVertex(name, new MergeVertex(), names(in));
            add(name, width, "Merge", in);
        }

        private void outputs() {
            int outputs = 1 + r.nextInt(2);
            List<Item> unconsumed = new ArrayList<>();
            for (Item i : pool) {
                if (!uses.containsKey(i.name())) {
                    unconsumed.add(i);
                }
            }
            Collections.shuffle(unconsumed, r);
            List<List<Item>> shares = new ArrayList<>();
            for (int k = 0; k < outputs; k++) {
                shares.add(new ArrayList<>());
            }
            for (int i = 0; i < unconsumed.size(); i++) {
                shares.get(i % outputs).add(unconsumed.get(i));
            }
            String[] outputNames = new String[outputs];
            for (int k = 0; k < outputs; k++) {
                List<Item> share = shares.get(k);
                Item source;
                if (share.isEmpty()) {
                    source = pick();
                    while (source.input() && pool.size() > 1) {
                        source = pick();
                    }
                } else if (share.size() == 1) {
                    source = share.get(0);
                } else {
                    String name = "outmerge" + k;
                    Item[] in = share.toArray(new Item[0]);
                    b.addVertex(name, new MergeVertex(), names(in));
                    int width = share.stream().mapToInt(Item::width).sum();
                    source = add(name, width, "Merge", in);
                }
                LossFunction loss = LOSSES[r.nextInt(LOSSES.length)];
                Activation activation = loss == LossFunction.MSE || loss == LossFunction.L2 ? Activation.IDENTITY
                        : loss == LossFunction.XENT ? Activation.SIGMOID : Activation.SOFTMAX;
                int width = 2 + r.nextInt(2);
                outputNames[k] = "out" + k;
                b.addLayer(outputNames[k], GraphNets.output(loss, activation, width), source.name());
                add(outputNames[k], width, "Output[" + width + ", " + activation.name().toLowerCase() + " + "
                        + loss.name().toLowerCase() + "]", source);
            }
            b.setOutputs(outputNames);
        }
    }
}
