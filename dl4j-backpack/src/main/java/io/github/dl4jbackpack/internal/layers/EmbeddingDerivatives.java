// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.layers.feedforward.embedding.EmbeddingLayer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * DL4J's feed-forward {@code EmbeddingLayer}: input {@code [N, 1]} of row indices k_n into
 * {@code W [vocabulary, nOut]}, {@code z_n = W[k_n] + b}, then the layer's activation. It is the dense
 * layer of the one-hot input {@code e_{k_n}}, so its first-order terms are the dense layer's with
 * {@code x_n = e_{k_n}} ({@code g_n(W) = e_{k_n} δ_nᵀ}: only row k_n is nonzero; {@code ‖g_n(W)‖² = ‖δ_n‖²}).
 * The one-hot inputs cost {@code N × vocabulary}; the quantities themselves never more than their own
 * size. Curvature through embeddings comes with sequence support (docs/math.md#sequences-and-weight-sharing).
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

    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        long n = input.size(0);
        long vocabulary = layer.getParam(DenseDerivatives.W).size(0);
        INDArray oneHot = Nd4j.zeros(outputGradient.dataType(), n, vocabulary);
        for (long i = 0; i < n; i++) {
            oneHot.putScalar(i, input.getLong(i, 0), 1.0);
        }
        return dense.firstOrder(layer, oneHot, outputGradient);
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        throw new UnsupportedOperationException("an embedding layer's input (row indices) has no derivative");
    }
}
