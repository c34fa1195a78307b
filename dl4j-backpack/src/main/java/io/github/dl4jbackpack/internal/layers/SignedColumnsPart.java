// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * A part of a layer's internal Hessian residual of one sign whose columns are given by per-example values, one per
 * column ({@code [N, V]}): the value of column v at the node it enters (a unit column scaled by it, or the first of
 * the nodes a product column enters).
 */
abstract class SignedColumnsPart implements LayerDerivatives.InternalResidualPart {

    /** +1 or −1. */
    protected final double sign;

    /** Per example and column, the column's value at its (first) node, {@code [N, V]}. */
    protected final INDArray values;

    /**
     * @param sign +1 or −1
     * @param values per example and column, {@code [N, V]}
     */
    SignedColumnsPart(double sign, INDArray values) {
        this.sign = sign;
        this.values = values;
    }

    @Override
    public final double sign() {
        return sign;
    }

    @Override
    public final long columns() {
        return values.size(1);
    }

    /**
     * @param from first column
     * @param to end of the range (exclusive)
     * @return columns {@code [from, to)} as scaled unit vectors, {@code [N, to − from, V]}
     */
    protected final INDArray unitColumns(long from, long to) {
        return Columns.unitColumns(values, from, to);
    }
}
