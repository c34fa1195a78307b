// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.convolution.DepthwiseConvolution2DLayer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.convolution.Convolution;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Derivatives of DL4J's {@code DepthwiseConvolution2D} (NCHW; every convolution mode, stride,
 * padding, dilation), {@code W [kH, kW, C, m]}, {@code b [C·m]}: input channel c convolved with its
 * own m filters, output channel {@code c·m + j}.
 *
 * <p>With the unfolded patches {@code U_n [C, K, P]} ({@code K = kH·kW}) and the weights as
 * {@code D [C, m, K]}: {@code z_n[c·m + j] = D[c, j] U_n[c] + b}, so per channel it is a small
 * convolution: {@code g_n(D)[c] = δ_n[c] U_n[c]ᵀ} ({@code [m, K]}), {@code J_xᵀ s = col2im(D[c]ᵀ s[c])},
 * the squared parameter Jacobian of a column {@code (s[c] U_n[c]ᵀ)²} and of a diagonal residual
 * {@code r[c] (U_n[c]⊙U_n[c])ᵀ}. The helpers are shared with {@link SeparableConvolutionDerivatives},
 * whose first stage is this map. No Kronecker factors: the weight is C small matrices, not one.
 */
public final class DepthwiseConvolutionDerivatives extends ChannelwiseConvolutionKind {

    static final String W = "W";
    static final String B = "b";

    /** The kind of {@code DepthwiseConvolution2D} layers. */
    public DepthwiseConvolutionDerivatives() {
        super(DepthwiseConvolution2DLayer.class);
    }

    @Override
    public String kindName() {
        return "DepthwiseConvolution2D";
    }

    // ------------------------------------------------------------------ shared helpers

    /** @return the depthwise weights as {@code D [C, m, K]} from DL4J's {@code [kH, kW, C, m]} */
    static INDArray depthwise(INDArray w) {
        long k = w.size(0) * w.size(1);
        return w.reshape('c', k, w.size(2), w.size(3)).permute(1, 2, 0).dup('c');
    }

    /** @return {@code [.., C, m, K]} values in DL4J's depthwise weight layout {@code [.., kH, kW, C, m]} */
    static INDArray toWeightLayout(INDArray values, long[] weightShape) {
        int rank = values.rank();
        long lead = values.length() / (weightShape[0] * weightShape[1] * weightShape[2] * weightShape[3]);
        INDArray v = values.reshape('c', lead, weightShape[2], weightShape[3], weightShape[0] * weightShape[1]);
        INDArray out = v.permute(0, 3, 1, 2).dup('c');
        return rank == 3 ? out.reshape('c', weightShape)
                : out.reshape('c', ConvolutionDerivatives.withBatchAxis(lead, weightShape));
    }

    /** @return the unfolded input {@code [N, C, K, P]} */
    static INDArray patches(RecordedLayer record, INDArray like, long channels) {
        return record.cached("unfolded.depthwise", () -> {
            INDArray u = ConvolutionDerivatives.unfold(conf(record.layer()), record.input().castTo(like.dataType()));
            return u.reshape('c', u.size(0), channels, u.size(1) / channels, u.size(2));
        });
    }

    /** @return {@code D U} per example, {@code [N, C·m, P]} */
    static INDArray forward(INDArray d, INDArray u) {
        long n = u.size(0);
        long c = u.size(1);
        long m = d.size(1);
        long p = u.size(3);
        INDArray dd = d.reshape('c', 1, c, m, d.size(2)).broadcast(n, c, m, d.size(2)).dup('c')
                .reshape('c', n * c, m, d.size(2));
        return Nd4j.matmul(dd, u.reshape('c', n * c, u.size(2), p)).reshape('c', n, c * m, p);
    }

    /**
     * @param conf the depthwise stage's configuration (kernel, strides, padding, mode)
     * @param x the stage's input (for its shape)
     * @param d the weights {@code [C, m, K]}
     * @param factor columns at the stage's output, {@code [R, C·m, oH, oW]}
     * @return the columns at the input, {@code [R, C, H, W]}
     */
    static INDArray inputJacobianTranspose(org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf, INDArray x,
                                           INDArray d, INDArray factor) {
        ConvolutionDerivatives.Geometry g = ConvolutionDerivatives.Geometry.of(conf, x);
        long r = factor.size(0);
        long c = d.size(0);
        long m = d.size(1);
        long k = d.size(2);
        long p = (long) g.outSize()[0] * g.outSize()[1];
        INDArray s = factor.reshape('c', r, c, m, p).permute(1, 2, 0, 3).dup('c').reshape('c', c, m, r * p);
        INDArray patches = Nd4j.matmul(d, s, true, false, false);                   // [C, K, R·P]
        INDArray cols6 = patches.reshape('c', c, g.kernel()[0], g.kernel()[1], r, g.outSize()[0], g.outSize()[1])
                .permute(3, 0, 1, 2, 4, 5);
        INDArray out = Nd4j.create(factor.dataType(), r, c, x.size(2), x.size(3));
        Convolution.col2im(cols6, out, g.strides()[0], g.strides()[1], g.pad()[0], g.pad()[1], (int) x.size(2),
                (int) x.size(3), g.dilation()[0], g.dilation()[1]);
        return out;
    }

    /** @return per example, {@code δ_n[c] U_n[c]ᵀ}: {@code [N, C, m, K]} */
    static INDArray weightGradients(INDArray delta, INDArray u, long m) {
        long n = u.size(0);
        long c = u.size(1);
        long p = u.size(3);
        return Nd4j.matmul(delta.reshape('c', n * c, m, p), u.reshape('c', n * c, u.size(2), p), false, true, false)
                .reshape('c', n, c, m, u.size(2));
    }

    /**
     * @param factor columns of one example each at the stage's output, {@code [N, V, C·m, P]}
     * @param perExample whether to keep the batch axis
     * @return {@code Σ_v (s_nv[c] U_n[c]ᵀ)²}, {@code [N, C, m, K]} or summed over n {@code [C, m, K]}
     */
    static INDArray squaredWeightColumns(INDArray factor, INDArray u, long m, boolean perExample) {
        long n = u.size(0);
        long c = u.size(1);
        long k = u.size(2);
        long p = u.size(3);
        long v = factor.size(1);
        INDArray out = Nd4j.create(factor.dataType(), perExample ? new long[] {n, c, m, k} : new long[] {c, m, k});
        long step = Math.max(1, Math.min(n, ConvolutionDerivatives.CHUNK_ELEMENTS / Math.max(1, c * v * m * Math.max(k, p))));
        for (long from = 0; from < n; from += step) {
            long to = Math.min(n, from + step);
            long e = to - from;
            try (ScratchWorkspace ignored = ScratchWorkspace.open(ScratchWorkspace.LOOP_STEP,
                    3L * e * c * v * m * (k + p) * factor.dataType().width())) {
                INDArray s = factor.get(NDArrayIndex.interval(from, to)).dup('c').reshape('c', e, v, c, m, p)
                        .permute(0, 2, 1, 3, 4).dup('c').reshape('c', e * c, v * m, p);
                INDArray g = Nd4j.matmul(s, u.get(NDArrayIndex.interval(from, to)).dup('c').reshape('c', e * c, k, p),
                        false, true, false);
                INDArray squares = g.muli(g).reshape('c', e, c, v, m, k).sum(2);    // [e, C, m, K]
                if (perExample) {
                    out.get(NDArrayIndex.interval(from, to)).assign(squares);
                } else {
                    out.addi(squares.sum(0));
                }
            }
        }
        return out;
    }

    /**
     * @param factor columns spanning the batch at the stage's output, {@code [N, V, C·m, P]}
     * @return {@code Σ_v (Σ_n s_nv[c] U_n[c]ᵀ)²}, {@code [C, m, K]}
     */
    static INDArray squaredSharedWeightColumns(INDArray factor, INDArray u, long m) {
        long n = u.size(0);
        long c = u.size(1);
        long k = u.size(2);
        long p = u.size(3);
        long v = factor.size(1);
        INDArray patches = u.permute(1, 0, 3, 2).dup('c').reshape('c', c, n * p, k);   // [C, N·P, K]
        INDArray out = Nd4j.create(factor.dataType(), c, m, k);
        long step = Math.max(1, Math.min(v, ConvolutionDerivatives.CHUNK_ELEMENTS / Math.max(1, c * m * (k + n * p))));
        for (long from = 0; from < v; from += step) {
            long to = Math.min(v, from + step);
            long w = to - from;
            try (ScratchWorkspace ignored = ScratchWorkspace.open(ScratchWorkspace.LOOP_STEP,
                    3L * c * w * m * (k + n * p) * factor.dataType().width())) {
                INDArray s = factor.get(NDArrayIndex.all(), NDArrayIndex.interval(from, to)).dup('c')
                        .reshape('c', n, w, c, m, p)
                        .permute(2, 1, 3, 0, 4).dup('c').reshape('c', c, w * m, n * p);
                INDArray g = Nd4j.matmul(s, patches);                                    // [C, w·m, K]
                out.addi(g.muli(g).reshape('c', c, w, m, k).sum(1));
            }
        }
        return out;
    }

    /**
     * @param residual a diagonal residual at the stage's output, {@code [N, C·m, P]}
     * @return {@code r_n[c] (U_n[c]⊙U_n[c])ᵀ}, {@code [N, C, m, K]}
     */
    static INDArray residualWeights(INDArray residual, INDArray u, long m) {
        return weightGradients(residual, u.mul(u), m);
    }

    // ------------------------------------------------------------------ this kind

    private static INDArray weights(RecordedLayer record, INDArray like) {
        return record.cached("depthwise." + like.dataType(), () -> depthwise(record.layer().getParam(W)
                .castTo(like.dataType())));
    }

    private static boolean hasBias(Layer layer) {
        return layer.paramTable().containsKey(B);
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        return inputJacobianTranspose(conf(record.layer()), record.input(), weights(record, factor), factor);
    }

    /** The permuted columns, the patches {@code Dᵀ s}, the input-shaped result. */
    @Override
    public long scratchFeatures(RecordedLayer record) {
        long[] w = record.layer().getParam(W).shape();
        long outputs = record.outputFeatures();
        long patches = w[0] * w[1] * outputs / w[3];
        return 2 * outputs + patches + record.inputFeatures();
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray d = weights(record, factor);
        long m = d.size(1);
        INDArray u = patches(record, factor, d.size(0));
        long n = factor.size(0);
        INDArray f = factor.reshape('c', n, factor.size(1), factor.size(2), u.size(3));
        long[] shape = record.layer().getParam(W).shape();
        sink.add(W, toWeightLayout(squaredWeightColumns(f, u, m, sink.perExample()).muli(sign), shape));
        if (hasBias(record.layer())) {
            INDArray t = f.sum(3);
            INDArray squares = t.muli(t).sum(1).muli(sign);
            long[] bias = record.layer().getParam(B).shape();
            sink.add(B, sink.perExample() ? squares.reshape('c', ConvolutionDerivatives.withBatchAxis(n, bias))
                    : squares.sum(0).reshape(bias));
        }
    }

    @Override
    public void accumulateSharedCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray d = weights(record, factor);
        INDArray u = patches(record, factor, d.size(0));
        long n = factor.size(0);
        INDArray f = factor.reshape('c', n, factor.size(1), factor.size(2), u.size(3));
        sink.add(W, toWeightLayout(squaredSharedWeightColumns(f, u, d.size(1)).muli(sign),
                record.layer().getParam(W).shape()));
        if (hasBias(record.layer())) {
            INDArray t = f.sum(0, 3);
            sink.add(B, t.muli(t).sum(0).muli(sign).reshape(record.layer().getParam(B).shape()));
        }
    }

    @Override
    public void accumulateResidual(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        INDArray d = weights(record, residual);
        INDArray u = patches(record, residual, d.size(0));
        long n = residual.size(0);
        INDArray r = residual.reshape('c', n, residual.size(1), u.size(3));
        INDArray w = residualWeights(r, u, d.size(1));
        long[] shape = record.layer().getParam(W).shape();
        sink.add(W, toWeightLayout(sink.perExample() ? w : w.sum(0), shape));
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
        long c = w.size(2);
        long m = w.size(3);
        INDArray x = input.castTo(outputGradient.dataType());
        INDArray u = ConvolutionDerivatives.unfold(conf(layer), x);
        u = u.reshape('c', u.size(0), c, u.size(1) / c, u.size(2));
        long n = u.size(0);
        INDArray delta = outputGradient.reshape('c', n, c * m, u.size(3));
        Map<String, INDArray> gradients = new LinkedHashMap<>();
        gradients.put(W, toWeightLayout(weightGradients(delta, u, m), w.shape()));
        if (hasBias(layer)) {
            gradients.put(B, delta.sum(2).reshape('c', ConvolutionDerivatives.withBatchAxis(n,
                    layer.getParam(B).shape())));
        }
        return FirstOrderTerms.ofIndividualGradients(gradients);
    }
}
