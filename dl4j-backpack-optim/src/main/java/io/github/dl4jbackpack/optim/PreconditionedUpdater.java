// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.spi.CurvatureUpdater;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.learning.GradientUpdater;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.schedule.ISchedule;

import java.util.Map;
import java.util.Objects;

/**
 * Common part of the curvature-preconditioned updaters: the step
 * {@code θ ← θ − α (G + (λ+η) I)⁻¹ (∇L + η θ)} (docs/math.md#preconditioned-updates, paper Eq. 7) with learning rate α (fixed
 * or an {@link ISchedule}), damping λ and the layer's L2 strength η (0 without L2; DL4J's weight
 * decay is applied after the updater and is not part of the damping). The curvature G comes from
 * the extended backward pass of the same iteration, so the network must be extended with
 * {@code BackPackNetwork.extend(net)} before training.
 */
public abstract class PreconditionedUpdater implements IUpdater, CurvatureUpdater {

    private static final long serialVersionUID = 1L;

    /** Default learning rate α. */
    public static final double DEFAULT_LEARNING_RATE = 1e-2;
    /** Default damping λ. */
    public static final double DEFAULT_DAMPING = 1e-2;

    /** The learning rate α when no schedule is set. */
    private double learningRate;
    /** A schedule for α, or null. */
    private ISchedule learningRateSchedule;
    /** The damping λ. */
    private double damping;

    /**
     * @param learningRate α
     * @param learningRateSchedule a schedule for α, or null
     * @param damping λ, non-negative
     */
    protected PreconditionedUpdater(double learningRate, ISchedule learningRateSchedule, double damping) {
        if (!(damping >= 0) || Double.isInfinite(damping)) {
            throw new IllegalArgumentException("damping λ must be finite and non-negative, got " + damping);
        }
        checkLearningRate(learningRate);
        this.learningRate = learningRate;
        this.learningRateSchedule = learningRateSchedule;
        this.damping = damping;
    }

    private static void checkLearningRate(double learningRate) {
        if (!(learningRate >= 0) || Double.isInfinite(learningRate)) {
            throw new IllegalArgumentException("learning rate α must be finite and non-negative, got " + learningRate);
        }
    }

    /** @return λ */
    public double getDamping() {
        return damping;
    }

    /** @return the schedule of α, or null for a fixed α */
    public ISchedule getLearningRateSchedule() {
        return learningRateSchedule;
    }

    /** @return how this rule preconditions one parameter's gradient */
    abstract Preconditioner preconditioner();

    @Override
    public long stateSize(long numParams) {
        return 0;
    }

    @Override
    public GradientUpdater instantiate(INDArray viewArray, boolean initializeViewArray) {
        return new PreconditionedStep(this);
    }

    @Override
    public GradientUpdater instantiate(Map<String, INDArray> updaterState, boolean initializeStateArrays) {
        return new PreconditionedStep(this);
    }

    @Override
    public double getLearningRate(int iteration, int epoch) {
        return learningRateSchedule != null ? learningRateSchedule.valueAt(iteration, epoch) : learningRate;
    }

    @Override
    public boolean hasLearningRate() {
        return true;
    }

    @Override
    public void setLrAndSchedule(double lr, ISchedule lrSchedule) {
        if (lrSchedule == null) {
            checkLearningRate(lr);
        }
        this.learningRate = lr;
        this.learningRateSchedule = lrSchedule;
    }

    @Override
    public abstract PreconditionedUpdater clone();

    @Override
    public boolean equals(Object o) {
        if (this == o) {
            return true;
        }
        if (o == null || getClass() != o.getClass()) {
            return false;
        }
        PreconditionedUpdater that = (PreconditionedUpdater) o;
        return Double.compare(learningRate, that.learningRate) == 0 && Double.compare(damping, that.damping) == 0
                && Objects.equals(learningRateSchedule, that.learningRateSchedule);
    }

    @Override
    public int hashCode() {
        return Objects.hash(getClass(), learningRate, learningRateSchedule, damping);
    }

    /** @return the α description for messages */
    String learningRateText() {
        return learningRateSchedule != null ? learningRateSchedule.toString() : String.valueOf(learningRate);
    }
}
