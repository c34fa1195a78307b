// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.ScaleVertex;
import org.deeplearning4j.nn.graph.vertex.impl.ShiftVertex;
import org.nd4j.linalg.api.ndarray.INDArray;


/**
 * DL4J's {@code ScaleVertex} ({@code y = s·x}: Jacobian {@code s I}) and {@code ShiftVertex}
 * ({@code y = x + c}: Jacobian {@code I}).
 */
public final class ScaleShiftDerivatives implements VertexDerivatives {

    private final Class<? extends GraphVertex> type;

    /** @param type {@code ScaleVertex} or {@code ShiftVertex} */
    public ScaleShiftDerivatives(Class<? extends GraphVertex> type) {
        this.type = type;
    }

    @Override
    public String kindName() {
        return type.getSimpleName();
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == type;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        if (type == ShiftVertex.class) {
            return new INDArray[] {columns};
        }
        double scale = VertexSettings.<Double>read(ScaleVertex.class, record.vertex(), "scaleFactor");
        return new INDArray[] {columns.mul(scale)};
    }
}
