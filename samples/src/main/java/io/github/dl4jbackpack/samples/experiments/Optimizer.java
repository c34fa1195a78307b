// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import io.github.dl4jbackpack.optim.DiagGGNUpdater;
import io.github.dl4jbackpack.optim.KroneckerUpdater;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.learning.config.Nesterovs;

/**
 * The optimisers of the paper's Section 4: the damped diagonal and Kronecker rules of
 * {@code dl4j-backpack-optim} (one Monte Carlo sample where sampled) and the two DeepOBS baselines.
 * The momentum baseline is DL4J's {@link Nesterovs} with momentum 0.9 (DL4J has no heavy-ball
 * momentum updater); Adam uses β = (0.9, 0.999).
 */
public enum Optimizer {

    /** SGD with (Nesterov) momentum 0.9; hyperparameter: the learning rate. */
    MOMENTUM("momentum", "Momentum"),
    /** Adam; hyperparameter: the learning rate. */
    ADAM("adam", "Adam"),
    /** Diagonal rule with the exact GGN diagonal. */
    DIAG_GGN("diag_ggn", "DiagGGN"),
    /** Diagonal rule with the one-sample Monte Carlo GGN diagonal. */
    DIAG_GGN_MC("diag_ggn_mc", "DiagGGN-MC"),
    /** Kronecker rule with KFAC (one sample). */
    KFAC("kfac", "KFAC"),
    /** Kronecker rule with KFLR. */
    KFLR("kflr", "KFLR"),
    /** Kronecker rule with KFRA. */
    KFRA("kfra", "KFRA"),
    /**
     * Kronecker rule with KFAC (one sample), amortised: curvature and inverses every {@value #AMORTISED_INTERVAL}
     * steps, factors averaged with decay {@value #AMORTISED_DECAY} (not the paper's rule; docs/optimizers.md).
     */
    KFAC_AMORTISED("kfac_amortised", "KFAC (amortised)");

    /** The curvature and inverse interval of {@link #KFAC_AMORTISED}. */
    public static final int AMORTISED_INTERVAL = 10;
    /** The decay of the factors' moving average of {@link #KFAC_AMORTISED}. */
    public static final double AMORTISED_DECAY = 0.95;

    private final String id;
    private final String label;

    Optimizer(String id, String label) {
        this.id = id;
        this.label = label;
    }

    /**
     * @param name an {@link #id()}, case-insensitive
     * @return the optimiser
     */
    public static Optimizer of(String name) {
        for (Optimizer o : values()) {
            if (o.id.equalsIgnoreCase(name)) {
                return o;
            }
        }
        throw new IllegalArgumentException("unknown optimizer " + name + " (momentum, adam, diag_ggn, diag_ggn_mc, kfac, "
                + "kflr, kfra, kfac_amortised)");
    }

    /** @return the name used in files and on the command line */
    public String id() {
        return id;
    }

    /** @return the name used in plots and tables (the paper's) */
    public String label() {
        return label;
    }

    /** @return whether this is a curvature rule (tuned over α and λ, needs {@code BackPackNetwork.extend}) */
    public boolean curvature() {
        return this != MOMENTUM && this != ADAM;
    }

    /**
     * @param alpha the learning rate α
     * @param lambda the damping λ (ignored by the baselines)
     * @return the DL4J updater
     */
    public IUpdater updater(double alpha, double lambda) {
        switch (this) {
            case MOMENTUM:
                return new Nesterovs(alpha, 0.9);
            case ADAM:
                return new Adam(alpha);
            case DIAG_GGN:
                return DiagGGNUpdater.exact(alpha, lambda);
            case DIAG_GGN_MC:
                return DiagGGNUpdater.monteCarlo(alpha, lambda, 1);
            case KFAC:
                return KroneckerUpdater.kfac(alpha, lambda, 1);
            case KFLR:
                return KroneckerUpdater.kflr(alpha, lambda);
            case KFAC_AMORTISED:
                return KroneckerUpdater.kfac(alpha, lambda, 1).withCurvatureInterval(AMORTISED_INTERVAL)
                        .withCurvatureDecay(AMORTISED_DECAY).withInverseInterval(AMORTISED_INTERVAL);
            default:
                return KroneckerUpdater.kfra(alpha, lambda);
        }
    }

    @Override
    public String toString() {
        return id;
    }
}
