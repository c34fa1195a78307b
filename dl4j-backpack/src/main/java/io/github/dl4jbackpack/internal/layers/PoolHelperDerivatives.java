// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.PoolHelperVertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * DL4J's {@code PoolHelperVertex} (Keras GoogLeNet import): drops the first row and column of an
 * NCHW activation; the Jacobian transpose pads them with zeros.
 */
public final class PoolHelperDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "PoolHelperVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == PoolHelperVertex.class;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        long[] in = record.inputShape(0);
        INDArray out = Nd4j.zeros(columns.dataType(), Columns.withRows(columns.size(0), in));
        out.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(1, in[2]), NDArrayIndex.interval(1, in[3]))
                .assign(columns);
        return new INDArray[] {out};
    }
}
