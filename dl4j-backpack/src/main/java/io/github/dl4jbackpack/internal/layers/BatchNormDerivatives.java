// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.gradient.DefaultGradient;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.layers.normalization.BatchNormalization;
import org.deeplearning4j.nn.params.BatchNormalizationParamInitializer;
import org.deeplearning4j.nn.workspace.ArrayType;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Broadcast;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * Derivatives of DL4J's {@code BatchNormalization} (feed-forward {@code [N, C]} and NCHW
 * {@code [N, C, H, W]} inputs; {@code gamma}, {@code beta} unless {@code lockGammaBeta}; variance or
 * {@code useLogStd} running statistics), docs/math.md#batch-normalization.
 *
 * <p>{@code y = γ x̂ + β} per channel, {@code x̂ = (x − μ)/σ}, {@code σ = √(v + ε)}, with statistics
 * over the examples and positions of a channel: the batch's ({@code μ_B, v_B}, DL4J's training mode)
 * or the running ones (fixed: inference mode, or a pass that asks for them). Only {@code γ, β} are
 * trainable; DL4J moves the running statistics through their "gradients", which carry no quantities.
 *
 * <p>Fixed statistics: the layer is affine per example, {@code g_n(γ) = Σ_p δ_n ⊙ x̂_n},
 * {@code g_n(β) = Σ_p δ_n}, {@code J_xᵀ s = (γ/σ) s}. Batch statistics: every output depends on every
 * example of the batch; {@code J_xᵀ s = (γ/σ)(s − mean(s) − x̂ ⊙ mean(s ⊙ x̂))} with means over the
 * examples and positions of a channel, applied to columns that span the whole batch
 * ({@link #accumulateSharedCurvature}).
 */
public final class BatchNormDerivatives implements LayerDerivatives {

    static final String GAMMA = BatchNormalizationParamInitializer.GAMMA;
    static final String BETA = BatchNormalizationParamInitializer.BETA;

    @Override
    public String kindName() {
        return "BatchNormalization";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == BatchNormalization.class;
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        org.deeplearning4j.nn.conf.layers.BatchNormalization conf = conf(layer);
        if (conf.isLockGammaBeta() && conf.getGamma() != 1.0 && conf.getBeta() == 0.0) {
            return "lockGammaBeta with gamma=" + conf.getGamma() + " and beta=0: DL4J's forward pass then leaves gamma "
                    + "out (it applies the locked values only when gamma≠1 and beta≠0) while its backward pass "
                    + "applies it";
        }
        return null;
    }

    @Override
    public boolean hasParameters() {
        return true;
    }

    @Override
    public Set<String> trainableParameters(Layer layer) {
        Set<String> out = new LinkedHashSet<>();
        if (!conf(layer).isLockGammaBeta()) {
            out.add(GAMMA);
            out.add(BETA);
        }
        return out;
    }

    @Override
    public boolean normalisesOverBatch(Layer layer) {
        return true;
    }

    @Override
    public boolean supportsSharedColumns(Layer layer) {
        return true;
    }

    private static org.deeplearning4j.nn.conf.layers.BatchNormalization conf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.BatchNormalization) layer.conf().getLayer();
    }

    /** @return {@code [N, C, P]} view of a layer input or output {@code [N, C]} or {@code [N, C, H, W]} */
    private static INDArray channels(INDArray a) {
        return a.dup('c').reshape('c', a.size(0), a.size(1), a.length() / (a.size(0) * a.size(1)));
    }

    /** @return {@code [μ, σ]}, each {@code [C]}: the batch's over examples and positions, or the running ones */
    private static INDArray[] statistics(Layer layer, INDArray x3, boolean running) {
        org.deeplearning4j.nn.conf.layers.BatchNormalization conf = conf(layer);
        INDArray mean;
        INDArray variance;
        if (running) {
            mean = layer.getParam(BatchNormalizationParamInitializer.GLOBAL_MEAN).castTo(x3.dataType()).reshape(-1);
            if (conf.isUseLogStd()) {
                INDArray log10 = layer.getParam(BatchNormalizationParamInitializer.GLOBAL_LOG_STD)
                        .castTo(x3.dataType()).reshape(-1);
                INDArray std = Transforms.pow(Nd4j.valueArrayOf(log10.shape(), 10.0, log10.dataType()), log10, false);
                variance = std.muli(std);
            } else {
                variance = layer.getParam(BatchNormalizationParamInitializer.GLOBAL_VAR).castTo(x3.dataType())
                        .reshape(-1).dup();
            }
        } else {
            mean = x3.mean(0, 2);
            variance = x3.var(false, 0, 2);
        }
        return new INDArray[] {mean, Transforms.sqrt(variance.addi(conf.getEps()), false)};
    }

    /** @return {@code γ} per channel ({@code [C]}) */
    private static INDArray gamma(Layer layer, org.nd4j.linalg.api.buffer.DataType type, long channels) {
        return conf(layer).isLockGammaBeta() ? Nd4j.valueArrayOf(new long[] {channels}, conf(layer).getGamma(), type)
                : layer.getParam(GAMMA).castTo(type).reshape(-1);
    }

    /** @return {@code x̂ [N, C, P]} */
    private static INDArray normalised(Layer layer, INDArray x3, INDArray[] stats) {
        INDArray centred = Broadcast.sub(x3, stats[0], x3.ulike(), 1);
        return Broadcast.div(centred, stats[1], centred, 1);
    }

    private static INDArray normalised(RecordedLayer record, org.nd4j.linalg.api.buffer.DataType type) {
        return record.cached("bn.normalised." + type, () -> {
            INDArray x3 = channels(record.input().castTo(type));
            return normalised(record.layer(), x3, statistics(record.layer(), x3, record.runningStatistics()));
        });
    }

    /** @return {@code γ/σ [C]} */
    private static INDArray scale(RecordedLayer record, org.nd4j.linalg.api.buffer.DataType type) {
        return record.cached("bn.scale." + type, () -> {
            INDArray x3 = channels(record.input().castTo(type));
            INDArray sigma = statistics(record.layer(), x3, record.runningStatistics())[1];
            return gamma(record.layer(), type, x3.size(1)).div(sigma);
        });
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        long[] shape = factor.shape();
        long rows = shape[0];
        long c = shape[1];
        long p = factor.length() / (rows * c);
        INDArray s = factor.dup('c').reshape('c', rows, c, p);
        INDArray scale = scale(record, factor.dataType());
        if (!record.couplesExamples()) {
            return Broadcast.mul(s, scale, s, 1).reshape('c', shape);
        }
        // columns spanning the batch: rows = N·V, example m's part of column v at row m·V + v
        long n = record.batchSize();
        long v = rows / n;
        INDArray s4 = s.reshape('c', n, v, c, p);
        INDArray xHat = normalised(record, factor.dataType());
        INDArray mean = s4.mean(0, 3);                                      // [V, C]
        INDArray product = Broadcast.mul(s4, xHat, s4.ulike(), 0, 2, 3);      // s ⊙ x̂
        INDArray meanProduct = product.mean(0, 3);                           // [V, C]
        INDArray out = Broadcast.sub(s4, mean, s4, 1, 2);
        // x̂ ⊙ mean(s ⊙ x̂), formed in the product's memory
        INDArray correction = Broadcast.add(product.assign(0), xHat, product, 0, 2, 3);
        out.subi(Broadcast.mul(correction, meanProduct, correction, 1, 2));
        return Broadcast.mul(out, scale, out, 2).reshape('c', shape);
    }

    /** The columns reshaped, {@code s ⊙ x̂} and the result. */
    @Override
    public long scratchFeatures(RecordedLayer record) {
        return 4 * record.outputFeatures();
    }

    /** @return per example and column, {@code [u, t]}: {@code Σ_p s ⊙ x̂} (γ) and {@code Σ_p s} (β), {@code [N, V, 2C]} */
    private static INDArray projections(RecordedLayer record, INDArray factor) {
        long n = factor.size(0);
        long v = factor.size(1);
        long c = factor.size(2);
        long p = factor.length() / (n * v * c);
        INDArray s4 = factor.dup('c').reshape('c', n, v, c, p);
        INDArray xHat = normalised(record, factor.dataType());
        INDArray u = Broadcast.mul(s4, xHat, s4.ulike(), 0, 2, 3).sum(3);
        INDArray t = s4.sum(3);
        return Nd4j.concat(2, u, t);
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray w = projections(record, factor);
        INDArray squares = w.muli(w).sum(1).muli(sign);                       // [N, 2C]
        add(record, sink.perExample() ? squares : squares.sum(0).reshape(1, squares.size(1)), sink);
    }

    @Override
    public void accumulateSharedCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray w = projections(record, factor).sum(0);                      // [V, 2C]: summed over the batch
        add(record, w.muli(w).sum(0).muli(sign).reshape(1, w.size(1)), sink);
    }

    /** Adds {@code [rows, 2C]} values to γ (first half) and β (second half), shaped like the parameters. */
    private static void add(RecordedLayer record, INDArray values, CurvatureSink sink) {
        long c = values.size(1) / 2;
        long rows = values.size(0);
        for (String param : new String[] {GAMMA, BETA}) {
            long from = param.equals(GAMMA) ? 0 : c;
            INDArray part = values.get(org.nd4j.linalg.indexing.NDArrayIndex.all(),
                    org.nd4j.linalg.indexing.NDArrayIndex.interval(from, from + c)).dup('c');
            long[] shape = record.layer().getParam(param).shape();
            sink.add(param, sink.perExample() ? part.reshape('c', ConvolutionDerivatives.withBatchAxis(rows, shape))
                    : part.reshape('c', shape));
        }
    }

    /**
     * The output-side factor of γ and β together, {@code Σ w wᵀ} over the columns' {@code w = [u, t]}
     * ({@code [2C, 2C]}): its diagonal blocks are the exact GGN blocks of γ and of β.
     */
    @Override
    public void accumulateOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        INDArray w = projections(record, factor);
        INDArray rows = w.reshape('c', w.size(0) * w.size(1), w.size(2));
        sink.addOutputFactor(DenseDerivatives.gemm(rows, true, rows, false));
    }

    @Override
    public void accumulateSharedOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        INDArray w = projections(record, factor).sum(0);
        sink.addOutputFactor(DenseDerivatives.gemm(w, true, w, false));
    }

    /** The exact blocks: each row's projections first, then summed over the rows. */
    @Override
    public void accumulateReducedOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        accumulateSharedOutputFactor(record, factor, sink);
    }

    /** γ and β: their exact GGN blocks (no Kronecker structure is needed at this size). */
    @Override
    public Map<String, KroneckerFactors> kroneckerFactors(RecordedLayer record, INDArray outputFactor) {
        long c = outputFactor.rows() / 2;
        Map<String, KroneckerFactors> out = new LinkedHashMap<>();
        out.put(GAMMA, KroneckerFactors.bias(block(outputFactor, 0, c)));
        out.put(BETA, KroneckerFactors.bias(block(outputFactor, c, c)));
        return out;
    }

    private static INDArray block(INDArray m, long from, long size) {
        return m.get(org.nd4j.linalg.indexing.NDArrayIndex.interval(from, from + size),
                org.nd4j.linalg.indexing.NDArrayIndex.interval(from, from + size)).dup('c');
    }

    /**
     * With the batch's statistics, per channel (M values over the examples and positions, {@code a} the
     * gradient w.r.t. {@code x̂}, {@code ā} it centred, {@code c = aᵀx̂ / (Mσ²)}):
     * {@code R = −c I + (c/M) 11ᵀ + (3c/M) x̂x̂ᵀ − (āx̂ᵀ + x̂āᵀ)/(Mσ²)} (docs/math.md#batch-normalization).
     * The diagonal {@code −c I} gives columns of one example each (one per feature); the rank-one
     * terms, with {@code āx̂ᵀ + x̂āᵀ = ½[(ā+x̂)(ā+x̂)ᵀ − (ā−x̂)(ā−x̂)ᵀ]}, give four columns per channel
     * that span the batch.
     */
    @Override
    public List<VertexDerivatives.ResidualPart> inputResidual(RecordedLayer record) {
        org.nd4j.linalg.api.buffer.DataType type = record.outputGradient().dataType();
        INDArray x3 = channels(record.input().castTo(type));
        long n = x3.size(0);
        long c = x3.size(1);
        long p = x3.size(2);
        double m = n * p;
        INDArray sigma = statistics(record.layer(), x3, false)[1];
        INDArray xHat = normalised(record.layer(), x3, statistics(record.layer(), x3, false));
        INDArray a = Broadcast.mul(channels(record.outputGradient()), gamma(record.layer(), type, c), x3.ulike(), 1);
        INDArray variance = sigma.mul(sigma);
        double[] cc = a.mul(xHat).sum(0, 2).divi(variance.mul(m)).toDoubleVector();
        double[] v = variance.toDoubleVector();
        INDArray aBar = Broadcast.sub(a, a.mean(0, 2), a.ulike(), 1);
        INDArray[] vectors = {aBar.add(xHat), aBar.sub(xHat), xHat, Nd4j.onesLike(xHat)};
        long[] inShape = record.input().shape();
        List<VertexDerivatives.ResidualPart> parts = new ArrayList<>();
        for (double sign : new double[] {1.0, -1.0}) {
            // the diagonal −c per channel
            INDArray diagonal = Nd4j.create(type, n, c, p);
            boolean any = false;
            for (int ch = 0; ch < c; ch++) {
                double value = -cc[ch] * sign;
                if (value > 0) {
                    diagonal.get(NDArrayIndex.all(), NDArrayIndex.point(ch), NDArrayIndex.all()).assign(Math.sqrt(value));
                    any = true;
                }
            }
            if (any) {
                parts.add(VertexDerivatives.diagonal(sign, new INDArray[] {diagonal.reshape('c', inShape)}));
            }
            // the rank-one terms: (channel, vector, weight) of this sign
            List<long[]> which = new ArrayList<>();
            List<Double> weights = new ArrayList<>();
            for (int ch = 0; ch < c; ch++) {
                double[] lambda = {-1.0 / (2 * m * v[ch]), 1.0 / (2 * m * v[ch]), 3 * cc[ch] / m, cc[ch] / m};
                for (int t = 0; t < 4; t++) {
                    if (lambda[t] * sign > 0) {
                        which.add(new long[] {ch, t});
                        weights.add(Math.sqrt(lambda[t] * sign));
                    }
                }
            }
            if (!which.isEmpty()) {
                parts.add(new RankOneColumns(sign, which, weights, vectors, inShape));
            }
        }
        return parts;
    }

    /** Columns {@code √|λ| w} of one channel each, spanning the batch. */
    private static final class RankOneColumns implements VertexDerivatives.ResidualPart {
        private final double sign;
        private final List<long[]> which;
        private final List<Double> weights;
        private final INDArray[] vectors;
        private final long[] inShape;

        RankOneColumns(double sign, List<long[]> which, List<Double> weights, INDArray[] vectors, long[] inShape) {
            this.sign = sign;
            this.which = which;
            this.weights = weights;
            this.vectors = vectors;
            this.inShape = inShape;
        }

        @Override
        public double sign() {
            return sign;
        }

        @Override
        public long columns() {
            return which.size();
        }

        @Override
        public boolean spansBatch() {
            return true;
        }

        @Override
        public INDArray[] columns(long from, long to) {
            long n = vectors[0].size(0);
            long c = vectors[0].size(1);
            long p = vectors[0].size(2);
            INDArray out = Nd4j.create(vectors[0].dataType(), n, to - from, c, p);
            for (long j = from; j < to; j++) {
                long[] ct = which.get((int) j);
                INDArray w = vectors[(int) ct[1]].get(NDArrayIndex.all(), NDArrayIndex.point(ct[0]), NDArrayIndex.all());
                out.get(NDArrayIndex.all(), NDArrayIndex.point(j - from), NDArrayIndex.point(ct[0]), NDArrayIndex.all())
                        .assign(w.mul(weights.get((int) j)));
            }
            return new INDArray[] {out.reshape('c', Columns.withRows(n * (to - from), inShape))};
        }
    }

    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient, boolean runningStatistics) {
        INDArray x3 = channels(input.castTo(outputGradient.dataType()));
        INDArray xHat = normalised(layer, x3, statistics(layer, x3, runningStatistics));
        INDArray d3 = channels(outputGradient);
        Map<String, INDArray> gradients = new LinkedHashMap<>();
        long n = x3.size(0);
        gradients.put(GAMMA, d3.mul(xHat).sum(2).reshape('c', ConvolutionDerivatives.withBatchAxis(n,
                layer.getParam(GAMMA).shape())));
        gradients.put(BETA, d3.sum(2).reshape('c', ConvolutionDerivatives.withBatchAxis(n, layer.getParam(BETA).shape())));
        return FirstOrderTerms.ofIndividualGradients(gradients);
    }

    /** {@inheritDoc} Here: {@code (γ/σ_B) ∂L/∂y} with the batch's {@code σ_B} of the layer's current input. */
    @Override
    public INDArray constantStatisticsInputGradient(Layer layer, INDArray input, INDArray epsilon) {
        INDArray x3 = channels(input.castTo(epsilon.dataType()));
        INDArray scale = gamma(layer, epsilon.dataType(), x3.size(1)).div(statistics(layer, x3, false)[1]);
        INDArray d3 = channels(epsilon);
        return Broadcast.mul(d3, scale, d3.ulike(), 1).reshape('c', epsilon.shape());
    }

    /**
     * {@inheritDoc} Here: {@code ∂L/∂x = (γ/σ) ∂L/∂y}, the gradients of γ and β, and zero for the
     * running statistics (they stay as they are), written into the layer's gradient views as DL4J's
     * own step writes them.
     */
    @Override
    public Pair<Gradient, INDArray> runningStatisticsBackward(Layer layer, INDArray epsilon,
                                                              LayerWorkspaceMgr workspaceMgr) {
        org.deeplearning4j.nn.conf.layers.BatchNormalization conf = conf(layer);
        INDArray x3 = channels(layer.input().castTo(epsilon.dataType()));
        INDArray[] stats = statistics(layer, x3, true);
        INDArray d3 = channels(epsilon);
        INDArray scale = gamma(layer, epsilon.dataType(), x3.size(1)).div(stats[1]);
        INDArray next = Broadcast.mul(d3, scale, d3.ulike(), 1).reshape('c', epsilon.shape());
        Map<String, INDArray> views = conf.initializer().getGradientsFromFlattened(layer.conf(),
                layer.getGradientsViewArray());
        Gradient gradient = new DefaultGradient();
        if (!conf.isLockGammaBeta()) {
            INDArray xHat = normalised(layer, x3, stats);
            views.get(GAMMA).assign(d3.mul(xHat).sum(0, 2).reshape(views.get(GAMMA).shape()));
            views.get(BETA).assign(d3.sum(0, 2).reshape(views.get(BETA).shape()));
            gradient.setGradientFor(GAMMA, views.get(GAMMA));
            gradient.setGradientFor(BETA, views.get(BETA));
        }
        for (String key : views.keySet()) {
            if (!key.equals(GAMMA) && !key.equals(BETA)) {
                views.get(key).assign(0);
                gradient.setGradientFor(key, views.get(key));
            }
        }
        return new Pair<>(gradient, workspaceMgr.leverageTo(ArrayType.ACTIVATION_GRAD, next));
    }
}
