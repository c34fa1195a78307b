// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.layers.convolution.ConvolutionLayer;
import org.deeplearning4j.util.ConvolutionUtils;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.convolution.Convolution;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Derivatives of DL4J's 2D {@code ConvolutionLayer} (NCHW; Truncate, Strict and Same modes;
 * stride, padding and dilation), {@code W [nOut, nIn, kH, kW]}, {@code b [nOut]}.
 *
 * <p>The unfolding is the input patches {@code U_n [nIn·kH·kW, P]} (im2col, exactly as DL4J's own
 * implementation unfolds them), and {@code W} reshaped to {@code [nOut, nIn·kH·kW]} is the weight
 * matrix (see {@link UnfoldedConvolutionDerivatives} for the formulas).
 *
 * <p>The input Jacobian-transpose product is DL4J's own transposed convolution ({@code Wᵀ} on the
 * columns, then col2im).
 */
public final class ConvolutionDerivatives extends UnfoldedConvolutionDerivatives {

    @Override
    public String kindName() {
        return "ConvolutionLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == ConvolutionLayer.class;
    }

    /** Padding and output size of a convolution on a given input, as DL4J computes them. */
    record Geometry(int[] kernel, int[] strides, int[] dilation, int[] pad, int[] outSize, boolean same) {
        static Geometry of(org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf, INDArray x) {
            int[] kernel = conf.getKernelSize();
            int[] strides = conf.getStride();
            int[] dilation = conf.getDilation();
            ConvolutionMode mode = conf.getConvolutionMode();
            if (mode == ConvolutionMode.Same) {
                int[] outSize = ConvolutionUtils.getOutputSize(x, kernel, strides, null, mode, dilation,
                        CNN2DFormat.NCHW);
                int[] pad = ConvolutionUtils.getSameModeTopLeftPadding(outSize,
                        new int[] {(int) x.size(2), (int) x.size(3)}, kernel, strides, dilation);
                return new Geometry(kernel, strides, dilation, pad, outSize, true);
            }
            int[] pad = conf.getPadding();
            int[] outSize = ConvolutionUtils.getOutputSize(x, kernel, strides, pad, mode, dilation, CNN2DFormat.NCHW);
            return new Geometry(kernel, strides, dilation, pad, outSize, false);
        }
    }

    /**
     * Unfolds the input into patches as DL4J's convolution does.
     *
     * @param conf the layer configuration
     * @param x the input {@code [N, C, H, W]}
     * @return {@code U} with shape {@code [N, C·kH·kW, P]}
     */
    static INDArray unfold(org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf, INDArray x) {
        Geometry g = Geometry.of(conf, x);
        long n = x.size(0);
        long c = x.size(1);
        INDArray col = Nd4j.create(x.dataType(), new long[] {n, c, g.kernel[0], g.kernel[1], g.outSize[0],
                g.outSize[1]}, 'c');
        Convolution.im2col(x, g.kernel[0], g.kernel[1], g.strides[0], g.strides[1], g.pad[0], g.pad[1],
                g.dilation[0], g.dilation[1], g.same, col);
        return col.reshape('c', n, c * g.kernel[0] * g.kernel[1], (long) g.outSize[0] * g.outSize[1]);
    }

    @Override
    protected INDArray unfold(Layer layer, INDArray x, long[] outputShape) {
        return unfold(conf(layer), x);
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf = conf(record.layer());
        INDArray x = record.input();
        Geometry g = Geometry.of(conf, x);
        INDArray w = record.layer().getParam(DenseDerivatives.W).castTo(factor.dataType());
        long m = factor.size(0);
        long o = w.size(0);
        long c = w.size(1);
        long p = (long) g.outSize[0] * g.outSize[1];
        INDArray columns = factor.reshape('c', m, o, p).permute(1, 0, 2).dup('c').reshape('c', o, m * p);
        INDArray patches = w.reshape('c', o, c * g.kernel[0] * g.kernel[1]).transpose().mmul(columns);
        // col2im reads the patches through strides, as DL4J's own backward pass feeds it: no copy
        INDArray cols6 = patches.reshape('c', c, g.kernel[0], g.kernel[1], m, g.outSize[0], g.outSize[1])
                .permute(3, 0, 1, 2, 4, 5);
        INDArray out = Nd4j.create(factor.dataType(), m, c, x.size(2), x.size(3));
        Convolution.col2im(cols6, out, g.strides[0], g.strides[1], g.pad[0], g.pad[1], (int) x.size(2),
                (int) x.size(3), g.dilation[0], g.dilation[1]);
        return out;
    }

    /** The permuted columns, the patches {@code Wᵀ s}, the input-shaped result, the bias sums. */
    @Override
    public long scratchFeatures(RecordedLayer record) {
        return patchScratchFeatures(record);
    }

    /**
     * @param record the record of a convolution whose weight is {@code [nOut, nIn, *kernel]} and whose input
     *     Jacobian-transpose product forms the patches {@code Wᵀ s}
     * @return the permuted columns, the patches, the input-shaped result and the bias sums, per column and
     *     example
     */
    static long patchScratchFeatures(RecordedLayer record) {
        long[] w = record.layer().getParam(DenseDerivatives.W).shape();
        long outputs = record.outputFeatures();
        long patches = Columns.features(w) * (outputs / w[0]);
        return 2 * outputs + patches + record.inputFeatures();
    }
}
