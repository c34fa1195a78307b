// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional;
import org.deeplearning4j.nn.layers.recurrent.BidirectionalLayer;
import org.deeplearning4j.nn.layers.recurrent.LastTimeStepLayer;
import org.deeplearning4j.nn.params.BidirectionalParamInitializer;
import org.deeplearning4j.util.TimeSeriesUtils;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * DL4J's {@code Bidirectional} wrapper: a forward layer reads the sequence as it is, a backward layer (a copy
 * of its configuration with its own parameters) reads it reversed in time, and their outputs {@code y^f} and
 * {@code y^b} (the latter reversed back) are combined per step: CONCAT {@code [y^f; y^b]}, ADD
 * {@code y^f + y^b}, MUL {@code y^f ⊙ y^b}, AVERAGE {@code (y^f + y^b)/2}. The parameters are the two layers'
 * under the prefixes {@code f} and {@code b} ({@code fW, fRW, fb, bW, bRW, bb} for a SimpleRnn).
 *
 * <p>DL4J reverses whole arrays ({@code TimeSeriesUtils.reverseTimeSeries}: step t becomes step T−1−t of
 * every sequence, whatever its length), the feature mask with them: the backward layer of a sequence with a
 * masked tail sees a masked head, and the wrapped layer's kind handles it as DL4J's layer does (SimpleRnn
 * restarts from zero after it). The kind hands each wrapped layer's kind the gradient at that layer's output,
 * as DL4J's backward step does: with {@code ε = ∂L/∂y} at the wrapper output, {@code ε^f = ε} (ADD),
 * {@code ε/2} (AVERAGE), the first half of the channels (CONCAT), {@code ε ⊙ y^b} (MUL), and {@code ε^b}
 * likewise with the other half and {@code ε ⊙ y^f}, reversed in time. For MUL the outputs are the ones DL4J
 * kept from its forward step for its own backward step. Each wrapped kind reads its layer's input (the
 * backward layer's is the reversed sequence DL4J stored there, after the layer's input dropout) and its mask
 * (the backward layer's is DL4J's reversed mask); the per-sequence terms of the two layers are merged under
 * the prefixes ({@link PrefixedTerms}).
 *
 * <p>The forward and backward layers are private fields of DL4J 1.0.0-M2.1's {@code BidirectionalLayer}
 * without accessors, as are the outputs MUL keeps: they are read by reflection. Not supported: a wrapped
 * {@code LastTimeStep} (DL4J's backward step reverses the gradient of its two-dimensional output) and wrapped
 * kinds with a fused activation.
 *
 * <p>Curvature (the generalised Gauss-Newton extensions, where the wrapped kind supports them on sequences):
 * factor columns {@code s} at the wrapper output are split as the gradient is (the MUL mode's factors
 * {@code s ⊙ y^b} and {@code s ⊙ y^f} are the linearisation of the product), the backward layer's part reversed
 * in time, and each part goes through its layer's kind: its input Jacobian-transpose product (the backward
 * layer's reversed back in time, then the two added) and its curvature under its prefix. The layers' inputs
 * are the wrapper's and its reversal, so a wrapped layer with input dropout is refused for curvature. The
 * Hessian adds each layer's internal residual ({@link #internalResidual}) and, in MUL mode, the product's own
 * residual, whose columns go through both layers at once; an LSTM's Hessian under the network's feature mask,
 * which the wrapper hands to its layers, is refused.
 */
public final class BidirectionalKind extends FirstOrderWrapperKind {

    /** @param wrapped the kind of the forward layer (the backward layer is a copy of its configuration) */
    BidirectionalKind(LayerDerivatives wrapped) {
        super(wrapped);
    }

    /**
     * @param layer a {@code BidirectionalLayer}
     * @return its forward layer
     */
    static Layer forwardLayer(Layer layer) {
        return field(layer, "fwd");
    }

    private static Layer backwardLayer(Layer layer) {
        return field(layer, "bwd");
    }

    private static <T> T field(Layer layer, String name) {
        return LayerSettings.read(BidirectionalLayer.class, layer, name);
    }

    private static Bidirectional conf(Layer layer) {
        return (Bidirectional) layer.conf().getLayer();
    }

    @Override
    protected String wrapperName() {
        return "Bidirectional";
    }

    @Override
    public String kindName() {
        return "Bidirectional(" + wrapped.kindName() + ")";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer instanceof BidirectionalLayer && wrapped.matches(forwardLayer(layer));
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        Layer forward = forwardLayer(layer);
        if (forward instanceof LastTimeStepLayer) {
            return "Bidirectional around LastTimeStep (" + wrapped.kindName() + ") is not supported (DL4J's backward "
                    + "step reverses the gradient of its per-sequence output as if it were a time series)";
        }
        String reason = unsupportedWrapped(forward);
        return reason != null ? reason : wrapped.unsupportedConfiguration(backwardLayer(layer));
    }

    @Override
    public Set<String> trainableParameters(Layer layer) {
        Set<String> names = new LinkedHashSet<>();
        wrapped.trainableParameters(forwardLayer(layer))
                .forEach(p -> names.add(BidirectionalParamInitializer.FORWARD_PREFIX + p));
        wrapped.trainableParameters(backwardLayer(layer))
                .forEach(p -> names.add(BidirectionalParamInitializer.BACKWARD_PREFIX + p));
        return names;
    }

    /**
     * {@inheritDoc} Here {@code outputGradient} is {@code ε = ∂L/∂y} of the mean loss at the wrapper output; the
     * wrapped layers' inputs are read from the layers ({@code input}, the wrapper's, is the forward layer's
     * before its input dropout).
     */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        Layer forward = forwardLayer(layer);
        Layer backward = backwardLayer(layer);
        INDArray[] gradients = split(layer, outputGradient, outputGradient.size(0));
        Map<String, FirstOrderTerms> parts = new LinkedHashMap<>();
        parts.put(BidirectionalParamInitializer.FORWARD_PREFIX, wrapped.firstOrder(forward, forward.input(), gradients[0]));
        parts.put(BidirectionalParamInitializer.BACKWARD_PREFIX,
                wrapped.firstOrder(backward, backward.input(), gradients[1]));
        return new PrefixedTerms(parts);
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return wrapped.supportsSequences(forwardLayer(layer));
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        if (!wrapped.supportsSequences(forwardLayer(layer))) {
            return super.secondOrderUnsupported(layer, hessian);
        }
        if (forwardLayer(layer).conf().getLayer().getIDropout() != null) {
            return "curvature extensions do not support Bidirectional around a layer with input dropout";
        }
        return wrapped.secondOrderUnsupported(forwardLayer(layer), hessian);
    }

    /** {@inheritDoc} The wrapper hands the network's feature mask to its layers. */
    @Override
    public String hessianWithFeatureMaskUnsupported(Layer layer) {
        return wrapped.supportsSequences(forwardLayer(layer)) ? wrapped.maskedHessianUnsupported(forwardLayer(layer))
                : null;
    }

    /** {@inheritDoc} The wrapped layers' and, in MUL mode, the product of their outputs. */
    @Override
    public boolean hasInternalResidual(Layer layer) {
        return wrapped.supportsSequences(forwardLayer(layer)) && (wrapped.hasInternalResidual(forwardLayer(layer))
                || conf(layer).getMode() == Bidirectional.Mode.MUL);
    }

    /**
     * {@inheritDoc} The wrapped layers' (each for the columns of one part at a time) and, in MUL mode, the
     * product's columns through both layers at once.
     */
    @Override
    public long internalResidualScratchFeatures(RecordedLayer record) {
        RecordedLayer[] inner = innerRecords(record);
        return Math.max(wrapped.internalResidualScratchFeatures(inner[0]),
                wrapped.internalResidualScratchFeatures(inner[1])) + 4 * (record.outputFeatures() + record.inputFeatures());
    }

    /**
     * {@inheritDoc} Each layer's, for its output gradient as the wrapper splits it, under its prefix; the backward
     * layer's columns at its input are reversed back in time. ADD, AVERAGE and CONCAT are linear in the two
     * outputs; MUL's product {@code y^f ⊙ y^b} adds {@code Σ_kt ε_kt (∇y^f_kt ∇y^b_ktᵀ + ∇y^b_kt ∇y^f_ktᵀ)}
     * ({@link ProductResidual}).
     */
    @Override
    public java.util.List<InternalResidualPart> internalResidual(RecordedLayer record) {
        Layer layer = record.layer();
        boolean nwc = conf(layer).getRNNDataFormat() == RNNFormat.NWC;
        RecordedLayer[] inner = innerRecords(record);
        INDArray[] gradients = split(layer, record.outputGradient(), record.batchSize());
        java.util.List<InternalResidualPart> parts = new java.util.ArrayList<>();
        for (int d = 0; d < 2; d++) {
            RecordedLayer withGradient = new RecordedLayer(record.node(), inner[d].layer(), wrapped, inner[d].input(),
                    null, null, gradients[d], inner[d].outputShape());
            String prefix = d == 0 ? BidirectionalParamInitializer.FORWARD_PREFIX
                    : BidirectionalParamInitializer.BACKWARD_PREFIX;
            boolean reverse = d == 1;
            for (InternalResidualPart part : wrapped.internalResidual(withGradient)) {
                parts.add(new InternalResidualPart() {
                    @Override
                    public double sign() {
                        return part.sign();
                    }

                    @Override
                    public long columns() {
                        return part.columns();
                    }

                    @Override
                    public INDArray push(long from, long to, CurvatureSink sink) {
                        INDArray atInput = part.push(from, to, sink == null ? null : sink.prefixed(prefix));
                        return atInput == null || !reverse ? atInput : reversed(atInput, nwc);
                    }

                    @Override
                    public void finish(CurvatureSink sink) {
                        part.finish(sink.prefixed(prefix));
                    }
                });
            }
        }
        if (conf(layer).getMode() == Bidirectional.Mode.MUL) {
            INDArray epsilon = (nwc ? record.outputGradient().permute(0, 2, 1) : record.outputGradient()).dup('c');
            INDArray root = org.nd4j.linalg.ops.transforms.Transforms.sqrt(
                    org.nd4j.linalg.ops.transforms.Transforms.abs(epsilon, true).muli(0.5), false)
                    .reshape('c', epsilon.size(0), epsilon.length() / epsilon.size(0));
            for (double sign : new double[] {1.0, -1.0}) {
                parts.add(new ProductResidual(record, inner, root, epsilon, sign));
            }
        }
        return parts;
    }

    /**
     * One sign of the residual of MUL's product: with {@code u = ∇y^f_kt} and {@code v = ∇y^b_kt} (w.r.t. everything
     * below the wrapper, each zero on the other layer's parameters),
     * {@code ε (u vᵀ + v uᵀ) = ½|ε| [(u + σv)(u + σv)ᵀ − (u − σv)(u − σv)ᵀ]}, {@code σ = sgn ε}: the part of sign
     * {@code ±1} has, per unit and step, the column {@code √(|ε|/2)} at {@code y^f_kt} and {@code ±σ√(|ε|/2)} at
     * {@code y^b_kt}, through both layers to the wrapper's input. The two parts' terms on either layer's own
     * diagonal cancel ({@code u} and {@code v} never share a wrapper parameter), so they only go below it.
     */
    private final class ProductResidual extends SignedColumnsPart {
        private final RecordedLayer record;
        private final RecordedLayer[] inner;
        private final INDArray backwardRoot;

        /**
         * @param root {@code √(|ε|/2)}, {@code [N, H·T]}: the columns' values at the forward layer's output
         * @param epsilon the gradient at the wrapper output, NCW
         */
        ProductResidual(RecordedLayer record, RecordedLayer[] inner, INDArray root, INDArray epsilon, double sign) {
            super(sign, root);
            this.record = record;
            this.inner = inner;
            this.backwardRoot = org.nd4j.linalg.ops.transforms.Transforms.sign(epsilon, true)
                    .reshape('c', root.shape()).muli(root).muli(sign);
        }

        @Override
        public INDArray push(long from, long to, CurvatureSink sink) {
            boolean nwc = conf(record.layer()).getRNNDataFormat() == RNNFormat.NWC;
            long[] shape = inner[0].outputShape();
            long units = shape[nwc ? 2 : 1];
            long steps = shape[nwc ? 1 : 2];
            long rows = values.size(0) * (to - from);
            INDArray forward = unitColumns(from, to).reshape('c', rows, units, steps);
            INDArray backward = TimeSeriesUtils.reverseTimeSeries(Columns.unitColumns(backwardRoot, from, to)
                    .reshape('c', rows, units, steps));
            INDArray atInput = wrapped.inputJacobianTranspose(inner[0], innerLayout(forward, nwc));
            return atInput.addi(reversed(wrapped.inputJacobianTranspose(inner[1], innerLayout(backward, nwc)), nwc));
        }
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return "the Kronecker factors of Bidirectional (" + wrapped.kindName() + ") are not implemented";
    }

    /** The two wrapped layers' records, their inputs the wrapper's and its reversal in time. */
    private RecordedLayer[] innerRecords(RecordedLayer record) {
        return record.cachedValue("bidirectionalInner", () -> {
            Layer layer = record.layer();
            boolean nwc = conf(layer).getRNNDataFormat() == RNNFormat.NWC;
            INDArray input = record.input();
            long n = record.batchSize();
            long steps = input.size(nwc ? 1 : 2);
            long units = ((org.deeplearning4j.nn.conf.layers.FeedForwardLayer) forwardLayer(layer).conf().getLayer())
                    .getNOut();
            long[] shape = nwc ? new long[] {n, steps, units} : new long[] {n, units, steps};
            return new RecordedLayer[] {
                    new RecordedLayer(record.node(), forwardLayer(layer), wrapped, input, null, null, null, shape),
                    new RecordedLayer(record.node(), backwardLayer(layer), wrapped, reversed(input, nwc), null, null,
                            null, shape)};
        });
    }

    /** @return a series reversed in time (whole arrays, as DL4J reverses them), in its layout, as a new array */
    private static INDArray reversed(INDArray series, boolean nwc) {
        INDArray ncw = nwc ? series.permute(0, 2, 1) : series;
        INDArray out = TimeSeriesUtils.reverseTimeSeries(ncw.dup('c'));
        return innerLayout(out, nwc);
    }

    /**
     * @param layer the wrapper
     * @param columns columns at the wrapper output, {@code [R, H', T]} ({@code [R, T, H']} in NWC), R a multiple
     *     of N with the rows of one example adjacent
     * @param n N
     * @return the forward and backward layers' columns at their outputs, each in their layout, the backward
     *     layer's reversed in time (as DL4J's backward step splits the gradient, for columns one per example)
     */
    private static INDArray[] split(Layer layer, INDArray columns, long n) {
        boolean nwc = conf(layer).getRNNDataFormat() == RNNFormat.NWC;
        INDArray s = nwc ? columns.permute(0, 2, 1) : columns;
        INDArray forward;
        INDArray backward;
        switch (conf(layer).getMode()) {
            case ADD:
                forward = s;
                backward = s;
                break;
            case AVERAGE:
                forward = s.mul(0.5);
                backward = forward;
                break;
            case MUL:
                long repeats = s.size(0) / n;
                forward = s.mul(Columns.repeatPerColumn(keptOutput(layer, "outBwd").castTo(s.dataType()), repeats));
                backward = s.mul(Columns.repeatPerColumn(keptOutput(layer, "outFwd").castTo(s.dataType()), repeats));
                break;
            case CONCAT:
                long units = s.size(1) / 2;
                forward = s.get(NDArrayIndex.all(), NDArrayIndex.interval(0, units), NDArrayIndex.all());
                backward = s.get(NDArrayIndex.all(), NDArrayIndex.interval(units, 2 * units), NDArrayIndex.all());
                break;
            default:
                throw new IllegalStateException("unknown Bidirectional mode " + conf(layer).getMode());
        }
        return new INDArray[] {innerLayout(forward, nwc),
                innerLayout(TimeSeriesUtils.reverseTimeSeries(backward.dup('c')), nwc)};
    }

    /** {@inheritDoc} The two layers' products, the backward layer's reversed back in time, added. */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        RecordedLayer[] inner = innerRecords(record);
        INDArray[] parts = split(record.layer(), factor, record.batchSize());
        INDArray forward = wrapped.inputJacobianTranspose(inner[0], parts[0]);
        INDArray backward = wrapped.inputJacobianTranspose(inner[1], parts[1]);
        return forward.addi(reversed(backward, conf(record.layer()).getRNNDataFormat() == RNNFormat.NWC));
    }

    @Override
    public long scratchFeatures(RecordedLayer record) {
        RecordedLayer[] inner = innerRecords(record);
        return wrapped.scratchFeatures(inner[0]) + wrapped.scratchFeatures(inner[1])
                + 4 * (record.outputFeatures() + record.inputFeatures());
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        RecordedLayer[] inner = innerRecords(record);
        long n = factor.size(0);
        long v = factor.size(1);
        long[] folded = record.outputShape();
        folded[0] = n * v;
        INDArray[] parts = split(record.layer(), factor.reshape('c', folded), n);
        long[] shape = inner[0].outputShape();
        long[] unfolded = {n, v, shape[1], shape[2]};
        wrapped.accumulateCurvature(inner[0], parts[0].reshape('c', unfolded), sign,
                sink.prefixed(BidirectionalParamInitializer.FORWARD_PREFIX));
        wrapped.accumulateCurvature(inner[1], parts[1].reshape('c', unfolded), sign,
                sink.prefixed(BidirectionalParamInitializer.BACKWARD_PREFIX));
    }

    private static INDArray keptOutput(Layer layer, String name) {
        INDArray output = field(layer, name);
        if (output == null) {
            throw new IllegalStateException("DL4J's BidirectionalLayer (MUL) kept no output '" + name + "' of its "
                    + "forward step");
        }
        return output;
    }

    /** @return an {@code [N, H, T]} gradient in the wrapped layers' layout, as a new array */
    private static INDArray innerLayout(INDArray gradient, boolean nwc) {
        return (nwc ? gradient.permute(0, 2, 1) : gradient).dup('c');
    }
}
