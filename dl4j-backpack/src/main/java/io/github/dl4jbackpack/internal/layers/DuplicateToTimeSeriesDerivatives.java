// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.rnn.DuplicateToTimeSeriesVertex;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * DL4J's {@code DuplicateToTimeSeriesVertex}: {@code [N, H] → [N, H, T]}, the same vector at every step
 * (masked or not, as DL4J's forward step copies it). The Jacobian transpose sums a column over the steps.
 */
public final class DuplicateToTimeSeriesDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "DuplicateToTimeSeriesVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == DuplicateToTimeSeriesVertex.class;
    }

    @Override
    public boolean supportsSequences(GraphVertex vertex) {
        return true;
    }

    /** {@inheritDoc} Columns {@code [R, H, T]} to {@code [R, H]}. */
    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        return new INDArray[] {columns.sum(2)};
    }
}
