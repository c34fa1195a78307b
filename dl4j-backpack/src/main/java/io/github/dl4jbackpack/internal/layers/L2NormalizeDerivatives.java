// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.L2NormalizeVertex;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.lang.reflect.Field;

/**
 * DL4J's {@code L2NormalizeVertex} {@code y = x / r}, {@code r = max(‖x‖, ε)} over all features of
 * an example. Its Jacobian is symmetric, {@code J = I/r − x xᵀ/max(r³, ε)} (DL4J's own backward
 * formula); its Hessian residual is not implemented yet, so DiagHessian refuses it.
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
        try {
            Field f = L2NormalizeVertex.class.getDeclaredField(name);
            f.setAccessible(true);
            return f.get(vertex);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot read " + name + " of " + vertex.getVertexName(), e);
        }
    }

    @Override
    public String secondOrderUnsupported(GraphVertex vertex, boolean hessian) {
        int[] dimension = (int[]) field(vertex, "dimension");
        if (dimension != null && dimension.length > 0 && !(dimension.length == 1 && dimension[0] == 1)) {
            return "normalising over dimensions " + java.util.Arrays.toString(dimension) + " is not supported "
                    + "(the default, all features of an example, is)";
        }
        if (hessian) {
            return "the Hessian residual of L2 normalisation is not implemented yet (DiagGGN, KFAC and KFLR go "
                    + "through it)";
        }
        return null;
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
