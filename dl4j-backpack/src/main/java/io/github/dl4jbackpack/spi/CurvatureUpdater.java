// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spi;

import io.github.dl4jbackpack.extensions.Extension;

import java.util.List;

/**
 * Implemented by DL4J updater configurations ({@code IUpdater}) whose update rule needs quantities
 * of the extended backward pass, such as the curvature-preconditioned updaters of
 * {@code dl4j-backpack-optim}. {@link io.github.dl4jbackpack.BackPackNetwork#extend} finds them in
 * the network's configuration and computes the extensions they need in every training iteration.
 */
public interface CurvatureUpdater {

    /** @return the extensions the update rule reads, computed in every training iteration */
    List<Extension<?>> requiredExtensions();
}
