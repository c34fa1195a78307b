package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.UnsupportedLayerException;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.internal.layers.ElementwiseActivations;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import io.github.dl4jbackpack.internal.losses.LossCurvatures;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.BackpropType;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.layers.FeedForwardLayer;
import org.deeplearning4j.nn.conf.preprocessor.CnnToFeedForwardPreProcessor;
import org.deeplearning4j.nn.conf.preprocessor.FeedForwardToCnnPreProcessor;
import org.deeplearning4j.nn.layers.OutputLayer;
import org.deeplearning4j.nn.layers.wrapper.BaseWrapperLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Checks, before anything runs, that a network, a set of extensions and a batch can be handled, and
 * explains precisely what cannot.
 */
public final class Validation {

    private static final List<Class<? extends InputPreProcessor>> SUPPORTED_PREPROCESSORS =
            List.of(CnnToFeedForwardPreProcessor.class, FeedForwardToCnnPreProcessor.class);

    private Validation() {
    }

    /**
     * @param extensions requested extensions
     * @throws IllegalArgumentException on null entries or the same extension class twice
     */
    public static void checkDistinct(List<Extension<?>> extensions) {
        Set<Class<?>> seen = new HashSet<>();
        for (Extension<?> e : extensions) {
            if (e == null) {
                throw new IllegalArgumentException("null extension in " + extensions);
            }
            if (!seen.add(e.getClass())) {
                throw new IllegalArgumentException("Extension " + e.name() + " was requested twice; each extension "
                        + "class may appear once per pass (results are keyed by class)");
            }
        }
    }

    /**
     * @param net the network (layers possibly wrapped)
     * @param extensions the requested extensions
     * @throws UnsupportedLayerException naming the first layer an extension cannot handle
     */
    public static void checkNetwork(MultiLayerNetwork net, List<Extension<?>> extensions) {
        if (extensions.isEmpty()) {
            return;
        }
        String extension = extensions.get(0).name();
        checkLayers(net, extension);
        for (Extension<?> e : extensions) {
            if (!e.curvatureRequests().isEmpty()) {
                boolean hessian = e.curvatureRequests().stream()
                        .anyMatch(r -> r.kind().equals(io.github.dl4jbackpack.internal.curvature.FactorKind.RESIDUAL));
                checkSecondOrder(net, e.name(), hessian);
            }
        }
    }

    private static void checkSecondOrder(MultiLayerNetwork net, String extension, boolean hessian) {
        Layer[] layers = net.getLayers();
        int last = layers.length - 1;
        Layer output = unwrap(layers[last]);
        org.deeplearning4j.nn.conf.layers.Layer outConf = output.conf().getLayer();
        if (!(outConf instanceof org.deeplearning4j.nn.conf.layers.BaseOutputLayer)
                && !(outConf instanceof org.deeplearning4j.nn.conf.layers.LossLayer)) {
            throw new UnsupportedLayerException(last, output.getClass().getSimpleName(), extension,
                    "the last layer is not an output or loss layer", "OutputLayer, LossLayer");
        }
        org.nd4j.linalg.activations.IActivation outActivation =
                ((org.deeplearning4j.nn.conf.layers.BaseLayer) outConf).getActivationFn();
        org.nd4j.linalg.lossfunctions.ILossFunction loss = InterceptingOutputLayer.lossFunction(outConf);
        if (LossCurvatures.of(loss, outActivation).isEmpty()) {
            throw new UnsupportedLayerException(last, output.getClass().getSimpleName(), extension,
                    "loss " + loss + " with activation " + outActivation + " has no implemented Hessian factor",
                    LossCurvatures.SUPPORTED);
        }
        for (int i = 0; i < layers.length; i++) {
            Layer layer = unwrap(layers[i]);
            String reason = LayerKinds.of(layer).orElseThrow().secondOrderUnsupported(layer, hessian);
            org.deeplearning4j.nn.conf.dropout.IDropout dropout = layer.conf().getLayer().getIDropout();
            if (reason == null && dropout != null && dropout.getClass() != org.deeplearning4j.nn.conf.dropout.Dropout.class) {
                reason = "input noise " + dropout.getClass().getSimpleName() + " is not supported by second-order "
                        + "extensions (standard Dropout is)";
            }
            if (reason == null && dropout instanceof org.deeplearning4j.nn.conf.dropout.Dropout
                    && ((org.deeplearning4j.nn.conf.dropout.Dropout) dropout).getHelper() != null) {
                reason = "dropout computed by a CuDNN helper keeps its mask hidden; second-order extensions need it";
            }
            if (reason != null) {
                throw new UnsupportedLayerException(i, layer.getClass().getSimpleName(), extension, reason,
                        "activations " + ElementwiseActivations.SUPPORTED + "; pooling max/avg"
                                + (hessian ? "" : "/pnorm") + "; standard Dropout");
            }
        }
    }

    private static void checkLayers(MultiLayerNetwork net, String extension) {
        MultiLayerConfiguration conf = net.getLayerWiseConfigurations();
        Layer[] layers = net.getLayers();
        if (conf.getBackpropType() != BackpropType.Standard) {
            throw new UnsupportedLayerException(layers.length - 1, "MultiLayerNetwork", extension,
                    "backprop type " + conf.getBackpropType() + " (time series) is not supported",
                    "BackpropType.Standard");
        }
        for (int i = 0; i < layers.length; i++) {
            Layer layer = unwrap(layers[i]);
            String reason = LayerKinds.whyUnsupported(layer);
            if (reason != null) {
                throw new UnsupportedLayerException(i, layer.getClass().getSimpleName(), extension, reason,
                        "layers " + LayerKinds.supportedNames());
            }
            InputPreProcessor pre = conf.getInputPreProcess(i);
            if (pre != null && !SUPPORTED_PREPROCESSORS.contains(pre.getClass())) {
                throw new UnsupportedLayerException(i, layer.getClass().getSimpleName(), extension,
                        "input preprocessor " + pre.getClass().getSimpleName() + " is not supported",
                        "preprocessors CnnToFeedForwardPreProcessor, FeedForwardToCnnPreProcessor");
            }
        }
    }

    /**
     * @param net the network
     * @param features a batch of features
     * @param labels the matching labels
     * @throws IllegalArgumentException when the batch cannot be used, before the network is touched
     */
    public static void checkBatch(MultiLayerNetwork net, INDArray features, INDArray labels) {
        if (features == null || labels == null) {
            throw new IllegalArgumentException("features and labels must not be null");
        }
        if (features.rank() != 2 && features.rank() != 4) {
            throw new IllegalArgumentException("features must have rank 2 [N, nIn] or 4 [N, C, H, W]; got shape "
                    + java.util.Arrays.toString(features.shape())
                    + (features.rank() == 3 ? " (time-series input is not supported)" : ""));
        }
        if (labels.rank() != 2) {
            throw new IllegalArgumentException("labels must have rank 2 [N, nOut]; got shape "
                    + java.util.Arrays.toString(labels.shape()));
        }
        if (features.size(0) != labels.size(0)) {
            throw new IllegalArgumentException("features have " + features.size(0) + " examples but labels have "
                    + labels.size(0));
        }
        if (features.size(0) == 0) {
            throw new IllegalArgumentException("empty batch");
        }
        Layer[] layers = net.getLayers();
        Layer out = unwrap(layers[layers.length - 1]);
        if (out instanceof OutputLayer) {
            long nOut = ((FeedForwardLayer) out.conf().getLayer()).getNOut();
            if (labels.size(1) != nOut) {
                throw new IllegalArgumentException("labels have " + labels.size(1) + " columns but the output layer "
                        + (layers.length - 1) + " has nOut=" + nOut);
            }
        }
        Layer first = unwrap(layers[0]);
        if (features.rank() == 2 && net.getLayerWiseConfigurations().getInputPreProcess(0) == null
                && first.conf().getLayer() instanceof FeedForwardLayer
                && !(first instanceof org.deeplearning4j.nn.layers.convolution.ConvolutionLayer)) {
            long nIn = ((FeedForwardLayer) first.conf().getLayer()).getNIn();
            if (nIn > 0 && features.size(1) != nIn) {
                throw new IllegalArgumentException("features have " + features.size(1) + " columns but layer 0 has nIn="
                        + nIn);
            }
        }
    }

    static Layer unwrap(Layer layer) {
        return layer instanceof InterceptingLayer ? ((BaseWrapperLayer) layer).getUnderlying() : layer;
    }
}
