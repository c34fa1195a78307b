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

    /**
     * @return whether the wrapper always sets a mask on the wrapped layer (else only the network's feature
     *     mask, when the batch has one)
     */
    protected abstract boolean alwaysMasks();

    /** {@inheritDoc} A wrapper that always sets a mask on the wrapped layer needs a Hessian that allows one. */
    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        if (!wrapped.supportsSequences(inner(layer))) {
            return super.secondOrderUnsupported(layer, hessian);
        }
        String masked = hessian && alwaysMasks() ? wrapped.maskedHessianUnsupported(inner(layer)) : null;
        return masked != null ? masked : wrapped.secondOrderUnsupported(inner(layer), hessian);
    }

    @Override
    public String hessianWithFeatureMaskUnsupported(Layer layer) {
        return wrapped.supportsSequences(inner(layer)) ? wrapped.maskedHessianUnsupported(inner(layer)) : null;
    }

    @Override
    public boolean hasInternalResidual(Layer layer) {
        return wrapped.supportsSequences(inner(layer)) && wrapped.hasInternalResidual(inner(layer));
    }

    /** {@inheritDoc} The wrapped layer's, for its output gradient ({@link #innerOutputGradient}). */
    @Override
    public java.util.List<InternalResidualPart> internalResidual(RecordedLayer record) {
        Layer inner = inner(record.layer());
        org.nd4j.linalg.api.ndarray.INDArray gradient = innerOutputGradient(record);
        return wrapped.internalResidual(new RecordedLayer(record.node(), inner, wrapped, record.input(), null, null,
                gradient, gradient.shape()));
    }

    /** {@inheritDoc} The wrapped layer's. */
    @Override
    public long internalResidualScratchFeatures(RecordedLayer record) {
        return wrapped.internalResidualScratchFeatures(innerRecord(record));
    }

    /**
     * @param record the wrapper's record
     * @return the wrapped layer's record: its input and output shape (without an output gradient)
     */
    protected abstract RecordedLayer innerRecord(RecordedLayer record);

    /**
     * @param record the wrapper's record, with its output gradient
     * @return the gradient of the mean loss at the wrapped layer's output
     */
    protected abstract org.nd4j.linalg.api.ndarray.INDArray innerOutputGradient(RecordedLayer record);

    @Override
    public String noKroneckerFactors(Layer layer) {
        return wrapped.noKroneckerFactors(inner(layer));
    }
}
