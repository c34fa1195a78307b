// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.L2NormalizeVertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;


/**
 * DL4J's {@code L2NormalizeVertex} {@code y = x / r}, {@code r = max(‖x‖, ε)} over all features of
 * an example. Its Jacobian is symmetric, {@code J = I/r − x xᵀ/max(r³, ε)} (DL4J's own backward
 * formula). Its Hessian residual {@code ∇²_x(εᵀy) = (1/r²)[3(ε·y) y yᵀ − (ε·y) I − ε yᵀ − y εᵀ]}
 * is factored per example (docs/math.md#graphs): with {@code a = ε·y}, {@code b = ‖ε − a y‖} and
 * {@code u = (ε − a y)/b}, it is {@code −a/r²} on the complement of {@code span(y, u)} and
 * {@code (1/r²)[[0, −b], [−b, −a]]} on it, whose eigenvalues {@code μ± = (−a ± √(a² + 4b²))/2} have the
 * directions {@code −b y + μ u}. Where {@code ‖x‖ ≤ ε} DL4J's map is linear: no residual.
 */
public final class L2NormalizeDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "L2NormalizeVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == L2NormalizeVertex.class;
    }

    @Override
    public boolean needsInputValues() {
        return true;
    }

    private static Object field(GraphVertex vertex, String name) {
        return VertexSettings.read(L2NormalizeVertex.class, vertex, name);
    }

    @Override
    public String secondOrderUnsupported(GraphVertex vertex, boolean hessian) {
        int[] dimension = (int[]) field(vertex, "dimension");
        if (dimension != null && dimension.length > 0 && !(dimension.length == 1 && dimension[0] == 1)) {
            return "normalising over dimensions " + java.util.Arrays.toString(dimension) + " is not supported "
                    + "(the default, all features of an example, is)";
        }
        return null;
    }

    @Override
    public boolean hasResidual(GraphVertex vertex) {
        return true;
    }

    @Override
    public java.util.List<ResidualPart> residual(VertexRecord record, INDArray epsilon) {
        double eps = (Double) field(record.vertex(), "eps");
        INDArray x = record.input(0).castTo(epsilon.dataType());
        long n = x.size(0);
        long f = x.length() / n;
        INDArray flat = x.dup('c').reshape('c', n, f);
        INDArray g = epsilon.dup('c').reshape('c', n, f);
        INDArray r = flat.norm2(1);
        INDArray active = r.gt(eps).castTo(x.dataType());
        INDArray safeR = Transforms.max(r, eps, true);
        INDArray y = flat.divColumnVector(safeR.reshape(n, 1));
        INDArray a = g.mul(y).sum(1);
        INDArray orthogonal = g.sub(y.mulColumnVector(a.reshape(n, 1)));
        INDArray b = orthogonal.norm2(1);
        INDArray hasB = b.gt(1e-300).castTo(x.dataType());
        INDArray u = orthogonal.divColumnVector(Transforms.max(b, 1e-300, true).reshape(n, 1))
                .mulColumnVector(hasB.reshape(n, 1));
        INDArray r2 = safeR.mul(safeR);
        INDArray root = Transforms.sqrt(a.mul(a).addi(b.mul(b).muli(4.0)), true);
        INDArray muPlus = root.sub(a).divi(2.0);
        INDArray muMinus = root.add(a).negi().divi(2.0);
        INDArray complement = a.neg().divi(r2).muli(active);
        INDArray[] basis = {y, u};
        java.util.List<ResidualPart> parts = new java.util.ArrayList<>();
        for (double sign : new double[] {1.0, -1.0}) {
            INDArray weight = Transforms.sqrt(Transforms.relu(complement.mul(sign), false), false);
            INDArray mu = sign > 0 ? muPlus : muMinus;
            INDArray eigenWeight = Transforms.sqrt(Transforms.relu(mu.mul(sign), false), false).divi(safeR).muli(active);
            // direction −b y + μ u, normalised (zero where b = μ = 0)
            INDArray direction = y.mulColumnVector(b.neg().reshape(n, 1)).addi(u.mulColumnVector(mu.reshape(n, 1)));
            INDArray length = direction.norm2(1);
            direction.diviColumnVector(Transforms.max(length, 1e-300, true).reshape(n, 1))
                    .muliColumnVector(length.gt(0.0).castTo(x.dataType()).reshape(n, 1));
            INDArray eigenColumn = direction.mulColumnVector(eigenWeight.reshape(n, 1));
            long[] shape = record.inputShape(0);
            parts.add(new ResidualPart() {
                @Override
                public double sign() {
                    return sign;
                }

                @Override
                public long columns() {
                    return f + 1;
                }

                @Override
                public INDArray[] columns(long from, long to) {
                    INDArray out = Nd4j.zeros(x.dataType(), n, to - from, f);
                    long end = Math.min(to, f);
                    if (from < end) {
                        out.get(NDArrayIndex.all(), NDArrayIndex.interval(0, end - from), NDArrayIndex.all())
                                .assign(Columns.projectionColumns(weight, basis, from, end));
                    }
                    if (to > f) {
                        out.get(NDArrayIndex.all(), NDArrayIndex.point(f - from), NDArrayIndex.all()).assign(eigenColumn);
                    }
                    return new INDArray[] {out.reshape('c', Columns.withRows(n * (to - from), shape))};
                }
            });
        }
        return parts;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        double eps = (Double) field(record.vertex(), "eps");
        INDArray x = record.input(0).castTo(columns.dataType());
        long n = x.size(0);
        INDArray flat = x.dup('c').reshape('c', n, x.length() / n);
        INDArray norm = flat.norm2(1);
        INDArray norm3 = Transforms.pow(norm, 3.0, true);
        Transforms.max(norm, eps, false);
        Transforms.max(norm3, eps, false);
        // J s = s / r − x (x·s) / r³, per example
        INDArray dots = Columns.dotPerExample(columns, flat);
        long v = columns.size(0) / n;
        INDArray scaled = Columns.timesPerExampleScalar(columns, norm.rdiv(1.0));
        INDArray coefficients = dots.reshape('c', n, v).divColumnVector(norm3.reshape(n, 1)).reshape(n * v);
        INDArray xs = Columns.repeatPerColumn(flat, v).reshape('c', n * v, flat.size(1));
        INDArray correction = xs.mulColumnVector(coefficients.reshape(n * v, 1));
        return new INDArray[] {scaled.subi(correction.reshape('c', columns.shape()))};
    }
}
