// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.deeplearning4j.nn.api.Layer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * Derivatives of a 2D or 3D layer whose pre-activation output is, per example, a weight matrix times an
 * unfolding of the input plus a bias per channel: {@code z_n = W_mat U_n + b 1ᵀ}, with
 * {@code W_mat [nOut, K]} the weight in matrix layout, {@code U_n [K, P]} the unfolded input
 * ({@code K} features per output position, {@code P} output positions) and {@code z_n [nOut, P]}
 * (NCHW or NCDHW, positions flattened row-major). A convolution unfolds patches (im2col, vol2col); a
 * transposed convolution scatters the input to the output positions it reaches. Subclasses give the
 * unfolding and the input Jacobian-transpose product; the weight is {@code W_mat} in row-major order
 * ({@code W [nOut, nIn, *kernel]}) unless a subclass maps the layouts otherwise.
 *
 * <p>With {@code δ_n [nOut, P]}: {@code g_n(W_mat) = δ_n U_nᵀ}, {@code g_n(b) = Σ_t δ_n[:, t]}.
 * First-order values unfold the input chunk by chunk of examples, never for the whole batch at once;
 * squared norms use {@code tr(δ_n (U_nᵀU_n) δ_nᵀ)} where that costs fewer operations than the
 * individual gradients ({@code P(K + nOut) < K·nOut}), and the individual gradients otherwise.
 *
 * <p>Second order: the squared parameter Jacobian of a column {@code s_nv [nOut, P]} is
 * {@code (s_nv U_nᵀ)²}, formed in bounded chunks of examples, and that of a diagonal residual
 * {@code r_n} is {@code r_n (U_n⊙U_n)ᵀ}. Kronecker factors: {@code A = (1/N) Σ_n U_n U_nᵀ} and the
 * output-side factor of columns summed over output positions.
 */
public abstract class UnfoldedConvolutionDerivatives implements LayerDerivatives {

    /** Upper bound on the number of elements of individual gradients formed at once for reductions. */
    public static final long CHUNK_ELEMENTS = OuterProductTerms.CHUNK_ELEMENTS;

    /**
     * @param layer a layer of this kind
     * @param x its input {@code [N, C, *spatial]}, in the data type of the result
     * @param outputShape the shape of its output {@code [N, nOut, *outSpatial]} (only the spatial sizes are used)
     * @return the unfolded input {@code U} with shape {@code [N, K, P]}, {@code P} the number of output positions
     */
    protected abstract INDArray unfold(Layer layer, INDArray x, long[] outputShape);

    /**
     * @param weightShape the weight's parameter shape
     * @return the number of output channels; by default the first axis ({@code W [nOut, nIn, *kernel]})
     */
    protected long outputChannels(long[] weightShape) {
        return weightShape[0];
    }

    /**
     * @param matrices weights in matrix layout, {@code [nOut, K]} or {@code [N, nOut, K]}
     * @param weightShape the weight's parameter shape
     * @return the same values in the parameter shape, {@code weightShape} or {@code [N, *weightShape]}; by
     *     default a row-major reshape ({@code W [nOut, nIn, *kernel]} is {@code W_mat} in row-major order)
     */
    protected INDArray toWeightLayout(INDArray matrices, long[] weightShape) {
        return matrices.reshape('c', matrices.rank() == 2 ? weightShape : withBatchAxis(matrices.size(0), weightShape));
    }

    /**
     * @param outputFactor {@code B}, {@code [nOut, nOut]}
     * @param inputFactor {@code A}, {@code [K, K]}
     * @param weightShape the weight's parameter shape
     * @return the Kronecker factors of the weight; by default {@code B ⊗ A} over the row-major weight
     */
    protected KroneckerFactors weightFactors(INDArray outputFactor, INDArray inputFactor, long[] weightShape) {
        return KroneckerFactors.convolutionWeight(outputFactor, inputFactor);
    }

    /** @return {@code [n, *shape]} */
    static long[] withBatchAxis(long n, long[] shape) {
        long[] out = new long[shape.length + 1];
        out[0] = n;
        System.arraycopy(shape, 0, out, 1, shape.length);
        return out;
    }

    /**
     * @param layer a layer of this kind
     * @return its configuration
     */
    static org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.ConvolutionLayer) layer.conf().getLayer();
    }

    /**
     * @param layer a layer of this kind
     * @return why its data format is not supported, or null; by default both 2D layouts are (NHWC
     *     through {@link ChannelsLastKind})
     */
    protected String unsupportedDataFormat(Layer layer) {
        return null;
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf = conf(layer);
        String format = unsupportedDataFormat(layer);
        if (format != null) {
            return format;
        }
        if (conf.getWeightNoise() != null) {
            return "weight noise (" + conf.getWeightNoise().getClass().getSimpleName() + ") is not supported";
        }
        return null;
    }

    @Override
    public boolean hasParameters() {
        return true;
    }

    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        INDArray x = input.castTo(outputGradient.dataType());
        long n = x.size(0);
        long outC = outputGradient.size(1);
        long[] outputShape = outputGradient.shape().clone();
        // K and P from one example's unfolding: the batch's is unfolded by chunks where needed
        long[] unfoldedShape = unfold(layer, x.get(NDArrayIndex.interval(0, 1)), outputShape).shape();
        INDArray delta = outputGradient.reshape('c', n, outC, unfoldedShape[2]);
        long[] weightShape = layer.paramTable().get(DenseDerivatives.W).shape();
        OuterProductTerms terms = new OuterProductTerms().unfoldedWeight(DenseDerivatives.W, delta, unfoldedShape[1],
                g -> toWeightLayout(g, weightShape), x, part -> unfold(layer, part, outputShape));
        return layer.paramTable().containsKey(DenseDerivatives.B)
                ? terms.bias(DenseDerivatives.B, delta, UnaryOperator.identity()) : terms;
    }

    private INDArray unfolded(RecordedLayer record, INDArray like) {
        return record.cached("unfolded", () -> unfold(record.layer(), record.input().castTo(like.dataType()),
                record.outputShape()));
    }

    @Override
    public IActivation activation(Layer layer) {
        return ElementwiseActivations.plain(conf(layer).getActivationFn());
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return ElementwiseActivations.unsupported(activation(layer), hessian);
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray u = unfolded(record, factor);
        INDArray columns = factor.reshape('c', factor.size(0), factor.size(1), factor.size(2), u.size(2));
        INDArray weight = OuterProductTerms.squaredColumnGradients(columns, u, sink.perExample());
        sink.add(DenseDerivatives.W, toWeightLayout(weight.muli(sign), weightShape(record)));
        if (record.layer().paramTable().containsKey(DenseDerivatives.B)) {
            sink.add(DenseDerivatives.B, OuterProductTerms.squaredColumnSums(columns, sink.perExample()).muli(sign));
        }
    }

    @Override
    public boolean supportsSharedColumns(Layer layer) {
        return true;
    }

    /**
     * Per column c, {@code Σ_m s_mc U_mᵀ}: the columns {@code [C·O, N·P]} times the patches
     * {@code [N·P, K]}, in chunks of columns, squared and summed.
     */
    @Override
    public void accumulateSharedCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray u = unfolded(record, factor);
        long n = factor.size(0);
        long columns = factor.size(1);
        long o = factor.size(2);
        long k = u.size(1);
        long p = u.size(2);
        INDArray patches = u.permute(0, 2, 1).dup('c').reshape('c', n * p, k);
        long step = Math.max(1, Math.min(columns, CHUNK_ELEMENTS / Math.max(1, o * Math.max(k, n * p))));
        INDArray weight = Nd4j.create(factor.dataType(), o, k);
        long stepBytes = 4 * step * o * (n * p + k) * factor.dataType().width();
        for (long from = 0; from < columns; from += step) {
            long to = Math.min(columns, from + step);
            try (ScratchWorkspace ignored = ScratchWorkspace.open(ScratchWorkspace.LOOP_STEP, stepBytes)) {
                INDArray s = factor.get(NDArrayIndex.all(), NDArrayIndex.interval(from, to)).dup('c')
                        .reshape('c', n, (to - from) * o, p).permute(1, 0, 2).dup('c')
                        .reshape('c', (to - from) * o, n * p);
                INDArray g = DenseDerivatives.gemm(s, false, patches, false).reshape('c', to - from, o, k);
                weight.addi(g.muli(g).sum(0));
            }
        }
        sink.add(DenseDerivatives.W, toWeightLayout(weight.muli(sign), weightShape(record)));
        if (record.layer().paramTable().containsKey(DenseDerivatives.B)) {
            INDArray t = factor.reshape('c', n, columns, o, p).sum(0, 3);
            sink.add(DenseDerivatives.B, t.muli(t).sum(0).muli(sign));
        }
    }

    @Override
    public void accumulateResidual(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        INDArray u = unfolded(record, residual);
        long n = residual.size(0);
        long o = residual.size(1);
        INDArray r = residual.reshape('c', n, o, u.size(2));
        INDArray weight = Nd4j.matmul(r, u.mul(u), false, true, false);
        sink.add(DenseDerivatives.W, toWeightLayout(sink.perExample() ? weight : weight.sum(0), weightShape(record)));
        if (record.layer().paramTable().containsKey(DenseDerivatives.B)) {
            INDArray bias = r.sum(2);
            sink.add(DenseDerivatives.B, sink.perExample() ? bias : bias.sum(0));
        }
    }

    @Override
    public void accumulateOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        long rows = factor.size(0) * factor.size(1);
        long o = factor.size(2);
        INDArray t = factor.reshape('c', rows, o, factor.length() / (rows * o)).sum(2);
        sink.addOutputFactor(t.transpose().mmul(t));
    }

    @Override
    public INDArray outputFactorOfAveraged(RecordedLayer record, INDArray averaged) {
        long o = outputChannels(weightShape(record));
        long p = averaged.rows() / o;
        return averaged.reshape('c', o, p, o, p).sum(1, 3);
    }

    /** Input-side factor {@code A = (1/N) Σ_n Σ_t u_nt u_ntᵀ} over the unfolded patches. */
    @Override
    public Map<String, KroneckerFactors> kroneckerFactors(RecordedLayer record, INDArray outputFactor) {
        INDArray u = unfolded(record, outputFactor);
        INDArray a = Nd4j.tensorMmul(u, u, new int[][] {{0, 2}, {0, 2}}).divi(record.examples());
        Map<String, KroneckerFactors> out = new LinkedHashMap<>();
        out.put(DenseDerivatives.W, weightFactors(outputFactor, a, weightShape(record)));
        if (record.layer().paramTable().containsKey(DenseDerivatives.B)) {
            out.put(DenseDerivatives.B, KroneckerFactors.bias(outputFactor));
        }
        return out;
    }

    private static long[] weightShape(RecordedLayer record) {
        return record.layer().getParam(DenseDerivatives.W).shape();
    }
}
