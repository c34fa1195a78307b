// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.layers.pooling.GlobalPoolingLayer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.impl.transforms.any.IsMax;
import org.nd4j.linalg.factory.Nd4j;

/**
 * DL4J's {@code GlobalPoolingLayer} over the spatial dimensions of NCHW input ({@code [N, C, H, W] →
 * [N, C]}, or {@code [N, C, 1, 1]} without collapsing): average and sum are linear, max routes each
 * channel to the position DL4J's own backward pass picks ({@code IsMax}), all without Hessian
 * residual. P-norm pooling and recurrent (masked) input are not supported for second order.
 */
public final class GlobalPoolingDerivatives implements LayerDerivatives {

    @Override
    public String kindName() {
        return "GlobalPoolingLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == GlobalPoolingLayer.class;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    private static org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer conf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer) layer.conf().getLayer();
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer conf = conf(layer);
        if (conf.getPoolingType() == PoolingType.PNORM) {
            return "p-norm global pooling is not supported by second-order extensions (max, average, sum are)";
        }
        int[] dims = conf.getPoolingDimensions();
        if (dims != null && !(dims.length == 2 && dims[0] == 2 && dims[1] == 3)) {
            return "global pooling over dimensions " + java.util.Arrays.toString(dims) + " is not supported by "
                    + "second-order extensions (the spatial dimensions 2, 3 of NCHW input are)";
        }
        return null;
    }

    @Override
    public boolean jacobianVariesByExample(Layer layer) {
        return conf(layer).getPoolingType() == PoolingType.MAX;
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        INDArray x = record.input();
        if (x.rank() != 4) {
            throw new IllegalStateException("global pooling of rank-" + x.rank() + " input in a second-order pass");
        }
        long m = factor.size(0);
        long c = x.size(1);
        long h = x.size(2);
        long w = x.size(3);
        INDArray columns = factor.reshape('c', m, c, 1).broadcast(m, c, h * w).dup('c');
        switch (conf(record.layer()).getPoolingType()) {
            case SUM:
                break;
            case AVG:
                columns.divi(h * w);
                break;
            case MAX:
                INDArray mask = record.cached("isMax", () -> Nd4j.exec(new IsMax(x.dup(), x.ulike(), 2, 3))[0]
                        .castTo(x.dataType()));
                return Columns.timesPerExample(columns.reshape('c', m, c, h, w), mask.castTo(factor.dataType()));
            default:
                throw new IllegalStateException("pooling type " + conf(record.layer()).getPoolingType());
        }
        return columns.reshape('c', m, c, h, w);
    }
}
