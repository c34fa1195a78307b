// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.layers.convolution.Convolution1DLayer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * Derivatives of DL4J's {@code Convolution1DLayer} over time ({@code [N, C, T]}, NCW; Truncate, Strict,
 * Same and Causal modes; stride, padding and dilation), first order.
 *
 * <p>DL4J's 1D convolution reads its weight {@code W} (parameter shape {@code [nOut, nIn, k, 1]}) as the
 * row-major array {@code w [k, nIn, nOut]}: {@code z_n[o, p] = Σ_{j,c} w[j, c, o] x̃_n[c, p·s + j·d] + b[o]},
 * with {@code x̃_n} the input padded on the left by {@code pL} (the explicit padding in Truncate and
 * Strict modes, DL4J's top-left padding in Same mode, {@code (k−1)·d} in Causal mode) and with zeros on
 * the right as far as the output positions reach. So the unfolding here is
 * {@code U_n[(j, c), p] = x̃_n[c, p·s + j·d]} ({@code K = k·nIn} features, kernel tap major) and the
 * gradient in matrix layout {@code [nOut, K]} is the transpose of {@code w}'s row-major layout; the
 * per-example quantities are {@link OuterProductTerms}' over the output positions.
 *
 * <p>DL4J multiplies the layer's output by the reduced feature mask in its forward step but not the
 * gradient in its backward step: {@code δ} is DL4J's own (the gradient it receives, through the
 * activation), so the per-example gradients are those DL4J computes, masked or not.
 *
 * <p>Second order: the curvature of the unfolded convolution ({@link UnfoldedConvolutionDerivatives}), with
 * the transpose of the unfolding as the input Jacobian-transpose product; Kronecker factors in the "expand"
 * setting of weights shared over steps (every output position an example of its own, as for the dense
 * layers applied at every step; docs/math.md#sequences-and-weight-sharing). Not supported: the NWC layout
 * (DL4J 1.0.0-M2.1's backward step of an NWC layer hands its {@code conv1d_bp} operation an NWC-shaped
 * input gradient, which fails unless {@code nIn = T}, and writes the weight gradient permuted against the
 * layout it reads the weight in) and weight noise.
 */
public final class Convolution1DDerivatives extends UnfoldedConvolutionDerivatives {

    @Override
    public String kindName() {
        return "Convolution1DLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == Convolution1DLayer.class;
    }

    @Override
    protected String unsupportedDataFormat(Layer layer) {
        RNNFormat format = ((org.deeplearning4j.nn.conf.layers.Convolution1DLayer) layer.conf().getLayer())
                .getRnnDataFormat();
        return format == RNNFormat.NWC ? "data format NWC is not supported (DL4J 1.0.0-M2.1 cannot back-propagate "
                + "through an NWC Convolution1DLayer: its conv1d_bp fails on the input gradient's shape; use NCW)" : null;
    }

    /**
     * @param layer a layer of this kind
     * @param inputLength {@code T}
     * @param outputLength the number of output positions {@code P}
     * @return the zeros DL4J's 1D convolution puts in front of the input
     */
    static long leftPadding(Layer layer, long inputLength, long outputLength) {
        org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf = conf(layer);
        long kernel = conf.getKernelSize()[0];
        long stride = conf.getStride()[0];
        long dilation = conf.getDilation()[0];
        long effectiveKernel = (kernel - 1) * dilation + 1;
        ConvolutionMode mode = conf.getConvolutionMode();
        if (mode == ConvolutionMode.Causal) {
            return effectiveKernel - 1;
        }
        if (mode == ConvolutionMode.Same) {
            return Math.max(0, ((outputLength - 1) * stride + effectiveKernel - inputLength) / 2);
        }
        return conf.getPadding()[0];
    }

    /**
     * {@inheritDoc} Here {@code U_n[(j, c), p] = x̃_n[c, p·s + j·d]}, one strided slice of the padded input
     * per kernel tap.
     */
    @Override
    protected INDArray unfold(Layer layer, INDArray x, long[] outputShape) {
        org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf = conf(layer);
        int kernel = conf.getKernelSize()[0];
        long stride = conf.getStride()[0];
        long dilation = conf.getDilation()[0];
        long n = x.size(0);
        long c = x.size(1);
        long length = x.size(2);
        long positions = outputShape[2];
        long left = leftPadding(layer, length, positions);
        long reach = (positions - 1) * stride + (kernel - 1) * dilation + 1;
        INDArray padded = Nd4j.zeros(x.dataType(), n, c, Math.max(reach, left + length));
        padded.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(left, left + length)).assign(x);
        INDArray unfolded = Nd4j.create(x.dataType(), n, kernel, c, positions);
        for (int j = 0; j < kernel; j++) {
            long first = j * dilation;
            unfolded.get(NDArrayIndex.all(), NDArrayIndex.point(j), NDArrayIndex.all(), NDArrayIndex.all())
                    .assign(padded.get(NDArrayIndex.all(), NDArrayIndex.all(),
                            NDArrayIndex.interval(first, stride, first + (positions - 1) * stride + 1)));
        }
        return unfolded.reshape('c', n, kernel * c, positions);
    }

    /**
     * {@inheritDoc} Here the transpose of the matrix layout is {@code w [k, nIn, nOut]} in row-major order,
     * which is how DL4J reads the parameter {@code [nOut, nIn, k, 1]} (its weight gradient, {@code [nOut, nIn, k]},
     * holds the same values in the same order).
     */
    @Override
    protected INDArray toWeightLayout(INDArray matrices, long[] weightShape) {
        if (matrices.rank() == 2) {
            return matrices.transpose().dup('c').reshape('c', weightShape);
        }
        return matrices.permute(0, 2, 1).dup('c').reshape('c', withBatchAxis(matrices.size(0), weightShape));
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return true;
    }

    /** {@inheritDoc} Here in the "expand" setting of the other layers shared over steps (see the class comment). */
    @Override
    public String noKroneckerFactors(Layer layer) {
        return null;
    }

    /**
     * {@inheritDoc} The "expand" setting over the output positions, as for the other layers shared over time
     * steps: {@code Σ_n Σ_v Σ_p s_nv[:, p] s_nv[:, p]ᵀ} (not the 2D convolutions' columns summed over positions).
     */
    @Override
    public void accumulateOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        long out = factor.size(2);
        INDArray s = factor.permute(0, 1, 3, 2).dup('c');
        s = s.reshape('c', s.length() / out, out);
        sink.addOutputFactor(DenseDerivatives.gemm(s, true, s, false));
    }

    /**
     * {@inheritDoc} Expand: {@code A = (1/(N·P)) Σ_n Σ_p u_np u_npᵀ} over the unfolded windows; DL4J's weight
     * is the row-major {@code [k·nIn, nOut]} matrix, so the factors are ordered as a dense layer's,
     * {@code A ⊗ B}.
     */
    @Override
    public java.util.Map<String, io.github.dl4jbackpack.extensions.KroneckerFactors> kroneckerFactors(
            RecordedLayer record, INDArray outputFactor) {
        INDArray u = record.cached("unfolded", () -> unfold(record.layer(),
                record.input().castTo(outputFactor.dataType()), record.outputShape()));
        long windows = u.size(0) * u.size(2);
        INDArray rows = u.permute(0, 2, 1).dup('c').reshape('c', windows, u.size(1));
        INDArray a = DenseDerivatives.gemm(rows, true, rows, false).divi(windows);
        java.util.Map<String, io.github.dl4jbackpack.extensions.KroneckerFactors> out = new java.util.LinkedHashMap<>();
        out.put(DenseDerivatives.W, io.github.dl4jbackpack.extensions.KroneckerFactors.denseWeight(a, outputFactor));
        if (record.layer().paramTable().containsKey(DenseDerivatives.B)) {
            out.put(DenseDerivatives.B, io.github.dl4jbackpack.extensions.KroneckerFactors.bias(outputFactor));
        }
        return out;
    }

    /**
     * {@inheritDoc} The transpose of the unfolding: each column {@code s [nOut, P]} gives {@code W_matᵀ s}
     * ({@code [k·nIn, P]}), whose tap-j rows are added back at the input positions {@code p·s + j·d} of the
     * padded input, and the padding is cropped.
     */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        if (record.layer().getMaskArray() != null) {
            throw new UnsupportedOperationException("curvature extensions do not support a Convolution1DLayer with "
                    + "its own mask (DL4J masks its output but not its gradient)");
        }
        org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf = conf(record.layer());
        int kernel = conf.getKernelSize()[0];
        long stride = conf.getStride()[0];
        long dilation = conf.getDilation()[0];
        long rows = factor.size(0);
        long out = factor.size(1);
        long positions = factor.size(2);
        long channels = record.input().size(1);
        long length = record.input().size(2);
        long left = leftPadding(record.layer(), length, positions);
        long reach = (positions - 1) * stride + (long) (kernel - 1) * dilation + 1;
        // DL4J reads W [nOut, nIn, k, 1] as w [k, nIn, nOut] in row-major order: [K, nOut] with K = k·nIn
        INDArray w = record.layer().getParam(DenseDerivatives.W).castTo(factor.dataType()).dup('c')
                .reshape('c', (long) kernel * channels, out);
        INDArray columns = DenseDerivatives.gemm(factor.permute(0, 2, 1).dup('c').reshape('c', rows * positions, out),
                false, w, true).reshape('c', rows, positions, kernel, channels);
        INDArray padded = Nd4j.zeros(factor.dataType(), rows, channels, Math.max(reach, left + length));
        for (int j = 0; j < kernel; j++) {
            long first = j * dilation;
            padded.get(NDArrayIndex.all(), NDArrayIndex.all(),
                    NDArrayIndex.interval(first, stride, first + (positions - 1) * stride + 1))
                    .addi(columns.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(j), NDArrayIndex.all())
                            .permute(0, 2, 1));
        }
        return padded.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(left, left + length)).dup('c');
    }
}
