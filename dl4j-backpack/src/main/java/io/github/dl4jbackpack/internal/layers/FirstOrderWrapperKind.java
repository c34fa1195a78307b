// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * What DL4J's recurrent wrapper layers ({@code LastTimeStep}, {@code MaskZeroLayer}, {@code Bidirectional},
 * {@code TimeDistributed}) have in common as kinds: the library hands them the gradient at the wrapper's
 * output ({@link #activation} is null), they compute first-order terms from the wrapped layers' kinds, and
 * curvature through them is refused by name.
 */
abstract class FirstOrderWrapperKind implements LayerDerivatives {

    /** The kind of the wrapped layer(s). */
    protected final LayerDerivatives wrapped;

    /** @param wrapped the kind of the wrapped layer(s) */
    FirstOrderWrapperKind(LayerDerivatives wrapped) {
        this.wrapped = wrapped;
    }

    /** @return the wrapper's name in messages, e.g. {@code "LastTimeStep"} */
    protected abstract String wrapperName();

    @Override
    public boolean hasParameters() {
        return wrapped.hasParameters();
    }

    @Override
    public IActivation activation(Layer layer) {
        return null;
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return "curvature extensions do not support " + wrapperName() + " yet (first-order extensions do)";
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return "the Kronecker factors of " + wrapperName() + " are not implemented";
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        throw new UnsupportedOperationException(secondOrderUnsupported(record.layer(), false));
    }

    /**
     * @param inner the wrapped layer
     * @return why the wrapper around it is not supported: the wrapped kind's reason, or a wrapped kind
     *     whose output gradient the library would take from a fused activation; null when supported
     */
    protected final String unsupportedWrapped(Layer inner) {
        String reason = wrapped.unsupportedConfiguration(inner);
        if (reason == null && wrapped.hasParameters() && wrapped.activation(inner) != null) {
            reason = wrapperName() + " around " + wrapped.kindName() + " (a layer with a fused activation) is not "
                    + "supported";
        }
        return reason;
    }
}
