// SPDX-License-Identifier: Apache-2.0
/**
 * Internal: the second-order backward pass over a network's topology (docs/math.md#second-order,
 * #graphs): factor columns, residuals, KFRA's averaged matrices.
 */
package io.github.dl4jbackpack.internal.curvature;
