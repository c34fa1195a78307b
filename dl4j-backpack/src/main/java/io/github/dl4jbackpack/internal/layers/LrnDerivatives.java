// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.layers.normalization.LocalResponseNormalization;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

/**
 * DL4J's {@code LocalResponseNormalization} over channels of NCHW input:
 * {@code a = x · u^{−β}}, {@code u = k + α Σ_{window} x²} (window of n channels). Its Jacobian
 * transpose is DL4J's own backward formula {@code Jᵀε = ε u^{−β} − 2αβ x / u · Σ_{window}(a ⊙ ε)},
 * applied to every factor column with the example's {@code x}. Nonlinear: its Hessian residual is not
 * implemented, so DiagHessian refuses it (the GGN and Kronecker extensions go through it).
 */
public final class LrnDerivatives implements LayerDerivatives {

    @Override
    public String kindName() {
        return "LocalResponseNormalization";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == LocalResponseNormalization.class;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    private static org.deeplearning4j.nn.conf.layers.LocalResponseNormalization conf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.LocalResponseNormalization) layer.conf().getLayer();
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        if (conf(layer).getDataFormat() != CNN2DFormat.NCHW) {
            return "data format " + conf(layer).getDataFormat() + " is not supported (use NCHW)";
        }
        return hessian ? "the Hessian residual of local response normalisation is not implemented (DiagGGN, KFAC "
                + "and KFLR go through it)" : null;
    }

    @Override
    public boolean jacobianVariesByExample(Layer layer) {
        return true;
    }

    /** @return {@code Σ_{|c' − c| ≤ half} arr[:, c']} along the channel axis, clipped at the edges */
    private static INDArray windowSum(INDArray arr, int half) {
        long channels = arr.size(1);
        INDArray out = arr.dup('c');
        for (int i = 1; i <= half && i < channels; i++) {
            out.get(NDArrayIndex.all(), NDArrayIndex.interval(i, channels), NDArrayIndex.all(), NDArrayIndex.all())
                    .addi(arr.get(NDArrayIndex.all(), NDArrayIndex.interval(0, channels - i), NDArrayIndex.all(),
                            NDArrayIndex.all()));
            out.get(NDArrayIndex.all(), NDArrayIndex.interval(0, channels - i), NDArrayIndex.all(), NDArrayIndex.all())
                    .addi(arr.get(NDArrayIndex.all(), NDArrayIndex.interval(i, channels), NDArrayIndex.all(),
                            NDArrayIndex.all()));
        }
        return out;
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        org.deeplearning4j.nn.conf.layers.LocalResponseNormalization c = conf(record.layer());
        double alpha = c.getAlpha();
        double beta = c.getBeta();
        int half = (int) c.getN() / 2;
        INDArray x = record.input().castTo(factor.dataType());
        INDArray u = windowSum(x.mul(x), half).muli(alpha).addi(c.getK());
        INDArray scale = Transforms.pow(u, -beta, true);
        INDArray a = x.mul(scale);
        INDArray xOverU = x.div(u).muli(2 * alpha * beta);
        INDArray sums = windowSum(Columns.timesPerExample(factor, a), half);
        return Columns.timesPerExample(factor, scale).subi(Columns.timesPerExample(sums, xOverU));
    }
}
