// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.SpaceToDepthLayer;
import org.deeplearning4j.nn.layers.convolution.SpaceToDepth;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * DL4J's {@code SpaceToDepthLayer} (libnd4j's {@code space_to_depth}, TensorFlow's block order): with block
 * size b, input position {@code (c, h·b + i, w·b + j)} goes to output channel {@code (i·b + j)·C + c} at
 * {@code (h, w)}. A permutation of each example's features, so the Jacobian
 * transpose is the inverse permutation and there is no Hessian residual. Computed in NCHW layout (NHWC through {@link ChannelsLastKind}).
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
        long b = ((SpaceToDepthLayer) record.layer().conf().getLayer()).getBlockSize();
        // [M, (i, j, c), h, w] → [M, c, (h, i), (w, j)]
        long m = factor.size(0);
        long c = factor.size(1) / (b * b);
        long h = factor.size(2);
        long w = factor.size(3);
        return factor.dup('c').reshape('c', m, b, b, c, h, w).permute(0, 3, 4, 1, 5, 2).dup('c')
                .reshape('c', m, c, h * b, w * b);
    }
}
