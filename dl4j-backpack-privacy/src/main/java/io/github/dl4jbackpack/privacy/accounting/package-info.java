// SPDX-License-Identifier: Apache-2.0
/**
 * Privacy accounting for DP-SGD: how much (ε, δ)-differential privacy a sequence of Poisson-subsampled Gaussian
 * mechanisms (one per training step, with sample rate q and noise multiplier σ) spends.
 *
 * <ul>
 *   <li>{@link io.github.dl4jbackpack.privacy.accounting.RdpAccountant} — the default and the one to report
 *       guarantees with: the exact Rényi DP of the sampled Gaussian mechanism
 *       ({@link io.github.dl4jbackpack.privacy.accounting.SampledGaussianRdp}), composed by summation and converted to
 *       (ε, δ) with the conversion of Balle et al. (2020), as TensorFlow Privacy, Opacus and Google's dp_accounting
 *       do.</li>
 *   <li>{@link io.github.dl4jbackpack.privacy.accounting.GdpAccountant} — Gaussian DP through the central limit
 *       theorem (Bu et al. 2020): an asymptotic estimate that can understate ε, for comparison only.</li>
 *   <li>{@link io.github.dl4jbackpack.privacy.accounting.NoiseCalibration} — the noise multiplier that reaches a
 *       target ε, and {@link io.github.dl4jbackpack.privacy.accounting.SamplingSchedule} — sample rate and step count
 *       from batch size, dataset size and epochs.</li>
 * </ul>
 *
 * <p>The sensitivity is 1 throughout: σ is the ratio of the noise's standard deviation to the clipping norm, and
 * neighbouring datasets differ by adding or removing one example.
 */
package io.github.dl4jbackpack.privacy.accounting;
