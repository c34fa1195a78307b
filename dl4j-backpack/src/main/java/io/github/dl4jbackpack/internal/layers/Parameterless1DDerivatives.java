// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.convolution.Cropping1DLayer;
import org.deeplearning4j.nn.layers.convolution.ZeroPadding1DLayer;
import org.deeplearning4j.nn.layers.convolution.subsampling.Subsampling1DLayer;
import org.deeplearning4j.nn.layers.convolution.upsampling.Upsampling1D;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;

/**
 * DL4J's layers without parameters over the time axis of {@code [N, C, T]} activations:
 * {@code Subsampling1DLayer}, {@code Upsampling1D}, {@code ZeroPadding1DLayer} and {@code Cropping1DLayer}.
 * First-order extensions only need them to exist: DL4J's own backward step hands the layers below
 * their gradients (a {@code Subsampling1DLayer} multiplies the gradient it receives by its reduced
 * feature mask, as its forward step does its output). Their input Jacobian is not implemented, so
 * second-order extensions refuse them.
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

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return "curvature extensions do not support " + kindName() + " yet (first-order extensions do)";
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
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
