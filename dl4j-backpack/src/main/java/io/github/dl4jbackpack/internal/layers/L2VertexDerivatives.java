// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.L2Vertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.lang.reflect.Field;

/**
 * DL4J's {@code L2Vertex}: the distance {@code d = ‖a − b‖} of two inputs per example, output
 * {@code [N, 1]}. Jacobian w.r.t. a: {@code (a − b)ᵀ / max(d, ε)}, w.r.t. b its negative (DL4J's own
 * formula); its Hessian residual is not implemented yet, so DiagHessian refuses it.
 */
public final class L2VertexDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "L2Vertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == L2Vertex.class;
    }

    @Override
    public boolean needsInputValues() {
        return true;
    }

    @Override
    public String secondOrderUnsupported(GraphVertex vertex, boolean hessian) {
        return hessian ? "the Hessian residual of the L2 distance is not implemented yet (DiagGGN, KFAC and KFLR go "
                + "through it)" : null;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        double eps;
        try {
            Field f = L2Vertex.class.getDeclaredField("eps");
            f.setAccessible(true);
            eps = f.getDouble(record.vertex());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot read eps of " + record.vertex().getVertexName(), e);
        }
        INDArray diff = record.input(0).castTo(columns.dataType()).sub(record.input(1).castTo(columns.dataType()));
        long n = diff.size(0);
        INDArray flat = diff.dup('c').reshape('c', n, diff.length() / n);
        INDArray d = flat.norm2(1);
        Transforms.max(d, eps, false);
        INDArray unit = flat.divColumnVector(d.reshape(n, 1));
        long v = columns.size(0) / n;
        // columns [N·V, 1]: column (n, v) times (a − b)_n / d_n
        INDArray a = Columns.repeatPerColumn(unit, v).reshape('c', n * v, flat.size(1))
                .mulColumnVector(columns.reshape(n * v, 1));
        INDArray shaped = a.reshape('c', Columns.withRows(n * v, record.inputShape(0)));
        return new INDArray[] {shaped, shaped.neg()};
    }
}
