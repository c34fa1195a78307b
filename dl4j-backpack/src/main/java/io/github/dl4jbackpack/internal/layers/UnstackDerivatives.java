// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.UnstackVertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * DL4J's {@code UnstackVertex}: rows {@code [from·N, (from + 1)·N)} of an input stacked
 * {@code stackSize} times. The Jacobian transpose puts every column into those rows of the stacked
 * input, zero elsewhere. An example then has parts in several rows of the stacked batch, so the
 * columns must span the batch first ({@link #requiresSpanningColumns}): the copies of one example,
 * reached through several unstack vertices, then sum into one column, which the layers between sum
 * over rows before squaring (docs/math.md#graphs).
 */
public final class UnstackDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "UnstackVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == UnstackVertex.class;
    }

    @Override
    public boolean requiresSpanningColumns() {
        return true;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        long from = VertexSettings.<Number>read(UnstackVertex.class, record.vertex(), "from").longValue();
        long rows = record.outputShape()[0];
        long v = columns.size(0) / rows;
        long[] inShape = record.inputShape(0);
        long features = columns.length() / columns.size(0);
        INDArray out = Nd4j.zeros(columns.dataType(), inShape[0], v, features);
        out.get(NDArrayIndex.interval(from * rows, (from + 1) * rows)).assign(columns.reshape('c', rows, v, features));
        return new INDArray[] {out.reshape('c', Columns.withRows(inShape[0] * v, inShape))};
    }
}
