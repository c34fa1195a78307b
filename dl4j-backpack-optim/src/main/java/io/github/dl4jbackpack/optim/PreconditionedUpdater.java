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
 * the extended backward pass, so the network must be extended with {@code BackPackNetwork.extend(net)} before
 * training. By default it is the curvature of the same iteration (the paper's rule); {@link #withCurvatureInterval}
 * and {@link #withCurvatureDecay} make it a moving average refreshed every few iterations, and
 * {@link CurvatureUpdaterState} carries that state through a checkpoint; {@link #withAdaptiveDamping} adapts λ
 * during training (Levenberg–Marquardt).
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
    /** Fresh curvature every this many iterations (1: every iteration). */
    private int curvatureInterval = 1;
    /** ρ of the moving average of the curvature (0: the fresh curvature alone). */
    private double curvatureDecay;
    /** λ is adapted every this many iterations (0: a fixed λ). */
    private int dampingInterval;
    /** ω of the adaptation: λ ← ωλ or λ/ω (unused with a fixed λ). */
    private double dampingFactor;

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

    /** @return fresh curvature every this many iterations (1, the default: every iteration) */
    public int getCurvatureInterval() {
        return curvatureInterval;
    }

    /** @return ρ of the moving average of the curvature (0, the default: the latest curvature alone) */
    public double getCurvatureDecay() {
        return curvatureDecay;
    }

    /** @return λ is adapted every this many iterations (0, the default: λ stays fixed) */
    public int getDampingInterval() {
        return dampingInterval;
    }

    /** @return ω of the damping adaptation, {@code λ ← ωλ} or {@code λ/ω} (0 while λ is fixed) */
    public double getDampingFactor() {
        return dampingFactor;
    }

    /**
     * Levenberg–Marquardt adaptation of λ (Martens &amp; Grosse 2015, Section 6.5) with their factor
     * {@code ω = (19/20)^T}: see {@link #withAdaptiveDamping(int, double)}.
     *
     * @param iterations T, at least 1
     * @return a copy of this rule that adapts λ every T iterations
     */
    public PreconditionedUpdater withAdaptiveDamping(int iterations) {
        return withAdaptiveDamping(iterations, Math.pow(19.0 / 20.0, iterations));
    }

    /**
     * Levenberg–Marquardt adaptation of λ (Martens &amp; Grosse 2015, Section 6.5; docs/math.md#adaptive-damping). In the
     * iterations {@code i} with {@code i mod T = 0} the rule compares the change of the loss its step made on the
     * iteration's batch, {@code L(θ+δ) − L(θ)}, with the change its quadratic model predicted,
     * {@code M(δ) = (∇L + ηθ)ᵀδ + ½ δᵀ(G + ηI)δ} (G the rule's own, undamped curvature). Their ratio ρ sets λ for
     * the iterations that follow: {@code λ ← ωλ} when {@code ρ > 3/4} (the model was trustworthy), {@code λ ← λ/ω}
     * when {@code ρ < 1/4}, when the model itself predicts an increase (a step longer than twice the distance to the
     * model's minimum along it) or when the loss is no longer finite, within
     * [{@value DampingAdaptation#MIN_DAMPING}, {@value DampingAdaptation#MAX_DAMPING}]; the damping given to the
     * rule is the starting value. The two losses are DL4J's score in inference mode (the loss plus DL4J's L2 and L1
     * terms, without dropout), so an adaptation iteration costs two forward passes more; they are computed by the
     * training listener {@link DampingAdaptation}, which the network must have ({@code net.addListeners(new
     * DampingAdaptation())}): without it, the first adaptation iteration fails with a message saying so. λ is saved
     * with {@link CurvatureUpdaterState}.
     *
     * @param iterations T, at least 1
     * @param factor ω in (0, 1)
     * @return a copy of this rule that adapts λ every T iterations
     * @throws IllegalArgumentException for T &lt; 1, ω outside (0, 1), or a rule whose λ is 0 (no multiple of it
     *     would ever differ)
     */
    public PreconditionedUpdater withAdaptiveDamping(int iterations, double factor) {
        if (iterations < 1) {
            throw new IllegalArgumentException("the damping adaptation interval must be at least 1 iteration, got "
                    + iterations);
        }
        if (!(factor > 0 && factor < 1)) {
            throw new IllegalArgumentException("the damping adaptation factor ω must be in (0, 1), got " + factor);
        }
        if (!(damping >= DampingAdaptation.MIN_DAMPING && damping <= DampingAdaptation.MAX_DAMPING)) {
            throw new IllegalArgumentException("adaptive damping starts from the rule's λ, which must be in ["
                    + DampingAdaptation.MIN_DAMPING + ", " + DampingAdaptation.MAX_DAMPING + "], got " + damping);
        }
        PreconditionedUpdater copy = clone();
        copy.dampingInterval = iterations;
        copy.dampingFactor = factor;
        return copy;
    }

    /**
     * @param iteration DL4J's iteration count
     * @return whether λ is adapted after that iteration's step
     */
    boolean dampingIteration(int iteration) {
        return dampingInterval > 0 && iteration % dampingInterval == 0;
    }

    /** @return the damped inverses are recomputed every this many iterations (1 for rules without inverses) */
    int inverseInterval() {
        return 1;
    }

    /**
     * The curvature is computed only in the iterations {@code i} with {@code i mod T = 0} (DL4J's iteration count; and
     * in the first iteration of an updater without state); the iterations between reuse the averaged curvature (and
     * a Kronecker rule's cached inverses). The extended backward pass computes nothing for the rule in those
     * iterations.
     *
     * @param iterations T, at least 1
     * @return a copy of this rule with that interval
     */
    public PreconditionedUpdater withCurvatureInterval(int iterations) {
        if (iterations < 1) {
            throw new IllegalArgumentException("the curvature interval must be at least 1 iteration, got " + iterations);
        }
        PreconditionedUpdater copy = clone();
        copy.curvatureInterval = iterations;
        return copy;
    }

    /**
     * In each curvature iteration the rule's curvature becomes {@code F ← ρ F + (1 − ρ) F_new} (an exponential moving
     * average; the first curvature iteration sets {@code F = F_new}); for a Kronecker rule, each factor is averaged.
     *
     * @param decay ρ in {@code [0, 1)}; 0 keeps the latest curvature alone
     * @return a copy of this rule with that decay
     */
    public PreconditionedUpdater withCurvatureDecay(double decay) {
        if (!(decay >= 0 && decay < 1)) {
            throw new IllegalArgumentException("the curvature decay ρ must be in [0, 1), got " + decay);
        }
        PreconditionedUpdater copy = clone();
        copy.curvatureDecay = decay;
        return copy;
    }

    /**
     * @param iteration DL4J's iteration count
     * @return whether the rule reads fresh curvature in that iteration (given a state)
     */
    boolean curvatureIteration(int iteration) {
        return iteration % curvatureInterval == 0;
    }

    /** @param copy a copy of this rule made by a subclass's {@link #clone()}: receives the common settings */
    protected void copySettingsTo(PreconditionedUpdater copy) {
        copy.setLrAndSchedule(learningRate, learningRateSchedule);
        copy.curvatureInterval = curvatureInterval;
        copy.curvatureDecay = curvatureDecay;
        copy.dampingInterval = dampingInterval;
        copy.dampingFactor = dampingFactor;
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
                && Objects.equals(learningRateSchedule, that.learningRateSchedule)
                && curvatureInterval == that.curvatureInterval
                && Double.compare(curvatureDecay, that.curvatureDecay) == 0
                && dampingInterval == that.dampingInterval && Double.compare(dampingFactor, that.dampingFactor) == 0;
    }

    @Override
    public int hashCode() {
        return Objects.hash(getClass(), learningRate, learningRateSchedule, damping, curvatureInterval, curvatureDecay,
                dampingInterval, dampingFactor);
    }

    /** @return the interval and decay for {@code toString}, empty for the defaults */
    String scheduleText() {
        return (curvatureInterval != 1 ? ", curvature every " + curvatureInterval : "")
                + (curvatureDecay != 0 ? ", ρ=" + curvatureDecay : "")
                + (dampingInterval != 0 ? ", λ adapted every " + dampingInterval + " (ω=" + dampingFactor + ")" : "");
    }

    /** @return the α description for messages */
    String learningRateText() {
        return learningRateSchedule != null ? learningRateSchedule.toString() : String.valueOf(learningRate);
    }
}
