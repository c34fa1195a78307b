package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.internal.curvature.FactorKind;
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
 * What the backward pass recorded at one layer with parameters, as extensions see it: the layer's
 * input, the gradient of the mean loss w.r.t. its pre-activation output, DL4J's gradient, and the
 * layer kind's derivatives built on them, and after the second-order pass the curvature diagonals
 * it produced. Valid only during the backward pass that created it.
 */
public final class LayerBackprop {

    private final int layerIndex;
    private final long batchSize;
    private final Layer layer;
    private final LayerDerivatives kind;
    private final INDArray input;
    private final INDArray outputGradient;
    private final Gradient summedGradient;
    private final RecordedLayer record;
    private final Map<FactorKind, CurvatureSink> curvature;
    private final Map<FactorKind, Map<String, INDArray>> summedCurvature = new HashMap<>();
    private FirstOrderTerms firstOrder;

    LayerBackprop(int layerIndex, long batchSize, Layer layer, LayerDerivatives kind, INDArray input,
                  INDArray outputGradient, Gradient summedGradient) {
        this.layerIndex = layerIndex;
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
        this.layerIndex = record.index();
        this.batchSize = record.batchSize();
        this.layer = record.layer();
        this.kind = record.kind();
        this.input = null;
        this.outputGradient = null;
        this.summedGradient = null;
        this.record = record;
        this.curvature = curvature;
    }

    /** @return the layer's index in {@code MultiLayerNetwork.getLayers()} */
    public int layerIndex() {
        return layerIndex;
    }

    /** @return the number of examples N in the batch */
    public long batchSize() {
        return batchSize;
    }

    /** @return the layer's parameter names in DL4J's {@code paramTable()} order */
    public Set<String> parameterNames() {
        return layer.paramTable().keySet();
    }

    /**
     * @param kind a kind of factor the second-order pass propagated
     * @param perExample whether to keep the batch axis
     * @return the curvature diagonal from that factor per parameter: parameter-shaped, or
     *     {@code [N, *p]} per example
     */
    public Map<String, INDArray> curvature(FactorKind kind, boolean perExample) {
        CurvatureSink sink = curvature.get(kind);
        if (sink == null || (perExample && !sink.perExample())) {
            throw new IllegalStateException("the second-order pass did not compute " + kind
                    + (perExample ? " per example" : "") + " for layer " + layerIndex);
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

    /**
     * @param kind a kind of factor the second-order pass propagated with the output-side factor
     * @return the Kronecker factors of every parameter of the layer
     */
    public Map<String, KroneckerFactors> kronecker(FactorKind kind) {
        CurvatureSink sink = curvature.get(kind);
        if (sink == null || sink.outputFactor() == null) {
            throw new IllegalStateException("the second-order pass did not compute Kronecker factors from " + kind
                    + " for layer " + layerIndex);
        }
        return this.kind.kroneckerFactors(record, sink.outputFactor());
    }

    /** @return the layer's first-order terms (individual gradients and reductions of them) */
    public FirstOrderTerms firstOrder() {
        if (input == null) {
            throw new IllegalStateException("first-order terms are computed during DL4J's pass, not after it");
        }
        if (firstOrder == null) {
            firstOrder = kind.firstOrder(layer, input, outputGradient);
        }
        return firstOrder;
    }

    /**
     * @param param a DL4J parameter name of this layer
     * @return {@code ∇L = Σ_n g_n} for that parameter, a new array of the parameter's shape
     */
    public INDArray gradient(String param) {
        if (summedGradient == null) {
            throw new IllegalStateException("the gradient is available during DL4J's pass, not after it");
        }
        return summedGradient.getGradientFor(param).div(batchSize);
    }
}
