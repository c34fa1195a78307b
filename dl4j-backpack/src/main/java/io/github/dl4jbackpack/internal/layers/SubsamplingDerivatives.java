// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.layers.convolution.subsampling.SubsamplingLayer;
import org.deeplearning4j.util.ConvolutionUtils;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.DynamicCustomOp;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Derivatives of DL4J's 2D {@code SubsamplingLayer} (max, average and p-norm pooling, any mode).
 * Its Jacobian-transpose product is DL4J's own pooling backward operation, applied to all factor
 * columns at once against the input repeated once per column, so that it routes exactly as DL4J
 * does (ties in max pooling included). Max and average pooling are piecewise linear; p-norm
 * pooling is not, and its Hessian residual is {@link PNormResidual}'s (the sums over the windows that
 * contain an input element are DL4J's own p-norm backward operation with {@code p = 1} on ones, so the
 * windows are exactly DL4J's).
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
    public boolean hasInputResidual(Layer layer) {
        return conf(layer).getPoolingType() == PoolingType.PNORM && conf(layer).getPnorm() >= 2;
    }

    @Override
    public java.util.List<VertexDerivatives.ResidualPart> inputResidual(RecordedLayer record) {
        org.deeplearning4j.nn.conf.layers.SubsamplingLayer conf = conf(record.layer());
        INDArray epsilon = record.outputGradient();
        INDArray x = record.input().castTo(epsilon.dataType());
        INDArray y = pNormPool(conf, x, epsilon.shape());
        INDArray ones = Nd4j.onesLike(x);
        return PNormResidual.parts(conf.getPnorm(), x, y, epsilon, s -> poolBackward(conf, ones, s, 1),
                columns -> poolBackward(conf, Columns.repeatPerColumn(x, columns.size(0) / x.size(0)), columns,
                        conf.getPnorm()));
    }

    /**
     * DL4J's p-norm pooling operation.
     *
     * @param conf the layer configuration (p-norm pooling)
     * @param x the input {@code [N, C, H, W]}
     * @param outShape the output's shape
     * @return the pooled output
     */
    static INDArray pNormPool(org.deeplearning4j.nn.conf.layers.SubsamplingLayer conf, INDArray x, long[] outShape) {
        int[] pad = padding(conf, x, outShape);
        boolean same = conf.getConvolutionMode() == ConvolutionMode.Same;
        INDArray y = Nd4j.create(x.dataType(), outShape);
        Nd4j.exec(DynamicCustomOp.builder("pnormpool2d").addInputs(x).addOutputs(y)
                .addIntegerArguments(conf.getKernelSize()[0], conf.getKernelSize()[1], conf.getStride()[0],
                        conf.getStride()[1], pad[0], pad[1], conf.getDilation()[0], conf.getDilation()[1],
                        same ? 1 : 0, conf.getPnorm(), 0).build());
        return y;
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
        INDArray repeated = Columns.repeatPerColumn(x, columns);
        return poolBackward(conf, repeated, factor, conf.getPnorm());
    }

    private static int[] padding(org.deeplearning4j.nn.conf.layers.SubsamplingLayer conf, INDArray x, long[] out) {
        return conf.getConvolutionMode() == ConvolutionMode.Same
                ? ConvolutionUtils.getSameModeTopLeftPadding(new int[] {(int) out[2], (int) out[3]},
                new int[] {(int) x.size(2), (int) x.size(3)}, conf.getKernelSize(), conf.getStride(), conf.getDilation())
                : conf.getPadding();
    }

    /**
     * DL4J's pooling backward operation.
     *
     * @param conf the layer configuration
     * @param x the input, one row per row of {@code gradient}
     * @param gradient gradients at the output
     * @param pnorm the order of p-norm pooling (ignored for max and average pooling)
     * @return the gradients at the input
     */
    static INDArray poolBackward(org.deeplearning4j.nn.conf.layers.SubsamplingLayer conf, INDArray x,
                                         INDArray gradient, int pnorm) {
        int[] kernel = conf.getKernelSize();
        int[] strides = conf.getStride();
        int[] dilation = conf.getDilation();
        boolean same = conf.getConvolutionMode() == ConvolutionMode.Same;
        int[] pad = padding(conf, x, gradient.shape());
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
                extra = pnorm;
                op.addFloatingPointArguments(conf.getEps());
                break;
            default:
                throw new UnsupportedOperationException("pooling type " + conf.getPoolingType());
        }
        INDArray out = Nd4j.create(gradient.dataType(), x.shape());
        op.addInputs(x, gradient.isView() ? gradient.dup('c') : gradient).addOutputs(out)
                .addIntegerArguments(kernel[0], kernel[1], strides[0], strides[1], pad[0], pad[1], dilation[0],
                        dilation[1], same ? 1 : 0, extra, 0);
        Nd4j.exec(op.build());
        return out;
    }
}
