// SPDX-License-Identifier: Apache-2.0
/**
 * The quantities the extended backward pass computes, one class per quantity (first order:
 * {@link io.github.dl4jbackpack.extensions.BatchGrad}, ..., second order:
 * {@link io.github.dl4jbackpack.extensions.DiagGGNExact}, ..., Kronecker factors), and the SPI for
 * writing extensions: {@link io.github.dl4jbackpack.extensions.Extension},
 * {@link io.github.dl4jbackpack.extensions.LayerSignals},
 * {@link io.github.dl4jbackpack.extensions.CurvatureRequest},
 * {@link io.github.dl4jbackpack.extensions.FactorKind}. Depends on no other package of the library.
 */
package io.github.dl4jbackpack.extensions;
