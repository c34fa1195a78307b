// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.layers.feedforward.elementwise.ElementWiseMultiplicationLayer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Broadcast;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Derivatives of DL4J's {@code ElementWiseMultiplicationLayer}: {@code z_n = x_n ⊙ w + b}
 * ({@code w, b [1, n]}), then an elementwise activation.
 *
 * <p>{@code g_n(w) = δ_n ⊙ x_n}, {@code g_n(b) = δ_n} (formed: n values per example),
 * {@code J_xᵀ s = w ⊙ s}; the squared parameter Jacobian of a column is {@code (s ⊙ x_n)²} (w) and
 * {@code s²} (b), of a diagonal residual {@code r ⊙ x_n²} and {@code r}. The weight is diagonal, so it
 * has no Kronecker factorisation.
 */
public final class ElementWiseMultiplicationDerivatives implements LayerDerivatives {

    static final String W = "W";
    static final String B = "b";

    @Override
    public String kindName() {
        return "ElementWiseMultiplicationLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == ElementWiseMultiplicationLayer.class;
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        BaseLayer conf = (BaseLayer) layer.conf().getLayer();
        return conf.getWeightNoise() == null ? null
                : "weight noise (" + conf.getWeightNoise().getClass().getSimpleName() + ") is not supported";
    }

    @Override
    public boolean hasParameters() {
        return true;
    }

    @Override
    public boolean supportsSharedColumns(Layer layer) {
        return true;
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return "its weight is a diagonal, not a matrix";
    }

    @Override
    public IActivation activation(Layer layer) {
        return ElementwiseActivations.plain(((BaseLayer) layer.conf().getLayer()).getActivationFn());
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return ElementwiseActivations.unsupported(activation(layer), hessian);
    }

    private static INDArray row(Layer layer, String param, INDArray like) {
        INDArray p = layer.getParam(param).castTo(like.dataType());
        return p.reshape(p.length());
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        return Broadcast.mul(factor, row(record.layer(), W, factor), factor.ulike(), 1);
    }

    /**
     * Adds per-row values {@code [rows, …]} (as many elements per row as the parameter has) to a parameter,
     * shaped like it (with the batch axis if per example).
     */
    static void add(RecordedLayer record, String param, INDArray values, CurvatureSink sink) {
        long[] shape = record.layer().getParam(param).shape();
        sink.add(param, sink.perExample() ? values.reshape('c', ConvolutionDerivatives.withBatchAxis(values.size(0),
                shape)) : values.sum(0).reshape('c', shape));
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray squares = factor.mul(factor).sum(1).muli(sign);                  // [N, n]
        INDArray x = record.input().castTo(factor.dataType());
        add(record, W, squares.mul(x).muli(x), sink);
        if (record.layer().paramTable().containsKey(B)) {
            add(record, B, squares, sink);
        }
    }

    @Override
    public void accumulateSharedCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray x = record.input().castTo(factor.dataType());
        INDArray weighted = Broadcast.mul(factor, x, factor.ulike(), 0, 2).sum(0);  // [V, n]: Σ_m s_mc ⊙ x_m
        sink.add(W, weighted.muli(weighted).sum(0).muli(sign).reshape('c', record.layer().getParam(W).shape()));
        if (record.layer().paramTable().containsKey(B)) {
            INDArray t = factor.sum(0);
            sink.add(B, t.muli(t).sum(0).muli(sign).reshape('c', record.layer().getParam(B).shape()));
        }
    }

    @Override
    public void accumulateResidual(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        INDArray x = record.input().castTo(residual.dataType());
        add(record, W, residual.mul(x).muli(x), sink);
        if (record.layer().paramTable().containsKey(B)) {
            add(record, B, residual.dup(), sink);
        }
    }

    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        INDArray x = input.castTo(outputGradient.dataType());
        long n = x.size(0);
        Map<String, INDArray> gradients = new LinkedHashMap<>();
        gradients.put(W, outputGradient.mul(x).reshape('c', ConvolutionDerivatives.withBatchAxis(n,
                layer.getParam(W).shape())));
        if (layer.paramTable().containsKey(B)) {
            gradients.put(B, outputGradient.dup('c').reshape('c', ConvolutionDerivatives.withBatchAxis(n,
                    layer.getParam(B).shape())));
        }
        return FirstOrderTerms.ofIndividualGradients(gradients);
    }
}
