// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.layers.SpaceToDepthLayer;
import org.deeplearning4j.nn.layers.convolution.SpaceToDepth;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * DL4J's {@code SpaceToDepthLayer} (libnd4j's {@code space_to_depth}, TensorFlow's block order): with block
 * size b, input position {@code (c, h·b + i, w·b + j)} goes to output channel {@code (i·b + j)·C + c} at
 * {@code (h, w)}, in NCHW and NHWC alike. A permutation of each example's features, so the Jacobian
 * transpose is the inverse permutation and there is no Hessian residual.
 */
public final class SpaceToDepthDerivatives implements LayerDerivatives {

    @Override
    public String kindName() {
        return "SpaceToDepthLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == SpaceToDepth.class;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        SpaceToDepthLayer conf = (SpaceToDepthLayer) record.layer().conf().getLayer();
        long b = conf.getBlockSize();
        long m = factor.size(0);
        INDArray s = factor.dup('c');
        if (conf.getDataFormat() == CNN2DFormat.NCHW) {
            // [M, (i, j, c), h, w] → [M, c, (h, i), (w, j)]
            long c = s.size(1) / (b * b);
            long h = s.size(2);
            long w = s.size(3);
            return s.reshape('c', m, b, b, c, h, w).permute(0, 3, 4, 1, 5, 2).dup('c')
                    .reshape('c', m, c, h * b, w * b);
        }
        // NHWC: [M, h, w, (i, j, c)] → [M, (h, i), (w, j), c]
        long h = s.size(1);
        long w = s.size(2);
        long c = s.size(3) / (b * b);
        return s.reshape('c', m, h, w, b, b, c).permute(0, 1, 3, 2, 4, 5).dup('c').reshape('c', m, h * b, w * b, c);
    }
}
