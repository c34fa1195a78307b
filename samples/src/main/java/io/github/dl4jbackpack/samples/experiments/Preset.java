// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import io.github.dl4jbackpack.samples.DeepObsNetworks;

import java.util.List;

/**
 * Named experiment plans: {@code paper}, the paper's full protocol on all four DeepOBS problems,
 * and {@code quick}, a reduced version on the two MNIST-shaped problems that finishes in under
 * 30 minutes on a 2-core CPU (see {@code docs/experiments.md} for what exactly is reduced).
 *
 * @param name the preset's name
 * @param plans the plans, in order; a problem may have several (e.g. a smaller grid for
 *              expensive optimisers), whose results go into the same files
 */
public record Preset(String name, List<ProblemPlan> plans) {

    /** The paper's α grid (App. C.2). */
    public static final double[] PAPER_ALPHAS = {1e-4, 1e-3, 1e-2, 1e-1, 1};
    /** The paper's λ grid (App. C.2). */
    public static final double[] PAPER_LAMBDAS = {1e-4, 1e-3, 1e-2, 1e-1, 1, 10};
    /** The baselines' learning-rate grid of the paper preset: 10^-5 to 10^1 in half decades. */
    public static final double[] PAPER_RATES = logGrid(-5, 1, 13);

    /** Copies the plans. */
    public Preset {
        plans = List.copyOf(plans);
    }

    /**
     * @param name {@code quick} or {@code paper}
     * @return the preset
     */
    public static Preset of(String name) {
        switch (name) {
            case "quick":
                return quick();
            case "paper":
                return paper();
            default:
                throw new IllegalArgumentException("unknown preset " + name + " (quick, paper)");
        }
    }

    /** @return the full protocol: DeepOBS budgets, full grids, 10 seeds */
    public static Preset paper() {
        long[] seeds = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        List<Optimizer> all = List.of(Optimizer.MOMENTUM, Optimizer.ADAM, Optimizer.DIAG_GGN, Optimizer.DIAG_GGN_MC,
                Optimizer.KFAC, Optimizer.KFLR, Optimizer.KFRA);
        List<Optimizer> noKfra = all.subList(0, 6);
        List<Optimizer> sampled = List.of(Optimizer.MOMENTUM, Optimizer.ADAM, Optimizer.DIAG_GGN_MC, Optimizer.KFAC);
        return new Preset("paper", List.of(
                paperPlan(DeepObsNetworks.LOGREG, all, seeds),
                paperPlan(DeepObsNetworks.C2D2, noKfra, seeds),
                paperPlan(DeepObsNetworks.C3D3, noKfra, seeds),
                paperPlan(DeepObsNetworks.ALLCNNC, sampled, seeds)));
    }

    /**
     * @return the reduced protocol: a few thousand training examples, 3 epochs, small grids, 2–5
     *         seeds; on logistic regression the Kronecker rules get a 2-point grid and 2 seeds in a plan
     *         of their own (chosen when their damped factors were inverted by an eigendecomposition in
     *         every step; kept so that the stored results stay comparable); on 2C2D (4 epochs of
     *         4,096 examples, 128 steps, long enough to rank the methods)
     *         DiagGGN-MC and the amortised KFAC run of the curvature rules (the paper's exact Kronecker and
     *         DiagGGN rules cost 10–60× a gradient step there on a CPU)
     */
    public static Preset quick() {
        double[] all = {1e-3, 1e-2, 1e-1, 1};
        return new Preset("quick", List.of(
                new ProblemPlan(DeepObsNetworks.LOGREG, 3, 3_840, 10_000, 10_000, 128,
                        List.of(Optimizer.MOMENTUM, Optimizer.ADAM, Optimizer.DIAG_GGN, Optimizer.DIAG_GGN_MC),
                        all, all, new double[] {1e-4, 1e-3, 1e-2, 1e-1, 1}, new long[] {1, 2, 3, 4, 5}),
                new ProblemPlan(DeepObsNetworks.LOGREG, 3, 3_840, 10_000, 10_000, 128,
                        List.of(Optimizer.KFAC, Optimizer.KFLR, Optimizer.KFRA),
                        new double[] {1e-1, 1}, new double[] {1e-1}, new double[0], new long[] {1, 2}),
                new ProblemPlan(DeepObsNetworks.C2D2, 4, 4_096, 10_000, 1_000, 128,
                        List.of(Optimizer.MOMENTUM, Optimizer.ADAM, Optimizer.DIAG_GGN_MC, Optimizer.KFAC_AMORTISED),
                        new double[] {1e-2, 1e-1}, new double[] {1e-1},
                        new double[] {1e-3, 1e-2, 1e-1}, new long[] {1, 2})));
    }

    private static ProblemPlan paperPlan(DeepObsNetworks problem, List<Optimizer> optimizers, long[] seeds) {
        return new ProblemPlan(problem, problem.epochs(), 0, 10_000, 10_000, problem.batchSize(), optimizers,
                PAPER_ALPHAS, PAPER_LAMBDAS, PAPER_RATES, seeds);
    }

    static double[] logGrid(double fromExponent, double toExponent, int points) {
        double[] g = new double[points];
        for (int i = 0; i < points; i++) {
            double e = fromExponent + (toExponent - fromExponent) * i / (points - 1);
            g[i] = Double.parseDouble(String.format(java.util.Locale.ROOT, "%.3g", Math.pow(10, e)));
        }
        return g;
    }
}
