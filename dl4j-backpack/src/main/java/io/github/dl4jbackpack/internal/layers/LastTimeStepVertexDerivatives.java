// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.rnn.LastTimeStepVertex;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * DL4J's {@code LastTimeStepVertex}: {@code [N, H, T] → [N, H]}, each sequence's output at its last real
 * step (the last step of its feature mask, the last step without one), as DL4J's forward step recorded
 * them. The Jacobian transpose places a column at that step and zeros elsewhere.
 */
public final class LastTimeStepVertexDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "LastTimeStepVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == LastTimeStepVertex.class;
    }

    @Override
    public boolean supportsSequences(GraphVertex vertex) {
        return true;
    }

    /** {@inheritDoc} Columns {@code [N·V, H]} (row {@code n·V + v} of sequence n) to {@code [N·V, H, T]}. */
    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        long[] shape = record.inputShape(0);
        long n = shape[0];
        long steps = shape[2];
        int[] recorded = VertexSettings.read(LastTimeStepVertex.class, record.vertex(), "fwdPassTimeSteps");
        long[] last = new long[(int) n];
        for (int i = 0; i < n; i++) {
            last[i] = recorded == null ? steps - 1 : recorded[i];
        }
        INDArray placed = LastTimeStepKind.placedAtSteps(columns, last, steps);
        return new INDArray[] {placed};
    }
}
