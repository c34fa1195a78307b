// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import io.github.dl4jbackpack.samples.DeepObsNetworks;
import io.github.dl4jbackpack.samples.data.TestFiles;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Runs trained in processes of their own: the same results as in this process, and started again when one dies. */
class RunProcessTest {

    @TempDir
    Path dir;

    private static final ProblemPlan PLAN = new ProblemPlan(DeepObsNetworks.LOGREG, 2, 128, 64, 32, 32,
            List.of(Optimizer.DIAG_GGN_MC), new double[] {1e-1}, new double[] {1e-2}, new double[] {1e-1},
            new long[] {7});
    private static final Setting SETTING = new Setting(Optimizer.DIAG_GGN_MC, 1e-1, 1e-2);

    /** A command that dies like a crashed JVM (exit code 134) the first time and starts Java the second. */
    private List<String> dyingOnce(Path marker) {
        List<String> command = new ArrayList<>(List.of("/bin/sh", "-c",
                "if [ ! -e \"$0\" ]; then : > \"$0\"; echo 'a native crash'; exit 134; fi; exec \"$@\"",
                marker.toString()));
        command.addAll(RunProcess.javaCommandOfThisProcess());
        return command;
    }

    @Test
    void aRunWhoseProcessDiesIsTrainedAgainFromItsSeedWithTheResultOfThisProcess() throws IOException {
        assumeTrue(Files.isExecutable(Path.of("/bin/sh")), "needs a POSIX shell");
        Path data = dir.resolve("data");
        TestFiles.mnistLike(data.resolve("mnist"), 300, 60, false, 41);
        Path out = dir.resolve("out");
        List<Long> reported = new ArrayList<>();

        RunResult child = new RunProcess(dyingOnce(dir.resolve("died"))).train(PLAN, SETTING, 7, data, out,
                (iterations, epoch, loss) -> reported.add(iterations));

        assertTrue(Files.exists(dir.resolve("died")), "the first attempt ran and died");
        RunResult here = Trainer.train(PLAN, ExperimentRunner.load(PLAN, DeepObsNetworks.LOGREG.dataSource().load(data)),
                SETTING, 7, (iterations, epoch, loss) -> { });
        assertEquals(here.epochs(), child.epochs(), "the same metrics, epoch by epoch, as trained in this process");
        assertEquals(RunResult.OK, child.status());
        assertFalse(reported.isEmpty(), "the child reported its progress");
        assertTrue(reported.get(reported.size() - 1) <= 2 * 4, "at most the run's iterations: " + reported);
        String log = Files.readString(out.resolve("logs").resolve("mnist_logreg").resolve(SETTING.id() + "_seed7.log"));
        assertTrue(log.contains("# attempt 1") && log.contains("a native crash") && log.contains("# attempt 2"), log);
        assertTrue(new RunStore(out).load("mnist_logreg", SETTING, 7, PLAN.config()).isPresent(), "the run is stored");
    }

    @Test
    void aRunWhoseProcessAlwaysDiesFailsNamingItAndItsOutput() {
        assumeTrue(Files.isExecutable(Path.of("/bin/sh")), "needs a POSIX shell");
        Path out = dir.resolve("out");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> new RunProcess(
                List.of("/bin/sh", "-c", "echo 'no luck'; exit 3", "sh")).train(PLAN, SETTING, 7, dir, out,
                (iterations, epoch, loss) -> { }));
        assertTrue(e.getMessage().contains("mnist_logreg") && e.getMessage().contains("seed 7")
                && e.getMessage().contains("failed " + RunProcess.ATTEMPTS + " times")
                && e.getMessage().contains(SETTING.id() + "_seed7.log"), e.getMessage());
    }
}
