// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import io.github.dl4jbackpack.internal.layers.ElementwiseActivations;
import io.github.dl4jbackpack.internal.layers.FirstOrderTerms;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import io.github.dl4jbackpack.internal.layers.RecordedLayer;
import io.github.dl4jbackpack.internal.losses.LossCurvatures;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.TrainingConfig;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.dropout.Dropout;
import org.deeplearning4j.nn.conf.dropout.IDropout;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.conf.layers.BaseOutputLayer;
import org.deeplearning4j.nn.conf.layers.CnnLossLayer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.layers.wrapper.BaseWrapperLayer;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.ILossFunction;

/**
 * Wraps one DL4J layer implementation of an extended network (installed in
 * {@code MultiLayerNetwork.getLayers()}, or in a graph's {@code LayerVertex} and
 * {@code getLayers()}). Everything is delegated unchanged; while a backward pass with extensions is
 * in progress, the wrapper records the layer input and the pre-activation gradient DL4J computes,
 * and lets the first-order extensions compute their values for this layer before DL4J's pass moves
 * on (while the workspace arrays are still valid).
 *
 * <p><b>How the pre-activation gradient is obtained without touching the configuration.</b> DL4J's
 * layer implementations read their activation (and loss) from {@code conf().getLayer()} inside
 * their backward step. At installation the wrapped implementation is given a private copy of its
 * {@code NeuralNetConfiguration} whose activation (output layers: loss) is a recording delegate;
 * the copy shares the updater and regularisation objects of the original, so changes the user makes
 * there still apply. The network's own configuration objects are never modified (several networks
 * may share them), and this wrapper's {@link #conf()} and {@link #getConfig()} return the original,
 * so DL4J code outside the layer (updater, serialisation, summaries) sees exactly what it saw.
 * {@link #uninstall()} gives the implementation its original configuration back.
 */
public class InterceptingLayer extends BaseWrapperLayer {

    // never serialised: wrappers are not saved (ModelSerializer writes the configuration and parameters)
    private final transient Node node;
    private final transient Interceptor interceptor;
    private final transient LayerDerivatives kind;
    private final transient NeuralNetConfiguration original;
    private final transient RecordingActivation activationRecorder;
    private final transient RecordingLoss lossRecorder;
    /** Whether the last training forward step of a batch-normalising layer used the running statistics. */
    private transient boolean runningForward;
    /** Whether this layer's current step treats the batch's statistics as constants. */
    private transient boolean batchConstants;

    /**
     * @param underlying the DL4J layer
     * @param node its node in the network's topology
     * @param interceptor the network's shared state
     */
    public InterceptingLayer(Layer underlying, Node node, Interceptor interceptor) {
        super(underlying);
        this.node = node;
        this.interceptor = interceptor;
        this.kind = LayerKinds.of(underlying).orElse(null);
        this.original = underlying.conf();
        org.deeplearning4j.nn.conf.layers.Layer conf = original.getLayer();
        RecordingActivation activation = null;
        RecordingLoss loss = null;
        if (conf instanceof BaseOutputLayer || conf instanceof LossLayer || conf instanceof CnnLossLayer
                || conf instanceof org.deeplearning4j.nn.conf.layers.RnnLossLayer) {
            loss = new RecordingLoss(lossFunction(conf));
        } else if (kind != null && kind.hasParameters() && !kind.normalisesOverBatch(underlying)
                && conf instanceof BaseLayer && kind.activation(underlying) != null) {
            // a kind without a fused activation (PReLU: DL4J ignores the configured one) has ∂L/∂z = epsilon
            activation = new RecordingActivation(((BaseLayer) conf).getActivationFn());
        }
        this.activationRecorder = activation;
        this.lossRecorder = loss;
        if (activation != null || loss != null) {
            underlying.setConf(privateCopy(original, activation, loss));
        }
    }

    /**
     * @return a copy of the configuration with the recorders in place, sharing the original's updater
     *     and regularisation objects
     */
    private static NeuralNetConfiguration privateCopy(NeuralNetConfiguration original, RecordingActivation activation,
                                                      RecordingLoss loss) {
        NeuralNetConfiguration copy = original.clone();
        org.deeplearning4j.nn.conf.layers.Layer mine = copy.getLayer();
        org.deeplearning4j.nn.conf.layers.Layer theirs = original.getLayer();
        if (mine instanceof BaseLayer) {
            BaseLayer m = (BaseLayer) mine;
            BaseLayer t = (BaseLayer) theirs;
            m.setIUpdater(t.getIUpdater());
            m.setBiasUpdater(t.getBiasUpdater());
            m.setRegularization(t.getRegularization());
            m.setRegularizationBias(t.getRegularizationBias());
            if (activation != null) {
                m.setActivationFn(activation);
            }
        }
        if (loss != null) {
            if (mine instanceof BaseOutputLayer) {
                ((BaseOutputLayer) mine).setLossFn(loss);
            } else if (mine instanceof CnnLossLayer) {
                ((CnnLossLayer) mine).setLossFn(loss);
            } else if (mine instanceof org.deeplearning4j.nn.conf.layers.RnnLossLayer) {
                ((org.deeplearning4j.nn.conf.layers.RnnLossLayer) mine).setLossFn(loss);
            } else {
                ((LossLayer) mine).setLossFn(loss);
            }
        }
        return copy;
    }

    /** Gives the wrapped implementation its original configuration back. */
    public void uninstall() {
        underlying.setConf(original);
    }

    /** @return the DL4J layer this wrapper stands for, the one the network held before the library's */
    public Layer plain() {
        return underlying;
    }

    /**
     * {@inheritDoc} What DL4J reaches for through a wrapper: its networks look one wrapper deep for a recurrent
     * layer's stored state (step-by-step inference, the stored-state forward pass of truncated BPTT, reading and
     * clearing the state). Where the wrapped layer is itself a wrapper around a recurrent layer
     * ({@code MaskZeroLayer}, {@code LastTimeStep}), DL4J would find that recurrent layer through it, so this
     * returns it; otherwise the wrapped layer. The library reads the wrapped layer with {@link #plain()}.
     */
    @Override
    public Layer getUnderlying() {
        if (underlying instanceof BaseWrapperLayer
                && !(underlying instanceof org.deeplearning4j.nn.api.layers.RecurrentLayer)) {
            Layer inner = ((BaseWrapperLayer) underlying).getUnderlying();
            if (inner instanceof org.deeplearning4j.nn.api.layers.RecurrentLayer) {
                return inner;
            }
        }
        return underlying;
    }

    /** @return the shared state of the network this layer belongs to */
    public Interceptor interceptor() {
        return interceptor;
    }

    /** @return the layer's node */
    public Node node() {
        return node;
    }

    /** @return the network's configuration object of this layer, never modified */
    @Override
    public NeuralNetConfiguration conf() {
        return original;
    }

    @Override
    public TrainingConfig getConfig() {
        return original.getLayer();
    }

    @Override
    public void setConf(NeuralNetConfiguration conf) {
        throw new UnsupportedOperationException("the configuration of an extended layer cannot be replaced; call "
                + "BackPackNetwork.unwrap() first");
    }

    /**
     * A layer that normalises over the batch (BatchNormalization) normalises with its running
     * statistics in the training passes of an extended network set to do so
     * ({@code BackPackNetwork.setBatchNormStatistics}); everything else is DL4J's own step.
     */
    @Override
    public INDArray activate(boolean training, LayerWorkspaceMgr workspaceMgr) {
        beginForward(training);
        try {
            return underlying.activate(training && !runningForward(training), workspaceMgr);
        } finally {
            endForward();
        }
    }

    @Override
    public INDArray activate(INDArray input, boolean training, LayerWorkspaceMgr workspaceMgr) {
        beginForward(training);
        try {
            return underlying.activate(input, training && !runningForward(training), workspaceMgr);
        } finally {
            endForward();
        }
    }

    /**
     * In training passes that replace DL4J's gradient, a layer whose backward step can skip the weight product
     * keeps its forward step's {@code z}, so that the step need not compute it again.
     */
    private void beginForward(boolean training) {
        if (activationRecorder != null) {
            activationRecorder.beginForward(training && kind != null && kind.reusesForwardPreActivation(underlying)
                    && interceptor.replacesGradient());
        }
    }

    private void endForward() {
        if (activationRecorder != null) {
            activationRecorder.endForward(underlying.input());
        }
    }

    private boolean runningForward(boolean training) {
        boolean normalises = training && kind != null && kind.normalisesOverBatch(underlying);
        runningForward = normalises && interceptor.runningStatistics();
        batchConstants = normalises && interceptor.batchStatisticsAsConstants();
        return runningForward;
    }

    /** DL4J's backward step, or the layer kind's own where the forward step used the running statistics. */
    private Pair<Gradient, INDArray> underlyingBackprop(INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        if (runningForward) {
            return kind.runningStatisticsBackward(underlying, epsilon, workspaceMgr);
        }
        if (batchConstants) {
            // DL4J's step (its gradients of γ, β and its update of the running statistics), with the
            // gradient at the input of the statistics held constant
            INDArray constantInputGradient = kind.constantStatisticsInputGradient(underlying, underlying.input(),
                    epsilon);
            Pair<Gradient, INDArray> result = underlying.backpropGradient(epsilon, workspaceMgr);
            return new Pair<>(result.getFirst(), workspaceMgr.leverageTo(
                    org.deeplearning4j.nn.workspace.ArrayType.ACTIVATION_GRAD, constantInputGradient));
        }
        return underlying.backpropGradient(epsilon, workspaceMgr);
    }

    @Override
    public Pair<Gradient, INDArray> backpropGradient(INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        BackwardPass pass = interceptor.current();
        if (pass == null || !pass.involves(node)) {
            return underlyingBackprop(epsilon, workspaceMgr);
        }
        try {
            boolean flattenedSteps = flattenedSteps(pass);
            INDArray recordedInput = !pass.needsCurvature(node) || kind == null || flattenedSteps ? underlying.input()
                    : kind.curvatureInput(underlying, underlying.input(), pass.batchSize());
            if (pass.needsCurvature(node) && !flattenedSteps
                    && recordedInput.size(0) != pass.batchSize() * pass.copies(node)) {
                throw new UnsupportedOperationException(node.describe() + " sees " + underlying.input().size(0)
                        + " rows in a batch of " + pass.batchSize() + ": curvature extensions support the flattened "
                        + "steps of NCW series only in hidden DenseLayer, ActivationLayer and DropoutLayer");
            }
            Step step = delegate(pass, epsilon, workspaceMgr);
            if (pass.needsCurvature(node) && flattenedSteps) {
                pass.record(seriesRecord(pass, step, epsilon));
            } else if (pass.needsCurvature(node)) {
                // a per-position loss sees its input as [N·P, C]; the layer's output is shaped like its input
                long[] sequenceOutput = epsilon == null ? sequenceOutputShape() : null;
                long[] outputShape = epsilon != null ? epsilon.shape().clone() : sequenceOutput != null ? sequenceOutput
                        : original.getLayer() instanceof CnnLossLayer ? underlying.input().shape().clone()
                        : step.preActivation.shape().clone();
                RecordedLayer record = new RecordedLayer(node, underlying, kind, recordedInput, step.preActivation,
                        step.dropoutMask, residualGradient(pass, epsilon), outputShape);
                record.setRunningStatistics(runningForward);
                record.setBatchStatisticsAsConstants(batchConstants);
                record.setCopies(pass.copies(node));
                if (pass.needsInputGradient(node) && step.result.getSecond() != null) {
                    try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                        record.setInputGradient(step.result.getSecond().div(pass.batchSize()));
                    }
                }
                pass.record(record);
            }
            return step.result;
        } catch (RuntimeException e) {
            interceptor.abandonPass();
            throw e;
        }
    }

    /**
     * @return whether the layer sees the steps of a time series flattened into rows ({@code t·N + n}) by DL4J's
     *     {@code RnnToFeedForwardPreProcessor} in front of it or of a layer before it, T &gt; 1 (the batch check
     *     allows nothing else with more rows than examples outside a stacked batch)
     */
    private boolean flattenedSteps(BackwardPass pass) {
        long rows = underlying.input().size(0);
        org.deeplearning4j.nn.conf.InputPreProcessor pre = node.preProcessor();
        boolean flattening = pre == null || pre instanceof org.deeplearning4j.nn.conf.preprocessor
                .RnnToFeedForwardPreProcessor && ((org.deeplearning4j.nn.conf.preprocessor.RnnToFeedForwardPreProcessor)
                pre).getRnnDataFormat() == org.deeplearning4j.nn.conf.RNNFormat.NCW;
        return flattening && lossRecorder == null && kind != null && kind.supportsFlattenedSteps(underlying)
                && pass.copies(node) == 1 && rows > pass.batchSize() && rows % pass.batchSize() == 0;
    }

    /**
     * The record of a layer applied to the flattened steps, in the time-series form {@code [N, ·, T]} (NCW) the
     * curvature pass keeps for sequences: its arrays' rows {@code t·N + n} become step t of sequence n.
     */
    private RecordedLayer seriesRecord(BackwardPass pass, Step step, INDArray epsilon) {
        long n = pass.batchSize();
        long steps = underlying.input().size(0) / n;
        java.util.function.UnaryOperator<INDArray> series = a -> a == null ? null
                : a.reshape('c', steps, n, a.length() / (steps * n)).permute(1, 2, 0).dup('c');
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            INDArray output = epsilon != null ? epsilon : step.preActivation;
            RecordedLayer record = new RecordedLayer(node, underlying, kind, series.apply(underlying.input()),
                    series.apply(step.preActivation), series.apply(step.dropoutMask),
                    series.apply(residualGradient(pass, epsilon)), new long[] {n, output.size(1), steps});
            if (pass.needsInputGradient(node) && step.result.getSecond() != null) {
                record.setInputGradient(series.apply(step.result.getSecond().div(n)));
            }
            INDArray mask = underlying.getMaskArray();
            if (mask != null && (underlying instanceof org.deeplearning4j.nn.layers.BaseLayer
                    || underlying instanceof org.deeplearning4j.nn.layers.DropoutLayer)) {
                // DL4J multiplies these layers' output rows by their mask (one value per row t·N + n)
                long width = output.size(1);
                INDArray rows = mask.castTo(output.dataType()).reshape('c', steps * n, 1);
                record.setOutputMask(series.apply(rows.broadcast(steps * n, width).dup('c')));
            }
            return record;
        }
    }

    /**
     * DL4J's result of one layer's backward step, and what was recorded on the way for the
     * second-order pass: the pre-activation and the input dropout mask (null where not needed).
     */
    protected static final class Step {
        final Pair<Gradient, INDArray> result;
        final INDArray preActivation;
        final INDArray dropoutMask;

        Step(Pair<Gradient, INDArray> result, INDArray preActivation, INDArray dropoutMask) {
            this.result = result;
            this.preActivation = preActivation;
            this.dropoutMask = dropoutMask;
        }
    }

    /**
     * DL4J's backward step of this layer, recording what the extensions need.
     *
     * @param pass the pass in progress
     * @param epsilon the gradient w.r.t. the layer output
     * @param workspaceMgr DL4J's workspace manager
     * @return DL4J's result, unchanged, and the recorded pre-activation (or null)
     */
    protected Step delegate(BackwardPass pass, INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        boolean curvature = pass.needsCurvature(node);
        if (lossRecorder != null) {
            lossRecorder.start(curvature ? this::liveDropoutMask : null);
            Pair<Gradient, INDArray> result;
            try {
                result = underlying.backpropGradient(epsilon, workspaceMgr);
            } finally {
                lossRecorder.stop();
            }
            if (curvature) {
                pass.setLoss(node, LossCurvatures.of(lossRecorder.delegate(), ((BaseLayer) original.getLayer())
                        .getActivationFn()).map(this::lossOfOutput).orElse(null));
            }
            if (kind != null && kind.hasParameters()) {
                INDArray delta = lossRecorder.preActivationGradient();
                computeExtensions(pass, delta, result.getFirst(), null, temporaryOfStep(delta, epsilon, result));
            }
            return new Step(result, lossRecorder.preActivation(), lossRecorder.dropoutMask());
        }
        // hidden layers apply their input dropout in the forward pass; the backward step clears the mask
        INDArray mask = curvature ? Detached.copy(liveDropoutMask()) : null;
        if (activationRecorder == null) {
            boolean extensions = kind != null && io.github.dl4jbackpack.internal.curvature.CurvaturePass.isParametric(node)
                    && kind.activation(underlying) == null;
            if (!extensions || !pass.needsFirstOrder()) {
                return new Step(underlyingBackprop(epsilon, workspaceMgr), null, mask);
            }
            // what the kind computes before DL4J's step and uses after it lives in a workspace of its own
            try (ScratchWorkspace sharedStep = ScratchWorkspace.openAside(ScratchWorkspace.SHARED_STEP,
                    interceptor.sharedStepScratch())) {
                FirstOrderTerms shared = sharedFirstOrder(pass, epsilon, workspaceMgr);
                Pair<Gradient, INDArray> result;
                try {
                    result = underlyingBackprop(epsilon, workspaceMgr);
                } finally {
                    if (shared != null) {
                        kind.afterSharedBackward(underlying);
                    }
                }
                // no activation inside the layer (BatchNormalization, recurrent layers): ∂L/∂z is the incoming gradient
                computeExtensions(pass, epsilon, result.getFirst(), shared, false);
                interceptor.learnSharedStepScratch(sharedStep.used());
                return new Step(result, null, mask);
            }
        }
        activationRecorder.start(curvature);
        Pair<Gradient, INDArray> result;
        Pair<Gradient, INDArray> withoutWeights = null;
        try {
            if (pass.replacesGradient() && kind != null) {
                withoutWeights = kind.backwardWithoutWeightGradient(underlying, epsilon,
                        activationRecorder.takeForward(underlying.input()), workspaceMgr);
            }
            result = withoutWeights != null ? withoutWeights : underlying.backpropGradient(epsilon, workspaceMgr);
        } finally {
            activationRecorder.stop();
        }
        Gradient computed = result.getFirst();
        if (withoutWeights != null) {
            // the weights' view holds zeros for the caller to overwrite: not a gradient an extension may read
            computed = new org.deeplearning4j.nn.gradient.DefaultGradient();
            for (java.util.Map.Entry<String, INDArray> e : result.getFirst().gradientForVariable().entrySet()) {
                if (!e.getKey().equals(org.deeplearning4j.nn.params.DefaultParamInitializer.WEIGHT_KEY)) {
                    computed.setGradientFor(e.getKey(), e.getValue());
                }
            }
        }
        INDArray delta = activationRecorder.preActivationGradient();
        computeExtensions(pass, delta, computed, null, temporaryOfStep(delta, epsilon, result));
        return new Step(result, activationRecorder.preActivation(), mask);
    }

    /**
     * @param perVector the curvature of the layer's loss of one output vector
     * @return the curvature of the layer's loss as DL4J applies it: at every position of an image
     *     ({@code CnnLossLayer}), at every time step with the label mask ({@code RnnOutputLayer},
     *     {@code RnnLossLayer}), or once per example
     */
    private io.github.dl4jbackpack.internal.losses.LossCurvature lossOfOutput(
            io.github.dl4jbackpack.internal.losses.LossCurvature perVector) {
        org.deeplearning4j.nn.conf.layers.Layer conf = original.getLayer();
        if (conf instanceof CnnLossLayer) {
            return LossCurvatures.perPosition(perVector, underlying.input().shape(),
                    ((CnnLossLayer) conf).getFormat() == org.deeplearning4j.nn.conf.CNN2DFormat.NHWC);
        }
        long[] shape = sequenceOutputShape();
        if (shape != null) {
            boolean nwc = sequenceOutputNwc();
            return LossCurvatures.perTimeStep(perVector, shape[0], nwc ? shape[2] : shape[1], nwc ? shape[1] : shape[2],
                    nwc, lossRecorder.mask());
        }
        return perVector;
    }

    /** @return whether the layer is a per-step output layer in NWC layout */
    private boolean sequenceOutputNwc() {
        org.deeplearning4j.nn.conf.layers.Layer conf = original.getLayer();
        org.deeplearning4j.nn.conf.RNNFormat format = conf instanceof org.deeplearning4j.nn.conf.layers.RnnOutputLayer
                ? ((org.deeplearning4j.nn.conf.layers.RnnOutputLayer) conf).getRnnDataFormat()
                : ((org.deeplearning4j.nn.conf.layers.RnnLossLayer) conf).getRnnDataFormat();
        return format == org.deeplearning4j.nn.conf.RNNFormat.NWC;
    }

    /**
     * @return the output shape of a per-step output layer ({@code RnnOutputLayer}, {@code RnnLossLayer}) in
     *     its layout, {@code [N, nOut, T]} or {@code [N, T, nOut]}, or null for other layers
     */
    private long[] sequenceOutputShape() {
        org.deeplearning4j.nn.conf.layers.Layer conf = original.getLayer();
        if (conf instanceof org.deeplearning4j.nn.conf.layers.RnnLossLayer) {
            return underlying.input().shape().clone();
        }
        if (!(conf instanceof org.deeplearning4j.nn.conf.layers.RnnOutputLayer)) {
            return null;
        }
        long[] shape = underlying.input().shape().clone();
        shape[sequenceOutputNwc() ? 2 : 1] = ((org.deeplearning4j.nn.conf.layers.RnnOutputLayer) conf).getNOut();
        return shape;
    }

    /**
     * @return the kind's first-order terms computed before DL4J's backward step, sharing values with it
     *     ({@link LayerDerivatives#firstOrderSharingForward}), or null (then computed after the step)
     */
    private FirstOrderTerms sharedFirstOrder(BackwardPass pass, INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        if (!pass.needsFirstOrder() || runningForward || batchConstants || rowsPerExample(pass) != 1) {
            return null;
        }
        INDArray outputGradient;
        try (MemoryWorkspace ignored = ScratchWorkspace.borrow(ScratchWorkspace.SHARED_STEP)) {
            outputGradient = epsilon.div(pass.batchSize());
        }
        return kind.firstOrderSharingForward(underlying, underlying.input(), outputGradient, workspaceMgr);
    }

    /**
     * @param delta the gradient w.r.t. the layer's pre-activation that DL4J's step computed
     * @param epsilon the gradient the step received
     * @param result what the step returned
     * @return whether {@code delta} is a temporary of the step that nothing reads after it
     */
    private static boolean temporaryOfStep(INDArray delta, INDArray epsilon, Pair<Gradient, INDArray> result) {
        java.util.List<INDArray> others = new java.util.ArrayList<>(result.getFirst().gradientForVariable().values());
        others.add(epsilon);
        others.add(result.getSecond());
        return Detached.isTemporaryOfStep(delta, others.toArray(new INDArray[0]));
    }

    /**
     * Lets the pass's first-order extensions compute this layer's values in the first-order scratch
     * workspace, outside DL4J's workspaces.
     *
     * @param summedLossGradient the gradient of the summed loss w.r.t. the layer's output
     * @param temporary whether that gradient is a temporary of DL4J's finished step, which nothing reads any more:
     *     then scaled to the mean loss in place rather than copied (a copy of the largest layer's output gradient
     *     less in the scratch workspace)
     */
    private void computeExtensions(BackwardPass pass, INDArray summedLossGradient, Gradient gradient,
                                   FirstOrderTerms shared, boolean temporary) {
        if (!pass.needsFirstOrder()) {
            return;
        }
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces();
             ScratchWorkspace scratch = ScratchWorkspace.open(ScratchWorkspace.FIRST_ORDER,
                     interceptor.firstOrderScratch())) {
            INDArray outputGradient = temporary ? summedLossGradient.divi(pass.batchSize())
                    : summedLossGradient.div(pass.batchSize());
            pass.computeAt(new LayerBackprop(node.name(), pass.batchSize(), underlying, kind, underlying.input(),
                    outputGradient, gradient, rowsPerExample(pass), runningForward, shared));
            interceptor.learnFirstOrderScratch(scratch.used());
        }
    }

    /**
     * @return how many rows of the layer input belong to each example: the copies a StackVertex stacks, or
     *     the time steps DL4J's {@code RnnToFeedForwardPreProcessor} flattens into rows (row {@code t·N + n})
     */
    private long rowsPerExample(BackwardPass pass) {
        long rows = underlying.input().size(0);
        if (rows % pass.batchSize() != 0) {
            throw new IllegalStateException(node.describe() + " sees " + rows + " rows in a batch of "
                    + pass.batchSize() + " examples");
        }
        return rows / pass.batchSize();
    }

    /**
     * @return the mask of the dropout this layer has applied to its input in the current step (DL4J
     *     keeps it until the layer's backward step ends), or null when none is applied
     */
    private INDArray liveDropoutMask() {
        return inputNoiseJacobian(underlying.conf().getLayer().getIDropout(), underlying.input());
    }

    /**
     * @param dropout a layer's input noise, or null
     * @param input the layer's input in this step (for its shape)
     * @return the diagonal Jacobian of the noise this step applied, shaped like the input ({@code Dropout}:
     *     its mask with the 1/p scaling; {@code GaussianDropout}: its multiplicative noise;
     *     {@code AlphaDropout}: {@code a·d}; {@code SpatialDropout}: its per-channel mask, broadcast), or
     *     null for none or an identity Jacobian ({@code GaussianNoise} adds its noise)
     */
    static INDArray inputNoiseJacobian(IDropout dropout, INDArray input) {
        if (dropout instanceof Dropout) {
            return ((Dropout) dropout).getMask();
        }
        if (dropout instanceof org.deeplearning4j.nn.conf.dropout.GaussianDropout) {
            return ((org.deeplearning4j.nn.conf.dropout.GaussianDropout) dropout).getNoise();
        }
        if (dropout instanceof org.deeplearning4j.nn.conf.dropout.AlphaDropout) {
            org.deeplearning4j.nn.conf.dropout.AlphaDropout alpha = (org.deeplearning4j.nn.conf.dropout.AlphaDropout) dropout;
            return alpha.getMask() == null ? null : alpha.getMask().mul(alpha.getA());
        }
        if (dropout instanceof org.deeplearning4j.nn.conf.dropout.SpatialDropout) {
            INDArray mask = ((org.deeplearning4j.nn.conf.dropout.SpatialDropout) dropout).getMask();
            if (mask == null || input == null) {
                return null;
            }
            long[] perChannel = new long[input.rank()];
            java.util.Arrays.fill(perChannel, 1);
            perChannel[0] = mask.size(0);
            perChannel[1] = mask.size(1);
            return mask.reshape('c', perChannel).broadcast(input.shape());
        }
        return null;
    }

    /** @return {@code ∂L/∂a} of the mean loss, detached, where a Hessian residual needs it; else null */
    private INDArray residualGradient(BackwardPass pass, INDArray epsilon) {
        IActivation activation = kind == null ? null : kind.activation(underlying);
        boolean atInput = kind != null && (kind.hasInputResidual(underlying) || kind.hasInternalResidual(underlying)
                || kind.normalisesOverBatch(underlying) && !runningForward && !batchConstants);
        if (!pass.needsResidual() || epsilon == null || (!atInput && (activation == null
                || ElementwiseActivations.isPiecewiseLinear(activation)))) {
            return null;
        }
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            return epsilon.div(pass.batchSize());
        }
    }

    /**
     * @param conf an output or loss layer configuration
     * @return its loss function
     */
    static ILossFunction lossFunction(org.deeplearning4j.nn.conf.layers.Layer conf) {
        if (conf instanceof BaseOutputLayer) {
            return ((BaseOutputLayer) conf).getLossFn();
        }
        if (conf instanceof LossLayer) {
            return ((LossLayer) conf).getLossFn();
        }
        if (conf instanceof CnnLossLayer) {
            return ((CnnLossLayer) conf).getLossFn();
        }
        if (conf instanceof org.deeplearning4j.nn.conf.layers.RnnLossLayer) {
            return ((org.deeplearning4j.nn.conf.layers.RnnLossLayer) conf).getLossFn();
        }
        throw new IllegalArgumentException("not an output layer: " + conf.getClass().getSimpleName());
    }

    @Override
    public String toString() {
        return "InterceptingLayer(" + underlying + ")";
    }
}
