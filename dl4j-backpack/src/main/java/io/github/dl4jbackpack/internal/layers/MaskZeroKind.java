// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.recurrent.MaskZeroLayer;
import org.nd4j.linalg.api.ndarray.INDArray;


/**
 * DL4J's {@code MaskZeroLayer} wrapper: before every forward step it sets on the wrapped recurrent layer the
 * feature mask {@code m_nt = 0} where every feature of step t of sequence n equals the masking value and 1
 * elsewhere (replacing any mask the network handed down), then runs the wrapped layer; its backward step is
 * the wrapped layer's. So the wrapper's output, output gradient, input and parameters are the wrapped
 * layer's, and so is the mask the wrapped kind reads from its layer: the wrapped kind computes the terms as
 * it is. Wrapped kinds whose output gradient the library takes from a fused activation are not supported.
 * The curvature extensions pass it where they pass the wrapped layer on sequences, with the wrapped layer's
 * input Jacobian and curvature accumulation (the wrapped layer keeps the mask DL4J set on it).
 */
public final class MaskZeroKind extends SingleLayerWrapperKind {

    /** @param wrapped the kind of the wrapped layer */
    MaskZeroKind(LayerDerivatives wrapped) {
        super(wrapped);
    }

    @Override
    protected Layer inner(Layer layer) {
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

    /** The wrapped layer's terms, with the mask DL4J derived from the input on that layer. */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        return wrapped.firstOrder(inner(layer), input, outputGradient);
    }

    /** @return the wrapped layer's record (its input and output are the wrapper's), kept with the wrapper's */
    @Override
    protected RecordedLayer innerRecord(RecordedLayer record) {
        return record.cachedValue("maskZeroInner", () -> new RecordedLayer(record.node(), inner(record.layer()),
                wrapped, record.input(), null, null, null, record.outputShape()));
    }

    /** {@inheritDoc} Always: the mask of the steps whose input is the masking value. */
    @Override
    protected boolean alwaysMasks() {
        return true;
    }

    /** {@inheritDoc} The wrapper passes its output gradient to the wrapped layer unchanged. */
    @Override
    protected INDArray innerOutputGradient(RecordedLayer record) {
        return record.outputGradient();
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        return wrapped.inputJacobianTranspose(innerRecord(record), factor);
    }

    @Override
    public long scratchFeatures(RecordedLayer record) {
        return wrapped.scratchFeatures(innerRecord(record));
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        wrapped.accumulateCurvature(innerRecord(record), factor, sign, sink);
    }
}
