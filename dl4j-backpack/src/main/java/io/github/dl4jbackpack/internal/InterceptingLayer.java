package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.internal.layers.ElementwiseActivations;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import io.github.dl4jbackpack.internal.layers.RecordedLayer;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.conf.dropout.Dropout;
import org.deeplearning4j.nn.conf.dropout.IDropout;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.layers.wrapper.BaseWrapperLayer;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Wraps one DL4J layer implementation of an extended network. Everything is delegated unchanged;
 * while a backward pass with extensions is in progress, the wrapper records the layer input and
 * the pre-activation gradient DL4J computes, and lets the first-order extensions compute their
 * values for this layer before DL4J's pass moves on (while the workspace arrays are still valid).
 * When a second-order extension is active it also records what the second-order pass needs. With
 * no extension active it adds nothing but one method call.
 */
public class InterceptingLayer extends BaseWrapperLayer {

    private final int index;
    private final Interceptor interceptor;
    private final LayerDerivatives kind;
    private final InputPreProcessor preProcessor;

    /**
     * @param underlying the DL4J layer
     * @param index its index in the network
     * @param preProcessor the input preprocessor in front of it, or null
     * @param interceptor the network's shared state
     */
    public InterceptingLayer(Layer underlying, int index, InputPreProcessor preProcessor, Interceptor interceptor) {
        super(underlying);
        this.index = index;
        this.interceptor = interceptor;
        this.preProcessor = preProcessor;
        this.kind = LayerKinds.of(underlying).orElse(null);
    }

    /** @return the shared state of the network this layer belongs to */
    public Interceptor interceptor() {
        return interceptor;
    }

    @Override
    public Pair<Gradient, INDArray> backpropGradient(INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        BackwardPass pass = interceptor.current();
        if (pass == null) {
            return underlying.backpropGradient(epsilon, workspaceMgr);
        }
        try {
            requireSupportedState();
            Step step = delegate(pass, epsilon, workspaceMgr);
            if (pass.needsCurvature()) {
                long[] outputShape = epsilon != null ? epsilon.shape() : step.preActivation.shape();
                pass.record(new RecordedLayer(index, underlying, kind, underlying.input(), step.preActivation,
                        step.dropoutMask, residualGradient(pass, epsilon), preProcessor, outputShape));
            }
            if (index == 0) {
                interceptor.completePass();
            }
            return step.result;
        } catch (RuntimeException e) {
            interceptor.abandonPass();
            throw e;
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
        // hidden layers apply their input dropout in the forward pass; the backward step clears the mask
        INDArray mask = pass.needsCurvature() ? Detached.copy(liveDropoutMask()) : null;
        if (!kind.hasParameters()) {
            return new Step(underlying.backpropGradient(epsilon, workspaceMgr), null, mask);
        }
        BaseLayer conf = (BaseLayer) underlying.conf().getLayer();
        IActivation activation = conf.getActivationFn();
        RecordingActivation recorder = new RecordingActivation(activation, pass.needsCurvature());
        conf.setActivationFn(recorder);
        Pair<Gradient, INDArray> result;
        try {
            result = underlying.backpropGradient(epsilon, workspaceMgr);
        } finally {
            conf.setActivationFn(activation);
        }
        computeExtensions(pass, recorder.preActivationGradient(), result.getFirst());
        return new Step(result, recorder.preActivation(), mask);
    }

    /**
     * Lets the pass's first-order extensions compute this layer's values in the first-order scratch
     * workspace, outside DL4J's workspaces.
     *
     * @param pass the pass in progress
     * @param summedLossGradient gradient of the summed loss w.r.t. the pre-activation, as DL4J has it
     * @param gradient DL4J's (summed) parameter gradient of this layer
     */
    protected final void computeExtensions(BackwardPass pass, INDArray summedLossGradient, Gradient gradient) {
        if (!pass.needsFirstOrder()) {
            return;
        }
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces();
             ScratchWorkspace scratch = ScratchWorkspace.open(ScratchWorkspace.FIRST_ORDER, 0)) {
            INDArray outputGradient = summedLossGradient.div(pass.batchSize());
            pass.computeAt(new LayerBackprop(index, pass.batchSize(), underlying, kind, underlying.input(),
                    outputGradient, gradient));
        }
    }

    /**
     * @return the mask of the dropout this layer has applied to its input in the current step (DL4J
     *     keeps it until the layer's backward step ends), or null when none is applied
     */
    protected final INDArray liveDropoutMask() {
        IDropout dropout = underlying.conf().getLayer().getIDropout();
        return dropout instanceof Dropout ? ((Dropout) dropout).getMask() : null;
    }

    /** @return {@code ∂L/∂a} of the mean loss, detached, where a Hessian residual needs it; else null */
    private INDArray residualGradient(BackwardPass pass, INDArray epsilon) {
        IActivation activation = kind.activation(underlying);
        if (!pass.needsResidual() || epsilon == null || activation == null
                || ElementwiseActivations.isPiecewiseLinear(activation)) {
            return null;
        }
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            return epsilon.div(pass.batchSize());
        }
    }

    /** Fails unless this layer can take part in an extended pass right now. */
    private void requireSupportedState() {
        if (kind == null) {
            throw new IllegalStateException("Layer " + index + " (" + underlying.getClass().getSimpleName()
                    + ") is not supported by dl4j-backpack: " + LayerKinds.whyUnsupported(underlying));
        }
        if (underlying.getMaskArray() != null) {
            throw new UnsupportedOperationException("Layer " + index + " (" + underlying.getClass().getSimpleName()
                    + ") has a mask array: masked or time-series data is not supported by dl4j-backpack extensions");
        }
    }

    /** @return the layer's kind */
    protected final LayerDerivatives kind() {
        return kind;
    }

    @Override
    public String toString() {
        return "InterceptingLayer(" + underlying + ")";
    }
}
