// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.internal.layers.ElementwiseActivations;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The activation function of an extended layer's private configuration copy (see
 * {@link InterceptingLayer}): delegates everything to the layer's own activation and, while a
 * recording is running, keeps the pre-activation gradient {@code ∂/∂z} that DL4J computes in its
 * backward step (and, if asked, a copy of {@code z}), so the library needs no second computation.
 * Outside a recording it is a pure delegate, so results stay bit-identical. Never serialised: the
 * configuration objects of the network are never changed.
 */
final class RecordingActivation implements IActivation, ElementwiseActivations.Delegating {

    private final IActivation delegate;
    private boolean recording;
    private boolean keepPreActivation;
    private INDArray preActivationGradient;
    private INDArray preActivation;

    RecordingActivation(IActivation delegate) {
        this.delegate = delegate;
    }

    @Override
    public IActivation delegate() {
        return delegate;
    }

    /** @param keepZ whether to keep a copy of {@code z} too */
    void start(boolean keepZ) {
        recording = true;
        keepPreActivation = keepZ;
        preActivation = null;
        preActivationGradient = null;
    }

    void stop() {
        recording = false;
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
        if (recording && keepPreActivation) {
            preActivation = Detached.copy(in);
        }
        Pair<INDArray, INDArray> result = delegate.backprop(in, epsilon);
        if (recording) {
            preActivationGradient = result.getFirst();
        }
        return result;
    }

    @Override
    public int numParams(int inputSize) {
        return delegate.numParams(inputSize);
    }

    @Override
    public String toString() {
        return delegate.toString();
    }
}
