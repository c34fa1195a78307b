// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.layers.feedforward.dense.DenseLayer;
import org.deeplearning4j.nn.layers.recurrent.TimeDistributedLayer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Set;

/**
 * DL4J's {@code TimeDistributed} wrapper around a {@code DenseLayer}: the dense layer {@code y = act(x W + b)}
 * applied at every step. DL4J moves the time axis into the batch axis, example-major: row {@code n·T + t} of
 * the dense layer's input and output is step t of sequence n (in NCW and NWC alike; DL4J's
 * {@code RnnToFeedForwardPreProcessor} orders rows step-major instead), and the dense layer keeps that
 * {@code [N·T, nIn]} input. An example's gradient is the sum over its T rows.
 *
 * <p>The kind declares no fused activation ({@link #activation} is null), so the library records no
 * pre-activation gradient in the dense layer and hands the kind {@code ε = ∂L/∂y} at the wrapper output; the kind
 * recomputes {@code z = x W + b} from the dense layer's input (after its input dropout) and parameters and
 * forms {@code δ = m ⊙ act'(z) ε} as DL4J's backward step of the dense layer does, {@code m} the dense layer's
 * row mask where it has one. That mask is DL4J's: {@code TimeDistributedLayer} flattens the {@code [N, T]}
 * feature mask column-major ({@code TimeSeriesUtils.reshapeTimeSeriesMaskToVector}), so row {@code n·T + t} is
 * masked by entry {@code t'·N + n' = n·T + t} of the mask, which is not step t of sequence n when
 * {@code N, T > 1}: with a feature mask of varying lengths DL4J's batch is not the batch of masked sequences
 * (its gradient differs from the sum of single-sequence gradients). The kind follows DL4J, so the terms still
 * sum to DL4J's gradient. The rows' terms are the dense kind's over steps
 * ({@link LayerDerivatives#firstOrderOfRows}). Only DenseLayer with an elementwise activation is supported.
 *
 * <p>Curvature (the generalised Gauss-Newton extensions): the record keeps the dense layer's input as a series
 * {@code [N, nIn, T]} ({@link #curvatureInput}); factor columns {@code s} at the wrapper output become
 * {@code m ⊙ act'(z) ⊙ s} at the dense layer's pre-activation at every step, and the dense kind's series form
 * (a hidden dense layer at every step) takes them from there: {@code Σ_t x_t c_tᵀ} per column for the
 * parameters, {@code W c_t} at the input. The Hessian adds the residual of the dense layer's activation
 * ({@link #internalResidual}). A dense layer with input dropout and Kronecker factors are refused.
 */
public final class TimeDistributedKind extends FirstOrderWrapperKind {

    /** @param wrapped the kind of the wrapped layer */
    TimeDistributedKind(LayerDerivatives wrapped) {
        super(wrapped);
    }

    private static Layer inner(Layer layer) {
        return ((TimeDistributedLayer) layer).getUnderlying();
    }

    @Override
    protected String wrapperName() {
        return "TimeDistributed";
    }

    @Override
    public String kindName() {
        return "TimeDistributed(" + wrapped.kindName() + ")";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer instanceof TimeDistributedLayer && wrapped.matches(inner(layer));
    }

    private static IActivation activationOfInner(Layer layer) {
        return ((BaseLayer) inner(layer).conf().getLayer()).getActivationFn();
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        Layer inner = inner(layer);
        if (inner.getClass() != DenseLayer.class) {
            return "TimeDistributed around " + inner.getClass().getSimpleName() + " is not supported (only DenseLayer)";
        }
        String reason = wrapped.unsupportedConfiguration(inner);
        if (reason == null && ElementwiseActivations.unsupported(activationOfInner(layer), false) != null) {
            reason = "activation " + activationOfInner(layer) + " of a DenseLayer in TimeDistributed is not supported "
                    + "(the pre-activation is recomputed; supported: " + ElementwiseActivations.SUPPORTED + ")";
        }
        return reason;
    }

    @Override
    public Set<String> trainableParameters(Layer layer) {
        return wrapped.trainableParameters(inner(layer));
    }

    /**
     * {@inheritDoc} Here {@code input} is the dense layer's, {@code [N·T, nIn]} in DL4J's example-major rows,
     * and {@code outputGradient} is {@code ε = ∂L/∂y} of the mean loss at the wrapper output,
     * {@code [N, nOut, T]} ({@code [N, T, nOut]} in NWC).
     */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        Layer dense = inner(layer);
        // the wrapper's conf() is the dense layer's: the layout is a private field of the implementation
        boolean nwc = nwc(layer);
        long n = outputGradient.size(0);
        long steps = nwc ? outputGradient.size(1) : outputGradient.size(2);
        long nOut = nwc ? outputGradient.size(2) : outputGradient.size(1);
        // rows n·T + t, as DL4J reshapes the wrapper's output gradient
        INDArray epsilon = (nwc ? outputGradient : outputGradient.permute(0, 2, 1)).dup('c').reshape('c', n * steps, nOut);
        INDArray x = input.castTo(epsilon.dataType());
        INDArray preActivation = DenseDerivatives.gemm(x, false, dense.getParam(DenseDerivatives.W)
                .castTo(epsilon.dataType()), false);
        if (dense.paramTable().containsKey(DenseDerivatives.B)) {
            preActivation.addiRowVector(dense.getParam(DenseDerivatives.B).castTo(epsilon.dataType()).reshape(1, nOut));
        }
        INDArray delta = activationOfInner(layer).backprop(preActivation, epsilon).getFirst();
        if (dense.getMaskArray() != null) {
            delta.muliColumnVector(dense.getMaskArray().castTo(delta.dataType()));
        }
        return wrapped.firstOrderOfRows(dense, stepMajor(x, n, steps), stepMajor(delta, n, steps), false, steps);
    }

    /**
     * {@inheritDoc} The library sees the dense layer's {@code N·T} input rows and calls this with
     * {@code rows = T}; the rows are DL4J's example-major ones, which {@link #firstOrder} reorders.
     */
    @Override
    public FirstOrderTerms firstOrderOfRows(Layer layer, INDArray input, INDArray outputGradient,
                                            boolean runningStatistics, long rows) {
        return firstOrder(layer, input, outputGradient);
    }

    private static boolean nwc(Layer layer) {
        return LayerSettings.read(TimeDistributedLayer.class, layer, "rnnDataFormat") == RNNFormat.NWC;
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return true;
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        if (inner(layer).conf().getLayer().getIDropout() != null) {
            return "curvature extensions do not support TimeDistributed around a layer with input dropout";
        }
        return hessian ? ElementwiseActivations.unsupported(activationOfInner(layer), true) : null;
    }

    /** {@inheritDoc} The dense layer's activation, unless it is piecewise linear. */
    @Override
    public boolean hasInternalResidual(Layer layer) {
        return !ElementwiseActivations.isPiecewiseLinear(activationOfInner(layer));
    }

    /**
     * {@inheritDoc} The dense layer's activation at every step: {@code r = m ⊙ act''(z) ⊙ ε} at its
     * pre-activation {@code z} ({@code ε} the gradient at the wrapper output, {@code m} DL4J's row mask), in a
     * part per sign with one unit column per unit and step ({@code √|r|} at that step's {@code z}, the dense
     * layer's input Jacobian-transpose product at that step below it). Its own parameters take
     * {@code Σ_t x_t² r_tᵀ} and {@code Σ_t r_t} at once (per sequence), added by the first part.
     */
    @Override
    public java.util.List<InternalResidualPart> internalResidual(RecordedLayer record) {
        Layer layer = record.layer();
        org.nd4j.linalg.api.buffer.DataType type = record.outputGradient().dataType();
        INDArray epsilon = record.outputGradient();
        INDArray residual = ElementwiseActivations.secondDerivative(activationOfInner(layer), preActivation(record, type))
                .muli(masked(record, (nwc(layer) ? epsilon.permute(0, 2, 1) : epsilon).castTo(type).dup('c')));
        long n = residual.size(0);
        long[] shape = residual.shape();
        java.util.List<InternalResidualPart> parts = new java.util.ArrayList<>();
        for (double sign : new double[] {1.0, -1.0}) {
            INDArray root = org.nd4j.linalg.ops.transforms.Transforms.sqrt(
                    org.nd4j.linalg.ops.transforms.Transforms.relu(residual.mul(sign), false), false)
                    .reshape('c', n, residual.length() / n);
            boolean first = parts.isEmpty();
            parts.add(new SignedColumnsPart(sign, root) {
                @Override
                public INDArray push(long from, long to, CurvatureSink sink) {
                    INDArray columns = unitColumns(from, to).reshape('c', n * (to - from), shape[1], shape[2]);
                    INDArray in = wrapped.inputJacobianTranspose(denseRecord(record), columns);
                    return nwc(layer) ? in.permute(0, 2, 1).dup('c') : in;
                }

                @Override
                public void finish(CurvatureSink sink) {
                    if (first) {
                        wrapped.accumulateResidual(denseRecord(record), residual, sink);
                    }
                }
            });
        }
        return parts;
    }

    /** {@inheritDoc} The unit columns at the pre-activation and their products at the input. */
    @Override
    public long internalResidualScratchFeatures(RecordedLayer record) {
        return 2 * (record.outputFeatures() + record.inputFeatures());
    }

    /** {@inheritDoc} DL4J's dense layer keeps rows {@code n·T + t}; the record keeps {@code [N, nIn, T]}. */
    @Override
    public INDArray curvatureInput(Layer layer, INDArray input, long examples) {
        long steps = input.size(0) / examples;
        try (org.nd4j.linalg.api.memory.MemoryWorkspace ignored = org.nd4j.linalg.factory.Nd4j.getMemoryManager()
                .scopeOutOfWorkspaces()) {
            return input.reshape('c', examples, steps, input.size(1)).permute(0, 2, 1).dup('c');
        }
    }

    /** @return the dense layer's record over the series, {@code [N, nIn, T]} in, {@code [N, nOut, T]} out */
    private RecordedLayer denseRecord(RecordedLayer record) {
        return record.cachedValue("timeDistributedDense", () -> {
            INDArray x = record.input();
            long nOut = inner(record.layer()).getParam(DenseDerivatives.W).size(1);
            return new RecordedLayer(record.node(), inner(record.layer()), wrapped, x, null, null, null,
                    new long[] {x.size(0), nOut, x.size(2)});
        });
    }

    /**
     * @param record the wrapper's record
     * @param type the data type wanted
     * @return the dense layer's pre-activation {@code z = x W + b} over the series, {@code [N, nOut, T]}
     */
    private INDArray preActivation(RecordedLayer record, org.nd4j.linalg.api.buffer.DataType type) {
        return record.cached("timeDistributedZ" + type, () -> {
            Layer dense = inner(record.layer());
            INDArray x = record.input().castTo(type);
            long n = x.size(0);
            long steps = x.size(2);
            INDArray rows = x.permute(0, 2, 1).dup('c').reshape('c', n * steps, x.size(1));
            INDArray z = DenseDerivatives.gemm(rows, false, dense.getParam(DenseDerivatives.W).castTo(type), false);
            long nOut = z.size(1);
            if (dense.paramTable().containsKey(DenseDerivatives.B)) {
                z.addiRowVector(dense.getParam(DenseDerivatives.B).castTo(type).reshape(1, nOut));
            }
            return z.reshape('c', n, steps, nOut).permute(0, 2, 1).dup('c');
        });
    }

    /**
     * @param record the wrapper's record
     * @param values {@code [N, nOut, T]}, multiplied in place
     * @return {@code values} times DL4J's row mask of the dense layer (one value per row {@code n·T + t}), if any
     */
    private static INDArray masked(RecordedLayer record, INDArray values) {
        INDArray mask = inner(record.layer()).getMaskArray();
        if (mask != null) {
            long n = values.size(0);
            long steps = values.size(2);
            values.muli(mask.castTo(values.dataType()).reshape('c', n, 1, steps).broadcast(values.shape()));
        }
        return values;
    }

    /**
     * @param record the wrapper's record
     * @param type the columns' data type
     * @return {@code m ⊙ act'(z)} of the dense layer over the series, {@code [N, nOut, T]}
     */
    private INDArray outputScale(RecordedLayer record, org.nd4j.linalg.api.buffer.DataType type) {
        return record.cached("timeDistributedScale" + type, () -> masked(record,
                ElementwiseActivations.firstDerivative(activationOfInner(record.layer()), preActivation(record, type))));
    }

    /** @return columns at the wrapper output, {@code [R, nOut, T]} (NWC {@code [R, T, nOut]}), at the dense z */
    private INDArray atPreActivation(RecordedLayer record, INDArray columns) {
        INDArray ncw = nwc(record.layer()) ? columns.permute(0, 2, 1) : columns;
        return Columns.timesPerExample(ncw.dup('c'), outputScale(record, columns.dataType()));
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        INDArray in = wrapped.inputJacobianTranspose(denseRecord(record), atPreActivation(record, factor));
        return nwc(record.layer()) ? in.permute(0, 2, 1).dup('c') : in;
    }

    @Override
    public long scratchFeatures(RecordedLayer record) {
        return 4 * (record.inputFeatures() + record.outputFeatures());
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        long n = factor.size(0);
        long v = factor.size(1);
        long[] folded = record.outputShape();
        folded[0] = n * v;
        INDArray columns = atPreActivation(record, factor.reshape('c', folded));
        wrapped.accumulateCurvature(denseRecord(record), columns.reshape('c', n, v, columns.size(1), columns.size(2)),
                sign, sink);
    }

    /** @return rows {@code n·T + t} reordered to {@code t·N + n}, as a new array */
    private static INDArray stepMajor(INDArray rows, long n, long steps) {
        return rows.reshape('c', n, steps, rows.size(1)).permute(1, 0, 2).dup('c').reshape('c', n * steps, rows.size(1));
    }
}
