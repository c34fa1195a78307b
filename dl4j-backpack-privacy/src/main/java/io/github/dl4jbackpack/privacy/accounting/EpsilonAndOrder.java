// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

/**
 * An ε converted from Rényi DP and the order it was obtained at.
 *
 * <p>An order at the smallest or largest end of the grid hints that a wider grid could give a smaller ε.
 *
 * @param epsilon ε {@code >= 0}, or +Infinity
 * @param order the first order α of the grid at which ε is attained
 */
public record EpsilonAndOrder(double epsilon, double order) {

    /**
     * Checks the arguments.
     *
     * @param epsilon ε {@code >= 0}, or +Infinity
     * @param order the order, {@code > 1} (+Infinity allowed)
     * @throws IllegalArgumentException if ε is negative or NaN, or the order is not {@code > 1}
     */
    public EpsilonAndOrder {
        if (!(epsilon >= 0)) {
            throw new IllegalArgumentException("epsilon must be >= 0, got " + epsilon);
        }
        if (!(order > 1)) {
            throw new IllegalArgumentException("order must be > 1, got " + order);
        }
    }
}
