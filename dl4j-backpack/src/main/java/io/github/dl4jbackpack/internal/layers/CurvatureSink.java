// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

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

    /**
     * @param diagonal whether to accumulate the diagonal
     * @param perExample whether the diagonal keeps the batch axis
     * @param outputFactor whether to accumulate the output-side Kronecker factor
     */
    public CurvatureSink(boolean diagonal, boolean perExample, boolean outputFactor) {
        this.diagonal = diagonal;
        this.perExample = perExample;
        this.outputFactor = outputFactor;
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
        INDArray sum = values.get(param);
        if (sum == null) {
            values.put(param, ScratchWorkspace.outside(contribution));
        } else {
            sum.addi(contribution);
        }
    }

    /** @param contribution a fresh {@code [nOut, nOut]} array to add to the output-side factor */
    public void addOutputFactor(INDArray contribution) {
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
