package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;

/**
 * Layer kinds without parameters that act on each example separately, so that DL4J's own
 * backward pass carries the per-example output gradients through them unchanged in meaning:
 * {@code SubsamplingLayer} (any pooling type and mode), {@code ActivationLayer},
 * {@code DropoutLayer} and {@code LossLayer}.
 */
public final class ParameterFreeDerivatives implements LayerDerivatives {

    private final Class<? extends Layer> implementation;

    /**
     * @param implementation the DL4J layer implementation class of this kind
     */
    public ParameterFreeDerivatives(Class<? extends Layer> implementation) {
        this.implementation = implementation;
    }

    @Override
    public String kindName() {
        return implementation.getSimpleName();
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == implementation;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }
}
