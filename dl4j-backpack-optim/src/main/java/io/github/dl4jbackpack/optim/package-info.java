// SPDX-License-Identifier: Apache-2.0
/**
 * Curvature-preconditioned updaters as drop-in DL4J {@code IUpdater}s
 * ({@link io.github.dl4jbackpack.optim.DiagGGNUpdater}, {@link io.github.dl4jbackpack.optim.KroneckerUpdater}),
 * built on the core's SPI ({@link io.github.dl4jbackpack.spi}); docs/math.md#preconditioned-updates.
 */
package io.github.dl4jbackpack.optim;
