// SPDX-License-Identifier: Apache-2.0
/**
 * The DeepOBS-style optimisation experiments of the paper: grids, runs, selection, summaries and plots.
 */
package io.github.dl4jbackpack.samples.experiments;
