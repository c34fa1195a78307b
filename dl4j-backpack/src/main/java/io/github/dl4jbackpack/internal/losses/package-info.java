// SPDX-License-Identifier: Apache-2.0
/**
 * Internal: one class per supported loss (with its output activation) that knows its Hessian, a
 * symmetric factor of it and Monte Carlo sampling (docs/math.md#loss-hessian-factors).
 */
package io.github.dl4jbackpack.internal.losses;
