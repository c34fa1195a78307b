// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;

import java.util.Set;

/**
 * A recurrent wrapper around one layer ({@code LastTimeStep}, {@code MaskZeroLayer}) whose parameters are the
 * wrapped layer's: the curvature extensions pass it where they pass the wrapped layer on sequences.
 */
abstract class SingleLayerWrapperKind extends FirstOrderWrapperKind {

    /** @param wrapped the kind of the wrapped layer */
    SingleLayerWrapperKind(LayerDerivatives wrapped) {
        super(wrapped);
    }

    /**
     * @param layer the wrapper
     * @return the wrapped layer
     */
    protected abstract Layer inner(Layer layer);

    @Override
    public String unsupportedConfiguration(Layer layer) {
        return unsupportedWrapped(inner(layer));
    }

    @Override
    public Set<String> trainableParameters(Layer layer) {
        return wrapped.trainableParameters(inner(layer));
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return wrapped.supportsSequences(inner(layer));
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return wrapped.supportsSequences(inner(layer)) ? wrapped.secondOrderUnsupported(inner(layer), hessian)
                : super.secondOrderUnsupported(layer, hessian);
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return wrapped.noKroneckerFactors(inner(layer));
    }
}
