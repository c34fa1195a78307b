// SPDX-License-Identifier: Apache-2.0
/**
 * Internal: one class per layer kind ({@link io.github.dl4jbackpack.internal.layers.LayerDerivatives})
 * and per graph vertex kind ({@link io.github.dl4jbackpack.internal.layers.VertexDerivatives}) that
 * knows its derivatives: input Jacobian-transpose products, per-example parameter terms, Hessian
 * residuals, and optional fast paths (first-order terms, Kronecker factors).
 */
package io.github.dl4jbackpack.internal.layers;
