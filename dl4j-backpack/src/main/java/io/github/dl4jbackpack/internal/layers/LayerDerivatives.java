// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;
import java.util.Set;

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
     * @param layer a layer of this kind
     * @return the names of the parameters DL4J trains by gradient, in {@code paramTable()} order (a
     *     BatchNormalization's running statistics are parameters but not these)
     */
    default Set<String> trainableParameters(Layer layer) {
        return hasParameters() ? layer.paramTable().keySet() : Set.of();
    }

    /**
     * @param layer a layer of this kind
     * @return whether, in DL4J's training mode, one example's output depends on the other examples of
     *     the batch (batch normalisation)
     */
    default boolean normalisesOverBatch(Layer layer) {
        return false;
    }

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
     * First-order terms computed before DL4J's backward step of the layer, sharing values with that step (an
     * LSTM's forward pass, which DL4J's step would otherwise recompute), or null when the kind does not share
     * (then {@link #firstOrder} is called after DL4J's step). DL4J's step must compute exactly what it computes
     * without the sharing.
     *
     * @param layer the DL4J layer, before its backward step
     * @param input the layer input as DL4J uses it
     * @param outputGradient {@code ∂L/∂y} of the mean loss at the layer output
     * @param workspaceMgr the workspace manager of DL4J's backward step
     * @return the terms, or null
     */
    default FirstOrderTerms firstOrderSharingForward(Layer layer, INDArray input, INDArray outputGradient,
                                                     LayerWorkspaceMgr workspaceMgr) {
        return null;
    }

    /**
     * After DL4J's backward step of a layer for which {@link #firstOrderSharingForward} returned terms (also when
     * the step failed): whatever was handed to the layer for that step and not taken is withdrawn.
     *
     * @param layer the DL4J layer
     */
    default void afterSharedBackward(Layer layer) {
    }

    /**
     * First-order terms of a layer that sees every example in k rows, row {@code j·N + n} being example
     * n's j-th (the copies a {@code StackVertex} stacks; the time steps DL4J's
     * {@code RnnToFeedForwardPreProcessor} flattens a sequence into): example n's gradient is the sum over
     * its rows. By default the rows' individual gradients are formed and summed ({@link SharedRowsTerms},
     * {@code k·N × #params}); kinds whose rows' gradients are outer products sum them over rows directly.
     *
     * @param layer the DL4J layer
     * @param input the layer input, {@code [k·N, ...]}
     * @param outputGradient {@code δ = ∂L/∂z} of the mean loss, {@code [k·N, ...]}
     * @param runningStatistics whether the forward pass normalised with the running statistics
     * @param rows k
     * @return the terms of the N examples
     */
    default FirstOrderTerms firstOrderOfRows(Layer layer, INDArray input, INDArray outputGradient,
                                             boolean runningStatistics, long rows) {
        return new SharedRowsTerms(firstOrder(layer, input, outputGradient, runningStatistics), rows);
    }

    /**
     * The backward step of a layer that {@link #normalisesOverBatch normalises over the batch}, for a
     * pass whose forward step normalised with the running statistics (DL4J's own step assumes the
     * batch's).
     *
     * @param layer the DL4J layer, after such a forward step
     * @param epsilon {@code ∂L/∂y} of the summed loss at the layer output
     * @param workspaceMgr DL4J's workspace manager
     * @return the gradient (written into the layer's gradient views) and {@code ∂L/∂x}
     */
    default Pair<Gradient, INDArray> runningStatisticsBackward(Layer layer, INDArray epsilon,
                                                              LayerWorkspaceMgr workspaceMgr) {
        throw new UnsupportedOperationException(kindName() + " has no batch statistics");
    }

    /**
     * DL4J's backward step of the layer without the product of its weight gradient, for passes whose caller
     * replaces the gradient ({@code WeightedGradientSum.replacingGradient()}): the same input gradient and bias
     * gradient as DL4J's step (the same operations on the same arrays), the activation's derivative taken through
     * the layer's configuration as DL4J's step takes it, the view of the weight gradient (DL4J's key {@code W}) set to zero.
     *
     * @param layer the DL4J layer, after its training forward step
     * @param epsilon {@code ∂L/∂y} of the summed loss at the layer output
     * @param forwardPreActivation {@code z} as the training forward step computed it, which the step may
     *     overwrite, or null to compute it again as DL4J's step does
     * @param workspaceMgr DL4J's workspace manager
     * @return the gradient (in the layer's gradient views; the weights' zero) and {@code ∂L/∂x}, or null where
     *     the layer or its configuration needs DL4J's own step
     */
    default Pair<Gradient, INDArray> backwardWithoutWeightGradient(Layer layer, INDArray epsilon,
                                                                   INDArray forwardPreActivation,
                                                                   LayerWorkspaceMgr workspaceMgr) {
        return null;
    }

    /**
     * @param layer a layer of this kind
     * @return whether {@link #backwardWithoutWeightGradient} can take this layer's {@code z} from its training
     *     forward step: the forward step's {@code z} is the one DL4J's backward step would compute again
     */
    default boolean reusesForwardPreActivation(Layer layer) {
        return false;
    }

    /**
     * @param layer a layer of this kind
     * @return whether DL4J's backward step of the layer is the derivative of its forward step (it is not
     *     for local response normalisation): the curvature extensions use the exact derivative, so
     *     where DL4J's is not, the gradients DL4J hands to the layers below are not exact either, and the
     *     Hessian residuals there, which need them, are refused
     */
    default boolean backwardIsDerivative(Layer layer) {
        return true;
    }

    /**
     * @param layer a layer of this kind, without parameters or with them
     * @return whether the layer's output is not piecewise linear in its input in a way that an elementwise
     *     activation does not capture (local response normalisation, p-norm pooling), so that
     *     {@link #inputResidual} must be added to Hessians; normalisations over the batch have their
     *     own residual ({@link #normalisesOverBatch})
     */
    default boolean hasInputResidual(Layer layer) {
        return false;
    }

    /**
     * For a layer that {@link #normalisesOverBatch normalises over the batch}, after DL4J's training-mode
     * forward step: the gradient at its input with the batch's statistics held constant (the layer
     * differentiated as the affine map it applied to each example).
     *
     * @param layer the DL4J layer, after such a forward step
     * @param input the layer's input in that step
     * @param epsilon {@code ∂L/∂y} at the layer output
     * @return {@code ∂L/∂x}, a new array
     */
    default INDArray constantStatisticsInputGradient(Layer layer, INDArray input, INDArray epsilon) {
        throw new UnsupportedOperationException(kindName() + " has no batch statistics");
    }

    /**
     * The Hessian residual of the layer at its input, {@code Σ_{m,k} (∂L/∂y_mk) ∇²_x y_mk}, for a layer
     * that {@link #hasInputResidual has one} or that {@link #normalisesOverBatch normalises over the
     * batch} (then it couples the examples), in signed factored parts whose columns start at the layer
     * input (of one example each, or spanning the batch).
     *
     * @param record the layer's record, with its output gradient
     * @return the parts
     */
    default java.util.List<VertexDerivatives.ResidualPart> inputResidual(RecordedLayer record) {
        throw new UnsupportedOperationException(kindName() + " has no Hessian residual at its input");
    }

    /**
     * @param layer a layer of this kind, inside a wrapper that sets a mask on it ({@code LastTimeStep},
     *     {@code Bidirectional} with the network's feature mask, {@code MaskZeroLayer} always)
     * @return why the Hessian cannot go through the layer when it sees a mask, or null
     */
    default String maskedHessianUnsupported(Layer layer) {
        return null;
    }

    /**
     * @param layer a layer of this kind
     * @return why the Hessian cannot go through the layer on a batch with a feature mask (a wrapper that hands
     *     the mask to a layer whose Hessian needs none), or null
     */
    default String hessianWithFeatureMaskUnsupported(Layer layer) {
        return null;
    }

    /**
     * @param layer a layer of this kind
     * @return whether the layer's Hessian residual lies inside it: nonlinear maps within its steps whose
     *     results feed later steps (a recurrent layer's activations, and its recurrent weights multiplying a
     *     state that depends on them), see {@link #internalResidual}
     */
    default boolean hasInternalResidual(Layer layer) {
        return false;
    }

    /**
     * The Hessian residual inside a layer that {@link #hasInternalResidual has one}, weighted with the
     * gradients of the mean loss its record holds (docs/math.md#hessian-through-recurrent-layers).
     *
     * @param record the layer's record, with its output gradient
     * @return the parts, each pushed through the layer in ranges of columns
     */
    default java.util.List<InternalResidualPart> internalResidual(RecordedLayer record) {
        throw new UnsupportedOperationException(kindName() + " has no Hessian residual inside it");
    }

    /**
     * Sizes chunks of the columns of {@link #internalResidual}: an upper bound on the elements, per column and
     * example, that pushing them through the layer allocates beyond {@link #scratchFeatures}.
     *
     * @param record the layer's record
     * @return elements per column and example
     */
    default long internalResidualScratchFeatures(RecordedLayer record) {
        return 0;
    }

    /**
     * A part of a layer's internal Hessian residual: either a signed factored part {@code sign · Σ_v c_v c_vᵀ}
     * whose columns start inside the layer (at a step's pre-activation), or a term that touches the
     * diagonal of the layer's own parameters alone (a product of two of its own functions), whose
     * "columns" are only a way to split its cost into ranges.
     */
    interface InternalResidualPart {

        /** @return +1 or −1, the sign the columns at the layer input carry below it */
        double sign();

        /** @return the number of columns per example (per row of the layer) */
        long columns();

        /**
         * Pushes columns {@code [from, to)} of every row through the layer's steps, adding their
         * contribution to the diagonal of the layer's own parameters.
         *
         * @param from first column
         * @param to end of the range (exclusive)
         * @param sink where the layer's own parameters accumulate (summed or per example, as it wants), or
         *     null when they are not wanted
         * @return the columns at the layer input, folded {@code [R·(to − from), *xShape]} (example-major),
         *     or null for a part that has none there
         */
        INDArray push(long from, long to, CurvatureSink sink);

        /**
         * Called once after every column has been pushed: adds what the part gathered across chunks.
         *
         * @param sink where the layer's own parameters accumulate
         */
        default void finish(CurvatureSink sink) {
        }
    }

    /**
     * First-order terms of a layer with parameters, for a pass in which a layer that
     * {@link #normalisesOverBatch normalises over the batch} used the running statistics (or not).
     *
     * @param layer the DL4J layer
     * @param input the layer input as DL4J used it
     * @param outputGradient {@code δ = ∂L/∂z} of the mean loss
     * @param runningStatistics whether the forward pass normalised with the running statistics
     * @return the terms, computed lazily
     */
    default FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient,
                                       boolean runningStatistics) {
        return firstOrder(layer, input, outputGradient);
    }

    /**
     * @param layer a layer of this kind
     * @param recorded the pre-activation {@code z} as DL4J's backward step handed it to the activation
     * @return {@code z} in the layout of the layer output (the same array unless DL4J applies the
     *     activation in another layout)
     */
    default INDArray preActivationInOutputLayout(Layer layer, INDArray recorded) {
        return recorded;
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
     * @param layer a layer of this kind
     * @return whether the curvature extensions support it in a network trained on sequence data (time
     *     series with or without masks): its derivatives know time axes and masks, or it sees none (an
     *     elementwise or shape-agnostic map, a layer after the time axis is gone)
     */
    default boolean supportsSequences(Layer layer) {
        return false;
    }

    /**
     * @param layer a layer of this kind
     * @return whether the curvature extensions support it behind DL4J's {@code RnnToFeedForwardPreProcessor},
     *     which flattens the steps of a series into rows: it maps every row alone (a hidden dense layer, an
     *     elementwise map), so that it is the same map at every step of the series form its record is kept in
     */
    default boolean supportsFlattenedSteps(Layer layer) {
        return false;
    }

    /**
     * @param layer a layer of this kind
     * @param input the input DL4J's layer keeps
     * @param examples N
     * @return the input the curvature extensions keep in the layer's record, batch axis first with N rows: the
     *     same array, but for kinds whose layer keeps its input in another form (a wrapper that moves the time
     *     steps into rows)
     */
    default INDArray curvatureInput(Layer layer, INDArray input, long examples) {
        return input;
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
     * Adds {@code sign · Σ_c (Σ_m J_θ,mᵀ s_mc)²} for columns that span the whole batch (below a layer
     * that normalises over the batch): example m's part of column c is {@code s_mc}, and a column's
     * parameter Jacobian-transpose product sums over the examples before it is squared.
     *
     * @param record the layer's record
     * @param factor columns at the layer output {@code z}, {@code [N, C, *zShape]}
     * @param sign +1 or −1
     * @param sink where to add (never per example)
     */
    default void accumulateSharedCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        throw new UnsupportedOperationException(kindName() + " does not support columns spanning the batch");
    }

    /**
     * @param layer a layer of this kind
     * @return whether {@link #accumulateSharedCurvature} is implemented
     */
    default boolean supportsSharedColumns(Layer layer) {
        return !hasParameters();
    }

    /**
     * The output-side Kronecker factor of columns that span the whole batch; by default every
     * example's part of a column counts as a column of its own ("expand", docs/math.md#batch-normalization).
     *
     * @param record the layer's record
     * @param factor columns at the layer output {@code z}, {@code [N, C, *zShape]}
     * @param sink where to add
     */
    default void accumulateSharedOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        accumulateOutputFactor(record, factor, sink);
    }

    /**
     * The output-side Kronecker factor of columns that span a stacked batch (each column belongs to one
     * example, with parts in its copies' rows): the column summed over the rows, as a convolution's
     * columns are summed over positions ("reduce"); by default the output factor of the row-summed
     * columns, right for kinds whose factor depends on the columns alone.
     *
     * @param record the layer's record
     * @param factor columns at the layer output {@code [R, C, *zShape]}
     * @param sink where to add
     */
    default void accumulateReducedOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        long[] shape = factor.shape().clone();
        shape[0] = 1;
        accumulateOutputFactor(record, factor.sum(0).reshape('c', shape), sink);
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
     * @param layer a layer of this kind
     * @return why the layer's parameters have no Kronecker factorisation, or null when
     *     {@link #accumulateOutputFactor} and {@link #kroneckerFactors} are implemented
     */
    default String noKroneckerFactors(Layer layer) {
        return hasParameters() ? null : kindName() + " has no parameters";
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
