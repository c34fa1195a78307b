// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.layers.Convolution3D;
import org.deeplearning4j.nn.layers.convolution.subsampling.Subsampling3DLayer;
import org.deeplearning4j.util.Convolution3DUtils;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.DynamicCustomOp;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Derivatives of DL4J's {@code Subsampling3DLayer} (max and average pooling, NCDHW, any mode). Its
 * Jacobian-transpose product is DL4J's own backward operation ({@code maxpool3dnew_bp} or
 * {@code avgpool3dnew_bp} with the layer's arguments), applied to all factor columns at once against the
 * input repeated once per column, so that it routes exactly as DL4J does (ties in max pooling included).
 * Both poolings are piecewise linear: no Hessian residual.
 */
public final class Subsampling3DDerivatives implements LayerDerivatives {

    @Override
    public String kindName() {
        return "Subsampling3DLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == Subsampling3DLayer.class;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    private static org.deeplearning4j.nn.conf.layers.Subsampling3DLayer conf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.Subsampling3DLayer) layer.conf().getLayer();
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        Convolution3D.DataFormat format = conf(layer).getDataFormat();
        return format == Convolution3D.DataFormat.NCDHW ? null
                : "data format " + format + " is not supported by second-order extensions (use NCDHW)";
    }

    /** Max pooling routes by the input; DL4J's average pooling op also works per example. */
    @Override
    public boolean jacobianVariesByExample(Layer layer) {
        return true;
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        org.deeplearning4j.nn.conf.layers.Subsampling3DLayer conf = conf(record.layer());
        INDArray x = record.input().castTo(factor.dataType());
        INDArray repeated = Columns.repeatPerColumn(x, factor.size(0) / x.size(0));
        int[] kernel = conf.getKernelSize();
        int[] strides = conf.getStride();
        int[] dilation = conf.getDilation();
        boolean same = conf.getConvolutionMode() == ConvolutionMode.Same;
        int[] pad = same
                ? Convolution3DUtils.get3DSameModeTopLeftPadding(
                new int[] {(int) factor.size(2), (int) factor.size(3), (int) factor.size(4)},
                new int[] {(int) x.size(2), (int) x.size(3), (int) x.size(4)}, kernel, strides, dilation)
                : conf.getPadding();
        String op = conf.getPoolingType() == org.deeplearning4j.nn.conf.layers.PoolingType.MAX
                ? "maxpool3dnew_bp" : "avgpool3dnew_bp";
        INDArray out = Nd4j.create(factor.dataType(), repeated.shape());
        // the arguments of DL4J's own backward step: no padding in the average's divisor, NCDHW
        Nd4j.exec(DynamicCustomOp.builder(op)
                .addInputs(repeated, factor.isView() ? factor.dup('c') : factor)
                .addOutputs(out)
                .addIntegerArguments(kernel[0], kernel[1], kernel[2], strides[0], strides[1], strides[2], pad[0],
                        pad[1], pad[2], dilation[0], dilation[1], dilation[2], same ? 1 : 0, 0, 0)
                .callInplace(false)
                .build());
        return out;
    }
}
