// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.layers.convolution.subsampling.SubsamplingLayer;
import org.deeplearning4j.util.ConvolutionUtils;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.DynamicCustomOp;
import org.nd4j.linalg.factory.Broadcast;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Derivatives of DL4J's 2D {@code SubsamplingLayer} (max, average and p-norm pooling, any mode).
 * Its Jacobian-transpose product is DL4J's own pooling backward operation, applied to all factor
 * columns at once against the input repeated once per column, so that it routes exactly as DL4J
 * does (ties in max pooling included). Max and average pooling are piecewise linear; p-norm
 * pooling is not, and its Hessian residual is not implemented.
 */
public final class SubsamplingDerivatives implements LayerDerivatives {

    @Override
    public String kindName() {
        return "SubsamplingLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == SubsamplingLayer.class;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        org.deeplearning4j.nn.conf.layers.SubsamplingLayer conf = conf(layer);
        if (conf.getCnn2dDataFormat() != CNN2DFormat.NCHW) {
            return "data format " + conf.getCnn2dDataFormat() + " is not supported (use NCHW)";
        }
        if (hessian && conf.getPoolingType() == PoolingType.PNORM) {
            return "p-norm pooling is not piecewise linear and its Hessian residual is not implemented "
                    + "(max and average pooling are supported)";
        }
        return null;
    }

    /** Max and p-norm pooling route by the input; average pooling does not, but DL4J's op works per example. */
    @Override
    public boolean jacobianVariesByExample(Layer layer) {
        return true;
    }

    private static org.deeplearning4j.nn.conf.layers.SubsamplingLayer conf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.SubsamplingLayer) layer.conf().getLayer();
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        org.deeplearning4j.nn.conf.layers.SubsamplingLayer conf = conf(record.layer());
        INDArray x = record.input().castTo(factor.dataType());
        long columns = factor.size(0) / x.size(0);
        INDArray repeated = columns == 1 ? x : repeatPerColumn(x, columns);
        int[] kernel = conf.getKernelSize();
        int[] strides = conf.getStride();
        int[] dilation = conf.getDilation();
        boolean same = conf.getConvolutionMode() == ConvolutionMode.Same;
        int[] pad = same
                ? ConvolutionUtils.getSameModeTopLeftPadding(new int[] {(int) factor.size(2), (int) factor.size(3)},
                new int[] {(int) x.size(2), (int) x.size(3)}, kernel, strides, dilation)
                : conf.getPadding();
        DynamicCustomOp.DynamicCustomOpsBuilder op;
        int extra;
        switch (conf.getPoolingType()) {
            case MAX:
                op = DynamicCustomOp.builder("maxpool2d_bp");
                extra = 0;
                break;
            case AVG:
                op = DynamicCustomOp.builder("avgpool2d_bp");
                extra = conf.isAvgPoolIncludePadInDivisor() ? 1 : 0;
                break;
            case PNORM:
                op = DynamicCustomOp.builder("pnormpool2d_bp");
                extra = conf.getPnorm();
                op.addFloatingPointArguments(conf.getEps());
                break;
            default:
                throw new UnsupportedOperationException("pooling type " + conf.getPoolingType());
        }
        INDArray out = Nd4j.create(factor.dataType(), repeated.shape());
        op.addInputs(repeated, factor.isView() ? factor.dup('c') : factor).addOutputs(out)
                .addIntegerArguments(kernel[0], kernel[1], strides[0], strides[1], pad[0], pad[1], dilation[0],
                        dilation[1], same ? 1 : 0, extra, 0);
        Nd4j.exec(op.build());
        return out;
    }

    /** @return {@code x [N, ...]} with every example repeated {@code columns} times in a row, {@code [N·V, ...]} */
    private static INDArray repeatPerColumn(INDArray x, long columns) {
        long n = x.size(0);
        long features = x.length() / n;
        INDArray out = Nd4j.createUninitialized(x.dataType(), n, columns, features);
        Broadcast.copy(out, x.reshape('c', n, features), out, 0, 2);
        long[] shape = x.shape().clone();
        shape[0] = n * columns;
        return out.reshape('c', shape);
    }
}
