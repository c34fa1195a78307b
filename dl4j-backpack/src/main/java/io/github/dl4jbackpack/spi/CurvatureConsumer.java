// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spi;

/**
 * Implemented by the {@code GradientUpdater} instances that {@link CurvatureUpdater}
 * configurations create. After each training iteration's backward pass, and before DL4J applies
 * the updater, the extended network hands every such updater the quantities of the parameters in
 * its DL4J updater block.
 */
public interface CurvatureConsumer {

    /**
     * @param curvature this iteration's quantities for the parameters of the updater's block (in an iteration in
     *     which {@link #needsCurvature} said no, they may lack the updater's extensions: other users of the
     *     network may have asked for a pass)
     */
    void acceptCurvature(BlockCurvature curvature);

    /**
     * Asked before each training iteration's passes: the extended network computes the updater's extensions
     * ({@link CurvatureUpdater#requiredExtensions}) in an iteration only when some updater of the network needs
     * them in it, so that a rule that refreshes its curvature every few iterations does not pay for it in every
     * iteration.
     *
     * @param iteration DL4J's iteration count of the iteration about to run
     * @return whether the updater reads fresh curvature in that iteration (by default in every iteration)
     */
    default boolean needsCurvature(int iteration) {
        return true;
    }
}
