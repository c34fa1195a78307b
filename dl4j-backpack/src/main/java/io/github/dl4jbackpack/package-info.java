// SPDX-License-Identifier: Apache-2.0
/**
 * dl4j-backpack: the quantities of BackPACK (Dangel, Kunstner &amp; Hennig, ICLR 2020) from the
 * backward pass of a DeepLearning4J network. Start with {@link io.github.dl4jbackpack.BackPackNetwork#extend}
 * on a MultiLayerNetwork or ComputationGraph, compute extensions
 * ({@link io.github.dl4jbackpack.extensions}) with {@code backward} or during training with
 * {@code enable}, and read them from the typed, immutable {@link io.github.dl4jbackpack.Quantities}.
 * Definitions and scaling: the project's docs/math.md.
 */
package io.github.dl4jbackpack;
