// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.ILossFunction;

import java.util.function.Supplier;

/**
 * The loss function of an extended output layer's private configuration copy (see
 * {@link InterceptingLayer}): delegates everything and, while a recording is running, keeps the
 * per-example gradient {@code ∂ℓ_n/∂z_n} w.r.t. the output pre-activation that DL4J computes (and,
 * for the second-order pass, copies of the pre-activation and of the input dropout mask, which
 * exists only during that call). Outside a recording it is a pure delegate.
 */
final class RecordingLoss implements ILossFunction {

    private final ILossFunction delegate;
    private boolean recording;
    private Supplier<INDArray> liveDropoutMask;
    private INDArray preActivationGradient;
    private INDArray preActivation;
    private INDArray dropoutMask;
    private INDArray mask;

    RecordingLoss(ILossFunction delegate) {
        this.delegate = delegate;
    }

    /** @return the layer's own loss function */
    ILossFunction delegate() {
        return delegate;
    }

    /**
     * @param liveDropoutMask where to read the layer's input dropout mask while it exists, or null
     *     when no second-order pass needs the pre-activation and mask
     */
    void start(Supplier<INDArray> liveDropoutMask) {
        recording = true;
        this.liveDropoutMask = liveDropoutMask;
        preActivationGradient = null;
        preActivation = null;
        dropoutMask = null;
        mask = null;
    }

    void stop() {
        recording = false;
        liveDropoutMask = null;
    }

    /** @return a copy of the input dropout mask of this step, if recorded and applied, else null */
    INDArray dropoutMask() {
        return dropoutMask;
    }

    /** @return a copy of the output pre-activation, detached from workspaces, if asked to keep it */
    INDArray preActivation() {
        return preActivation;
    }

    INDArray preActivationGradient() {
        return preActivationGradient;
    }

    /**
     * @return a copy of the label mask DL4J handed the loss in this step ({@code [rows, 1]} per row, rows
     *     {@code t·N + n} for time series), if recorded, else null
     */
    INDArray mask() {
        return mask;
    }

    private void keep(INDArray preOutput, INDArray labelMask) {
        if (recording && liveDropoutMask != null) {
            preActivation = Detached.copy(preOutput);
            dropoutMask = Detached.copy(liveDropoutMask.get());
            mask = labelMask == null ? null : Detached.copy(labelMask);
        }
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
        keep(preOutput, mask);
        INDArray gradient = delegate.computeGradient(labels, preOutput, activationFn, mask);
        if (recording) {
            preActivationGradient = gradient;
        }
        return gradient;
    }

    @Override
    public Pair<Double, INDArray> computeGradientAndScore(INDArray labels, INDArray preOutput,
                                                          IActivation activationFn, INDArray mask, boolean average) {
        keep(preOutput, mask);
        Pair<Double, INDArray> result = delegate.computeGradientAndScore(labels, preOutput, activationFn, mask, average);
        if (recording) {
            preActivationGradient = result.getSecond();
        }
        return result;
    }

    @Override
    public String name() {
        return delegate.name();
    }

    @Override
    public String toString() {
        return delegate.toString();
    }
}
