// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spi;

/**
 * Implemented by the {@code GradientUpdater} instances that {@link CurvatureUpdater}
 * configurations create. After each training iteration's backward pass, and before DL4J applies
 * the updater, the extended network hands every such updater the quantities of the parameters in
 * its DL4J updater block.
 */
public interface CurvatureConsumer {

    /** @param curvature this iteration's quantities for the parameters of the updater's block */
    void acceptCurvature(BlockCurvature curvature);
}
