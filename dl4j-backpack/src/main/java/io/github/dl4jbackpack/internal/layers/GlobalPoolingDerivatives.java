// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.layers.pooling.GlobalPoolingLayer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.impl.transforms.any.IsMax;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.ops.transforms.Transforms;

/**
 * DL4J's {@code GlobalPoolingLayer} over the spatial dimensions of NCHW input ({@code [N, C, H, W] →
 * [N, C]}, or {@code [N, C, 1, 1]} without collapsing): average and sum are linear, max routes each
 * channel to the position DL4J's own backward pass picks ({@code IsMax}), all without Hessian
 * residual; p-norm pooling {@code y = (Σ |x|^p)^{1/p}} per channel has the Jacobian
 * {@code x|x|^{p−2}/y^{p−1}} (DL4J's own formula) and {@link PNormResidual}'s Hessian residual.
 * Over the (masked) steps of a time series, average, sum and max pooling follow DL4J's own masked
 * gradient, and p-norm pooling has the residual of the masked steps' p-norm.
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
        int[] dims = conf.getPoolingDimensions();
        if (dims != null && !(dims.length == 2 && dims[1] - dims[0] == 1 && (dims[0] == 1 || dims[0] == 2))) {
            return "global pooling over dimensions " + java.util.Arrays.toString(dims) + " is not supported by "
                    + "second-order extensions (the spatial dimensions of NCHW input, 2 and 3, and of NHWC input, "
                    + "1 and 2, are)";
        }
        return null;
    }

    @Override
    public boolean jacobianVariesByExample(Layer layer) {
        return conf(layer).getPoolingType() == PoolingType.MAX || conf(layer).getPoolingType() == PoolingType.PNORM;
    }

    @Override
    public boolean hasInputResidual(Layer layer) {
        return conf(layer).getPoolingType() == PoolingType.PNORM && conf(layer).getPnorm() >= 2;
    }

    /**
     * {@inheritDoc} Over the (masked) steps of a time series, {@code y = (Σ_t m_t |x_t|^p)^{1/p}} is the p-norm of
     * {@code m ⊙ x}, so its Hessian is {@code M ∇²‖m ⊙ x‖_p M}: {@link PNormResidual}'s parts for {@code m ⊙ x},
     * the diagonal masked, the rank-one columns DL4J's masked gradient.
     */
    @Override
    public java.util.List<VertexDerivatives.ResidualPart> inputResidual(RecordedLayer record) {
        INDArray epsilon = record.outputGradient();
        INDArray x = record.input().castTo(epsilon.dataType());
        long n = x.size(0);
        if (x.rank() == 3) {
            long c = x.size(1);
            long length = x.size(2);
            INDArray mask = record.layer().getMaskArray();
            INDArray m = (mask == null ? Nd4j.ones(x.dataType(), n, length) : mask.castTo(x.dataType()))
                    .reshape('c', n, 1, length).broadcast(n, c, length);
            INDArray masked = x.mul(m);
            int p = conf(record.layer()).getPnorm();
            INDArray y = Transforms.pow(Transforms.pow(Transforms.abs(masked, true), p, false).sum(2), 1.0 / p, false)
                    .reshape(epsilon.shape());
            return PNormResidual.parts(p, masked, y, epsilon,
                    s -> s.reshape('c', n, c, 1).broadcast(n, c, length).mul(m),
                    columns -> inputJacobianTranspose(record, columns));
        }
        long c = x.size(1);
        long pixels = x.size(2) * x.size(3);
        INDArray y = pNorm(x, conf(record.layer()).getPnorm()).reshape(epsilon.shape());
        return PNormResidual.parts(conf(record.layer()).getPnorm(), x, y, epsilon,
                s -> s.reshape('c', n, c, 1).broadcast(n, c, pixels).dup('c').reshape('c', x.shape()),
                columns -> inputJacobianTranspose(record, columns));
    }

    /** @return {@code (Σ_{h,w} |x|^p)^{1/p}}, {@code [N, C]} */
    private static INDArray pNorm(INDArray x, int p) {
        return Transforms.pow(Transforms.pow(Transforms.abs(x, true), p, false).sum(2, 3), 1.0 / p, false);
    }

    /** {@inheritDoc} Over time ({@code [N, C, T]}), every pooling type, with the network's feature mask. */
    @Override
    public boolean supportsSequences(Layer layer) {
        return true;
    }

    /**
     * Pooling over the (masked) steps of a time series: DL4J's own gradient of it
     * ({@code MaskedReductionUtil}), for each of the V columns of a sequence with that sequence's input and
     * feature mask (a layer without a mask pools every step).
     */
    private static INDArray overTime(RecordedLayer record, INDArray factor) {
        INDArray x = record.input();
        long n = x.size(0);
        long rows = factor.size(0);
        long v = rows / n;
        long c = x.size(1);
        long length = x.size(2);
        INDArray mask = record.layer().getMaskArray();
        INDArray m = mask == null ? Nd4j.ones(factor.dataType(), n, length) : mask.castTo(factor.dataType());
        INDArray xs = x.castTo(factor.dataType());
        if (v > 1) {
            xs = xs.reshape('c', n, 1, c * length).broadcast(n, v, c * length).dup('c').reshape('c', rows, c, length);
            m = m.reshape('c', n, 1, length).broadcast(n, v, length).dup('c').reshape('c', rows, length);
        }
        return org.deeplearning4j.util.MaskedReductionUtil.maskedPoolingEpsilonTimeSeries(
                conf(record.layer()).getPoolingType(), xs, m, factor.reshape('c', rows, c),
                conf(record.layer()).getPnorm());
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        INDArray x = record.input();
        if (x.rank() == 3) {
            return overTime(record, factor);
        }
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
            case PNORM:
                int p = conf(record.layer()).getPnorm();
                INDArray derivative = record.cached("pNormDerivative", () -> {
                    INDArray x64 = x.dup('c');
                    INDArray numerator = x64.mul(Transforms.pow(Transforms.abs(x64, true), p - 2, false));
                    INDArray denominator = Transforms.pow(pNorm(x64, p), p - 1, false);
                    return numerator.reshape('c', x.size(0), c, h * w).divi(denominator.reshape(x.size(0), c, 1)
                            .broadcast(x.size(0), c, h * w)).reshape('c', x.shape());
                });
                return Columns.timesPerExample(columns.reshape('c', m, c, h, w), derivative.castTo(factor.dataType()));
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
