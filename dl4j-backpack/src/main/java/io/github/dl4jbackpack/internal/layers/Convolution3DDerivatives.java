// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.layers.Convolution3D;
import org.deeplearning4j.nn.layers.convolution.Convolution3DLayer;
import org.deeplearning4j.util.Convolution3DUtils;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * Derivatives of DL4J's {@code Convolution3D} (NCDHW; Truncate, Strict and Same modes; stride, padding
 * and dilation), {@code W [nOut, nIn, kD, kH, kW]}, {@code b [nOut]}.
 *
 * <p>The unfolding is the input patches {@code U_n [nIn·kD·kH·kW, P]} ({@code P = oD·oH·oW}, vol2col):
 * row {@code (i, kd, kh, kw)}, column {@code (od, oh, ow)} holds {@code x_n[i, q]} at the input position
 * {@code q = o·stride + k·dilation − pad} per axis, 0 where {@code q} falls outside the input (the zero
 * padding). The padding is DL4J's: the configured one, or in Same mode the top/left padding of
 * {@code Convolution3DUtils.get3DSameModeTopLeftPadding}, as the layer's forward pass passes them to
 * libnd4j's {@code conv3dnew}. {@code W} reshaped to {@code [nOut, nIn·kD·kH·kW]} is the weight matrix
 * (see {@link UnfoldedConvolutionDerivatives} for the formulas).
 *
 * <p>The input Jacobian-transpose product is {@code Wᵀ} on the columns followed by col2vol, the adjoint
 * of the unfolding: every patch entry is added back at the input position it was read from.
 *
 * <p>The NDHWC data format is refused: its channels-last layout would need a permutation of every
 * quantity at the layer.
 */
public final class Convolution3DDerivatives extends UnfoldedConvolutionDerivatives {

    @Override
    public String kindName() {
        return "Convolution3D";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == Convolution3DLayer.class;
    }

    private static Convolution3D conf3d(Layer layer) {
        return (Convolution3D) layer.conf().getLayer();
    }

    @Override
    protected String unsupportedDataFormat(Layer layer) {
        Convolution3D.DataFormat format = conf3d(layer).getDataFormat();
        return format == Convolution3D.DataFormat.NCDHW ? null
                : "data format " + format + " is not supported (use NCDHW)";
    }

    /**
     * @param conf the layer configuration
     * @param x the input {@code [N, C, D, H, W]}
     * @param out the output's spatial sizes {@code [oD, oH, oW]}
     * @return the front/top/left padding DL4J's layer passes to libnd4j
     */
    private static int[] padding(Convolution3D conf, INDArray x, long[] out) {
        if (conf.getConvolutionMode() != ConvolutionMode.Same) {
            return conf.getPadding();
        }
        int[] outSize = {(int) out[0], (int) out[1], (int) out[2]};
        int[] inSize = {(int) x.size(2), (int) x.size(3), (int) x.size(4)};
        return Convolution3DUtils.get3DSameModeTopLeftPadding(outSize, inSize, conf.getKernelSize(), conf.getStride(),
                conf.getDilation());
    }

    /**
     * The patch entries of one kernel offset: output positions {@code o} along each axis whose input
     * position {@code q = o·stride + k·dilation − pad} lies inside the input.
     *
     * @return {@code {output indices, input indices}} over the three spatial axes, or null when no
     *     output position reads the input at this offset
     */
    private static INDArrayIndex[][] reach(Convolution3D conf, long[] in, long[] out, int[] pad, int[] offset) {
        INDArrayIndex[] outputs = new INDArrayIndex[3];
        INDArrayIndex[] inputs = new INDArrayIndex[3];
        for (int axis = 0; axis < 3; axis++) {
            long stride = conf.getStride()[axis];
            long shift = (long) offset[axis] * conf.getDilation()[axis] - pad[axis];
            long first = Math.max(0, Math.floorDiv(-shift + stride - 1, stride));
            long last = Math.min(out[axis] - 1, Math.floorDiv(in[axis] - 1 - shift, stride));
            if (first > last) {
                return null;
            }
            long q0 = first * stride + shift;
            long q1 = last * stride + shift;
            outputs[axis] = NDArrayIndex.interval(first, last + 1);
            // a single position as a plain interval (ND4J mis-sizes a strided interval shorter than its stride)
            inputs[axis] = q0 == q1 ? NDArrayIndex.interval(q0, q0 + 1) : NDArrayIndex.interval(q0, stride, q1 + 1);
        }
        return new INDArrayIndex[][] {outputs, inputs};
    }

    private static INDArrayIndex[] at(int[] offset, INDArrayIndex[] positions) {
        return new INDArrayIndex[] {NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(offset[0]),
            NDArrayIndex.point(offset[1]), NDArrayIndex.point(offset[2]), positions[0], positions[1], positions[2]};
    }

    private static INDArrayIndex[] at(INDArrayIndex[] positions) {
        return new INDArrayIndex[] {NDArrayIndex.all(), NDArrayIndex.all(), positions[0], positions[1], positions[2]};
    }

    /** @return all kernel offsets {@code (kd, kh, kw)} in row-major order */
    private static int[][] offsets(int[] kernel) {
        int[][] out = new int[kernel[0] * kernel[1] * kernel[2]][];
        int i = 0;
        for (int kd = 0; kd < kernel[0]; kd++) {
            for (int kh = 0; kh < kernel[1]; kh++) {
                for (int kw = 0; kw < kernel[2]; kw++) {
                    out[i++] = new int[] {kd, kh, kw};
                }
            }
        }
        return out;
    }

    /**
     * vol2col: for every kernel offset one strided copy of the input.
     *
     * @return {@code U [N, nIn·kD·kH·kW, oD·oH·oW]}
     */
    @Override
    protected INDArray unfold(Layer layer, INDArray x, long[] outputShape) {
        Convolution3D conf = conf3d(layer);
        long n = x.size(0);
        long c = x.size(1);
        long[] in = {x.size(2), x.size(3), x.size(4)};
        long[] out = {outputShape[2], outputShape[3], outputShape[4]};
        int[] kernel = conf.getKernelSize();
        int[] pad = padding(conf, x, out);
        INDArray u = Nd4j.zeros(x.dataType(), n, c, kernel[0], kernel[1], kernel[2], out[0], out[1], out[2]);
        for (int[] offset : offsets(kernel)) {
            INDArrayIndex[][] reach = reach(conf, in, out, pad, offset);
            if (reach != null) {
                u.get(at(offset, reach[0])).assign(x.get(at(reach[1])));
            }
        }
        return u.reshape('c', n, c * kernel[0] * kernel[1] * kernel[2], out[0] * out[1] * out[2]);
    }

    /** {@code Wᵀ s} per column and output position, then col2vol (the adjoint of {@link #unfold}). */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        Convolution3D conf = conf3d(record.layer());
        INDArray x = record.input();
        long[] in = {x.size(2), x.size(3), x.size(4)};
        long[] out = {factor.size(2), factor.size(3), factor.size(4)};
        int[] kernel = conf.getKernelSize();
        int[] pad = padding(conf, x, out);
        INDArray w = record.layer().getParam(DenseDerivatives.W).castTo(factor.dataType());
        long m = factor.size(0);
        long o = w.size(0);
        long c = w.size(1);
        long p = out[0] * out[1] * out[2];
        INDArray columns = factor.reshape('c', m, o, p).permute(1, 0, 2).dup('c').reshape('c', o, m * p);
        INDArray patches = w.reshape('c', o, c * kernel[0] * kernel[1] * kernel[2]).transpose().mmul(columns)
                .reshape('c', c, kernel[0], kernel[1], kernel[2], m, out[0], out[1], out[2])
                .permute(4, 0, 1, 2, 3, 5, 6, 7);
        INDArray result = Nd4j.zeros(factor.dataType(), m, c, in[0], in[1], in[2]);
        for (int[] offset : offsets(kernel)) {
            INDArrayIndex[][] reach = reach(conf, in, out, pad, offset);
            if (reach != null) {
                result.get(at(reach[1])).addi(patches.get(at(offset, reach[0])));
            }
        }
        return result;
    }

    @Override
    public long scratchFeatures(RecordedLayer record) {
        return ConvolutionDerivatives.patchScratchFeatures(record);
    }
}
