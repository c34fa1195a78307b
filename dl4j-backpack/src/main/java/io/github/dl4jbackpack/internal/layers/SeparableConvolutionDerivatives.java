// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.convolution.SeparableConvolution2DLayer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Derivatives of DL4J's {@code SeparableConvolution2D} (NCHW): a depthwise convolution
 * ({@code W [m, C, kH, kW]}, see {@link DepthwiseConvolutionDerivatives}) whose output {@code d}
 * ({@code C·m} channels) a pointwise convolution mixes, {@code z = P d + b} with {@code pW [O, C·m, 1, 1]}
 * and {@code b [O]}.
 *
 * <p>With {@code δ} at {@code z}: {@code g_n(P) = δ_n d_nᵀ}, {@code g_n(b) = Σ_p δ_n}, and the
 * depthwise weights get the depthwise terms of {@code Pᵀ δ_n}. A column {@code s} reaches the depthwise
 * stage as {@code Pᵀ s}; a diagonal residual {@code r} at {@code z} reaches its weights as
 * {@code (P⊙P)ᵀ r} (every output position depends on one depthwise position). No Kronecker factors.
 */
public final class SeparableConvolutionDerivatives extends ChannelwiseConvolutionKind {

    static final String W = "W";
    static final String PW = "pW";
    static final String B = "b";

    /** The kind of {@code SeparableConvolution2D} layers. */
    public SeparableConvolutionDerivatives() {
        super(SeparableConvolution2DLayer.class);
    }

    @Override
    public String kindName() {
        return "SeparableConvolution2D";
    }

    /** @return the depthwise weights {@code D [C, m, K]} from DL4J's {@code [m, C, kH, kW]} */
    private static INDArray depthwise(INDArray w) {
        return w.permute(1, 0, 2, 3).dup('c').reshape('c', w.size(1), w.size(0), w.size(2) * w.size(3));
    }

    /** @return {@code [.., C, m, K]} values in DL4J's layout {@code [.., m, C, kH, kW]} */
    private static INDArray toWeightLayout(INDArray values, long[] shape) {
        long lead = values.length() / (shape[0] * shape[1] * shape[2] * shape[3]);
        INDArray out = values.reshape('c', lead, shape[1], shape[0], shape[2] * shape[3]).permute(0, 2, 1, 3).dup('c');
        return values.rank() == 3 ? out.reshape('c', shape)
                : out.reshape('c', ConvolutionDerivatives.withBatchAxis(lead, shape));
    }

    private static INDArray pointwise(Layer layer, INDArray like) {
        INDArray p = layer.getParam(PW).castTo(like.dataType());
        return p.reshape('c', p.size(0), p.size(1));
    }

    private static INDArray weights(RecordedLayer record, INDArray like) {
        return record.cached("separable.depthwise." + like.dataType(), () -> depthwise(record.layer().getParam(W)
                .castTo(like.dataType())));
    }

    /** @return the depthwise stage's output {@code d [N, C·m, P]} */
    private static INDArray stage(RecordedLayer record, INDArray like) {
        return record.cached("separable.stage." + like.dataType(), () -> DepthwiseConvolutionDerivatives.forward(
                weights(record, like), patches(record, like)));
    }

    private static INDArray patches(RecordedLayer record, INDArray like) {
        return DepthwiseConvolutionDerivatives.patches(record, like, record.layer().getParam(W).size(1));
    }

    private static boolean hasBias(Layer layer) {
        return layer.paramTable().containsKey(B);
    }

    /** @return {@code Pᵀ s} for columns {@code [R, O, P]}: {@code [R, C·m, P]} */
    private static INDArray toStage(INDArray pointwise, INDArray columns) {
        long r = columns.size(0);
        long o = columns.size(1);
        long p = columns.size(2);
        INDArray s = columns.permute(1, 0, 2).dup('c').reshape('c', o, r * p);
        return DenseDerivatives.gemm(pointwise, true, s, false).reshape('c', pointwise.size(1), r, p)
                .permute(1, 0, 2).dup('c');
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        long r = factor.size(0);
        INDArray s = factor.reshape('c', r, factor.size(1), factor.length() / (r * factor.size(1)));
        INDArray atStage = toStage(pointwise(record.layer(), factor), s);
        long[] out = factor.shape().clone();
        out[1] = atStage.size(1);
        return DepthwiseConvolutionDerivatives.inputJacobianTranspose(conf(record.layer()), record.input(),
                weights(record, factor), atStage.reshape('c', out));
    }

    /** The columns at the stage, the patches, the input-shaped result, the permuted copies. */
    @Override
    public long scratchFeatures(RecordedLayer record) {
        long[] w = record.layer().getParam(W).shape();
        long outputs = record.outputFeatures();
        long positions = outputs / record.layer().getParam(PW).size(0);
        long stage = w[0] * w[1] * positions;
        return 2 * outputs + 3 * stage + stage * w[2] * w[3] / w[0] + record.inputFeatures();
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        long n = factor.size(0);
        long v = factor.size(1);
        long o = factor.size(2);
        INDArray d = stage(record, factor);                                  // [N, Cm, P]
        long p = d.size(2);
        INDArray s = factor.reshape('c', n, v * o, p);
        // pointwise: Σ_v (s_nv d_nᵀ)²
        INDArray pw = Nd4j.create(factor.dataType(), sink.perExample() ? new long[] {n, o, d.size(1)}
                : new long[] {o, d.size(1)});
        long step = Math.max(1, Math.min(n, ConvolutionDerivatives.CHUNK_ELEMENTS / Math.max(1, v * o * d.size(1))));
        for (long from = 0; from < n; from += step) {
            long to = Math.min(n, from + step);
            try (ScratchWorkspace ignored = ScratchWorkspace.open(ScratchWorkspace.LOOP_STEP,
                    3L * (to - from) * v * o * (d.size(1) + p) * factor.dataType().width())) {
                INDArray g = Nd4j.matmul(s.get(NDArrayIndex.interval(from, to)).dup('c'),
                        d.get(NDArrayIndex.interval(from, to)).dup('c'), false, true, false);
                INDArray squares = g.muli(g).reshape('c', to - from, v, o, d.size(1)).sum(1);
                if (sink.perExample()) {
                    pw.get(NDArrayIndex.interval(from, to)).assign(squares);
                } else {
                    pw.addi(squares.sum(0));
                }
            }
        }
        long[] pwShape = record.layer().getParam(PW).shape();
        sink.add(PW, pw.muli(sign).reshape('c', sink.perExample() ? ConvolutionDerivatives.withBatchAxis(n, pwShape)
                : pwShape));
        // depthwise: the columns Pᵀ s at the stage
        INDArray atStage = toStage(pointwise(record.layer(), factor), s.reshape('c', n * v, o, p))
                .reshape('c', n, v, d.size(1), p);
        INDArray dw = DepthwiseConvolutionDerivatives.squaredWeightColumns(atStage, patches(record, factor),
                record.layer().getParam(W).size(0), sink.perExample());
        sink.add(W, toWeightLayout(dw.muli(sign), record.layer().getParam(W).shape()));
        addBias(record, factor.reshape('c', n, v, o, p).sum(3), sign, sink, n);
    }

    /** Adds {@code Σ_v t_v²} for per-example bias sums {@code t [N, V, O]}. */
    private static void addBias(RecordedLayer record, INDArray t, double sign, CurvatureSink sink, long n) {
        if (!hasBias(record.layer())) {
            return;
        }
        INDArray squares = t.mul(t).sum(1).muli(sign);
        long[] bias = record.layer().getParam(B).shape();
        sink.add(B, sink.perExample() ? squares.reshape('c', ConvolutionDerivatives.withBatchAxis(n, bias))
                : squares.sum(0).reshape(bias));
    }

    @Override
    public void accumulateSharedCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        long n = factor.size(0);
        long v = factor.size(1);
        long o = factor.size(2);
        INDArray d = stage(record, factor);
        long q = d.size(1);
        long p = d.size(2);
        // pointwise: Σ_v (Σ_n s_nv d_nᵀ)², columns [V·O, N·P] times the stage outputs [N·P, C·m]
        INDArray stageRows = d.permute(0, 2, 1).dup('c').reshape('c', n * p, q);
        INDArray pw = Nd4j.create(factor.dataType(), o, q);
        long step = Math.max(1, Math.min(v, ConvolutionDerivatives.CHUNK_ELEMENTS / Math.max(1, o * (q + n * p))));
        for (long from = 0; from < v; from += step) {
            long to = Math.min(v, from + step);
            try (ScratchWorkspace ignored = ScratchWorkspace.open(ScratchWorkspace.LOOP_STEP,
                    3L * (to - from) * o * (q + n * p) * factor.dataType().width())) {
                INDArray s = factor.get(NDArrayIndex.all(), NDArrayIndex.interval(from, to)).dup('c')
                        .reshape('c', n, (to - from) * o, p).permute(1, 0, 2).dup('c').reshape('c', (to - from) * o, n * p);
                INDArray g = DenseDerivatives.gemm(s, false, stageRows, false).reshape('c', to - from, o, q);
                pw.addi(g.muli(g).sum(0));
            }
        }
        sink.add(PW, pw.muli(sign).reshape('c', record.layer().getParam(PW).shape()));
        INDArray atStage = toStage(pointwise(record.layer(), factor), factor.reshape('c', n * v, o, p))
                .reshape('c', n, v, q, p);
        INDArray dw = DepthwiseConvolutionDerivatives.squaredSharedWeightColumns(atStage, patches(record, factor),
                record.layer().getParam(W).size(0));
        sink.add(W, toWeightLayout(dw.muli(sign), record.layer().getParam(W).shape()));
        if (hasBias(record.layer())) {
            INDArray t = factor.reshape('c', n, v, o, p).sum(0, 3);
            sink.add(B, t.muli(t).sum(0).muli(sign).reshape(record.layer().getParam(B).shape()));
        }
    }

    @Override
    public void accumulateResidual(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        long n = residual.size(0);
        long o = residual.size(1);
        INDArray d = stage(record, residual);
        long p = d.size(2);
        INDArray r = residual.reshape('c', n, o, p);
        // pointwise: r_n (d_n⊙d_n)ᵀ
        INDArray pw = Nd4j.matmul(r, d.mul(d), false, true, false);                  // [N, O, Cm]
        long[] pwShape = record.layer().getParam(PW).shape();
        sink.add(PW, sink.perExample() ? pw.reshape('c', ConvolutionDerivatives.withBatchAxis(n, pwShape))
                : pw.sum(0).reshape('c', pwShape));
        // depthwise: the residual reaches the stage as (P⊙P)ᵀ r
        INDArray pointwise = pointwise(record.layer(), residual);
        INDArray atStage = toStage(pointwise.mul(pointwise), r);
        INDArray dw = DepthwiseConvolutionDerivatives.residualWeights(atStage, patches(record, residual),
                record.layer().getParam(W).size(0));
        sink.add(W, toWeightLayout(sink.perExample() ? dw : dw.sum(0), record.layer().getParam(W).shape()));
        if (hasBias(record.layer())) {
            INDArray b = r.sum(2);
            long[] bias = record.layer().getParam(B).shape();
            sink.add(B, sink.perExample() ? b.reshape('c', ConvolutionDerivatives.withBatchAxis(n, bias))
                    : b.sum(0).reshape(bias));
        }
    }

    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        INDArray w = layer.getParam(W);
        long m = w.size(0);
        long c = w.size(1);
        INDArray x = input.castTo(outputGradient.dataType());
        INDArray u = ConvolutionDerivatives.unfold(conf(layer), x);
        u = u.reshape('c', u.size(0), c, u.size(1) / c, u.size(2));
        long n = u.size(0);
        long p = u.size(3);
        INDArray d = DepthwiseConvolutionDerivatives.forward(depthwise(w.castTo(x.dataType())), u);
        INDArray pointwise = pointwise(layer, outputGradient);
        INDArray delta = outputGradient.reshape('c', n, pointwise.size(0), p);
        Map<String, INDArray> gradients = new LinkedHashMap<>();
        INDArray atStage = toStage(pointwise, delta);
        gradients.put(W, toWeightLayout(DepthwiseConvolutionDerivatives.weightGradients(atStage, u, m), w.shape()));
        gradients.put(PW, Nd4j.matmul(delta, d, false, true, false).reshape('c',
                ConvolutionDerivatives.withBatchAxis(n, layer.getParam(PW).shape())));
        if (hasBias(layer)) {
            gradients.put(B, delta.sum(2).reshape('c', ConvolutionDerivatives.withBatchAxis(n,
                    layer.getParam(B).shape())));
        }
        // in DL4J's parameter order
        Map<String, INDArray> ordered = new LinkedHashMap<>();
        for (String key : layer.paramTable().keySet()) {
            if (gradients.containsKey(key)) {
                ordered.put(key, gradients.get(key));
            }
        }
        return FirstOrderTerms.ofIndividualGradients(ordered);
    }
}
