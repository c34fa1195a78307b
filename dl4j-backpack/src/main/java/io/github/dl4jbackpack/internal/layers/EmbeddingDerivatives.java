// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingLayer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * DL4J's feed-forward {@code EmbeddingLayer}: input {@code [N, 1]} of row indices k_n into
 * {@code W [vocabulary, nOut]}, {@code z_n = W[k_n] + b}, then the layer's activation. It is the sequence
 * embedding with one step ({@link EmbeddingSequenceDerivatives}): {@code g_n(W) = e_{k_n} δ_nᵀ} is nonzero
 * only in row k_n, {@code ‖g_n(W)‖² = ‖δ_n‖²}, and every quantity is formed from the rows used
 * ({@link SparseRowsTerms}), never from {@code N × vocabulary} arrays except {@code BatchGrad}'s result.
 * Curvature: the squared parameter Jacobian-transpose products of the factor columns are formed from the
 * rows used as well ({@link #accumulateColumns}); only the per-example diagonals are {@code N × vocabulary}.
 */
public final class EmbeddingDerivatives implements LayerDerivatives {

    private final DenseDerivatives dense = new DenseDerivatives();

    @Override
    public String kindName() {
        return "EmbeddingLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == EmbeddingLayer.class;
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        return dense.unsupportedConfiguration(layer);
    }

    @Override
    public boolean hasParameters() {
        return true;
    }

    @Override
    public IActivation activation(Layer layer) {
        return ElementwiseActivations.plain(((BaseLayer) layer.conf().getLayer()).getActivationFn());
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return ElementwiseActivations.unsupported(activation(layer), hessian);
    }

    /** {@inheritDoc} The columns {@code [N, V, nOut]} are the sequence case's with one step. */
    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        accumulateColumns(record, factor.reshape('c', factor.size(0), factor.size(1), 1, factor.size(2)), sign, sink);
    }

    /** {@inheritDoc} The residual {@code [N, nOut]} is the sequence case's with one step. */
    @Override
    public void accumulateResidual(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        accumulateResidualSteps(record, residual.reshape('c', residual.size(0), 1, residual.size(1)), sink);
    }

    /**
     * @param record an embedding layer's record (its input the row indices, N rows of T)
     * @return {@code k_nt} in row-major order {@code n·T + t}
     */
    private static long[] rows(RecordedLayer record) {
        // DL4J truncates the stored values to integers when it reads them
        INDArray input = record.input();
        return input.castTo(DataType.LONG).reshape('c', new long[] {input.length()}).toLongVector();
    }

    /**
     * Adds {@code sign · Σ_v (J_θᵀ s_nv)²} for columns at every step: column {@code s_nv} reads row v of
     * {@code W} at the steps whose index is v, so {@code J_Wᵀ s_nv} is nonzero in those rows only, row k being
     * {@code R_nvk = Σ_{t: k_nt = k} s_nvt}. The {@code R} are formed once per distinct (column, row) pair
     * (segment sums), squared, summed over the columns of each (example, row) pair, and added into the rows:
     * nothing but a per-example sink's result is {@code N × vocabulary}.
     *
     * @param record the layer's record
     * @param columns {@code [N, V, T, nOut]}
     * @param sign +1 or −1
     * @param sink where to add
     */
    static void accumulateColumns(RecordedLayer record, INDArray columns, double sign, CurvatureSink sink) {
        long n = columns.size(0);
        long v = columns.size(1);
        long steps = columns.size(2);
        long dim = columns.size(3);
        long vocabulary = record.layer().getParam(DenseDerivatives.W).size(0);
        long[] rows = rows(record);
        long[] keys = new long[Math.toIntExact(n * v * steps)];
        for (long e = 0; e < n; e++) {
            for (long c = 0; c < v; c++) {
                for (long t = 0; t < steps; t++) {
                    keys[(int) ((e * v + c) * steps + t)] = (e * v + c) * vocabulary + rows[(int) (e * steps + t)];
                }
            }
        }
        long[] pairs = SparseRowsTerms.distinctSorted(keys);
        long[] segment = new long[keys.length];
        for (int i = 0; i < keys.length; i++) {
            segment[i] = java.util.Arrays.binarySearch(pairs, keys[i]);
        }
        INDArray sums = SparseRowsTerms.sumsBySegment(columns.dup('c').reshape('c', keys.length, dim), segment,
                pairs.length);
        sums.muli(sums);
        // the squares of each (example, row) pair, or of each row, summed over the columns
        long[] targets = new long[pairs.length];
        for (int g = 0; g < pairs.length; g++) {
            long example = pairs[g] / vocabulary / v;
            long row = pairs[g] % vocabulary;
            targets[g] = sink.perExample() ? example * vocabulary + row : row;
        }
        long[] distinctTargets = SparseRowsTerms.distinctSorted(targets);
        long[] targetSegment = new long[targets.length];
        for (int g = 0; g < targets.length; g++) {
            targetSegment[g] = java.util.Arrays.binarySearch(distinctTargets, targets[g]);
        }
        INDArray squares = SparseRowsTerms.sumsBySegment(sums, targetSegment, distinctTargets.length).muli(sign);
        sink.add(DenseDerivatives.W, placedRows(squares, distinctTargets, sink.perExample() ? n : 0, vocabulary));
        if (record.layer().paramTable().containsKey(DenseDerivatives.B)) {
            INDArray bias = columns.sum(2);
            INDArray biasSquares = bias.muli(bias).sum(1).muli(sign);
            sink.add(DenseDerivatives.B, sink.perExample() ? biasSquares : biasSquares.sum(0));
        }
    }

    /**
     * Adds {@code diag(J_θᵀ diag(r_n) J_θ)} for a residual diagonal at every step: the input is one-hot, so
     * row k of {@code W} gets {@code Σ_{t: k_nt = k} r_nt} and the bias {@code Σ_t r_nt}.
     *
     * @param record the layer's record
     * @param residual {@code [N, T, nOut]}
     * @param sink where to add
     */
    static void accumulateResidualSteps(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        long n = residual.size(0);
        long steps = residual.size(1);
        long dim = residual.size(2);
        long vocabulary = record.layer().getParam(DenseDerivatives.W).size(0);
        long[] rows = rows(record);
        long[] keys = new long[rows.length];
        for (int i = 0; i < rows.length; i++) {
            keys[i] = sink.perExample() ? (i / steps) * vocabulary + rows[i] : rows[i];
        }
        long[] targets = SparseRowsTerms.distinctSorted(keys);
        long[] segment = new long[keys.length];
        for (int i = 0; i < keys.length; i++) {
            segment[i] = java.util.Arrays.binarySearch(targets, keys[i]);
        }
        INDArray sums = SparseRowsTerms.sumsBySegment(residual.dup('c').reshape('c', rows.length, dim), segment,
                targets.length);
        sink.add(DenseDerivatives.W, placedRows(sums, targets, sink.perExample() ? n : 0, vocabulary));
        if (record.layer().paramTable().containsKey(DenseDerivatives.B)) {
            INDArray bias = residual.sum(1);
            sink.add(DenseDerivatives.B, sink.perExample() ? bias : bias.sum(0));
        }
    }

    /**
     * @return distinct rows {@code [G, dim]} placed at their targets in {@code [vocabulary, dim]}, or, for N
     *     examples, at {@code n·vocabulary + row} in {@code [N, vocabulary, dim]}
     */
    private static INDArray placedRows(INDArray values, long[] targets, long examples, long vocabulary) {
        long dim = values.size(1);
        long total = (examples > 0 ? examples : 1) * vocabulary;
        INDArray out = Nd4j.zeros(values.dataType(), total, dim);
        if (targets.length > 0) {
            // the targets are distinct: each row receives one value
            org.nd4j.linalg.api.ops.impl.scatter.ScatterAdd place = new org.nd4j.linalg.api.ops.impl.scatter
                    .ScatterAdd(out, Nd4j.createFromArray(targets), values);
            place.addOutputArgument(out);
            Nd4j.exec(place);
        }
        return examples > 0 ? out.reshape('c', examples, vocabulary, dim) : out;
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return "the Kronecker factors of embeddings are not implemented yet";
    }

    /** The one step of each example: {@code δ [N, nOut]} is the sequence case's {@code [N, 1, nOut]}. */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        return terms(layer, input, outputGradient.reshape('c', outputGradient.size(0), 1, outputGradient.size(1)));
    }

    /**
     * @param layer an embedding layer (parameters {@code W [vocabulary, nOut]} and, with a bias, {@code b})
     * @param input the row indices as DL4J read them, N rows of T indices ({@code [N, T]}, {@code [N, 1, T]},
     *     {@code [N, 1]})
     * @param delta {@code δ = ∂L/∂z} of the mean loss, {@code [N, T, nOut]}
     * @return the terms of {@code g_n(W)[v] = Σ_{t: k_nt = v} δ_nt}, {@code g_n(b) = Σ_t δ_nt}
     */
    static FirstOrderTerms terms(Layer layer, INDArray input, INDArray delta) {
        // DL4J truncates the stored values to integers when it reads them
        long[] rows = input.castTo(DataType.LONG).reshape('c', new long[] {input.length()}).toLongVector();
        return new SparseRowsTerms(DenseDerivatives.W, layer.paramTable().containsKey(DenseDerivatives.B)
                ? DenseDerivatives.B : null, rows, delta, layer.getParam(DenseDerivatives.W).size(0));
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        throw new UnsupportedOperationException("an embedding layer's input (row indices) has no derivative");
    }
}
