package io.github.dl4jbackpack.internal;

import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Stands in for a layer's activation function for the duration of one {@code backpropGradient}
 * call, delegating everything and keeping the pre-activation gradient {@code ∂/∂z} that DL4J
 * computes there, so the library needs no second computation of {@code z}. Never serialised: it
 * is swapped out again before the call returns.
 */
final class RecordingActivation implements IActivation {

    private final IActivation delegate;
    private INDArray preActivationGradient;

    RecordingActivation(IActivation delegate) {
        this.delegate = delegate;
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
        Pair<INDArray, INDArray> result = delegate.backprop(in, epsilon);
        preActivationGradient = result.getFirst();
        return result;
    }

    @Override
    public int numParams(int inputSize) {
        return delegate.numParams(inputSize);
    }
}
