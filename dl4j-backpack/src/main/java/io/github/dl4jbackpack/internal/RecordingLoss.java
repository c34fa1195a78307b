package io.github.dl4jbackpack.internal;

import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.ILossFunction;

/**
 * Stands in for an output layer's loss function for the duration of one {@code backpropGradient}
 * call, delegating everything and keeping the per-example gradient {@code ∂ℓ_n/∂z_n} w.r.t. the
 * output pre-activation that DL4J computes there. Never serialised: it is swapped out again before
 * the call returns.
 */
final class RecordingLoss implements ILossFunction {

    private final ILossFunction delegate;
    private final boolean keepPreActivation;
    private INDArray preActivationGradient;
    private INDArray preActivation;

    RecordingLoss(ILossFunction delegate, boolean keepPreActivation) {
        this.delegate = delegate;
        this.keepPreActivation = keepPreActivation;
    }

    /** @return a copy of the output pre-activation, detached from workspaces, if asked to keep it */
    INDArray preActivation() {
        return preActivation;
    }

    INDArray preActivationGradient() {
        return preActivationGradient;
    }

    @Override
    public double computeScore(INDArray labels, INDArray preOutput, IActivation activationFn, INDArray mask,
                               boolean average) {
        return delegate.computeScore(labels, preOutput, activationFn, mask, average);
    }

    @Override
    public INDArray computeScoreArray(INDArray labels, INDArray preOutput, IActivation activationFn, INDArray mask) {
        return delegate.computeScoreArray(labels, preOutput, activationFn, mask);
    }

    @Override
    public INDArray computeGradient(INDArray labels, INDArray preOutput, IActivation activationFn, INDArray mask) {
        if (keepPreActivation) {
            preActivation = preOutput.detach();
        }
        INDArray gradient = delegate.computeGradient(labels, preOutput, activationFn, mask);
        preActivationGradient = gradient;
        return gradient;
    }

    @Override
    public Pair<Double, INDArray> computeGradientAndScore(INDArray labels, INDArray preOutput,
                                                          IActivation activationFn, INDArray mask, boolean average) {
        if (keepPreActivation) {
            preActivation = preOutput.detach();
        }
        Pair<Double, INDArray> result = delegate.computeGradientAndScore(labels, preOutput, activationFn, mask, average);
        preActivationGradient = result.getSecond();
        return result;
    }

    @Override
    public String name() {
        return delegate.name();
    }
}
