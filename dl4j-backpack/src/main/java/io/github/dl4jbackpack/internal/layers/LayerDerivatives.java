// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.api.Layer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

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

    /**
     * @param layer a layer of this kind
     * @return the elementwise activation applied to the layer's output {@code z} inside the network
     *     function (fused activation of dense and convolution layers, the function of an
     *     {@code ActivationLayer}), or null; the output layer's activation belongs to the loss
     */
    default IActivation activation(Layer layer) {
        return null;
    }

    /**
     * @param layer a layer of this kind
     * @param hessian whether Hessian residuals are needed
     * @return why a second-order pass cannot go through this layer, or null
     */
    default String secondOrderUnsupported(Layer layer, boolean hessian) {
        return null;
    }

    /**
     * Jacobian-transpose product w.r.t. the layer input.
     *
     * @param record the layer's record
     * @param factor columns at the layer output {@code z}, folded to {@code [N·V, *zShape]}
     * @return the columns at the layer input, {@code [N·V, *xShape]}
     */
    INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor);

    /**
     * Sizes chunks of columns in the second-order pass: an upper bound on the elements, per column
     * and example, that {@link #inputJacobianTranspose} and the curvature accumulation of this layer
     * allocate (temporaries included).
     *
     * @param record the layer's record
     * @return elements per column and example
     */
    default long scratchFeatures(RecordedLayer record) {
        return 2 * (record.inputFeatures() + record.outputFeatures());
    }

    /**
     * Adds {@code sign · Σ_v (J_θᵀ s_nv)²} for every parameter θ of the layer (summed over n or
     * per example, as the sink wants).
     *
     * @param record the layer's record
     * @param factor columns at the layer output {@code z}, {@code [N, V, *zShape]}
     * @param sign +1 or −1
     * @param sink where to add
     */
    default void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        throw new UnsupportedOperationException(kindName() + " has no parameters");
    }

    /**
     * Adds {@code diag(J_θᵀ diag(r_n) J_θ)} for every parameter θ of the layer, for a residual
     * {@code r} that is diagonal at the layer output {@code z}.
     *
     * @param record the layer's record
     * @param residual {@code r}, shaped like {@code z} ({@code [N, *zShape]})
     * @param sink where to add
     */
    default void accumulateResidual(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        throw new UnsupportedOperationException(kindName() + " has no parameters");
    }

    /**
     * @param layer a layer of this kind
     * @return whether its input Jacobian differs between examples (max pooling routes by the input)
     */
    default boolean jacobianVariesByExample(Layer layer) {
        return false;
    }

    /**
     * Adds the output-side Kronecker factor {@code Σ_n Σ_v t_nv t_nvᵀ} of the columns, where
     * {@code t_nv} is the column summed over output positions (the column itself for dense layers).
     *
     * @param record the layer's record
     * @param factor columns at the layer output {@code z}, {@code [N, V, *zShape]}
     * @param sink where to add
     */
    default void accumulateOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        throw new UnsupportedOperationException(kindName() + " has no parameters");
    }

    /**
     * @param record the layer's record
     * @param averaged a batch-averaged curvature matrix at the layer output over its flattened
     *     features, {@code [h, h]}
     * @return the output-side Kronecker factor it gives (summed over output positions)
     */
    default INDArray outputFactorOfAveraged(RecordedLayer record, INDArray averaged) {
        throw new UnsupportedOperationException(kindName() + " has no parameters");
    }

    /**
     * @param record the layer's record
     * @param outputFactor the layer's output-side factor {@code B}
     * @return the Kronecker factors of every parameter, with the input-side factor {@code A} from
     *     the layer input
     */
    default Map<String, KroneckerFactors> kroneckerFactors(RecordedLayer record, INDArray outputFactor) {
        throw new UnsupportedOperationException(kindName() + " has no parameters");
    }
}
