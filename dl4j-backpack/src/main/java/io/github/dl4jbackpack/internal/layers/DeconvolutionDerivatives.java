// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.layers.convolution.Deconvolution2DLayer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.DynamicCustomOp;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * Derivatives of DL4J's {@code Deconvolution2D} (transposed convolution; NCHW; Truncate, Strict and
 * Same modes; stride, padding and dilation), {@code W [nIn, nOut, kH, kW]}, {@code b [nOut]}.
 *
 * <p>A transposed convolution is linear in {@code W} with the same structure as a convolution:
 * {@code z_n[o, q] = Σ_{i,k} W[i, o, k] Ũ_n[(i, k), q] + b[o]}, where the transposed unfolding
 * {@code Ũ_n [nIn·kH·kW, P]} ({@code P = oH·oW} output positions) holds {@code x_n[i, p]} at output
 * position {@code q = p·stride + k·dilation − pad} (per axis) and 0 elsewhere. {@code Ũ} plays the role
 * of the im2col patches {@code U} of a convolution, with the weight matrix {@code W} permuted to
 * {@code [nOut, nIn·kH·kW]}; every formula of {@link UnfoldedConvolutionDerivatives} applies. The
 * padding is DL4J's: the configured one, or in Same mode (output {@code stride·in}) the top/left
 * padding {@code ((in − 1)·stride + (k − 1)·dilation + 1 − out) / 2} (rounded towards zero) that
 * libnd4j's {@code deconv2d} uses.
 *
 * <p>Kronecker factors: {@code A = (1/N) Σ_n Ũ_n Ũ_nᵀ}, {@code B} from the columns summed over output
 * positions; the weight's factors are {@code B ⊗ A} for {@code W} with its first two axes swapped
 * ({@link KroneckerFactors#transposedConvolutionWeight}).
 *
 * <p>The input Jacobian-transpose product is a forward convolution of the columns with {@code W}, by
 * the {@code conv2d} operation with the arguments of DL4J's own backward step.
 */
public final class DeconvolutionDerivatives extends UnfoldedConvolutionDerivatives {

    @Override
    public String kindName() {
        return "Deconvolution2D";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == Deconvolution2DLayer.class;
    }

    /**
     * @param conf the layer configuration
     * @param in the input's spatial sizes {@code [H, W]}
     * @param out the output's spatial sizes {@code [oH, oW]}
     * @return the top/left padding DL4J's deconvolution uses
     */
    static int[] padding(org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf, long[] in, long[] out) {
        if (conf.getConvolutionMode() != ConvolutionMode.Same) {
            return conf.getPadding();
        }
        int[] pad = new int[2];
        for (int axis = 0; axis < 2; axis++) {
            long effective = (long) (conf.getKernelSize()[axis] - 1) * conf.getDilation()[axis] + 1;
            // Java's division rounds towards zero, as libnd4j's
            pad[axis] = (int) (((in[axis] - 1) * conf.getStride()[axis] + effective - out[axis]) / 2);
        }
        return pad;
    }

    /**
     * Scatters the input to the output positions each kernel offset sends it to: for every kernel
     * position one strided copy of the input.
     *
     * @return {@code Ũ [N, nIn·kH·kW, oH·oW]}
     */
    @Override
    protected INDArray unfold(Layer layer, INDArray x, long[] outputShape) {
        org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf = conf(layer);
        long n = x.size(0);
        long c = x.size(1);
        long[] in = {x.size(2), x.size(3)};
        long[] out = {outputShape[2], outputShape[3]};
        int[] kernel = conf.getKernelSize();
        int[] stride = conf.getStride();
        int[] dilation = conf.getDilation();
        int[] pad = padding(conf, in, out);
        INDArray u = Nd4j.zeros(x.dataType(), n, c, kernel[0], kernel[1], out[0], out[1]);
        for (int kh = 0; kh < kernel[0]; kh++) {
            long[] rows = reach(in[0], out[0], stride[0], (long) kh * dilation[0] - pad[0]);
            if (rows == null) {
                continue;
            }
            for (int kw = 0; kw < kernel[1]; kw++) {
                long[] cols = reach(in[1], out[1], stride[1], (long) kw * dilation[1] - pad[1]);
                if (cols == null) {
                    continue;
                }
                INDArrayIndex[] target = {NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(kh),
                    NDArrayIndex.point(kw), strided(rows, stride[0]), strided(cols, stride[1])};
                u.get(target).assign(x.get(NDArrayIndex.all(), NDArrayIndex.all(),
                        NDArrayIndex.interval(rows[0], rows[1] + 1), NDArrayIndex.interval(cols[0], cols[1] + 1)));
            }
        }
        return u.reshape('c', n, c * kernel[0] * kernel[1], out[0] * out[1]);
    }

    /**
     * Along one axis, the input positions {@code p} whose image {@code q = p·stride + offset} lies in
     * the output.
     *
     * @return {@code {first p, last p, first q, last q}}, or null when none does
     */
    private static long[] reach(long in, long out, long stride, long offset) {
        long first = Math.max(0, Math.floorDiv(-offset + stride - 1, stride));
        long last = Math.min(in - 1, Math.floorDiv(out - 1 - offset, stride));
        if (first > last) {
            return null;
        }
        return new long[] {first, last, first * stride + offset, last * stride + offset};
    }

    /**
     * @return the output positions of a {@link #reach}, every {@code stride}-th; a single position as a
     *     plain interval (ND4J mis-sizes a strided interval shorter than its stride)
     */
    private static INDArrayIndex strided(long[] reach, long stride) {
        return reach[2] == reach[3] ? NDArrayIndex.interval(reach[2], reach[2] + 1)
                : NDArrayIndex.interval(reach[2], stride, reach[3] + 1);
    }

    @Override
    protected long outputChannels(long[] weightShape) {
        return weightShape[1];
    }

    /** {@code [.., nOut, nIn·kH·kW]} → {@code [.., nIn, nOut, kH, kW]}. */
    @Override
    protected INDArray toWeightLayout(INDArray matrices, long[] weightShape) {
        long[] swapped = {weightShape[1], weightShape[0], weightShape[2], weightShape[3]};
        if (matrices.rank() == 2) {
            return matrices.reshape('c', swapped).permute(1, 0, 2, 3).dup('c');
        }
        return matrices.reshape('c', withBatchAxis(matrices.size(0), swapped))
                .permute(0, 2, 1, 3, 4).dup('c');
    }

    @Override
    protected KroneckerFactors weightFactors(INDArray outputFactor, INDArray inputFactor, long[] weightShape) {
        return KroneckerFactors.transposedConvolutionWeight(outputFactor, inputFactor, weightShape[0]);
    }

    /** {@code Σ_{o,k} W[i, o, k] s[o, p·stride + k·dilation − pad]}: DL4J's {@code conv2d} of the columns. */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        org.deeplearning4j.nn.conf.layers.ConvolutionLayer conf = conf(record.layer());
        INDArray x = record.input();
        long[] in = {x.size(2), x.size(3)};
        long[] out = {factor.size(2), factor.size(3)};
        int[] kernel = conf.getKernelSize();
        int[] stride = conf.getStride();
        int[] dilation = conf.getDilation();
        int[] pad = padding(conf, in, out);
        // DL4J's W [nIn, nOut, kH, kW] as libnd4j's [kH, kW, oC, iC] of the deconvolution, which is
        // conv2d's [kH, kW, iC, oC] for the convolution from the output back to the input
        INDArray w = record.layer().getParam(DenseDerivatives.W).castTo(factor.dataType()).permute(2, 3, 1, 0);
        INDArray result = Nd4j.create(factor.dataType(), factor.size(0), x.size(1), in[0], in[1]);
        int same = conf.getConvolutionMode() == ConvolutionMode.Same ? 1 : 0;
        Nd4j.getExecutioner().exec(DynamicCustomOp.builder("conv2d")
                .addInputs(factor, w)
                .addIntegerArguments(kernel[0], kernel[1], stride[0], stride[1], pad[0], pad[1], dilation[0],
                        dilation[1], same, 0)
                .addOutputs(result)
                .callInplace(false)
                .build());
        return result;
    }

    /** The columns, conv2d's patches of them over the input positions, the input-shaped result. */
    @Override
    public long scratchFeatures(RecordedLayer record) {
        long[] w = record.layer().getParam(DenseDerivatives.W).shape();
        long outputs = record.outputFeatures();
        long inputPositions = record.inputFeatures() / w[0];
        return 2 * outputs + w[1] * w[2] * w[3] * inputPositions + record.inputFeatures();
    }
}
