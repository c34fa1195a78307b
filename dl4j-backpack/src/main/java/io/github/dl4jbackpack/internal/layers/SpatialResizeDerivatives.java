// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.Convolution3D;
import org.deeplearning4j.nn.layers.convolution.Cropping2DLayer;
import org.deeplearning4j.nn.layers.convolution.Cropping3DLayer;
import org.deeplearning4j.nn.layers.convolution.ZeroPadding3DLayer;
import org.deeplearning4j.nn.layers.convolution.ZeroPaddingLayer;
import org.deeplearning4j.nn.layers.convolution.upsampling.Upsampling2D;
import org.deeplearning4j.nn.layers.convolution.upsampling.Upsampling3D;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * DL4J's linear reshapings of NCHW and NCDHW activations without parameters: {@code ZeroPaddingLayer}
 * and {@code ZeroPadding3DLayer} (Jacobian transpose: crop the columns), {@code Cropping2D} and
 * {@code Cropping3D} (pad them with zeros), {@code Upsampling2D} and {@code Upsampling3D} (nearest
 * neighbour: sum the columns over each block). The amounts come per spatial axis in DL4J's order
 * ({@code [before, after]} for each axis). No Hessian residual.
 */
public final class SpatialResizeDerivatives implements LayerDerivatives {

    private final Class<? extends Layer> type;

    /**
     * @param type {@code ZeroPaddingLayer}, {@code Cropping2DLayer}, {@code Upsampling2D},
     *     {@code ZeroPadding3DLayer}, {@code Cropping3DLayer} or {@code Upsampling3D}
     */
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

    /**
     * {@inheritDoc} Here the 3D layouts other than NCDHW (ZeroPadding3DLayer and Cropping3D are NCDHW
     * only; the 2D layers in NHWC layout go through {@link ChannelsLastKind}).
     */
    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        org.deeplearning4j.nn.conf.layers.Layer c = layer.conf().getLayer();
        if (c instanceof org.deeplearning4j.nn.conf.layers.Upsampling3D
                && ((org.deeplearning4j.nn.conf.layers.Upsampling3D) c).getDataFormat() != Convolution3D.DataFormat.NCDHW) {
            return "data format " + ((org.deeplearning4j.nn.conf.layers.Upsampling3D) c).getDataFormat()
                    + " is not supported by second-order extensions (use NCDHW)";
        }
        return null;
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        org.deeplearning4j.nn.conf.layers.Layer c = record.layer().conf().getLayer();
        long[] in = record.input().shape();
        int axes = in.length - 2;
        long m = factor.size(0);
        INDArrayIndex[] window = new INDArrayIndex[in.length];
        window[0] = NDArrayIndex.all();
        window[1] = NDArrayIndex.all();
        int[] pad = padding(c);
        if (pad != null) {
            for (int i = 0; i < axes; i++) {
                window[2 + i] = NDArrayIndex.interval(pad[2 * i], pad[2 * i] + in[2 + i]);
            }
            return factor.get(window).dup('c');
        }
        int[] crop = cropping(c);
        if (crop != null) {
            for (int i = 0; i < axes; i++) {
                window[2 + i] = NDArrayIndex.interval(crop[2 * i], in[2 + i] - crop[2 * i + 1]);
            }
            INDArray out = Nd4j.zeros(factor.dataType(), Columns.withRows(m, in));
            out.get(window).assign(factor);
            return out;
        }
        int[] size = c instanceof org.deeplearning4j.nn.conf.layers.Upsampling3D
                ? ((org.deeplearning4j.nn.conf.layers.Upsampling3D) c).getSize()
                : ((org.deeplearning4j.nn.conf.layers.Upsampling2D) c).getSize();
        // output axis i of size in·s splits row-major into [in, s]: sum over the block axes
        long[] blocks = new long[2 + 2 * axes];
        int[] blockAxes = new int[axes];
        blocks[0] = m;
        blocks[1] = in[1];
        for (int i = 0; i < axes; i++) {
            blocks[2 + 2 * i] = in[2 + i];
            blocks[3 + 2 * i] = size[i];
            blockAxes[i] = 3 + 2 * i;
        }
        return factor.dup('c').reshape('c', blocks).sum(blockAxes);
    }

    /** @return the padding {@code [before, after]} per axis of a zero-padding layer, or null */
    private static int[] padding(org.deeplearning4j.nn.conf.layers.Layer c) {
        if (c instanceof org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer) {
            return ((org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer) c).getPadding();
        }
        if (c instanceof org.deeplearning4j.nn.conf.layers.ZeroPadding3DLayer) {
            return ((org.deeplearning4j.nn.conf.layers.ZeroPadding3DLayer) c).getPadding();
        }
        return null;
    }

    /** @return the cropping {@code [before, after]} per axis of a cropping layer, or null */
    private static int[] cropping(org.deeplearning4j.nn.conf.layers.Layer c) {
        if (c instanceof org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D) {
            return ((org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D) c).getCropping();
        }
        if (c instanceof org.deeplearning4j.nn.conf.layers.convolutional.Cropping3D) {
            return ((org.deeplearning4j.nn.conf.layers.convolutional.Cropping3D) c).getCropping();
        }
        return null;
    }

    /** @return the kinds of the six layers */
    static java.util.List<LayerDerivatives> all() {
        return java.util.List.of(new SpatialResizeDerivatives(ZeroPaddingLayer.class),
                new SpatialResizeDerivatives(Cropping2DLayer.class), new SpatialResizeDerivatives(Upsampling2D.class),
                new SpatialResizeDerivatives(ZeroPadding3DLayer.class),
                new SpatialResizeDerivatives(Cropping3DLayer.class), new SpatialResizeDerivatives(Upsampling3D.class));
    }
}
