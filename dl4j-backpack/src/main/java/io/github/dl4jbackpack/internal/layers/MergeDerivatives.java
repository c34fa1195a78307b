// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.MergeVertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * DL4J's {@code MergeVertex}: concatenation along its merge axis; the Jacobian transpose splits the
 * columns back into the inputs' slices.
 */
public final class MergeDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "MergeVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == MergeVertex.class;
    }

    /** @return the vertex's merge axis (DL4J keeps it in a private field without accessor) */
    private static int mergeAxis(GraphVertex vertex) {
        return VertexSettings.<Integer>read(MergeVertex.class, vertex, "mergeAxis");
    }

    @Override
    public String secondOrderUnsupported(GraphVertex vertex, boolean hessian) {
        return mergeAxis(vertex) == 0 ? "merging along the batch axis is not supported" : null;
    }

    /** {@inheritDoc} Concatenation along its axis, whatever the rank: time series too. */
    @Override
    public boolean supportsSequences(GraphVertex vertex) {
        return true;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        int axis = mergeAxis(record.vertex());
        INDArray[] out = new INDArray[record.inputCount()];
        long from = 0;
        for (int i = 0; i < out.length; i++) {
            long width = record.inputShape(i)[axis];
            INDArrayIndex[] idx = new INDArrayIndex[columns.rank()];
            for (int d = 0; d < idx.length; d++) {
                idx[d] = d == axis ? NDArrayIndex.interval(from, from + width) : NDArrayIndex.all();
            }
            out[i] = columns.get(idx).dup('c');
            from += width;
        }
        return out;
    }
}
