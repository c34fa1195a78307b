// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.internal.graph.Node;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * What the second-order pass needs of one ComputationGraph vertex without parameters in one
 * training step: the shapes of its inputs and output (batch axis first) and, for kinds whose
 * Jacobian depends on them, copies of its inputs.
 */
public final class VertexRecord {

    private final Node node;
    private final VertexDerivatives kind;
    private final long[][] inputShapes;
    private final INDArray[] inputs;
    private final long[] outputShape;

    /**
     * @param node the vertex's node
     * @param kind its kind
     * @param inputShapes the shape of every input
     * @param inputs copies of the inputs, or null where the kind does not need them
     * @param outputShape the shape of the output
     */
    public VertexRecord(Node node, VertexDerivatives kind, long[][] inputShapes, INDArray[] inputs,
                        long[] outputShape) {
        this.node = node;
        this.kind = kind;
        this.inputShapes = inputShapes;
        this.inputs = inputs;
        this.outputShape = outputShape.clone();
    }

    /** @return the node */
    public Node node() {
        return node;
    }

    /** @return the DL4J vertex */
    public GraphVertex vertex() {
        return node.vertex();
    }

    /** @return the kind */
    public VertexDerivatives kind() {
        return kind;
    }

    /**
     * @param i an input slot
     * @return the shape of that input, batch axis first
     */
    public long[] inputShape(int i) {
        return inputShapes[i].clone();
    }

    /**
     * @param i an input slot
     * @return a copy of that input (only for kinds that need values)
     */
    public INDArray input(int i) {
        if (inputs == null || inputs[i] == null) {
            throw new IllegalStateException(kind.kindName() + " did not record its inputs");
        }
        return inputs[i];
    }

    /** @return the number of inputs */
    public int inputCount() {
        return inputShapes.length;
    }

    /** @return the output shape, batch axis first */
    public long[] outputShape() {
        return outputShape.clone();
    }

    /** @return the number of examples */
    public long batchSize() {
        return outputShape[0];
    }

    /** @return output features per example */
    public long outputFeatures() {
        return Columns.features(outputShape);
    }

    /** @return input features per example, summed over the inputs */
    public long inputFeatures() {
        long f = 0;
        for (long[] s : inputShapes) {
            f += Columns.features(s);
        }
        return f;
    }
}
