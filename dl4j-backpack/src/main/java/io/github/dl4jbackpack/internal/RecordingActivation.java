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
    /** The last training forward step's {@code z}, in a buffer reused while its shape holds, or null. */
    private INDArray forward;
    /** The layer input of the forward step that {@link #forward} belongs to. */
    private INDArray forwardInput;
    /** Whether a forward step is in progress that keeps {@code z}, and whether it copied it. */
    private boolean armed;
    private boolean copied;

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

    /**
     * A forward step of the layer begins.
     *
     * @param keep whether it keeps a copy of {@code z} (if it is a training step), for a backward step that takes
     *     it instead of computing it again: in one buffer of the layer's output shape, outside workspaces, reused
     *     by the following steps while the shape holds
     */
    void beginForward(boolean keep) {
        forwardInput = null;
        copied = false;
        armed = keep;
    }

    /** @param input the layer input of the forward step that just ended, which the kept {@code z} belongs to */
    void endForward(INDArray input) {
        forwardInput = copied ? input : null;
        armed = false;
    }

    /**
     * @param input the layer input the backward step sees
     * @return {@code z} of the last training forward step if it was kept for this very input (then handed over:
     *     the caller may overwrite it), else null
     */
    INDArray takeForward(INDArray input) {
        INDArray z = forwardInput != null && forwardInput == input ? forward : null;
        forwardInput = null;
        return z;
    }

    @Override
    public INDArray getActivation(INDArray in, boolean training) {
        if (training && armed) {
            if (forward == null || !java.util.Arrays.equals(forward.shape(), in.shape())
                    || forward.dataType() != in.dataType()) {
                try (org.nd4j.linalg.api.memory.MemoryWorkspace ignored =
                             org.nd4j.linalg.factory.Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                    forward = org.nd4j.linalg.factory.Nd4j.createUninitialized(in.dataType(), in.shape(), 'c');
                }
            }
            forward.assign(in);
            copied = true;
        }
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
