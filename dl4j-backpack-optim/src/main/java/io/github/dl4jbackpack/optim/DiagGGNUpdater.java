// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.Extension;
import org.nd4j.linalg.schedule.ISchedule;

import java.util.List;

/**
 * The diagonal curvature rule (paper Section 4, App. C.3):
 * {@code θ ← θ − α (∇L + η θ) / (diag G + λ + η)} elementwise, with G the exact GGN diagonal
 * ({@link DiagGGNExact}) or its Monte Carlo estimate with M samples ({@link DiagGGNMC}). Applies to
 * every parameter it is configured for, weights and biases alike.
 *
 * <pre>{@code
 * new NeuralNetConfiguration.Builder().updater(DiagGGNUpdater.exact(0.1, 1e-3)) ...
 * BackPackNetwork.extend(net);   // before net.fit(...)
 * }</pre>
 */
public final class DiagGGNUpdater extends PreconditionedUpdater {

    private static final long serialVersionUID = 1L;

    /** 0 for the exact GGN diagonal, else the number of Monte Carlo samples. */
    private int mcSamples;

    /** The exact rule with the default α and λ (also used when reading a configuration from JSON). */
    public DiagGGNUpdater() {
        this(DEFAULT_LEARNING_RATE, null, DEFAULT_DAMPING, 0);
    }

    private DiagGGNUpdater(double learningRate, ISchedule schedule, double damping, int mcSamples) {
        super(learningRate, schedule, damping);
        if (mcSamples < 0) {
            throw new IllegalArgumentException("the number of Monte Carlo samples must be positive, got " + mcSamples);
        }
        this.mcSamples = mcSamples;
    }

    /**
     * @param learningRate α
     * @param damping λ
     * @return the rule with the exact GGN diagonal
     */
    public static DiagGGNUpdater exact(double learningRate, double damping) {
        return new DiagGGNUpdater(learningRate, null, damping, 0);
    }

    /**
     * @param learningRate a schedule for α
     * @param damping λ
     * @return the rule with the exact GGN diagonal
     */
    public static DiagGGNUpdater exact(ISchedule learningRate, double damping) {
        return new DiagGGNUpdater(learningRate.valueAt(0, 0), learningRate, damping, 0);
    }

    /**
     * @param learningRate α
     * @param damping λ
     * @param samples number of Monte Carlo samples M, at least 1
     * @return the rule with the Monte Carlo GGN diagonal
     */
    public static DiagGGNUpdater monteCarlo(double learningRate, double damping, int samples) {
        if (samples < 1) {
            throw new IllegalArgumentException("the number of Monte Carlo samples must be at least 1, got " + samples);
        }
        return new DiagGGNUpdater(learningRate, null, damping, samples);
    }

    /**
     * @param learningRate a schedule for α
     * @param damping λ
     * @param samples number of Monte Carlo samples M, at least 1
     * @return the rule with the Monte Carlo GGN diagonal
     */
    public static DiagGGNUpdater monteCarlo(ISchedule learningRate, double damping, int samples) {
        if (samples < 1) {
            throw new IllegalArgumentException("the number of Monte Carlo samples must be at least 1, got " + samples);
        }
        return new DiagGGNUpdater(learningRate.valueAt(0, 0), learningRate, damping, samples);
    }

    /** @return 0 for the exact GGN diagonal, else the number of Monte Carlo samples */
    public int getMcSamples() {
        return mcSamples;
    }

    @Override
    public List<Extension<?>> requiredExtensions() {
        return List.of(mcSamples == 0 ? new DiagGGNExact() : new DiagGGNMC(mcSamples));
    }

    @Override
    Preconditioner preconditioner() {
        return new DiagonalPreconditioner(mcSamples == 0 ? DiagGGNExact.class : DiagGGNMC.class);
    }

    @Override
    public DiagGGNUpdater withCurvatureInterval(int iterations) {
        return (DiagGGNUpdater) super.withCurvatureInterval(iterations);
    }

    @Override
    public DiagGGNUpdater withCurvatureDecay(double decay) {
        return (DiagGGNUpdater) super.withCurvatureDecay(decay);
    }

    @Override
    public DiagGGNUpdater withAdaptiveDamping(int iterations) {
        return (DiagGGNUpdater) super.withAdaptiveDamping(iterations);
    }

    @Override
    public DiagGGNUpdater withAdaptiveDamping(int iterations, double factor) {
        return (DiagGGNUpdater) super.withAdaptiveDamping(iterations, factor);
    }

    @Override
    public DiagGGNUpdater clone() {
        DiagGGNUpdater copy = new DiagGGNUpdater(0, null, getDamping(), mcSamples);
        copySettingsTo(copy);
        return copy;
    }

    @Override
    public boolean equals(Object o) {
        return super.equals(o) && mcSamples == ((DiagGGNUpdater) o).mcSamples;
    }

    @Override
    public int hashCode() {
        return 31 * super.hashCode() + mcSamples;
    }

    @Override
    public String toString() {
        return "DiagGGNUpdater(" + (mcSamples == 0 ? "exact" : "MC " + mcSamples) + ", α=" + learningRateText()
                + ", λ=" + getDamping() + scheduleText() + ")";
    }
}
