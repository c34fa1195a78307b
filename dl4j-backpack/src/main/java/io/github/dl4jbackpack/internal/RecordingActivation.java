package io.github.dl4jbackpack.internal;

import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Stands in for a layer's activation function for the duration of one {@code backpropGradient}
 * call, delegating everything and keeping the pre-activation gradient {@code ∂/∂z} that DL4J
 * computes there (and, for the second-order pass, a copy of {@code z}), so the library needs no
 * second computation of {@code z}. Never serialised: it
 * is swapped out again before the call returns.
 */
final class RecordingActivation implements IActivation {

    private final IActivation delegate;
    private final boolean keepPreActivation;
    private INDArray preActivationGradient;
    private INDArray preActivation;

    RecordingActivation(IActivation delegate, boolean keepPreActivation) {
        this.delegate = delegate;
        this.keepPreActivation = keepPreActivation;
    }

    /** @return a copy of {@code z}, detached from workspaces, if asked to keep it */
    INDArray preActivation() {
        return preActivation;
    }

    INDArray preActivationGradient() {
        return preActivationGradient;
    }

    @Override
    public INDArray getActivation(INDArray in, boolean training) {
        return delegate.getActivation(in, training);
    }

    @Override
    public Pair<INDArray, INDArray> backprop(INDArray in, INDArray epsilon) {
        if (keepPreActivation) {
            preActivation = Detached.copy(in);
        }
        Pair<INDArray, INDArray> result = delegate.backprop(in, epsilon);
        preActivationGradient = result.getFirst();
        return result;
    }

    @Override
    public int numParams(int inputSize) {
        return delegate.numParams(inputSize);
    }
}
