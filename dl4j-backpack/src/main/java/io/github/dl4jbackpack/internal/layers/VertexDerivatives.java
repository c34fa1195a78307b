// SPDX-License-Identifier: Apache-2.0
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
     * One signed part of a vertex's Hessian residual {@code Σ_f ε_f ∇²y_f} w.r.t. its inputs, in
     * factored form: column f (one per output feature) lives at every input at once, at input i it
     * is {@code scale_i[n] ⊙ e_f} (a unit vector at feature f scaled per example); the part adds
     * {@code sign · Σ_f c_f c_fᵀ}.
     *
     * @param sign +1 or −1
     * @param scales per input slot, {@code [N, *inShape_i]} (elementwise vertices: the output shape)
     */
    record ResidualPart(double sign, INDArray[] scales) {
    }

    /**
     * @param record the vertex's record
     * @param epsilon {@code ∂L/∂y} of the mean loss at the vertex output, {@code [N, *outShape]}
     * @return the signed parts of the Hessian residual (empty for vertices that are linear or piecewise
     *     linear in their inputs)
     */
    default java.util.List<ResidualPart> residual(VertexRecord record, INDArray epsilon) {
        return java.util.List.of();
    }

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
