// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Function;

/**
 * First-order terms of a layer whose parameters are those of several sub-layers, each under a key prefix
 * (DL4J's {@code Bidirectional}: the forward layer's {@code W} is the wrapper's {@code fW}, the backward
 * layer's {@code bW}). Every quantity of a parameter is the sub-layer's own, computed by the sub-layer's
 * terms as they compute it (no individual gradients are formed for a reduction that does not need them);
 * the maps are keyed by the prefixed names, sub-layers in the given order.
 */
public final class PrefixedTerms extends FirstOrderTerms {

    private final Map<String, FirstOrderTerms> parts;

    /**
     * @param parts the sub-layers' terms by key prefix, in the order of the layer's parameters (the map's
     *     iteration order)
     */
    public PrefixedTerms(Map<String, FirstOrderTerms> parts) {
        this.parts = new LinkedHashMap<>(parts);
    }

    /** @return the sub-layers' values of one quantity, keyed by prefixed parameter name */
    private Map<String, INDArray> merged(Function<FirstOrderTerms, Map<String, INDArray>> quantity) {
        Map<String, INDArray> out = new LinkedHashMap<>();
        parts.forEach((prefix, terms) -> quantity.apply(terms).forEach((param, value) -> out.put(prefix + param, value)));
        return out;
    }

    @Override
    protected Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred> computeWeightedGradientSums() {
        Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred> out = new LinkedHashMap<>();
        parts.forEach((prefix, terms) -> terms.weightedGradientSums().forEach((param, sum) -> out.put(prefix + param,
                sum)));
        return out;
    }

    @Override
    protected Map<String, INDArray> computeIndividualGradients() {
        return merged(FirstOrderTerms::individualGradients);
    }

    @Override
    protected Map<String, INDArray> computeSquaredNorms() {
        return merged(FirstOrderTerms::individualGradientSquaredNorms);
    }

    @Override
    protected Map<String, INDArray> computeSumGradSquared() {
        return merged(FirstOrderTerms::sumGradSquared);
    }

    @Override
    protected Map<String, INDArray> computeDots() {
        return merged(FirstOrderTerms::individualGradientDots);
    }

    @Override
    protected Map<String, INDArray> computeVariance() {
        return merged(FirstOrderTerms::variance);
    }
}
