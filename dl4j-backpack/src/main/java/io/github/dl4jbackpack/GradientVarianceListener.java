// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.Extension;
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
import java.util.HashMap;
import java.util.Map;
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
 * <p>It switches on {@link Variance} and {@link BatchL2Grad} only for the iterations it reports: the
 * others cost nothing. The mean gradient is read from DL4J's own gradient right after the backward
 * pass ({@code onBackwardPass}). A listener belongs to the network it was created for: added to
 * another one it fails at its first iteration. All numbers refer to per-example loss gradients
 * {@code ∇ℓ_n} (see {@link Statistics}).
 */
public final class GradientVarianceListener extends BaseTrainingListener {

    private static final Logger log = LoggerFactory.getLogger(GradientVarianceListener.class);
    private static final List<Extension<?>> NEEDS = List.of(new Variance(), new BatchL2Grad());
    private static final String CSV_HEADER = "iteration,epoch,layer,param,batch,variance,gradient_norm,snr,"
            + "norm_q10,norm_q50,norm_q90";

    private final BackPackNetwork network;
    private final int frequency;
    private Path csv;
    private Quantities captured;
    private Map<String, Double> gradientNorms = Map.of();
    private double precision = 0x1.0p-23;
    private List<Statistics> lastReport = List.of();

    /**
     * The statistics of one parameter in one iteration, for per-example loss gradients
     * {@code ∇ℓ_n = N g_n} (docs/math.md scaling: {@code g_n = ∇ℓ_n / N}).
     *
     * @param iteration DL4J's iteration count
     * @param epoch DL4J's epoch count
     * @param layer layer name (index in a MultiLayerNetwork, vertex name in a graph)
     * @param param parameter name
     * @param batchSize N
     * @param variance {@code Σ_elements Var_n(∇ℓ_n)} = {@code N² Σ Variance}
     * @param gradientNorm {@code ‖∇L‖} = {@code ‖(1/N) Σ_n ∇ℓ_n‖}
     * @param signalToNoise {@code ‖∇L‖² / variance}; 0 when the gradient is 0, and at most
     *     {@code 1/ε} ({@code ε = 2⁻²³} for float, {@code 2⁻⁵²} for double networks) when the variance is 0
     *     or below the precision of the mean gradient (identical examples, a batch of one)
     * @param normQ10 10% quantile of {@code ‖∇ℓ_n‖} = {@code N √BatchL2}
     * @param normQ50 median of {@code ‖∇ℓ_n‖}
     * @param normQ90 90% quantile of {@code ‖∇ℓ_n‖}
     */
    public record Statistics(int iteration, int epoch, String layer, String param, long batchSize, double variance,
                             double gradientNorm, double signalToNoise, double normQ10, double normQ50,
                             double normQ90) {

        /**
         * @param q quantities containing {@link Variance} and {@link BatchL2Grad}
         * @param layer a layer with parameters
         * @param param one of its parameters
         * @param gradientNormSquared {@code ‖∇L‖²} of the parameter in the same pass
         * @param epsilon the relative precision of the network's floating-point type
         * @param iteration the iteration to record
         * @param epoch the epoch to record
         * @return the statistics of that parameter
         */
        public static Statistics of(Quantities q, String layer, String param, double gradientNormSquared,
                                    double epsilon, int iteration, int epoch) {
            long n = q.batchSize();
            INDArray variance = q.get(Variance.class, layer, param);
            double total = variance.castTo(org.nd4j.linalg.api.buffer.DataType.DOUBLE).sumNumber().doubleValue() * n * n;
            double[] norms = q.get(BatchL2Grad.class, layer, param).toDoubleVector();
            for (int i = 0; i < norms.length; i++) {
                norms[i] = n * Math.sqrt(Math.max(0.0, norms[i]));
            }
            Arrays.sort(norms);
            return new Statistics(iteration, epoch, layer, param, n, total, Math.sqrt(gradientNormSquared),
                    signalToNoise(gradientNormSquared, total, epsilon), quantile(norms, 0.1), quantile(norms, 0.5),
                    quantile(norms, 0.9));
        }

        /**
         * {@code ‖∇L‖² / variance}, finite: 0 when the gradient is 0, and at most {@code 1/ε} (variance
         * below the precision of the mean gradient, e.g. identical examples or a batch of one).
         */
        static double signalToNoise(double gradientNormSquared, double variance, double epsilon) {
            if (gradientNormSquared == 0) {
                return 0;
            }
            return gradientNormSquared / Math.max(variance, epsilon * gradientNormSquared);
        }

        /** @return the values as a CSV row matching the listener's header */
        String csv() {
            return String.format(Locale.ROOT, "%d,%d,%s,%s,%d,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g", iteration, epoch,
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
            if (q.contains(Variance.class) && q.contains(BatchL2Grad.class)) {
                captured = q;
            }
        });
        scheduleFor(network.iteration());
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

    /** Right after the backward pass DL4J's gradient holds {@code Σ_n ∇ℓ_n}: keeps {@code ‖∇L‖²} per parameter. */
    @Override
    public void onBackwardPass(Model model) {
        Quantities q = captured;
        if (q == null || model != network.model() || model.gradient() == null) {
            return;
        }
        Map<String, Double> norms = new HashMap<>();
        double n = q.batchSize();
        for (String layer : q.layerNames(Variance.class)) {
            for (String param : q.params(Variance.class, layer)) {
                INDArray g = model.gradient().getGradientFor(layer + "_" + param);
                if (g != null) {
                    double norm = g.norm2Number().doubleValue() / n;
                    norms.put(layer + "_" + param, norm * norm);
                }
            }
        }
        gradientNorms = norms;
        precision = model.params().dataType() == org.nd4j.linalg.api.buffer.DataType.DOUBLE ? 0x1.0p-52 : 0x1.0p-23;
    }

    @Override
    public void iterationDone(Model model, int iteration, int epoch) {
        if (model != network.model()) {
            throw new IllegalStateException("this GradientVarianceListener was created for another network ("
                    + network.model().getClass().getSimpleName() + "@" + Integer.toHexString(
                    System.identityHashCode(network.model())) + "); create one with BackPackNetwork.extend(thisNetwork)");
        }
        Quantities q = captured;
        Map<String, Double> norms = gradientNorms;
        captured = null;
        gradientNorms = Map.of();
        if (q != null && iteration % frequency == 0) {
            report(q, norms, iteration, epoch);
        }
        scheduleFor(iteration + 1);
    }

    private void scheduleFor(int nextIteration) {
        network.require(this, nextIteration % frequency == 0 ? NEEDS : List.of());
    }

    private void report(Quantities q, Map<String, Double> norms, int iteration, int epoch) {
        List<Statistics> rows = new ArrayList<>();
        for (String layer : q.layerNames(Variance.class)) {
            for (String param : q.params(Variance.class, layer)) {
                Double norm = norms.get(layer + "_" + param);
                if (norm == null) {
                    continue;
                }
                Statistics s = Statistics.of(q, layer, param, norm, precision, iteration, epoch);
                rows.add(s);
                log.info(String.format(Locale.ROOT, "iteration %d layer %s %s: variance %.4e, |grad| %.4e, "
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
