// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import java.util.List;
import java.util.Map;

/**
 * A quantity that the extended backward pass computes besides the gradient, per layer and per
 * parameter (see {@link io.github.dl4jbackpack.BackPackNetwork#backward}).
 *
 * <p>Users pass instances (for example {@code new Variance()}) to {@code backward} or
 * {@code enable}, and read the values with {@link io.github.dl4jbackpack.Quantities#get}, keyed by
 * the extension's class. Every extension states in its Javadoc the exact value, its shape and
 * scaling (those of docs/math.md: the objective is the mean loss
 * {@code L = (1/N) Σ_n ℓ_n}, and the individual gradient is {@code g_n = (1/N) ∇ℓ_n}), and what it
 * costs in memory.
 *
 * @param <T> the type of one parameter's value
 */
public interface Extension<T> {

    /**
     * Computes this extension's value for every parameter of one layer from the signals the
     * backward pass recorded at that layer. Called by the library during the backward pass, once per
     * layer with parameters; user code has no reason to call it.
     *
     * @param layer the layer's signals in this pass
     * @return the value of every parameter of the layer, keyed by DL4J parameter name
     */
    Map<String, T> compute(LayerSignals layer);

    /**
     * What this extension needs from the second-order pass that follows DL4J's backward pass
     * (part of the extension SPI). First-order extensions need nothing and are computed during DL4J's pass;
     * extensions with requests are computed after the second-order pass.
     *
     * @return the curvature this extension reads, empty for first-order extensions
     */
    default List<CurvatureRequest> curvatureRequests() {
        return List.of();
    }

    /** @return a short name for messages and logs, by default the simple class name */
    default String name() {
        return getClass().getSimpleName();
    }
}
