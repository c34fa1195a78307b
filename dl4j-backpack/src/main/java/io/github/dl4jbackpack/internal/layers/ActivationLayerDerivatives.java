// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.ActivationLayer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * DL4J's {@code ActivationLayer}: an elementwise activation of its input, so its "output
 * {@code z}" is the input itself and all its derivatives are those of the activation.
 */
public final class ActivationLayerDerivatives implements LayerDerivatives {

    @Override
    public String kindName() {
        return "ActivationLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == ActivationLayer.class;
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return true;
    }

    /** {@inheritDoc} An elementwise map, the same at every step. */
    @Override
    public boolean supportsFlattenedSteps(Layer layer) {
        return true;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    @Override
    public IActivation activation(Layer layer) {
        return ElementwiseActivations.plain(
                ((org.deeplearning4j.nn.conf.layers.ActivationLayer) layer.conf().getLayer()).getActivationFn());
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return ElementwiseActivations.unsupported(activation(layer), hessian);
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        return factor;
    }
}
