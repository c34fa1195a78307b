package io.github.dl4jbackpack.internal;

import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.ILossFunction;

import java.util.function.Supplier;

/**
 * Stands in for an output layer's loss function for the duration of one {@code backpropGradient}
 * call, delegating everything and keeping the per-example gradient {@code ∂ℓ_n/∂z_n} w.r.t. the
 * output pre-activation that DL4J computes there (and, for the second-order pass, copies of the
 * pre-activation and of the input dropout mask, which exists only during that call). Never serialised: it is swapped out again before
 * the call returns.
 */
final class RecordingLoss implements ILossFunction {

    private final ILossFunction delegate;
    private final Supplier<INDArray> liveDropoutMask;
    private INDArray preActivationGradient;
    private INDArray preActivation;
    private INDArray dropoutMask;

    /**
     * @param delegate the layer's loss function
     * @param liveDropoutMask where the second-order pass reads the layer's input dropout mask while
     *     it exists, or null when no second-order pass needs the pre-activation and mask
     */
    RecordingLoss(ILossFunction delegate, Supplier<INDArray> liveDropoutMask) {
        this.delegate = delegate;
        this.liveDropoutMask = liveDropoutMask;
    }

    /** @return a copy of the input dropout mask of this step, if recorded and applied, else null */
    INDArray dropoutMask() {
        return dropoutMask;
    }

    private void keep(INDArray preOutput) {
        if (liveDropoutMask != null) {
            preActivation = Detached.copy(preOutput);
            dropoutMask = Detached.copy(liveDropoutMask.get());
        }
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
        keep(preOutput);
        INDArray gradient = delegate.computeGradient(labels, preOutput, activationFn, mask);
        preActivationGradient = gradient;
        return gradient;
    }

    @Override
    public Pair<Double, INDArray> computeGradientAndScore(INDArray labels, INDArray preOutput,
                                                          IActivation activationFn, INDArray mask, boolean average) {
        keep(preOutput);
        Pair<Double, INDArray> result = delegate.computeGradientAndScore(labels, preOutput, activationFn, mask, average);
        preActivationGradient = result.getSecond();
        return result;
    }

    @Override
    public String name() {
        return delegate.name();
    }
}
