// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.recurrent.MaskZeroLayer;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Set;

/**
 * DL4J's {@code MaskZeroLayer} wrapper: before every forward step it sets on the wrapped recurrent layer the
 * feature mask {@code m_nt = 0} where every feature of step t of sequence n equals the masking value and 1
 * elsewhere (replacing any mask the network handed down), then runs the wrapped layer; its backward step is
 * the wrapped layer's. So the wrapper's output, output gradient, input and parameters are the wrapped
 * layer's, and so is the mask the wrapped kind reads from its layer: the wrapped kind computes the terms as
 * it is. Wrapped kinds whose output gradient the library takes from a fused activation are not supported.
 */
public final class MaskZeroKind extends FirstOrderWrapperKind {

    /** @param wrapped the kind of the wrapped layer */
    MaskZeroKind(LayerDerivatives wrapped) {
        super(wrapped);
    }

    private static Layer inner(Layer layer) {
        return ((MaskZeroLayer) layer).getUnderlying();
    }

    @Override
    protected String wrapperName() {
        return "MaskZeroLayer";
    }

    @Override
    public String kindName() {
        return "MaskZeroLayer(" + wrapped.kindName() + ")";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer instanceof MaskZeroLayer && wrapped.matches(inner(layer));
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        return unsupportedWrapped(inner(layer));
    }

    @Override
    public Set<String> trainableParameters(Layer layer) {
        return wrapped.trainableParameters(inner(layer));
    }

    /** The wrapped layer's terms, with the mask DL4J derived from the input on that layer. */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        return wrapped.firstOrder(inner(layer), input, outputGradient);
    }
}
