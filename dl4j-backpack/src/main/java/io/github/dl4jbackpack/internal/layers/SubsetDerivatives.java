// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.SubsetVertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;


/**
 * DL4J's {@code SubsetVertex}: the slice {@code [from, to]} (inclusive) of dimension 1; the
 * Jacobian transpose pads the columns with zeros.
 */
public final class SubsetDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "SubsetVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == SubsetVertex.class;
    }

    private static int field(GraphVertex vertex, String name) {
        return VertexSettings.<Integer>read(SubsetVertex.class, vertex, name);
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        int from = field(record.vertex(), "from");
        int to = field(record.vertex(), "to");
        INDArray out = Nd4j.zeros(columns.dataType(), Columns.withRows(columns.size(0), record.inputShape(0)));
        INDArrayIndex[] idx = new INDArrayIndex[out.rank()];
        for (int d = 0; d < idx.length; d++) {
            idx[d] = d == 1 ? NDArrayIndex.interval(from, to, true) : NDArrayIndex.all();
        }
        out.get(idx).assign(columns);
        return new INDArray[] {out};
    }
}
