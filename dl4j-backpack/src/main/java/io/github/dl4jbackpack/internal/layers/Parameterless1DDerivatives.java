// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.convolution.Cropping1DLayer;
import org.deeplearning4j.nn.layers.convolution.ZeroPadding1DLayer;
import org.deeplearning4j.nn.layers.convolution.subsampling.Subsampling1DLayer;
import org.deeplearning4j.nn.layers.convolution.upsampling.Upsampling1D;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.List;

/**
 * DL4J's layers without parameters over the time axis of {@code [N, C, T]} activations:
 * {@code Subsampling1DLayer}, {@code Upsampling1D}, {@code ZeroPadding1DLayer} and {@code Cropping1DLayer}.
 * First-order extensions only need them to exist: DL4J's own backward step hands the layers below
 * their gradients (a {@code Subsampling1DLayer} multiplies the gradient it receives by its reduced
 * feature mask, as its forward step does its output). Second order: the padding, cropping and upsampling
 * layers are linear reshapings whose input Jacobian-transpose products are written out here; the pooling
 * layer's is DL4J's 2D pooling backward operation on the series seen as {@code [N, C, T, 1]} images, as DL4J's
 * layer computes it. (DL4J's layer would multiply its output and gradient by its reduced feature mask if one were
 * set on it, but networks never set one: its {@code feedForwardMaskArray} reduces the mask for the layers above
 * without keeping it.) Max and average pooling are piecewise linear, so they have no Hessian residual; p-norm
 * pooling has the 2D layer's ({@link #inputResidual}). Pooling laid out channels last is refused for
 * curvature.
 */
public final class Parameterless1DDerivatives implements LayerDerivatives {

    private final Class<? extends Layer> type;

    /**
     * @param type {@code Subsampling1DLayer}, {@code Upsampling1D}, {@code ZeroPadding1DLayer} or
     *     {@code Cropping1DLayer}
     */
    public Parameterless1DDerivatives(Class<? extends Layer> type) {
        this.type = type;
    }

    @Override
    public String kindName() {
        return type.getSimpleName();
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == type;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    private boolean pooling() {
        return type == Subsampling1DLayer.class;
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        if (pooling() && poolingConf(layer).getCnn2dDataFormat() != org.deeplearning4j.nn.conf.CNN2DFormat.NCHW) {
            return "curvature extensions do not support Subsampling1DLayer with data format "
                    + poolingConf(layer).getCnn2dDataFormat() + " (NCHW is supported)";
        }
        return null;
    }

    /** {@inheritDoc} p-norm pooling of order at least 2. */
    @Override
    public boolean hasInputResidual(Layer layer) {
        return pooling() && poolingConf(layer).getPoolingType() == PoolingType.PNORM && poolingConf(layer).getPnorm() >= 2;
    }

    /** {@inheritDoc} The 2D layer's ({@link PNormResidual}) on the series seen as {@code [N, C, T, 1]}. */
    @Override
    public List<VertexDerivatives.ResidualPart> inputResidual(RecordedLayer record) {
        org.deeplearning4j.nn.conf.layers.Subsampling1DLayer conf = poolingConf(record.layer());
        INDArray epsilon = record.outputGradient();
        INDArray x = record.input().castTo(epsilon.dataType());
        INDArray y = SubsamplingDerivatives.pNormPool(conf, x.reshape('c', x.size(0), x.size(1), x.size(2), 1),
                new long[] {epsilon.size(0), epsilon.size(1), epsilon.size(2), 1}).reshape(epsilon.shape());
        INDArray ones = Nd4j.ones(x.dataType(), x.size(0), x.size(1), x.size(2), 1);
        return PNormResidual.parts(conf.getPnorm(), x, y, epsilon,
                s -> SubsamplingDerivatives.poolBackward(conf, ones, s.reshape('c', s.size(0), s.size(1), s.size(2), 1),
                        1).reshape(x.shape()),
                columns -> poolingInputJacobianTranspose(record, columns));
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return true;
    }

    /** Max pooling routes by the input, and DL4J's pooling operation works per example. */
    @Override
    public boolean jacobianVariesByExample(Layer layer) {
        return pooling();
    }

    private static org.deeplearning4j.nn.conf.layers.Subsampling1DLayer poolingConf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.Subsampling1DLayer) layer.conf().getLayer();
    }

    /**
     * {@inheritDoc} Columns {@code [R, C, T']} to {@code [R, C, T]}: zero padding crops them back, cropping pads
     * them back with zeros, upsampling by s sums each step's s copies.
     */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        long rows = factor.size(0);
        long channels = factor.size(1);
        long length = record.input().size(2);
        org.deeplearning4j.nn.conf.layers.Layer conf = record.layer().conf().getLayer();
        if (conf instanceof org.deeplearning4j.nn.conf.layers.ZeroPadding1DLayer) {
            int left = ((org.deeplearning4j.nn.conf.layers.ZeroPadding1DLayer) conf).getPadding()[0];
            return factor.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(left, left + length))
                    .dup('c');
        }
        if (conf instanceof org.deeplearning4j.nn.conf.layers.convolutional.Cropping1D) {
            int top = ((org.deeplearning4j.nn.conf.layers.convolutional.Cropping1D) conf).getCropping()[0];
            INDArray out = Nd4j.zeros(factor.dataType(), rows, channels, length);
            out.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(top, top + factor.size(2)))
                    .assign(factor);
            return out;
        }
        if (conf instanceof org.deeplearning4j.nn.conf.layers.Upsampling1D) {
            long size = factor.size(2) / length;
            return factor.dup('c').reshape('c', rows, channels, length, size).sum(3);
        }
        if (conf instanceof org.deeplearning4j.nn.conf.layers.Subsampling1DLayer) {
            return poolingInputJacobianTranspose(record, factor);
        }
        throw new IllegalStateException("no input Jacobian for " + conf.getClass().getSimpleName());
    }

    /** The pooling layer's product: DL4J's 2D pooling backward step on {@code [R, C, T, 1]}. */
    private static INDArray poolingInputJacobianTranspose(RecordedLayer record, INDArray factor) {
        org.deeplearning4j.nn.conf.layers.Subsampling1DLayer conf = poolingConf(record.layer());
        long rows = factor.size(0);
        INDArray x = record.input().castTo(factor.dataType());
        INDArray image = Columns.repeatPerColumn(x.reshape('c', x.size(0), x.size(1), x.size(2), 1),
                rows / x.size(0));
        INDArray gradient = factor.dup('c').reshape('c', rows, factor.size(1), factor.size(2), 1);
        INDArray out = SubsamplingDerivatives.poolBackward(conf, image, gradient, conf.getPnorm());
        return out.reshape('c', rows, x.size(1), x.size(2));
    }

    /** @return the kinds of the four layers */
    static List<LayerDerivatives> all() {
        return List.of(new Parameterless1DDerivatives(Subsampling1DLayer.class),
                new Parameterless1DDerivatives(Upsampling1D.class),
                new Parameterless1DDerivatives(ZeroPadding1DLayer.class),
                new Parameterless1DDerivatives(Cropping1DLayer.class));
    }
}
