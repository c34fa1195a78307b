// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingLayer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * DL4J's feed-forward {@code EmbeddingLayer}: input {@code [N, 1]} of row indices k_n into
 * {@code W [vocabulary, nOut]}, {@code z_n = W[k_n] + b}, then the layer's activation. It is the sequence
 * embedding with one step ({@link EmbeddingSequenceDerivatives}): {@code g_n(W) = e_{k_n} δ_nᵀ} is nonzero
 * only in row k_n, {@code ‖g_n(W)‖² = ‖δ_n‖²}, and every quantity is formed from the rows used
 * ({@link SparseRowsTerms}), never from {@code N × vocabulary} arrays except {@code BatchGrad}'s result.
 * Curvature through embeddings is not implemented.
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
        return "curvature extensions do not support embedding layers yet (first-order extensions do)";
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
