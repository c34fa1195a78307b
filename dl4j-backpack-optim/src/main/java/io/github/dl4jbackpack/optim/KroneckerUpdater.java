// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.nd4j.linalg.schedule.ISchedule;

import java.util.List;
import java.util.Objects;

/**
 * The Kronecker-factored curvature rule (paper Section 4, App. C.3): for a weight with
 * {@code G ≈ A ⊗ B}, {@code ΔW = α (A + π d I)⁻¹ (∇W + η W) (B + d/π I)⁻¹} with
 * {@code d = √(λ+η)} and π-damping {@code π = √((tr A / dim A) / (tr B / dim B))} (convolutions
 * analogously with their {@code B ⊗ A} arrangement); a bias, which has only the output-side factor,
 * gets {@code Δb = α (B + (λ+η) I)⁻¹ (∇b + η b)}. The factors come from {@link KFAC} with M samples,
 * {@link KFLR} or {@link KFRA}. Kronecker factors exist for dense, output and convolution layers,
 * which are the only layers with parameters that the library supports.
 *
 * <pre>{@code
 * new NeuralNetConfiguration.Builder().updater(KroneckerUpdater.kfac(0.01, 1e-3, 1)) ...
 * BackPackNetwork.extend(net);   // before net.fit(...)
 * }</pre>
 */
public final class KroneckerUpdater extends PreconditionedUpdater {

    private static final long serialVersionUID = 1L;

    /** The Kronecker approximations of the GGN. */
    public enum Curvature {
        /** Monte Carlo output-side factor (Martens &amp; Grosse 2015). */
        KFAC,
        /** Exact output-side factor (Botev et al. 2017). */
        KFLR,
        /** Batch-averaged recursion (Botev et al. 2017). */
        KFRA
    }

    /** Which Kronecker factors. */
    private Curvature curvature;
    /** Monte Carlo samples of KFAC (0 for KFLR and KFRA). */
    private int mcSamples;
    /** The damped inverses are recomputed every this many iterations. */
    private int inverseInterval = 1;

    /** KFLR with the default α and λ (also used when reading a configuration from JSON). */
    public KroneckerUpdater() {
        this(DEFAULT_LEARNING_RATE, null, DEFAULT_DAMPING, Curvature.KFLR, 0);
    }

    private KroneckerUpdater(double learningRate, ISchedule schedule, double damping, Curvature curvature,
                             int mcSamples) {
        super(learningRate, schedule, damping);
        this.curvature = Objects.requireNonNull(curvature);
        if (curvature == Curvature.KFAC && mcSamples < 1) {
            throw new IllegalArgumentException("the number of Monte Carlo samples must be at least 1, got " + mcSamples);
        }
        this.mcSamples = curvature == Curvature.KFAC ? mcSamples : 0;
    }

    /**
     * @param learningRate α
     * @param damping λ
     * @param samples Monte Carlo samples M
     * @return the rule with KFAC factors
     */
    public static KroneckerUpdater kfac(double learningRate, double damping, int samples) {
        return new KroneckerUpdater(learningRate, null, damping, Curvature.KFAC, samples);
    }

    /**
     * @param learningRate α
     * @param damping λ
     * @return the rule with KFLR factors
     */
    public static KroneckerUpdater kflr(double learningRate, double damping) {
        return new KroneckerUpdater(learningRate, null, damping, Curvature.KFLR, 0);
    }

    /**
     * @param learningRate α
     * @param damping λ
     * @return the rule with KFRA factors
     */
    public static KroneckerUpdater kfra(double learningRate, double damping) {
        return new KroneckerUpdater(learningRate, null, damping, Curvature.KFRA, 0);
    }

    /**
     * @param curvature which factors
     * @param learningRate a schedule for α
     * @param damping λ
     * @param samples Monte Carlo samples M for KFAC (ignored otherwise)
     * @return the rule
     */
    public static KroneckerUpdater of(Curvature curvature, ISchedule learningRate, double damping, int samples) {
        return new KroneckerUpdater(learningRate.valueAt(0, 0), learningRate, damping, curvature, samples);
    }

    /** @return which factors */
    public Curvature getCurvature() {
        return curvature;
    }

    /** @return the Monte Carlo samples of KFAC (0 otherwise) */
    public int getMcSamples() {
        return mcSamples;
    }

    private Class<? extends Extension<KroneckerFactors>> extensionClass() {
        switch (curvature) {
            case KFAC:
                return KFAC.class;
            case KFLR:
                return KFLR.class;
            default:
                return KFRA.class;
        }
    }

    @Override
    public List<Extension<?>> requiredExtensions() {
        switch (curvature) {
            case KFAC:
                return List.of(new KFAC(mcSamples));
            case KFLR:
                return List.of(new KFLR());
            default:
                return List.of(new KFRA());
        }
    }

    @Override
    Preconditioner preconditioner() {
        return new KroneckerPreconditioner(extensionClass());
    }

    /** @return the damped inverses are recomputed every this many iterations (1, the default: every iteration) */
    public int getInverseInterval() {
        return inverseInterval;
    }

    @Override
    int inverseInterval() {
        return inverseInterval;
    }

    /**
     * The damped inverses of the averaged factors are recomputed only in the iterations {@code i} with
     * {@code i mod T = 0} (and when none are cached), from the factors as they are then; the iterations between
     * apply the cached ones.
     *
     * @param iterations T, at least 1
     * @return a copy of this rule with that interval
     */
    public KroneckerUpdater withInverseInterval(int iterations) {
        if (iterations < 1) {
            throw new IllegalArgumentException("the inverse interval must be at least 1 iteration, got " + iterations);
        }
        KroneckerUpdater copy = clone();
        copy.inverseInterval = iterations;
        return copy;
    }

    @Override
    public KroneckerUpdater withCurvatureInterval(int iterations) {
        return (KroneckerUpdater) super.withCurvatureInterval(iterations);
    }

    @Override
    public KroneckerUpdater withCurvatureDecay(double decay) {
        return (KroneckerUpdater) super.withCurvatureDecay(decay);
    }

    @Override
    public KroneckerUpdater withAdaptiveDamping(int iterations) {
        return (KroneckerUpdater) super.withAdaptiveDamping(iterations);
    }

    @Override
    public KroneckerUpdater withAdaptiveDamping(int iterations, double factor) {
        return (KroneckerUpdater) super.withAdaptiveDamping(iterations, factor);
    }

    @Override
    public KroneckerUpdater clone() {
        KroneckerUpdater copy = new KroneckerUpdater(0, null, getDamping(), curvature, mcSamples);
        copySettingsTo(copy);
        copy.inverseInterval = inverseInterval;
        return copy;
    }

    @Override
    public boolean equals(Object o) {
        return super.equals(o) && curvature == ((KroneckerUpdater) o).curvature
                && mcSamples == ((KroneckerUpdater) o).mcSamples
                && inverseInterval == ((KroneckerUpdater) o).inverseInterval;
    }

    @Override
    public int hashCode() {
        return Objects.hash(super.hashCode(), curvature, mcSamples, inverseInterval);
    }

    @Override
    public String toString() {
        return "KroneckerUpdater(" + curvature + (curvature == Curvature.KFAC ? " " + mcSamples : "") + ", α="
                + learningRateText() + ", λ=" + getDamping() + scheduleText()
                + (inverseInterval != 1 ? ", inverses every " + inverseInterval : "") + ")";
    }
}
