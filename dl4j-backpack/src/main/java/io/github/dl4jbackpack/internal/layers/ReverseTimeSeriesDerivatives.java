// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.graph.vertex.BaseGraphVertex;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.rnn.ReverseTimeSeriesVertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * DL4J's {@code ReverseTimeSeriesVertex}: {@code [N, H, T] → [N, H, T]}, each sequence's steps in reverse order
 * along the third axis. With the name of a network input, the real steps of that input's feature mask are
 * reversed among themselves and the masked steps are zero ({@code i}-th real step from the start to the
 * {@code i}-th from the end); without one, whole arrays are reversed. The map is a permutation of the real
 * steps (and zero elsewhere), symmetric in its pairs, so its Jacobian transpose is the same reversal of the
 * columns with the same mask, as DL4J's backward step does. The mask is the graph's, read when the columns
 * pass (during the training step, while DL4J keeps it).
 */
public final class ReverseTimeSeriesDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "ReverseTimeSeriesVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == ReverseTimeSeriesVertex.class;
    }

    @Override
    public boolean supportsSequences(GraphVertex vertex) {
        return true;
    }

    /** {@inheritDoc} Columns {@code [N·V, H, T]} reversed per sequence over its real steps. */
    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        long n = record.batchSize();
        long steps = columns.size(2);
        long repeats = columns.size(0) / n;
        INDArray mask = mask(record.vertex());
        INDArray out = Nd4j.zeros(columns.dataType(), columns.shape());
        for (int i = 0; i < n; i++) {
            long[] real = realSteps(mask, i, steps);
            for (int k = 0; k < real.length; k++) {
                long from = real[real.length - 1 - k];
                out.get(NDArrayIndex.interval(i * repeats, (i + 1) * repeats), NDArrayIndex.all(),
                        NDArrayIndex.point(real[k])).assign(columns.get(NDArrayIndex.interval(i * repeats,
                        (i + 1) * repeats), NDArrayIndex.all(), NDArrayIndex.point(from)));
            }
        }
        return new INDArray[] {out};
    }

    /** @return the feature mask of the network input the vertex names, or null (whole arrays reversed) */
    private static INDArray mask(GraphVertex vertex) {
        int input = VertexSettings.<Integer>read(ReverseTimeSeriesVertex.class, vertex, "inputIdx");
        if (input < 0) {
            return null;
        }
        ComputationGraph graph = VertexSettings.read(BaseGraphVertex.class, vertex, "graph");
        INDArray[] masks = graph.getInputMaskArrays();
        return masks == null ? null : masks[input];
    }

    /** @return the steps of sequence i whose mask is nonzero (every step without a mask), in order */
    private static long[] realSteps(INDArray mask, int i, long steps) {
        return java.util.stream.LongStream.range(0, steps).filter(t -> mask == null || mask.getDouble(i, t) != 0)
                .toArray();
    }
}
