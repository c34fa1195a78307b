// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import io.github.dl4jbackpack.samples.DeepObsNetworks;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * What to run on one DeepOBS problem: the training budget, the optimisers with their grids, and
 * the seeds.
 *
 * @param problem the network (its data set and L2 strength are DeepOBS's)
 * @param epochs training epochs
 * @param trainSize training examples used (a fixed random subset of the training split; 0 for all)
 * @param validationSize examples split off the official training set for validation (DeepOBS: 10,000)
 * @param evalSize at most this many examples of the training split, the validation and the test
 *                 set are evaluated after every epoch (fixed random subsets; 0 for all)
 * @param batch the minibatch size
 * @param optimizers the optimisers
 * @param alphas the learning-rate grid of the curvature rules
 * @param lambdas the damping grid of the curvature rules
 * @param rates the learning-rate grid of the baselines
 * @param seeds the seeds: the first for the grid search, all for the re-runs of the best setting
 */
public record ProblemPlan(DeepObsNetworks problem, int epochs, int trainSize, int validationSize, int evalSize,
                          int batch, List<Optimizer> optimizers, double[] alphas, double[] lambdas, double[] rates,
                          long[] seeds) {

    /** Checks the plan. */
    public ProblemPlan {
        if (epochs < 1 || batch < 1 || seeds.length < 1 || optimizers.isEmpty()) {
            throw new IllegalArgumentException("a plan needs epochs, a batch size, seeds and optimizers");
        }
        optimizers = List.copyOf(optimizers);
    }

    /**
     * @param optimizer one of {@link #optimizers()}
     * @return its grid: α × λ for the curvature rules, the learning rates for the baselines
     */
    public List<Setting> grid(Optimizer optimizer) {
        List<Setting> grid = new ArrayList<>();
        if (optimizer.curvature()) {
            for (double a : alphas) {
                for (double l : lambdas) {
                    grid.add(new Setting(optimizer, a, l));
                }
            }
        } else {
            for (double r : rates) {
                grid.add(new Setting(optimizer, r, Double.NaN));
            }
        }
        return grid;
    }

    /** @return the number of runs: every grid point once, and the other seeds for each optimiser's best */
    public int runCount() {
        int n = 0;
        for (Optimizer o : optimizers) {
            n += grid(o).size() + seeds.length - 1;
        }
        return n;
    }

    /** @return what a stored run must match to be reused */
    public String config() {
        return String.format(Locale.ROOT, "epochs=%d;train=%d;validation=%d;eval=%d;batch=%d;l2=%s", epochs, trainSize,
                validationSize, evalSize, batch, problem.l2());
    }

    /**
     * @param optimizers the optimisers to run instead
     * @return this plan with other optimisers
     */
    public ProblemPlan withOptimizers(List<Optimizer> optimizers) {
        return new ProblemPlan(problem, epochs, trainSize, validationSize, evalSize, batch, optimizers, alphas, lambdas,
                rates, seeds);
    }

    @Override
    public String toString() {
        return problem.deepObsName() + " " + config() + " optimizers=" + optimizers + " α=" + Arrays.toString(alphas)
                + " λ=" + Arrays.toString(lambdas) + " rates=" + Arrays.toString(rates) + " seeds=" + Arrays.toString(seeds);
    }
}
