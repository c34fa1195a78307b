package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * What the library knows about the derivatives of one kind of DL4J layer. One implementation per
 * layer kind; {@link LayerKinds} maps DL4J layer implementations to them.
 *
 * <p>For layers with parameters, {@code z = T(x; θ)} is the layer's pre-activation output (DL4J
 * fuses an elementwise activation into dense, output and convolution layers; the activation is
 * applied after {@code z}).
 */
public interface LayerDerivatives {

    /** @return a human-readable name of the kind, for messages */
    String kindName();

    /** @return whether this DL4J layer implementation is of this kind */
    boolean matches(Layer layer);

    /**
     * @param layer a layer of this kind
     * @return why this particular layer's configuration is not supported, or {@code null} when
     *     it is
     */
    default String unsupportedConfiguration(Layer layer) {
        return null;
    }

    /** @return whether layers of this kind have trainable parameters */
    boolean hasParameters();

    /**
     * First-order terms of a layer with parameters.
     *
     * @param layer the DL4J layer (for its configuration and parameters)
     * @param input the layer input as DL4J used it (after the layer's input dropout)
     * @param outputGradient {@code δ = ∂L/∂z} of the mean loss, shaped like {@code z}
     * @return the terms, computed lazily
     */
    default FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        throw new UnsupportedOperationException(kindName() + " has no parameters");
    }
}
