// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.L2Vertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.ops.transforms.Transforms;


/**
 * DL4J's {@code L2Vertex}: the distance {@code d = ‖a − b‖} of two inputs per example, output
 * {@code [N, 1]}. Jacobian w.r.t. a: {@code (a − b)ᵀ / max(d, ε)}, w.r.t. b its negative (DL4J's own
 * formula). Its Hessian residual w.r.t. {@code (a, b)} is {@code (ε/d) [[P, −P], [−P, P]]} with the
 * projection {@code P = I − u uᵀ}, {@code u = (a − b)/d}: as {@code P Pᵀ = P}, its factor columns are
 * {@code √(|ε|/d) (P e_f, −P e_f)}, positive or negative with the sign of ε (docs/math.md#graphs).
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

    private static double eps(GraphVertex vertex) {
        return VertexSettings.<Double>read(L2Vertex.class, vertex, "eps");
    }

    @Override
    public boolean hasResidual(GraphVertex vertex) {
        return true;
    }

    @Override
    public java.util.List<ResidualPart> residual(VertexRecord record, INDArray epsilon) {
        double eps = eps(record.vertex());
        INDArray diff = record.input(0).castTo(epsilon.dataType()).sub(record.input(1).castTo(epsilon.dataType()));
        long n = diff.size(0);
        long f = diff.length() / n;
        INDArray flat = diff.dup('c').reshape('c', n, f);
        INDArray d = flat.norm2(1);
        INDArray active = d.gt(eps).castTo(diff.dataType());
        INDArray safeD = Transforms.max(d, eps, true);
        INDArray u = flat.divColumnVector(safeD.reshape(n, 1));
        INDArray e = epsilon.reshape(n);
        long[] shape = record.inputShape(0);
        java.util.List<ResidualPart> parts = new java.util.ArrayList<>();
        for (double sign : new double[] {1.0, -1.0}) {
            INDArray weight = Transforms.sqrt(Transforms.relu(e.mul(sign), false).divi(safeD), false).muli(active);
            parts.add(new ResidualPart() {
                @Override
                public double sign() {
                    return sign;
                }

                @Override
                public long columns() {
                    return f;
                }

                @Override
                public INDArray[] columns(long from, long to) {
                    INDArray at = Columns.projectionColumns(weight, new INDArray[] {u}, from, to)
                            .reshape('c', Columns.withRows(n * (to - from), shape));
                    return new INDArray[] {at, at.neg()};
                }
            });
        }
        return parts;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        double eps = eps(record.vertex());
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
