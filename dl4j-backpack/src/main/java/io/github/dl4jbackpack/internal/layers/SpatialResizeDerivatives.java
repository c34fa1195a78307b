// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.layers.convolution.Cropping2DLayer;
import org.deeplearning4j.nn.layers.convolution.ZeroPaddingLayer;
import org.deeplearning4j.nn.layers.convolution.upsampling.Upsampling2D;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * DL4J's linear reshapings of NCHW activations without parameters: {@code ZeroPaddingLayer}
 * (Jacobian transpose: crop the columns), {@code Cropping2D} (pad them with zeros) and
 * {@code Upsampling2D} (nearest neighbour: sum the columns over each block). No Hessian residual.
 */
public final class SpatialResizeDerivatives implements LayerDerivatives {

    private final Class<? extends Layer> type;

    /** @param type {@code ZeroPaddingLayer}, {@code Cropping2DLayer} or {@code Upsampling2D} */
    public SpatialResizeDerivatives(Class<? extends Layer> type) {
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

    private static CNN2DFormat format(Layer layer) {
        org.deeplearning4j.nn.conf.layers.Layer c = layer.conf().getLayer();
        if (c instanceof org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer) {
            return ((org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer) c).getDataFormat();
        }
        if (c instanceof org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D) {
            return ((org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D) c).getDataFormat();
        }
        return ((org.deeplearning4j.nn.conf.layers.Upsampling2D) c).getFormat();
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return format(layer) == CNN2DFormat.NCHW ? null
                : "data format " + format(layer) + " is not supported by second-order extensions (use NCHW)";
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        org.deeplearning4j.nn.conf.layers.Layer c = record.layer().conf().getLayer();
        long[] in = record.input().shape();
        long m = factor.size(0);
        if (c instanceof org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer) {
            int[] pad = ((org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer) c).getPadding();
            return factor.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(pad[0], pad[0] + in[2]),
                    NDArrayIndex.interval(pad[2], pad[2] + in[3])).dup('c');
        }
        if (c instanceof org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D) {
            int[] crop = ((org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D) c).getCropping();
            INDArray out = Nd4j.zeros(factor.dataType(), m, in[1], in[2], in[3]);
            out.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(crop[0], in[2] - crop[1]),
                    NDArrayIndex.interval(crop[2], in[3] - crop[3])).assign(factor);
            return out;
        }
        int[] size = ((org.deeplearning4j.nn.conf.layers.Upsampling2D) c).getSize();
        return factor.dup('c').reshape('c', m, in[1], in[2], size[0], in[3], size[1]).sum(3, 5);
    }

    /** @return the kinds of the three layers */
    static java.util.List<LayerDerivatives> all() {
        return java.util.List.of(new SpatialResizeDerivatives(ZeroPaddingLayer.class),
                new SpatialResizeDerivatives(Cropping2DLayer.class), new SpatialResizeDerivatives(Upsampling2D.class));
    }
}
