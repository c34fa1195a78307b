// SPDX-License-Identifier: Apache-2.0
/**
 * Runnable samples: the gradient-noise demo, the optimiser comparison, the transfer-learning sample
 * that lists the hardest training examples, the benchmark runner and the paper's optimisation
 * experiments.
 */
package io.github.dl4jbackpack.samples;
