// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Layer kinds without parameters whose map is the identity as far as derivatives go:
 * {@code DropoutLayer} (its dropout mask, like every layer's input dropout, is applied by the
 * second-order pass itself) and the loss layers {@code LossLayer}, {@code CnnLossLayer} and {@code RnnLossLayer}
 * (which hand their input to the loss).
 */
public final class IdentityDerivatives implements LayerDerivatives {

    private final Class<? extends Layer> implementation;

    /** @param implementation the DL4J layer implementation class of this kind */
    public IdentityDerivatives(Class<? extends Layer> implementation) {
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
    public boolean supportsSequences(Layer layer) {
        return true;
    }

    /** {@inheritDoc} A dropout layer, the identity at every step (not a loss layer: its loss would see rows). */
    @Override
    public boolean supportsFlattenedSteps(Layer layer) {
        return implementation == org.deeplearning4j.nn.layers.DropoutLayer.class;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        return factor;
    }
}
