// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * One finished training run: which problem, setting and seed, under which run configuration, and
 * the metrics of every epoch. Stored as a small CSV file with {@code # key=value} header lines.
 *
 * @param problem the DeepOBS problem name
 * @param setting the hyperparameters
 * @param seed the seed of initialisation, minibatch order and Monte Carlo sampling
 * @param config the run configuration it was trained under ({@link ProblemPlan#config()}); a stored
 *               run is reused only under the same configuration
 * @param status {@code ok}, {@code diverged} (the loss became NaN or infinite; later epochs are NaN)
 *               or {@code failed: <message>} (training threw; later epochs are NaN)
 * @param seconds wall time of training and evaluation
 * @param epochs metrics of epochs 0 (before training) to the last
 */
public record RunResult(String problem, Setting setting, long seed, String config, String status, double seconds,
                        List<EpochMetrics> epochs) {

    /** Status of a run that trained to the end. */
    public static final String OK = "ok";
    /** Status of a run whose loss became NaN or infinite. */
    public static final String DIVERGED = "diverged";

    /** Copies the epoch list. */
    public RunResult {
        epochs = List.copyOf(epochs);
    }

    /** @return the metrics after the last epoch */
    public EpochMetrics last() {
        return epochs.get(epochs.size() - 1);
    }

    /**
     * Writes the run.
     *
     * @param file the CSV file
     */
    public void write(Path file) {
        StringBuilder sb = new StringBuilder();
        sb.append("# problem=").append(problem).append('\n');
        sb.append("# optimizer=").append(setting.optimizer().id()).append('\n');
        sb.append("# alpha=").append(setting.alpha()).append('\n');
        sb.append("# lambda=").append(setting.lambda()).append('\n');
        sb.append("# seed=").append(seed).append('\n');
        sb.append("# config=").append(config).append('\n');
        sb.append("# status=").append(status.replace('\n', ' ')).append('\n');
        sb.append("# seconds=").append(seconds).append('\n');
        sb.append("epoch");
        for (EpochMetrics.Metric m : EpochMetrics.Metric.values()) {
            sb.append(',').append(m.column());
        }
        sb.append('\n');
        for (EpochMetrics e : epochs) {
            sb.append(e.epoch());
            for (EpochMetrics.Metric m : EpochMetrics.Metric.values()) {
                sb.append(',').append(m.of(e));
            }
            sb.append('\n');
        }
        try {
            Files.writeString(file, sb.toString(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file, e);
        }
    }

    /**
     * Reads a run written by {@link #write(Path)}.
     *
     * @param file the CSV file
     * @return the run
     * @throws IllegalArgumentException if the file is not such a run
     */
    public static RunResult read(Path file) {
        List<String> lines;
        try {
            lines = Files.readAllLines(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file, e);
        }
        Map<String, String> header = new HashMap<>();
        List<EpochMetrics> epochs = new ArrayList<>();
        try {
            for (String line : lines) {
                if (line.startsWith("# ")) {
                    int eq = line.indexOf('=');
                    header.put(line.substring(2, eq), line.substring(eq + 1));
                } else if (!line.isBlank() && !line.startsWith("epoch")) {
                    String[] c = line.split(",");
                    epochs.add(new EpochMetrics(Integer.parseInt(c[0]), Double.parseDouble(c[1]), Double.parseDouble(c[2]),
                            Double.parseDouble(c[3]), Double.parseDouble(c[4]), Double.parseDouble(c[5]),
                            Double.parseDouble(c[6])));
                }
            }
            Setting setting = new Setting(Optimizer.of(header.get("optimizer")), Double.parseDouble(header.get("alpha")),
                    Double.parseDouble(header.get("lambda")));
            if (epochs.isEmpty()) {
                throw new IllegalArgumentException("no epochs");
            }
            return new RunResult(header.get("problem"), setting, Long.parseLong(header.get("seed")), header.get("config"),
                    header.get("status"), Double.parseDouble(header.get("seconds")), epochs);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("not a run file: " + file + " (" + e + ")", e);
        }
    }
}
