// SPDX-License-Identifier: Apache-2.0
/**
 * The service-provider interface for applications built on the library in their own modules (the
 * curvature-preconditioned updaters of {@code dl4j-backpack-optim}): a DL4J updater configuration
 * that implements {@link io.github.dl4jbackpack.spi.CurvatureUpdater} is handed, in every training
 * iteration in which its updater asks for them ({@link io.github.dl4jbackpack.spi.CurvatureConsumer}), the
 * quantities of the parameters in its updater block ({@link io.github.dl4jbackpack.spi.BlockCurvature}). Depends
 * only on
 * {@link io.github.dl4jbackpack.extensions}.
 */
package io.github.dl4jbackpack.spi;
