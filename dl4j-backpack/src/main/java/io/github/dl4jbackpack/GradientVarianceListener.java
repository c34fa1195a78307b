package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.optimize.api.BaseTrainingListener;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * A DL4J {@code TrainingListener} that logs the gradient noise of training: every k iterations it
 * reports, per layer and parameter, the total variance of the per-example gradients, the norm of
 * the mean gradient, their signal-to-noise ratio and quantiles of the per-example gradient norms,
 * through SLF4J (logger {@code io.github.dl4jbackpack.GradientVarianceListener}, level INFO) and
 * optionally as CSV rows.
 *
 * <pre>{@code
 * BackPackNetwork bp = BackPackNetwork.extend(net);
 * net.addListeners(new GradientVarianceListener(bp, 50).writeCsv(Path.of("noise.csv")));
 * net.fit(train, epochs);
 * }</pre>
 *
 * <p>It switches on {@link Variance}, {@link SumGradSquared} and {@link BatchL2Grad} only for the
 * iterations it reports: the others cost nothing. All numbers refer to per-example loss gradients
 * {@code ∇ℓ_n} (see {@link Statistics}).
 */
public final class GradientVarianceListener extends BaseTrainingListener {

    private static final Logger log = LoggerFactory.getLogger(GradientVarianceListener.class);
    private static final List<Extension<?>> NEEDS = List.of(new Variance(), new SumGradSquared(), new BatchL2Grad());
    private static final String CSV_HEADER = "iteration,epoch,layer,param,batch,variance,gradient_norm,snr,"
            + "norm_q10,norm_q50,norm_q90";

    private final BackPackNetwork network;
    private final int frequency;
    private Path csv;
    private Quantities captured;
    private List<Statistics> lastReport = List.of();

    /**
     * The statistics of one parameter in one iteration, for per-example loss gradients
     * {@code ∇ℓ_n = N g_n} (MATH.md scaling: {@code g_n = ∇ℓ_n / N}).
     *
     * @param iteration DL4J's iteration count
     * @param epoch DL4J's epoch count
     * @param layer layer index
     * @param param parameter name
     * @param batchSize N
     * @param variance {@code Σ_elements Var_n(∇ℓ_n)} = {@code N² Σ Variance}
     * @param gradientNorm {@code ‖∇L‖} = {@code ‖(1/N) Σ_n ∇ℓ_n‖}
     * @param signalToNoise {@code ‖∇L‖² / variance}
     * @param normQ10 10% quantile of {@code ‖∇ℓ_n‖} = {@code N √BatchL2}
     * @param normQ50 median of {@code ‖∇ℓ_n‖}
     * @param normQ90 90% quantile of {@code ‖∇ℓ_n‖}
     */
    public record Statistics(int iteration, int epoch, int layer, String param, long batchSize, double variance,
                             double gradientNorm, double signalToNoise, double normQ10, double normQ50,
                             double normQ90) {

        /**
         * @param q quantities containing {@link Variance}, {@link SumGradSquared} and {@link BatchL2Grad}
         * @param layer a layer with parameters
         * @param param one of its parameters
         * @param iteration the iteration to record
         * @param epoch the epoch to record
         * @return the statistics of that parameter
         */
        public static Statistics of(Quantities q, int layer, String param, int iteration, int epoch) {
            long n = q.batchSize();
            INDArray variance = q.get(Variance.class, layer, param);
            INDArray meanSquared = q.get(SumGradSquared.class, layer, param).divi(n).subi(variance);
            double total = variance.sumNumber().doubleValue() * n * n;
            double meanNormSq = Math.max(0.0, meanSquared.sumNumber().doubleValue()) * n * n;
            double[] norms = q.get(BatchL2Grad.class, layer, param).toDoubleVector();
            for (int i = 0; i < norms.length; i++) {
                norms[i] = n * Math.sqrt(Math.max(0.0, norms[i]));
            }
            Arrays.sort(norms);
            return new Statistics(iteration, epoch, layer, param, n, total, Math.sqrt(meanNormSq),
                    meanNormSq / Math.max(total, Double.MIN_NORMAL), quantile(norms, 0.1), quantile(norms, 0.5),
                    quantile(norms, 0.9));
        }

        /** @return the values as a CSV row matching the listener's header */
        String csv() {
            return String.format(Locale.ROOT, "%d,%d,%d,%s,%d,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g", iteration, epoch,
                    layer, param, batchSize, variance, gradientNorm, signalToNoise, normQ10, normQ50, normQ90);
        }
    }

    /** Linear interpolation between order statistics of sorted values. */
    static double quantile(double[] sorted, double q) {
        double position = q * (sorted.length - 1);
        int below = (int) Math.floor(position);
        int above = Math.min(sorted.length - 1, below + 1);
        return sorted[below] + (position - below) * (sorted[above] - sorted[below]);
    }

    /**
     * @param network the extended network the listener is added to
     * @param frequency report every {@code frequency} iterations (iteration 0 included)
     */
    public GradientVarianceListener(BackPackNetwork network, int frequency) {
        if (frequency < 1) {
            throw new IllegalArgumentException("frequency must be at least 1, got " + frequency);
        }
        this.network = Objects.requireNonNull(network);
        this.frequency = frequency;
        network.addQuantitiesListener(q -> {
            if (q.contains(Variance.class) && q.contains(SumGradSquared.class) && q.contains(BatchL2Grad.class)) {
                captured = q;
            }
        });
        scheduleFor(network.network().getIterationCount());
    }

    /**
     * Also appends every report to a CSV file (created with a header if absent).
     *
     * @param file the CSV file
     * @return this listener
     */
    public GradientVarianceListener writeCsv(Path file) {
        this.csv = Objects.requireNonNull(file);
        return this;
    }

    /** @return the statistics of the most recent report (empty before the first) */
    public List<Statistics> lastReport() {
        return lastReport;
    }

    @Override
    public void iterationDone(Model model, int iteration, int epoch) {
        Quantities q = captured;
        captured = null;
        if (q != null && iteration % frequency == 0) {
            report(q, iteration, epoch);
        }
        scheduleFor(iteration + 1);
    }

    private void scheduleFor(int nextIteration) {
        network.require(this, nextIteration % frequency == 0 ? NEEDS : List.of());
    }

    private void report(Quantities q, int iteration, int epoch) {
        List<Statistics> rows = new ArrayList<>();
        for (int layer : q.layers(Variance.class)) {
            for (String param : q.params(Variance.class, layer)) {
                Statistics s = Statistics.of(q, layer, param, iteration, epoch);
                rows.add(s);
                log.info(String.format(Locale.ROOT, "iteration %d layer %d %s: variance %.4e, |grad| %.4e, "
                                + "SNR %.4f, per-example |grad| q10/q50/q90 %.4e/%.4e/%.4e", iteration, layer, param,
                        s.variance(), s.gradientNorm(), s.signalToNoise(), s.normQ10(), s.normQ50(), s.normQ90()));
            }
        }
        lastReport = List.copyOf(rows);
        if (csv != null) {
            appendCsv(rows);
        }
    }

    private void appendCsv(List<Statistics> rows) {
        try {
            boolean fresh = !Files.exists(csv) || Files.size(csv) == 0;
            try (BufferedWriter w = Files.newBufferedWriter(csv, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                    StandardOpenOption.APPEND)) {
                if (fresh) {
                    w.write(CSV_HEADER);
                    w.newLine();
                }
                for (Statistics s : rows) {
                    w.write(s.csv());
                    w.newLine();
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write gradient statistics to " + csv, e);
        }
    }
}
