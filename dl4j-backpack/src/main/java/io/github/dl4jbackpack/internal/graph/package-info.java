// SPDX-License-Identifier: Apache-2.0
/**
 * Internal: a network as a directed acyclic graph of nodes in topological order, of which a
 * MultiLayerNetwork is the chain case.
 */
package io.github.dl4jbackpack.internal.graph;
