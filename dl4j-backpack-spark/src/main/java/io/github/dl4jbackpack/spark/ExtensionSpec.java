// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;

import java.io.Serializable;
import java.util.Arrays;
import java.util.List;

/**
 * A dataset-level extension as the executors rebuild it (extension objects themselves are not serialisable).
 *
 * @param kind which extension
 * @param samples its Monte Carlo samples (0 for the exact ones)
 */
record ExtensionSpec(Kind kind, int samples) implements Serializable {

    /** The extensions that have an exact dataset-level sum. */
    enum Kind {
        DIAG_GGN_EXACT, DIAG_GGN_MC, DIAG_HESSIAN, SUM_GRAD_SQUARED, VARIANCE, KFLR, KFAC
    }

    /**
     * @param e an extension
     * @return its spec, or null if it has no dataset-level value here
     */
    static ExtensionSpec of(Extension<?> e) {
        if (e instanceof DiagGGNExact) {
            return new ExtensionSpec(Kind.DIAG_GGN_EXACT, 0);
        } else if (e instanceof DiagGGNMC mc) {
            return new ExtensionSpec(Kind.DIAG_GGN_MC, mc.mcSamples());
        } else if (e instanceof DiagHessian) {
            return new ExtensionSpec(Kind.DIAG_HESSIAN, 0);
        } else if (e instanceof SumGradSquared) {
            return new ExtensionSpec(Kind.SUM_GRAD_SQUARED, 0);
        } else if (e instanceof Variance) {
            return new ExtensionSpec(Kind.VARIANCE, 0);
        } else if (e instanceof KFLR) {
            return new ExtensionSpec(Kind.KFLR, 0);
        } else if (e instanceof KFAC kfac) {
            return new ExtensionSpec(Kind.KFAC, kfac.mcSamples());
        }
        return null;
    }

    /** @return the names of the supported extensions, for messages */
    static List<String> supported() {
        return Arrays.asList("DiagGGNExact", "DiagGGNMC", "DiagHessian", "SumGradSquared", "Variance", "KFLR", "KFAC");
    }

    /** @return a new instance of the extension */
    Extension<?> instance() {
        switch (kind) {
            case DIAG_GGN_EXACT:
                return new DiagGGNExact();
            case DIAG_GGN_MC:
                return new DiagGGNMC(samples);
            case DIAG_HESSIAN:
                return new DiagHessian();
            case SUM_GRAD_SQUARED:
                return new SumGradSquared();
            case VARIANCE:
                return new Variance();
            case KFLR:
                return new KFLR();
            default:
                return new KFAC(samples);
        }
    }

    /** @return the extension's class, the key of its values */
    Class<?> extensionClass() {
        return instance().getClass();
    }

    /** @return the extension's name, the key of its sums */
    String name() {
        return instance().name();
    }

    /** @return whether its values are Kronecker factors */
    boolean kronecker() {
        return kind == Kind.KFLR || kind == Kind.KFAC;
    }
}
