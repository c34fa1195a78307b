// SPDX-License-Identifier: Apache-2.0
/**
 * Differentially private training (DP-SGD) of DL4J networks on the core's per-example quantities:
 * {@link io.github.dl4jbackpack.privacy.PrivateTraining} clips each example's gradient
 * ({@link io.github.dl4jbackpack.privacy.Clipping}), adds Gaussian noise and lets the network's own updater apply
 * the result, on Poisson-sampled batches ({@link io.github.dl4jbackpack.privacy.PoissonSampling}), with the privacy
 * spent tracked by {@link io.github.dl4jbackpack.privacy.accounting}. Depends on the core's public API only.
 */
package io.github.dl4jbackpack.privacy;
