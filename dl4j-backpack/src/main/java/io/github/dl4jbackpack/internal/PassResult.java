// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import java.util.Map;

/**
 * The raw results of one extended backward pass, which the public API turns into its typed
 * store: the score DL4J computed (summed over the outputs), the batch size, and per extension class,
 * layer name and parameter name, the value.
 *
 * @param score the training score of the pass
 * @param batchSize N
 * @param values extension class → layer name → parameter name → value, layers in topological order
 */
public record PassResult(double score, long batchSize, Map<Class<?>, Map<String, Map<String, Object>>> values) {
}
