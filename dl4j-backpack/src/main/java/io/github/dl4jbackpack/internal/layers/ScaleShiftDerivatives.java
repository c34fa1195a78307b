// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.ScaleVertex;
import org.deeplearning4j.nn.graph.vertex.impl.ShiftVertex;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.lang.reflect.Field;

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
        try {
            Field f = ScaleVertex.class.getDeclaredField("scaleFactor");
            f.setAccessible(true);
            return new INDArray[] {columns.mul(f.getDouble(record.vertex()))};
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot read the scale of " + record.vertex().getVertexName(), e);
        }
    }
}
