// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * The DeepOBS selection and reporting logic (the paper's App. C.1): the best grid point is the one
 * with the highest final validation accuracy; the re-runs of the best setting over several seeds
 * are summarised per epoch by median and quartiles.
 */
public final class Protocol {

    private Protocol() {
    }

    /**
     * Quartiles of one metric at one epoch over the seeds.
     *
     * @param epoch the epoch
     * @param metric the metric
     * @param q1 first quartile
     * @param median median
     * @param q3 third quartile
     * @param runs how many runs had a finite value (diverged runs are left out)
     */
    public record Quartiles(int epoch, EpochMetrics.Metric metric, double q1, double median, double q3, int runs) {
    }

    /**
     * Orders runs from best to worst: higher final validation accuracy first, then lower final
     * validation loss; runs with a non-finite final validation accuracy (diverged, failed) last.
     * The order of equal runs is kept (the sort is stable).
     */
    public static final Comparator<RunResult> BEST_FIRST = Comparator
            .comparingDouble((RunResult r) -> finiteOr(r.last().validAccuracy(), Double.NEGATIVE_INFINITY)).reversed()
            .thenComparingDouble(r -> finiteOr(r.last().validLoss(), Double.POSITIVE_INFINITY));

    /**
     * @param grid the grid runs of one optimiser (one seed each)
     * @return the best run by {@link #BEST_FIRST}
     */
    public static RunResult best(List<RunResult> grid) {
        if (grid.isEmpty()) {
            throw new IllegalArgumentException("empty grid");
        }
        List<RunResult> sorted = new ArrayList<>(grid);
        sorted.sort(BEST_FIRST);
        return sorted.get(0);
    }

    /**
     * @param value a chosen grid value
     * @param grid the grid it was chosen from
     * @return whether it is neither the smallest nor the largest grid value (the paper's Table 3 marks)
     */
    public static boolean interior(double value, double[] grid) {
        double min = Arrays.stream(grid).min().orElse(value);
        double max = Arrays.stream(grid).max().orElse(value);
        return value > min && value < max;
    }

    /**
     * Quartiles with linear interpolation between order statistics (numpy's default), ignoring
     * non-finite values.
     *
     * @param values the values
     * @return {@code [q1, median, q3, count]}, NaN quartiles if no value is finite
     */
    public static double[] quartiles(double[] values) {
        double[] v = Arrays.stream(values).filter(Double::isFinite).sorted().toArray();
        if (v.length == 0) {
            return new double[] {Double.NaN, Double.NaN, Double.NaN, 0};
        }
        return new double[] {quantile(v, 0.25), quantile(v, 0.5), quantile(v, 0.75), v.length};
    }

    /**
     * @param runs runs of one setting with different seeds and the same number of epochs
     * @return per epoch and metric, the quartiles over the runs
     */
    public static List<Quartiles> summarize(List<RunResult> runs) {
        int epochs = runs.stream().mapToInt(r -> r.epochs().size()).min().orElse(0);
        List<Quartiles> out = new ArrayList<>();
        for (int e = 0; e < epochs; e++) {
            for (EpochMetrics.Metric m : EpochMetrics.Metric.values()) {
                double[] values = new double[runs.size()];
                for (int i = 0; i < values.length; i++) {
                    values[i] = m.of(runs.get(i).epochs().get(e));
                }
                double[] q = quartiles(values);
                out.add(new Quartiles(runs.get(0).epochs().get(e).epoch(), m, q[0], q[1], q[2], (int) q[3]));
            }
        }
        return out;
    }

    private static double quantile(double[] sorted, double p) {
        double pos = p * (sorted.length - 1);
        int lo = (int) Math.floor(pos);
        int hi = Math.min(sorted.length - 1, lo + 1);
        return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }

    private static double finiteOr(double v, double otherwise) {
        return Double.isFinite(v) ? v : otherwise;
    }
}
