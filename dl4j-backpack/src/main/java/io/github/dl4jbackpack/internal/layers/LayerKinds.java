// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.DropoutLayer;
import org.deeplearning4j.nn.layers.LossLayer;

import java.util.List;
import java.util.Optional;
import java.util.stream.Collectors;

/** The supported DL4J layer kinds, and the lookup from a DL4J layer implementation to its kind. */
public final class LayerKinds {

    private static final List<LayerDerivatives> KINDS = kinds();

    private static List<LayerDerivatives> kinds() {
        List<LayerDerivatives> kinds = new java.util.ArrayList<>(List.of(
                new DenseDerivatives(),
                new EmbeddingDerivatives(),
                new LstmDerivatives(),
                new EmbeddingSequenceDerivatives(),
                new ConvolutionDerivatives(),
                new Convolution3DDerivatives(),
                new DeconvolutionDerivatives(),
                new DepthwiseConvolutionDerivatives(),
                new SeparableConvolutionDerivatives(),
                new Convolution1DDerivatives(),
                new SimpleRnnDerivatives(),
                new ElementWiseMultiplicationDerivatives(),
                new PReluDerivatives(),
                new SubsamplingDerivatives(),
                new Subsampling3DDerivatives(),
                new GlobalPoolingDerivatives(),
                new LrnDerivatives(),
                new BatchNormDerivatives(),
                new ActivationLayerDerivatives(),
                new SpaceToDepthDerivatives(),
                new SpaceToBatchDerivatives(),
                new IdentityDerivatives(DropoutLayer.class),
                new IdentityDerivatives(LossLayer.class),
                new IdentityDerivatives(org.deeplearning4j.nn.layers.convolution.CnnLossLayer.class),
                new IdentityDerivatives(org.deeplearning4j.nn.layers.recurrent.RnnLossLayer.class)));
        kinds.addAll(SpatialResizeDerivatives.all());
        kinds.addAll(Parameterless1DDerivatives.all());
        return List.copyOf(kinds);
    }

    private LayerKinds() {
    }

    /**
     * The recurrent wrappers {@code Bidirectional}, {@code MaskZeroLayer} and {@code TimeDistributed} are seen
     * through {@link BidirectionalKind}, {@link MaskZeroKind} and {@link TimeDistributedKind} around the wrapped
     * layer's kind.
     *
     * @param layer a DL4J layer implementation (not a wrapper)
     * @return its kind, if supported (for a 2D vision layer in NHWC layout, its NCHW kind seen
     *     through {@link ChannelsLastKind}; for a {@code LastTimeStep} wrapper, the wrapped layer's kind seen
     *     through {@link LastTimeStepKind})
     */
    public static Optional<LayerDerivatives> of(Layer layer) {
        if (layer instanceof org.deeplearning4j.nn.layers.recurrent.LastTimeStepLayer) {
            return of(((org.deeplearning4j.nn.layers.recurrent.LastTimeStepLayer) layer).getUnderlying())
                    .map(LastTimeStepKind::new);
        }
        if (layer instanceof org.deeplearning4j.nn.layers.recurrent.BidirectionalLayer) {
            return of(BidirectionalKind.forwardLayer(layer)).map(BidirectionalKind::new);
        }
        if (layer instanceof org.deeplearning4j.nn.layers.recurrent.MaskZeroLayer) {
            return of(((org.deeplearning4j.nn.layers.recurrent.MaskZeroLayer) layer).getUnderlying())
                    .map(MaskZeroKind::new);
        }
        if (layer instanceof org.deeplearning4j.nn.layers.recurrent.TimeDistributedLayer) {
            return of(((org.deeplearning4j.nn.layers.recurrent.TimeDistributedLayer) layer).getUnderlying())
                    .map(TimeDistributedKind::new);
        }
        return KINDS.stream().filter(k -> k.matches(layer)).findFirst()
                .map(k -> ChannelsLastKind.isChannelsLast(layer.conf().getLayer()) ? new ChannelsLastKind(k) : k);
    }

    /** @return the names of all supported kinds, for messages */
    public static String supportedNames() {
        return KINDS.stream().map(LayerDerivatives::kindName).collect(Collectors.joining(", "));
    }

    /**
     * @param layer a DL4J layer implementation
     * @return an explanation for a layer that is not supported, or null when it is
     */
    public static String whyUnsupported(Layer layer) {
        Optional<LayerDerivatives> kind = of(layer);
        if (kind.isEmpty()) {
            if (layer.conf().getLayer() instanceof org.deeplearning4j.nn.conf.layers.samediff.AbstractSameDiffLayer) {
                return "layer type " + layer.conf().getLayer().getClass().getSimpleName() + " is a SameDiff layer, "
                        + "whose derivatives dl4j-backpack does not know";
            }
            if (layer instanceof org.deeplearning4j.nn.api.layers.IOutputLayer && layer.numParams() == 0) {
                return "output layer type " + layer.getClass().getSimpleName() + " has no implemented loss Hessian "
                        + "(first-order extensions, which use DL4J's own gradient, are supported)";
            }
            return "layer type " + layer.getClass().getSimpleName() + " is not supported";
        }
        return kind.get().unsupportedConfiguration(layer);
    }
}
