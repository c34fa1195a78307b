// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.LayerSignals;
import io.github.dl4jbackpack.extensions.FactorKind;
import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import io.github.dl4jbackpack.internal.layers.CurvatureSink;
import io.github.dl4jbackpack.internal.layers.FirstOrderTerms;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.RecordedLayer;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * The library's {@link LayerSignals}: what the backward pass recorded at one layer with parameters
 * (the layer's input, the gradient of the mean loss w.r.t. its pre-activation output, DL4J's
 * gradient), the layer kind's first-order terms built on them, and after the second-order pass the
 * curvature it produced. Valid only during the backward pass that created it.
 */
final class LayerBackprop implements LayerSignals {

    private final String layerName;
    /** How many rows per example the layer sees (a StackVertex's copies, time steps flattened into rows), 1 normally. */
    private final long copies;
    private final long batchSize;
    private final Layer layer;
    private final LayerDerivatives kind;
    private final INDArray input;
    private final INDArray outputGradient;
    private final Gradient summedGradient;
    private final RecordedLayer record;
    private final Map<FactorKind, CurvatureSink> curvature;
    private final Map<FactorKind, Map<String, INDArray>> summedCurvature = new HashMap<>();
    private final boolean runningStatistics;
    private FirstOrderTerms firstOrder;

    LayerBackprop(String layerName, long batchSize, Layer layer, LayerDerivatives kind, INDArray input,
                  INDArray outputGradient, Gradient summedGradient, long copies, boolean runningStatistics,
                  FirstOrderTerms shared) {
        this.copies = copies;
        this.firstOrder = shared;
        this.runningStatistics = runningStatistics;
        this.layerName = layerName;
        this.batchSize = batchSize;
        this.layer = layer;
        this.kind = kind;
        this.input = input;
        this.outputGradient = outputGradient;
        this.summedGradient = summedGradient;
        this.record = null;
        this.curvature = Map.of();
    }

    LayerBackprop(RecordedLayer record, Map<FactorKind, CurvatureSink> curvature) {
        this.copies = 1;
        this.layerName = record.node().name();
        this.batchSize = record.batchSize();
        this.layer = record.layer();
        this.kind = record.kind();
        this.input = null;
        this.outputGradient = null;
        this.summedGradient = null;
        this.record = record;
        this.curvature = curvature;
        this.runningStatistics = record.runningStatistics();
    }

    @Override
    public String layerName() {
        return layerName;
    }

    @Override
    public long batchSize() {
        return batchSize;
    }

    @Override
    public Set<String> parameterNames() {
        return kind.trainableParameters(layer);
    }

    @Override
    public Map<String, INDArray> curvature(FactorKind kind, boolean perExample) {
        CurvatureSink sink = curvature.get(kind);
        if (sink == null || (perExample && !sink.perExample())) {
            throw new IllegalStateException("the second-order pass did not compute " + kind
                    + (perExample ? " per example" : "") + " for layer " + layerName);
        }
        if (perExample || !sink.perExample()) {
            return sink.values();
        }
        return summedCurvature.computeIfAbsent(kind, k -> {
            Map<String, INDArray> sums = new LinkedHashMap<>();
            sink.values().forEach((param, values) -> sums.put(param, values.sum(0)));
            return sums;
        });
    }

    @Override
    public Map<String, KroneckerFactors> kronecker(FactorKind kind) {
        CurvatureSink sink = curvature.get(kind);
        if (sink == null || sink.outputFactor() == null) {
            throw new IllegalStateException("the second-order pass did not compute Kronecker factors from " + kind
                    + " for layer " + layerName);
        }
        return this.kind.kroneckerFactors(record, sink.outputFactor());
    }

    /** @return the layer's first-order terms (individual gradients and reductions of them) */
    private FirstOrderTerms firstOrder() {
        if (input == null) {
            throw new IllegalStateException("first-order terms are computed during DL4J's pass, not after it");
        }
        if (firstOrder == null) {
            firstOrder = copies == 1 ? kind.firstOrder(layer, input, outputGradient, runningStatistics)
                    : kind.firstOrderOfRows(layer, input, outputGradient, runningStatistics, copies);
        }
        return firstOrder;
    }

    @Override
    public Map<String, INDArray> individualGradients() {
        return firstOrder().individualGradients();
    }

    @Override
    public Map<String, INDArray> individualGradientSquaredNorms() {
        return firstOrder().individualGradientSquaredNorms();
    }

    @Override
    public Map<String, INDArray> sumGradSquared() {
        return firstOrder().sumGradSquared();
    }

    @Override
    public Map<String, INDArray> variance() {
        return firstOrder().variance();
    }

    @Override
    public Map<String, INDArray> individualGradientDots() {
        return firstOrder().individualGradientDots();
    }

    @Override
    public Map<String, WeightedGradientSum.Deferred> weightedGradientSums() {
        return firstOrder().weightedGradientSums();
    }

    @Override
    public INDArray gradient(String param) {
        if (summedGradient == null) {
            throw new IllegalStateException("the gradient is available during DL4J's pass, not after it");
        }
        INDArray g = summedGradient.getGradientFor(param);
        if (g == null) {
            throw new IllegalStateException("DL4J's gradient of " + param + " of layer " + layerName() + " is not "
                    + "computed in passes with WeightedGradientSum.replacingGradient(), which replace it");
        }
        return g.div(batchSize);
    }
}
