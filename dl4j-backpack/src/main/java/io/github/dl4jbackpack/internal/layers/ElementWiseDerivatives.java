// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.impl.ElementWiseVertex.Op;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.ElementWiseVertex;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.CustomOp;
import org.nd4j.linalg.api.ops.DynamicCustomOp;
import org.nd4j.linalg.factory.Nd4j;


/**
 * DL4J's {@code ElementWiseVertex} (docs/math.md#graphs): Add, Subtract and Average are linear;
 * Max routes each element to the input DL4J picks (its own {@code mergemaxindex} operation, ties
 * included), piecewise linear; Product {@code Π_i x_i} has the Jacobian {@code diag(Π_{j≠i} x_j)}
 * w.r.t. input i. Inputs of different shapes (DL4J's broadcast case) are not supported.
 * Product's Hessian residual is not implemented yet, so DiagHessian refuses it.
 */
public final class ElementWiseDerivatives implements VertexDerivatives {

    @Override
    public String kindName() {
        return "ElementWiseVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == ElementWiseVertex.class;
    }

    /** @return the vertex's operation (DL4J keeps it in a private field without accessor) */
    static Op op(GraphVertex vertex) {
        return VertexSettings.read(ElementWiseVertex.class, vertex, "op");
    }

    @Override
    public String secondOrderUnsupported(GraphVertex vertex, boolean hessian) {
        if (hessian && op(vertex) == Op.Product && vertex.getNumInputArrays() > 2) {
            return "the Hessian residual of an elementwise Product of more than two inputs is not implemented "
                    + "(two inputs are; DiagGGN, KFAC and KFLR go through any)";
        }
        return null;
    }

    @Override
    public boolean hasResidual(GraphVertex vertex) {
        return op(vertex) == Op.Product;
    }

    /**
     * Product {@code y = a ⊙ b}: per element the residual w.r.t. {@code (a_f, b_f)} is
     * {@code ε_f [[0, 1], [1, 0]] = |ε_f| (u uᵀ − w wᵀ)} with {@code u = (1, s)/√2},
     * {@code w = (1, −s)/√2}, {@code s = sgn ε_f} (docs/math.md#graphs).
     */
    @Override
    public java.util.List<ResidualPart> residual(VertexRecord record, INDArray epsilon) {
        if (op(record.vertex()) != Op.Product || record.inputCount() != 2) {
            return java.util.List.of();
        }
        INDArray magnitude = org.nd4j.linalg.ops.transforms.Transforms.sqrt(
                org.nd4j.linalg.ops.transforms.Transforms.abs(epsilon, true), false).muli(Math.sqrt(0.5));
        INDArray signed = org.nd4j.linalg.ops.transforms.Transforms.sign(epsilon, true).muli(magnitude);
        return java.util.List.of(VertexDerivatives.diagonal(1.0, new INDArray[] {magnitude, signed}),
                VertexDerivatives.diagonal(-1.0, new INDArray[] {magnitude, signed.neg()}));
    }

    @Override
    public boolean needsInputValues() {
        return true;
    }

    /** {@inheritDoc} Elementwise, whatever the rank: time series too. */
    @Override
    public boolean supportsSequences(GraphVertex vertex) {
        return true;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        int k = record.inputCount();
        for (int i = 0; i < k; i++) {
            if (!java.util.Arrays.equals(record.inputShape(i), record.outputShape())) {
                throw new IllegalStateException("ElementWiseVertex \"" + record.node().name() + "\" broadcasts inputs of "
                        + "different shapes, which is not supported");
            }
        }
        INDArray[] out = new INDArray[k];
        Op op = op(record.vertex());
        if (k == 1) {
            out[0] = columns;
            return out;
        }
        switch (op) {
            case Add:
                for (int i = 0; i < k; i++) {
                    out[i] = columns;
                }
                return out;
            case Average:
                INDArray share = columns.div(k);
                for (int i = 0; i < k; i++) {
                    out[i] = share;
                }
                return out;
            case Subtract:
                out[0] = columns;
                out[1] = columns.neg();
                return out;
            case Product:
                for (int i = 0; i < k; i++) {
                    INDArray others = null;
                    for (int j = 0; j < k; j++) {
                        if (j != i) {
                            INDArray x = record.input(j);
                            others = others == null ? x.dup() : others.muli(x);
                        }
                    }
                    out[i] = Columns.timesPerExample(columns, others);
                }
                return out;
            case Max:
                INDArray[] inputs = new INDArray[k];
                for (int i = 0; i < k; i++) {
                    inputs[i] = record.input(i);
                }
                INDArray index = Nd4j.createUninitialized(DataType.INT, inputs[0].shape(), 'c');
                CustomOp max = DynamicCustomOp.builder("mergemaxindex").addInputs(inputs).addOutputs(index)
                        .callInplace(false).build();
                Nd4j.getExecutioner().exec(max);
                for (int i = 0; i < k; i++) {
                    INDArray chosen = index.eq(i).castTo(columns.dataType());
                    out[i] = Columns.timesPerExample(columns, chosen);
                }
                return out;
            default:
                throw new IllegalStateException("unknown elementwise operation " + op);
        }
    }
}
