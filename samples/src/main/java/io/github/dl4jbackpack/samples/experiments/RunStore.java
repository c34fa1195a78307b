// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Optional;

/**
 * Finished runs on disk, one file per (problem, setting, seed) under {@code runs/<problem>/}, so that
 * an interrupted experiment continues where it stopped. A file is written atomically when its run
 * has finished; a stored run trained under another configuration (e.g. other epochs) is not reused.
 */
public final class RunStore {

    private final Path root;

    /** @param outDir the experiment's output directory */
    public RunStore(Path outDir) {
        this.root = outDir.resolve("runs");
    }

    /**
     * @param problem the DeepOBS problem name
     * @param setting the hyperparameters
     * @param seed the seed
     * @return the run's file
     */
    public Path file(String problem, Setting setting, long seed) {
        return root.resolve(problem).resolve(setting.id() + "_seed" + seed + ".csv");
    }

    /**
     * @param problem the DeepOBS problem name
     * @param setting the hyperparameters
     * @param seed the seed
     * @param config the configuration the run must have been trained under
     * @return the stored run, if there is one with this configuration
     */
    public Optional<RunResult> load(String problem, Setting setting, long seed, String config) {
        Path f = file(problem, setting, seed);
        if (!Files.isRegularFile(f)) {
            return Optional.empty();
        }
        RunResult r = RunResult.read(f);
        return r.config().equals(config) ? Optional.of(r) : Optional.empty();
    }

    /**
     * Stores a finished run (replacing an older one of the same key).
     *
     * @param run the run
     */
    public void save(RunResult run) {
        Path f = file(run.problem(), run.setting(), run.seed());
        try {
            Files.createDirectories(f.getParent());
            Path tmp = f.resolveSibling(f.getFileName() + ".tmp");
            run.write(tmp);
            Files.move(tmp, f, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot store " + f, e);
        }
    }
}
