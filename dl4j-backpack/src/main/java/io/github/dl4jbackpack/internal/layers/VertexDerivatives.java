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
     * @return whether the curvature extensions support it in a network trained on sequence data (its
     *     derivatives know time axes and masks, or it is shape-agnostic)
     */
    default boolean supportsSequences(GraphVertex vertex) {
        return false;
    }

    /**
     * @param vertex a vertex of this kind
     * @param hessian whether Hessian residuals are needed
     * @return why a second-order pass cannot go through this vertex, or null
     */
    default String secondOrderUnsupported(GraphVertex vertex, boolean hessian) {
        return null;
    }

    /**
     * @return whether the columns reaching this vertex must span the batch (the pass spreads columns
     *     of one example each before its Jacobian transpose): an example's parts end up in several
     *     rows of the vertex's input
     */
    default boolean requiresSpanningColumns() {
        return false;
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
     * factored form {@code sign · Σ_v c_v c_vᵀ}: V columns per example, each living at all the
     * vertex's inputs at once, produced in ranges so that a chunk of them fits the memory budget.
     */
    interface ResidualPart {

        /** @return +1 or −1 */
        double sign();

        /** @return the number V of columns per example */
        long columns();

        /**
         * @return whether the columns span the batch (each has a part at every example, example m's part
         *     of column j at row {@code m·V + j}) rather than belonging to one example each
         */
        default boolean spansBatch() {
            return false;
        }

        /**
         * @param from first column
         * @param to end of the range (exclusive)
         * @return per input slot, columns {@code [from, to)} of every example, folded
         *     {@code [N·(to − from), *inShape_i]} (example-major)
         */
        INDArray[] columns(long from, long to);
    }

    /**
     * Residual columns that are unit vectors scaled per example: column f is
     * {@code scale_i[n] ⊙ e_f} at input i (elementwise vertices).
     *
     * @param sign +1 or −1
     * @param scales per input slot, {@code [N, *shape]}, all of the same shape
     * @return the part
     */
    static ResidualPart diagonal(double sign, INDArray[] scales) {
        return new ResidualPart() {
            @Override
            public double sign() {
                return sign;
            }

            @Override
            public long columns() {
                return Columns.features(scales[0].shape());
            }

            @Override
            public INDArray[] columns(long from, long to) {
                INDArray[] out = new INDArray[scales.length];
                for (int i = 0; i < scales.length; i++) {
                    long n = scales[i].size(0);
                    INDArray flat = scales[i].dup('c').reshape('c', n, columns());
                    out[i] = Columns.unitColumns(flat, from, to)
                            .reshape('c', Columns.withRows(n * (to - from), scales[i].shape()));
                }
                return out;
            }
        };
    }

    /**
     * @param vertex a vertex of this kind
     * @return whether {@link #residual} can be non-empty for it (the vertex is not piecewise linear)
     */
    default boolean hasResidual(GraphVertex vertex) {
        return false;
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
