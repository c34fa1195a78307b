package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * What the library knows about the derivatives of one kind of ComputationGraph vertex without
 * parameters (docs/math.md#graphs). One implementation per kind; {@link VertexKinds} maps DL4J
 * vertices to them. Vertices have no parameters, so only their input Jacobian-transpose products
 * (and, for nonlinear kinds, Hessian residuals) matter; first-order extensions never need them.
 */
public interface VertexDerivatives {

    /** @return a human-readable name of the kind, for messages */
    String kindName();

    /** @return whether this DL4J vertex is of this kind */
    boolean matches(GraphVertex vertex);

    /**
     * @param vertex a vertex of this kind
     * @param hessian whether Hessian residuals are needed
     * @return why a second-order pass cannot go through this vertex, or null
     */
    default String secondOrderUnsupported(GraphVertex vertex, boolean hessian) {
        return null;
    }

    /** @return whether the Jacobian depends on the input values (they are then recorded) */
    default boolean needsInputValues() {
        return false;
    }

    /**
     * Jacobian-transpose products w.r.t. every input.
     *
     * @param record the vertex's record
     * @param columns columns at the vertex output, {@code [N·V, *outShape]}, example-major
     * @return the columns at each input, {@code [N·V, *inShape_i]}
     */
    INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns);

    /**
     * Sizes chunks of columns: an upper bound on the elements, per column and example, that
     * {@link #inputJacobianTranspose} allocates.
     *
     * @param record the vertex's record
     * @return elements per column and example
     */
    default long scratchFeatures(VertexRecord record) {
        return 2 * (record.inputFeatures() + record.outputFeatures());
    }
}
