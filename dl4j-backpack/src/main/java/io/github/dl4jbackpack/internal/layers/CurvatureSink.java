// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.internal.memory.ResultMemory;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Accumulates, for one layer's parameters, what the second-order pass was asked for: the curvature
 * diagonal (summed over the batch, or per example with shape {@code [N, *p]}) and/or the
 * output-side Kronecker factor {@code B} shared by the layer's weight and bias.
 */
public final class CurvatureSink {

    private final boolean diagonal;
    private final boolean perExample;
    private final boolean outputFactor;
    private final Map<String, INDArray> values = new LinkedHashMap<>();
    private INDArray factor;
    /** Where a folding view forwards to, or null. */
    private final CurvatureSink target;
    private final long copies;
    /** What a prefixing view puts before parameter names, or null. */
    private final String prefix;

    /**
     * @param diagonal whether to accumulate the diagonal
     * @param perExample whether the diagonal keeps the batch axis
     * @param outputFactor whether to accumulate the output-side Kronecker factor
     */
    public CurvatureSink(boolean diagonal, boolean perExample, boolean outputFactor) {
        this(diagonal, perExample, outputFactor, null, 1, null);
    }

    private CurvatureSink(boolean diagonal, boolean perExample, boolean outputFactor, CurvatureSink target,
                          long copies, String prefix) {
        this.diagonal = diagonal;
        this.perExample = perExample;
        this.outputFactor = outputFactor;
        this.target = target;
        this.copies = copies;
        this.prefix = prefix;
    }

    /**
     * @param namePrefix what to put before every parameter name (a wrapper's sub-layer, e.g. {@code "f"})
     * @return a view that adds here under the prefixed names
     */
    public CurvatureSink prefixed(String namePrefix) {
        return new CurvatureSink(diagonal, perExample, outputFactor, this, 1, namePrefix);
    }

    /**
     * @param k how many rows per example the layer sees (a stacked batch)
     * @return a view that sums per-row contributions {@code [k·N, *p]} over each example's k rows
     *     ({@code Σ_j c_(jN+n)}) before adding them here; this sink itself when {@code k = 1} or the
     *     values are not per example
     */
    public CurvatureSink foldingCopies(long k) {
        return k == 1 || !perExample ? this : new CurvatureSink(diagonal, true, outputFactor, this, k, null);
    }

    /** @return whether the diagonal is wanted */
    public boolean wantsDiagonal() {
        return diagonal;
    }

    /** @return whether diagonal values keep the batch axis */
    public boolean perExample() {
        return perExample;
    }

    /** @return whether the output-side Kronecker factor is wanted */
    public boolean wantsOutputFactor() {
        return outputFactor;
    }

    /**
     * @param param parameter name
     * @param contribution a fresh array, parameter-shaped or {@code [N, *p]} as {@link #perExample()}
     */
    public void add(String param, INDArray contribution) {
        if (prefix != null) {
            target.add(prefix + param, contribution);
            return;
        }
        if (target != null) {
            long[] shape = contribution.shape();
            long[] split = new long[shape.length + 1];
            split[0] = copies;
            split[1] = shape[0] / copies;
            System.arraycopy(shape, 1, split, 2, shape.length - 1);
            target.add(param, contribution.dup('c').reshape('c', split).sum(0));
            return;
        }
        INDArray sum = values.get(param);
        if (sum == null) {
            // the per-example diagonals in the memory of closed results where there is some
            values.put(param, ResultMemory.outsideWorkspaces(contribution));
        } else {
            sum.addi(contribution);
        }
    }

    /** @param contribution a fresh {@code [nOut, nOut]} array to add to the output-side factor */
    public void addOutputFactor(INDArray contribution) {
        if (prefix != null) {
            throw new IllegalStateException("the output-side factor of a prefixed part is not defined");
        }
        if (factor == null) {
            factor = ScratchWorkspace.outside(contribution);
        } else {
            factor.addi(contribution);
        }
    }

    /** @return the accumulated diagonal values */
    public Map<String, INDArray> values() {
        return values;
    }

    /** @return the accumulated output-side Kronecker factor, or null */
    public INDArray outputFactor() {
        return factor;
    }
}
