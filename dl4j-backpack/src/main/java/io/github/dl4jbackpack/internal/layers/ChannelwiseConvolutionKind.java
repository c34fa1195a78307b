// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.nd4j.linalg.activations.IActivation;

/**
 * What DL4J's channel-wise convolutions ({@code DepthwiseConvolution2D}, {@code SeparableConvolution2D})
 * have in common as layer kinds: a convolution configuration (computed in NCHW layout) with a fused elementwise activation,
 * columns spanning the batch supported, and no Kronecker factorisation (the depthwise weight is one
 * small matrix per channel).
 */
abstract class ChannelwiseConvolutionKind implements LayerDerivatives {

    private final Class<? extends Layer> implementation;

    /** @param implementation the DL4J layer implementation class of the kind */
    ChannelwiseConvolutionKind(Class<? extends Layer> implementation) {
        this.implementation = implementation;
    }

    @Override
    public final boolean matches(Layer layer) {
        return layer.getClass() == implementation;
    }

    @Override
    public final String unsupportedConfiguration(Layer layer) {
        org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf = conf(layer);
        if (conf.getWeightNoise() != null) {
            return "weight noise (" + conf.getWeightNoise().getClass().getSimpleName() + ") is not supported";
        }
        return null;
    }

    @Override
    public final boolean hasParameters() {
        return true;
    }

    @Override
    public final boolean supportsSharedColumns(Layer layer) {
        return true;
    }

    @Override
    public final String noKroneckerFactors(Layer layer) {
        return "its weight is one small matrix per channel, not one matrix";
    }

    /** @return the layer's convolution configuration */
    static org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.ConvolutionLayer) layer.conf().getLayer();
    }

    @Override
    public final IActivation activation(Layer layer) {
        return ElementwiseActivations.plain(conf(layer).getActivationFn());
    }

    @Override
    public final String secondOrderUnsupported(Layer layer, boolean hessian) {
        return ElementwiseActivations.unsupported(activation(layer), hessian);
    }
}
