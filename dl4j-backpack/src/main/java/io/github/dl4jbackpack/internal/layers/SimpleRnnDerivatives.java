// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.params.SimpleRnnParamInitializer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * Derivatives of DL4J's {@code SimpleRnn} ({@code W [nIn, nOut]}, {@code RW [nOut, nOut]}, {@code b [nOut]}),
 * first order. DL4J computes, with the feature mask {@code m_t} of the layer ({@code [N, T]}, ones without
 * a mask) and {@code h_{-1} = 0}, the state {@code h_t = m_t · act(z_t)} of {@code z_t = x_t W + h_{t−1} RW + b}
 * and the output {@code y_t = m_t h_t}: a masked step outputs zero and hands the next step a zero state, so
 * a sequence whose head is masked (ALIGN_END) restarts from zero at its first step.
 *
 * <p>The kind has no fused activation ({@link #activation} is null): it receives {@code ε_t = ∂L/∂y_t} of
 * the mean loss at the layer output {@code y_t = m_t h_t} and back-propagates through time as DL4J's
 * backward step does, vectorised over the batch: {@code δ_t = m_t · act'(m_t z_t) ⊙ (ε_t + δ_{t+1} RWᵀ)}.
 * Then {@code g_n(W) = Σ_t x_nt δ_ntᵀ}, {@code g_n(RW) = Σ_t y_n,t−1 δ_ntᵀ}, {@code g_n(b) = Σ_t δ_nt}, as
 * {@link OuterProductTerms} over the time steps. For 0/1 masks ({@code m² = m}) this is the exact derivative
 * of the masked recurrence; for mask weights between 0 and 1 it is what DL4J computes (its output is
 * {@code m_t² act(z_t)} while the recurrence carries {@code m_t act(z_t)}), not the derivative.
 *
 * <p>Not supported: layer normalisation, weight noise, and second-order extensions.
 */
public final class SimpleRnnDerivatives implements LayerDerivatives {

    @Override
    public String kindName() {
        return "SimpleRnn";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == SimpleRnn.class;
    }

    private static org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn conf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn) layer.conf().getLayer();
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn conf = conf(layer);
        if (conf.getWeightNoise() != null) {
            return "weight noise (" + conf.getWeightNoise().getClass().getSimpleName() + ") is not supported";
        }
        if (conf.hasLayerNorm()) {
            return "layer normalisation (hasLayerNorm=true) is not supported";
        }
        if (ElementwiseActivations.unsupported(conf.getActivationFn(), false) != null) {
            return "activation " + conf.getActivationFn() + " is not supported (the forward pass is recomputed; "
                    + "supported: " + ElementwiseActivations.SUPPORTED + ")";
        }
        return null;
    }

    @Override
    public boolean hasParameters() {
        return true;
    }

    /** @return the array as {@code [N, C, T]} (a view of an NWC array) */
    private static INDArray channelsFirst(Layer layer, INDArray a) {
        return conf(layer).getRnnDataFormat() == RNNFormat.NWC ? a.permute(0, 2, 1) : a;
    }

    private static INDArray step(INDArray a, long t) {
        return a.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t));
    }

    /**
     * {@inheritDoc} Here {@code outputGradient} is {@code ε = ∂L/∂h} of the mean loss, in the layer's
     * output layout.
     */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        INDArray epsilon = channelsFirst(layer, outputGradient);
        INDArray x = channelsFirst(layer, input).castTo(epsilon.dataType());
        INDArray w = layer.getParam(SimpleRnnParamInitializer.WEIGHT_KEY).castTo(epsilon.dataType());
        INDArray rw = layer.getParam(SimpleRnnParamInitializer.RECURRENT_WEIGHT_KEY).castTo(epsilon.dataType());
        INDArray b = layer.getParam(SimpleRnnParamInitializer.BIAS_KEY).castTo(epsilon.dataType());
        INDArray mask = layer.getMaskArray() == null ? null : layer.getMaskArray().castTo(epsilon.dataType());
        IActivation activation = conf(layer).getActivationFn();
        long n = x.size(0);
        long nOut = w.size(1);
        long length = x.size(2);

        // forward: the masked pre-activations m_t z_t, and the outputs h_{t-1} the recurrent weight's gradient
        // pairs with δ_t (h_{-1} = 0)
        INDArray maskedPreActivation = Nd4j.create(epsilon.dataType(), n, nOut, length);
        INDArray previousOutput = Nd4j.zeros(epsilon.dataType(), n, nOut, length);
        INDArray state = Nd4j.zeros(epsilon.dataType(), n, nOut);
        for (long t = 0; t < length; t++) {
            INDArray z = DenseDerivatives.gemm(step(x, t), false, w, false)
                    .addiRowVector(b.reshape(1, nOut))
                    .addi(DenseDerivatives.gemm(state, false, rw, false));
            state = activation.getActivation(z.dup(), true);
            INDArray output = state;
            if (mask != null) {
                INDArray m = mask.getColumn(t, true);
                z.muliColumnVector(m);
                state.muliColumnVector(m);
                // DL4J masks its output once more after the loop (m_t² act(z_t), the same for 0/1 masks)
                output = state.mulColumnVector(m);
            }
            step(maskedPreActivation, t).assign(z);
            if (t + 1 < length) {
                step(previousOutput, t + 1).assign(output);
            }
        }

        // backward through time: δ_t = m_t act'(m_t z_t) ⊙ (ε_t + δ_{t+1} RWᵀ)
        INDArray delta = Nd4j.create(epsilon.dataType(), n, nOut, length);
        INDArray next = null;
        for (long t = length - 1; t >= 0; t--) {
            INDArray stateGradient = step(epsilon, t).dup();
            if (next != null) {
                stateGradient.addi(DenseDerivatives.gemm(next, false, rw, true));
            }
            INDArray current = activation.backprop(step(maskedPreActivation, t).dup(), stateGradient).getFirst();
            if (mask != null) {
                current.muliColumnVector(mask.getColumn(t, true));
            }
            step(delta, t).assign(current);
            next = current;
        }

        long[] wShape = w.shape();
        long[] rwShape = rw.shape();
        long[] bShape = b.shape();
        return new OuterProductTerms()
                .weight(SimpleRnnParamInitializer.WEIGHT_KEY, delta, x.dup('c'), g -> toParameterLayout(g, wShape))
                .weight(SimpleRnnParamInitializer.RECURRENT_WEIGHT_KEY, delta, previousOutput,
                        g -> toParameterLayout(g, rwShape))
                .bias(SimpleRnnParamInitializer.BIAS_KEY, delta, g -> g.reshape('c', g.rank() == 1 ? bShape
                        : UnfoldedConvolutionDerivatives.withBatchAxis(g.size(0), bShape)));
    }

    /** @return the matrix-layout gradients {@code [O, K]} or {@code [n, O, K]} transposed to {@code [K, O]} */
    private static INDArray toParameterLayout(INDArray matrices, long[] shape) {
        if (matrices.rank() == 2) {
            return matrices.transpose().dup('c').reshape('c', shape);
        }
        return matrices.permute(0, 2, 1).dup('c')
                .reshape('c', UnfoldedConvolutionDerivatives.withBatchAxis(matrices.size(0), shape));
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return "curvature extensions do not support SimpleRnn yet (first-order extensions do)";
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return "Kronecker factors of SimpleRnn are not implemented yet (first-order extensions are)";
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        throw new UnsupportedOperationException(secondOrderUnsupported(record.layer(), false));
    }
}
