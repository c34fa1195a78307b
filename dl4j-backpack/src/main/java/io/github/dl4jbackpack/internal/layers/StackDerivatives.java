// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.StackVertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * DL4J's {@code StackVertex}: its inputs stacked along the batch axis (rows {@code [Σ_{j<i} N_j,
 * Σ_{j≤i} N_j)} are input i's). The Jacobian transpose hands each input its rows of every column.
 * Below it, an example has a row in each input; the columns arriving here span the stacked batch
 * (docs/math.md#graphs), so each input receives columns that span its own batch.
 */
public final class StackDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "StackVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == StackVertex.class;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        long rows = record.outputShape()[0];
        long v = columns.size(0) / rows;
        long features = columns.length() / columns.size(0);
        INDArray byRow = columns.reshape('c', rows, v, features);
        INDArray[] out = new INDArray[record.inputCount()];
        long from = 0;
        for (int i = 0; i < out.length; i++) {
            long[] shape = record.inputShape(i);
            long n = shape[0];
            out[i] = byRow.get(NDArrayIndex.interval(from, from + n)).dup('c')
                    .reshape('c', Columns.withRows(n * v, shape));
            from += n;
        }
        return out;
    }
}
