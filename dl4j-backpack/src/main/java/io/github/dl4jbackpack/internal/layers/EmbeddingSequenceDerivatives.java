// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingSequenceLayer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * DL4J's {@code EmbeddingSequenceLayer}: input {@code [N, T]} or {@code [N, 1, T]} of row indices
 * {@code k_nt} into {@code W [vocabulary, nOut]}, {@code z_nt = W[k_nt] + b} (bias only with
 * {@code hasBias}), the layer's activation, output {@code [N, nOut, T]} (NCW) or {@code [N, T, nOut]}
 * (NWC, {@code outputDataFormat}). An example is a sequence: {@code g_n(W)[v] = Σ_{t: k_nt = v} δ_nt} is
 * nonzero only in the rows the sequence uses, {@code g_n(b) = Σ_t δ_nt} ({@link SparseRowsTerms}).
 *
 * <p>Masks: DL4J multiplies the activated output by the feature mask in the forward step and
 * {@code ∂L/∂z} by it in the backward step, in place in the array its activation returned, which is the one
 * recorded here, so masked steps have {@code δ_nt = 0} and contribute nothing. DL4J applies the activation,
 * and records {@code δ}, in the output layout. Curvature: the embedding's rows as in
 * {@link EmbeddingDerivatives#accumulateColumns}, with the columns times the feature mask.
 */
public final class EmbeddingSequenceDerivatives implements LayerDerivatives {

    private final EmbeddingDerivatives embedding = new EmbeddingDerivatives();

    @Override
    public String kindName() {
        return "EmbeddingSequenceLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == EmbeddingSequenceLayer.class;
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        return embedding.unsupportedConfiguration(layer);
    }

    @Override
    public boolean hasParameters() {
        return true;
    }

    @Override
    public IActivation activation(Layer layer) {
        return embedding.activation(layer);
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return embedding.secondOrderUnsupported(layer, hessian);
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return embedding.noKroneckerFactors(layer);
    }

    /** {@code δ} arrives in the output layout, {@code [N, nOut, T]} (NCW) or {@code [N, T, nOut]} (NWC). */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        boolean ncw = ((org.deeplearning4j.nn.conf.layers.EmbeddingSequenceLayer) layer.conf().getLayer())
                .getOutputFormat() == RNNFormat.NCW;
        return EmbeddingDerivatives.terms(layer, input, ncw ? outputGradient.permute(0, 2, 1) : outputGradient);
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        return embedding.inputJacobianTranspose(record, factor);
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return true;
    }

    private static boolean ncw(Layer layer) {
        return ((org.deeplearning4j.nn.conf.layers.EmbeddingSequenceLayer) layer.conf().getLayer()).getOutputFormat()
                == RNNFormat.NCW;
    }

    /**
     * @param values {@code [N, …, T]}-shaped per-step values in the output layout, with a column axis or not
     * @return them as {@code [N, …, T, nOut]} times the feature mask (DL4J masks the layer's output, so a masked
     *     step's output does not depend on the parameters)
     */
    private static INDArray stepsLast(RecordedLayer record, INDArray values, boolean columns) {
        INDArray out = ncw(record.layer()) ? (columns ? values.permute(0, 1, 3, 2) : values.permute(0, 2, 1))
                .dup('c') : values.dup('c');
        INDArray mask = record.layer().getMaskArray();
        if (mask != null) {
            long n = out.size(0);
            long steps = out.size(columns ? 2 : 1);
            long dim = out.size(columns ? 3 : 2);
            long v = columns ? out.size(1) : 1;
            INDArray m = mask.castTo(out.dataType()).reshape('c', n, 1, steps, 1);
            out = out.reshape('c', n, v, steps, dim).mul(m.broadcast(n, v, steps, dim));
            out = columns ? out : out.reshape('c', n, steps, dim);
        }
        return out;
    }

    /** {@inheritDoc} Columns {@code [N, V, nOut, T]} (NWC {@code [N, V, T, nOut]}), as the embedding's rows. */
    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        EmbeddingDerivatives.accumulateColumns(record, stepsLast(record, factor, true), sign, sink);
    }

    @Override
    public void accumulateResidual(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        EmbeddingDerivatives.accumulateResidualSteps(record, stepsLast(record, residual, false), sink);
    }
}
