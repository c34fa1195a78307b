// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.samples.experiments.Optimizer;
import io.github.dl4jbackpack.samples.experiments.Preset;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The command line's selection of problems and optimisers from a preset. */
class ExperimentsTest {

    @Test
    void filtersProblemsAndOptimizers() {
        Preset quick = Preset.quick();
        Preset twoCTwoD = Experiments.filter(quick, "fmnist_2c2d", "adam,kfac");
        assertEquals(1, twoCTwoD.plans().size());
        assertSame(DeepObsNetworks.C2D2, twoCTwoD.plans().get(0).problem());
        assertEquals(List.of(Optimizer.ADAM), twoCTwoD.plans().get(0).optimizers());
        // KFAC is in the second logistic regression plan only.
        Preset kfac = Experiments.filter(quick, null, "kfac");
        assertEquals(1, kfac.plans().size());
        assertEquals(List.of(Optimizer.KFAC), kfac.plans().get(0).optimizers());
        assertEquals(quick.plans().size(), Experiments.filter(quick, null, null).plans().size());
        assertThrows(IllegalArgumentException.class, () -> Experiments.filter(quick, "2c2d", "kfra"));
        assertThrows(IllegalArgumentException.class, () -> Experiments.filter(quick, null, "lbfgs"));
    }
}
