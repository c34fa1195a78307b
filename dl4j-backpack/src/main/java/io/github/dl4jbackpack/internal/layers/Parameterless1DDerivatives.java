// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.convolution.Cropping1DLayer;
import org.deeplearning4j.nn.layers.convolution.ZeroPadding1DLayer;
import org.deeplearning4j.nn.layers.convolution.subsampling.Subsampling1DLayer;
import org.deeplearning4j.nn.layers.convolution.upsampling.Upsampling1D;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.List;

/**
 * DL4J's layers without parameters over the time axis of {@code [N, C, T]} activations:
 * {@code Subsampling1DLayer}, {@code Upsampling1D}, {@code ZeroPadding1DLayer} and {@code Cropping1DLayer}.
 * First-order extensions only need them to exist: DL4J's own backward step hands the layers below
 * their gradients (a {@code Subsampling1DLayer} multiplies the gradient it receives by its reduced
 * feature mask, as its forward step does its output). Second order: the padding, cropping and upsampling
 * layers are linear reshapings whose input Jacobian-transpose products are written out here; the pooling
 * layer's is not implemented, so the curvature extensions refuse it.
 */
public final class Parameterless1DDerivatives implements LayerDerivatives {

    private final Class<? extends Layer> type;

    /**
     * @param type {@code Subsampling1DLayer}, {@code Upsampling1D}, {@code ZeroPadding1DLayer} or
     *     {@code Cropping1DLayer}
     */
    public Parameterless1DDerivatives(Class<? extends Layer> type) {
        this.type = type;
    }

    @Override
    public String kindName() {
        return type.getSimpleName();
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == type;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    /** @return whether the curvature extensions know this layer's input Jacobian (all but the pooling layer) */
    private boolean linearReshaping() {
        return type != Subsampling1DLayer.class;
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return linearReshaping() ? null
                : "curvature extensions do not support " + kindName() + " yet (first-order extensions do)";
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return linearReshaping();
    }

    /**
     * {@inheritDoc} Columns {@code [R, C, T']} to {@code [R, C, T]}: zero padding crops them back, cropping pads
     * them back with zeros, upsampling by s sums each step's s copies.
     */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        long rows = factor.size(0);
        long channels = factor.size(1);
        long length = record.input().size(2);
        org.deeplearning4j.nn.conf.layers.Layer conf = record.layer().conf().getLayer();
        if (conf instanceof org.deeplearning4j.nn.conf.layers.ZeroPadding1DLayer) {
            int left = ((org.deeplearning4j.nn.conf.layers.ZeroPadding1DLayer) conf).getPadding()[0];
            return factor.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(left, left + length))
                    .dup('c');
        }
        if (conf instanceof org.deeplearning4j.nn.conf.layers.convolutional.Cropping1D) {
            int top = ((org.deeplearning4j.nn.conf.layers.convolutional.Cropping1D) conf).getCropping()[0];
            INDArray out = Nd4j.zeros(factor.dataType(), rows, channels, length);
            out.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(top, top + factor.size(2)))
                    .assign(factor);
            return out;
        }
        if (conf instanceof org.deeplearning4j.nn.conf.layers.Upsampling1D) {
            long size = factor.size(2) / length;
            return factor.dup('c').reshape('c', rows, channels, length, size).sum(3);
        }
        throw new UnsupportedOperationException(secondOrderUnsupported(record.layer(), false));
    }

    /** @return the kinds of the four layers */
    static List<LayerDerivatives> all() {
        return List.of(new Parameterless1DDerivatives(Subsampling1DLayer.class),
                new Parameterless1DDerivatives(Upsampling1D.class),
                new Parameterless1DDerivatives(ZeroPadding1DLayer.class),
                new Parameterless1DDerivatives(Cropping1DLayer.class));
    }
}
