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
 * {@code LastTimeStep} (DL4J's backward step reverses the gradient of its two-dimensional output), wrapped
 * kinds with a fused activation, and second-order extensions.
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
        boolean nwc = conf(layer).getRNNDataFormat() == RNNFormat.NWC;
        INDArray epsilon = nwc ? outputGradient.permute(0, 2, 1) : outputGradient;
        INDArray forwardGradient;
        INDArray backwardGradient;
        switch (conf(layer).getMode()) {
            case ADD:
                forwardGradient = epsilon;
                backwardGradient = epsilon;
                break;
            case AVERAGE:
                forwardGradient = epsilon.mul(0.5);
                backwardGradient = forwardGradient;
                break;
            case MUL:
                // DL4J's outputs of its forward step, [N, H, T], the backward one reversed back
                forwardGradient = epsilon.mul(keptOutput(layer, "outBwd"));
                backwardGradient = epsilon.mul(keptOutput(layer, "outFwd"));
                break;
            case CONCAT:
                long units = epsilon.size(1) / 2;
                forwardGradient = epsilon.get(NDArrayIndex.all(), NDArrayIndex.interval(0, units), NDArrayIndex.all());
                backwardGradient = epsilon.get(NDArrayIndex.all(), NDArrayIndex.interval(units, 2 * units),
                        NDArrayIndex.all());
                break;
            default:
                throw new IllegalStateException("unknown Bidirectional mode " + conf(layer).getMode());
        }
        backwardGradient = TimeSeriesUtils.reverseTimeSeries(backwardGradient);
        Map<String, FirstOrderTerms> parts = new LinkedHashMap<>();
        parts.put(BidirectionalParamInitializer.FORWARD_PREFIX,
                wrapped.firstOrder(forward, forward.input(), innerLayout(forwardGradient, nwc)));
        parts.put(BidirectionalParamInitializer.BACKWARD_PREFIX,
                wrapped.firstOrder(backward, backward.input(), innerLayout(backwardGradient, nwc)));
        return new PrefixedTerms(parts);
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
