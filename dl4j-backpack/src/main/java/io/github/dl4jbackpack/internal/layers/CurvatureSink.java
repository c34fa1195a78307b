package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Accumulates a curvature diagonal of one layer's parameters over the factor columns pushed
 * through it, either summed over the batch (parameter shape) or per example ({@code [N, *p]}).
 */
public final class CurvatureSink {

    private final boolean perExample;
    private final Map<String, INDArray> values = new LinkedHashMap<>();

    /** @param perExample whether to keep the batch axis */
    public CurvatureSink(boolean perExample) {
        this.perExample = perExample;
    }

    /** @return whether values keep the batch axis */
    public boolean perExample() {
        return perExample;
    }

    /**
     * @param param parameter name
     * @param contribution a fresh array, parameter-shaped or {@code [N, *p]} as {@link #perExample()}
     */
    public void add(String param, INDArray contribution) {
        values.merge(param, contribution, INDArray::addi);
    }

    /** @return the accumulated values */
    public Map<String, INDArray> values() {
        return values;
    }
}
