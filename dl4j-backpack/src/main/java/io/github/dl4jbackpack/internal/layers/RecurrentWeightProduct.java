// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.function.UnaryOperator;

/**
 * The part of a recurrent layer's Hessian that its recurrent weights {@code R [H, G]} add by multiplying a
 * state that depends on them: the pre-activations {@code z_t = … + h_{t−1} R} hold the product of
 * {@code R} and {@code h_{t−1}(R)}, whose second derivative, weighted with {@code δ_t = ∂L/∂z_t}, adds
 * {@code 2 Σ_u δ_{u+1,m} ∂h_{u,j}/∂R_jm} to the diagonal of {@code R_jm} and nothing to any other parameter's
 * (docs/math.md#hessian-through-recurrent-layers). With {@code ∂h_{u,j}/∂R_jm = Σ_{s≤u} (∂h_{u,j}/∂z_{s,m})
 * h_{s−1,j}}, column {@code (j, u)} (feature {@code j·T + u}) is the unit vector {@code e_j} at state
 * {@code h_u} back-propagated through time; a chunk of columns touches the rows {@code j} of its units only,
 * which are gathered outside the scratch memory and added once every chunk is done.
 */
final class RecurrentWeightProduct implements LayerDerivatives.InternalResidualPart {
    private final UnaryOperator<INDArray> backward;
    private final INDArray delta;
    private final INDArray previousOutput;
    private final String key;
    private final long parameterColumns;
    private INDArray gathered;

    /**
     * @param backward back-propagation through time of gradients at the states {@code [R, H, T]} (R = N·V, row
     *     {@code n·V + v}) to the pre-activations {@code [R, G, T]}
     * @param delta {@code δ = ∂L/∂z} of the mean loss, {@code [N, G, T]}
     * @param previousOutput {@code h_{t−1}} as the pre-activations use it, {@code [N, H, T]}, zero at t = 0
     * @param key the name of the parameter whose first {@code G} columns are {@code R}
     * @param parameterColumns the parameter's columns, {@code G} or more (GravesLSTM keeps its peephole weights
     *     after {@code R})
     */
    RecurrentWeightProduct(UnaryOperator<INDArray> backward, INDArray delta, INDArray previousOutput, String key,
                           long parameterColumns) {
        this.backward = backward;
        this.delta = delta;
        this.previousOutput = previousOutput;
        this.key = key;
        this.parameterColumns = parameterColumns;
    }

    @Override
    public double sign() {
        return 1.0;
    }

    @Override
    public long columns() {
        return delta.size(2) < 2 ? 0 : previousOutput.size(1) * delta.size(2);
    }

    @Override
    public INDArray push(long from, long to, CurvatureSink sink) {
        if (sink == null) {
            return null;
        }
        DataType type = delta.dataType();
        long n = delta.size(0);
        long gates = delta.size(1);
        long units = previousOutput.size(1);
        long length = delta.size(2);
        long v = to - from;
        long firstUnit = from / length;
        long unitCount = (to - 1) / length + 1 - firstUnit;
        INDArray unitOf = Nd4j.zeros(type, v, unitCount);
        INDArray unitRows = Nd4j.zeros(type, v, units * length);
        INDArray nextStep = Nd4j.zeros(type, v, length);
        for (long c = 0; c < v; c++) {
            long feature = from + c;
            long u = feature % length;
            unitOf.putScalar(c, feature / length - firstUnit, 1.0);
            unitRows.putScalar(c, feature, 1.0);
            if (u + 1 < length) {
                nextStep.putScalar(c, u + 1, 1.0);
            }
        }
        INDArray epsilon = unitRows.reshape('c', 1, v * units * length).broadcast(n, v * units * length);
        // ∂h_{u,j}/∂z_{s,m}, [N, V, G(m), T(s)]
        INDArray sensitivity = backward.apply(epsilon.reshape('c', n * v, units, length))
                .reshape('c', n, v, gates, length);
        // h_{s−1,j} of the column's unit j, [N, V, T]
        INDArray chunkUnits = previousOutput.get(NDArrayIndex.all(),
                NDArrayIndex.interval(firstUnit, firstUnit + unitCount), NDArrayIndex.all());
        INDArray previous = DenseDerivatives.gemm(unitOf, false,
                chunkUnits.permute(1, 0, 2).dup('c').reshape('c', unitCount, n * length), false)
                .reshape('c', v, n, length).permute(1, 0, 2).dup('c');
        // ∂h_{u,j}/∂R_jm = Σ_s sensitivity · h_{s−1,j}, [N, V, G]
        INDArray derivative = sensitivity.muli(previous.reshape('c', n, v, 1, length)
                .broadcast(n, v, gates, length)).sum(3);
        // δ_{u+1,m}, [N, V, G]
        INDArray following = DenseDerivatives.gemm(delta.dup('c').reshape('c', n * gates, length), false,
                nextStep, true).reshape('c', n, gates, v).permute(0, 2, 1);
        INDArray weighted = derivative.muli(following).muli(2.0);
        // rows j of the chunk's units: [N, J, G]
        INDArray rows = DenseDerivatives.gemm(unitOf, true,
                weighted.permute(1, 0, 2).dup('c').reshape('c', v, n * gates), false)
                .reshape('c', unitCount, n, gates).permute(1, 0, 2);
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            if (gathered == null) {
                gathered = sink.perExample() ? Nd4j.zeros(type, n, units, parameterColumns)
                        : Nd4j.zeros(type, units, parameterColumns);
            }
            INDArray target = sink.perExample()
                    ? gathered.get(NDArrayIndex.all(), NDArrayIndex.interval(firstUnit, firstUnit + unitCount),
                    NDArrayIndex.interval(0, gates))
                    : gathered.get(NDArrayIndex.interval(firstUnit, firstUnit + unitCount), NDArrayIndex.interval(0, gates));
            target.addi(sink.perExample() ? rows : rows.sum(0));
        }
        return null;
    }

    @Override
    public void finish(CurvatureSink sink) {
        if (gathered != null) {
            sink.add(key, gathered);
            gathered = null;
        }
    }
}
