// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spi;

import io.github.dl4jbackpack.extensions.Extension;

import java.util.List;

/**
 * Implemented by DL4J updater configurations ({@code IUpdater}) whose update rule needs quantities
 * of the extended backward pass, such as the curvature-preconditioned updaters of
 * {@code dl4j-backpack-optim}. {@link io.github.dl4jbackpack.BackPackNetwork#extend} finds them in
 * the network's configuration and computes the extensions they need in the training iterations that need them.
 */
public interface CurvatureUpdater {

    /**
     * @return the extensions the update rule reads, computed in every training iteration in which the rule's
     *     updaters ask for them ({@link CurvatureConsumer#needsCurvature}, by default every iteration)
     */
    List<Extension<?>> requiredExtensions();
}
