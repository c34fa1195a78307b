// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.params.SimpleRnnParamInitializer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.function.UnaryOperator;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

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
 * <p>Second order (the generalised Gauss-Newton diagonals): each factor column at the layer output goes
 * back through time as {@code ε} does (the forward pass replayed once per pass), giving its parameter
 * Jacobian-transpose products by the same formulas and the column at the input, {@code Σ_t W δ_t}; one
 * back-propagation through time of N·V rows per chunk of V columns, shared by both. The Hessian adds the
 * residual inside the layer ({@link #internalResidual}): the activation at every step and the recurrent
 * product; its cost is that of {@code 3·H·T} columns per sequence back-propagated through time, with
 * {@code 2·H·T} of them pushed on below, about {@code H·T} times the generalised Gauss-Newton diagonal's.
 * Not supported: layer normalisation, weight noise and Kronecker factors.
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

    /** DL4J's forward pass of the layer, replayed: what its backward pass uses. */
    private static final class Forward {
        final INDArray x;
        final INDArray w;
        final INDArray rw;
        final INDArray mask;
        final IActivation activation;
        /** {@code m_t z_t}, {@code [N, nOut, T]}. */
        final INDArray maskedPreActivation;
        /** {@code y_{t−1}}, {@code [N, nOut, T]}, zero at t = 0. */
        final INDArray previousOutput;

        Forward(Layer layer, INDArray x) {
            DataType type = x.dataType();
            this.x = x;
            w = layer.getParam(SimpleRnnParamInitializer.WEIGHT_KEY).castTo(type);
            rw = layer.getParam(SimpleRnnParamInitializer.RECURRENT_WEIGHT_KEY).castTo(type);
            INDArray b = layer.getParam(SimpleRnnParamInitializer.BIAS_KEY).castTo(type);
            mask = layer.getMaskArray() == null ? null : layer.getMaskArray().castTo(type);
            activation = conf(layer).getActivationFn();
            long n = x.size(0);
            long nOut = w.size(1);
            long length = x.size(2);
            maskedPreActivation = Nd4j.create(type, n, nOut, length);
            previousOutput = Nd4j.zeros(type, n, nOut, length);
            INDArray state = Nd4j.zeros(type, n, nOut);
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
        }

        /**
         * Back-propagation through time, {@code δ_t = m_t act'(m_t z_t) ⊙ (ε_t + δ_{t+1} RWᵀ)}, of V rows per
         * sequence (row {@code n·V + v}).
         *
         * @param epsilon {@code [N·V, nOut, T]}
         * @return {@code δ}, {@code [N·V, nOut, T]}
         */
        INDArray backward(INDArray epsilon) {
            return backward(epsilon, null);
        }

        /**
         * Back-propagation through time with gradients entering at the states and at the pre-activations:
         * {@code δ_t = m_t act'(m_t z_t) ⊙ (ε_t + δ_{t+1} RWᵀ) + ι_t}.
         *
         * @param epsilon {@code ε} at the states, {@code [N·V, nOut, T]}, or null for none
         * @param injection {@code ι} at the pre-activations, {@code [N·V, nOut, T]}, or null for none
         * @return {@code δ}, {@code [N·V, nOut, T]}
         */
        INDArray backward(INDArray epsilon, INDArray injection) {
            INDArray given = epsilon != null ? epsilon : injection;
            long rows = given.size(0);
            long repeats = rows / x.size(0);
            long length = x.size(2);
            INDArray delta = Nd4j.create(given.dataType(), rows, w.size(1), length);
            INDArray next = null;
            for (long t = length - 1; t >= 0; t--) {
                INDArray stateGradient = epsilon != null ? step(epsilon, t).dup()
                        : Nd4j.zeros(given.dataType(), rows, w.size(1));
                if (next != null) {
                    stateGradient.addi(DenseDerivatives.gemm(next, false, rw, true));
                }
                INDArray current = activation.backprop(repeated(step(maskedPreActivation, t), repeats),
                        stateGradient).getFirst();
                if (mask != null) {
                    current.muliColumnVector(repeated(mask.getColumn(t, true), repeats));
                }
                if (injection != null) {
                    current.addi(step(injection, t));
                }
                step(delta, t).assign(current);
                next = current;
            }
            return delta;
        }
    }

    /** @return per-sequence values {@code [N, k]} repeated for the V rows of each sequence, {@code [N·V, k]} (a copy) */
    private static INDArray repeated(INDArray values, long repeats) {
        long n = values.size(0);
        long k = values.size(1);
        return values.reshape('c', n, 1, k).broadcast(n, repeats, k).dup('c').reshape('c', n * repeats, k);
    }

    /**
     * {@inheritDoc} Here {@code outputGradient} is {@code ε = ∂L/∂h} of the mean loss, in the layer's
     * output layout.
     */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        INDArray epsilon = channelsFirst(layer, outputGradient);
        Forward f = new Forward(layer, channelsFirst(layer, input).castTo(epsilon.dataType()).dup('c'));
        INDArray delta = f.backward(epsilon);
        long[] bShape = layer.getParam(SimpleRnnParamInitializer.BIAS_KEY).shape();
        return new OuterProductTerms()
                .inputMajorWeight(SimpleRnnParamInitializer.WEIGHT_KEY, delta, f.x, UnaryOperator.identity())
                .inputMajorWeight(SimpleRnnParamInitializer.RECURRENT_WEIGHT_KEY, delta, f.previousOutput,
                        UnaryOperator.identity())
                .bias(SimpleRnnParamInitializer.BIAS_KEY, delta, g -> g.reshape('c', g.rank() == 1 ? bShape
                        : UnfoldedConvolutionDerivatives.withBatchAxis(g.size(0), bShape)));
    }

    /** @return the layer's replayed forward pass in the data type of the columns, computed once per pass */
    private static Forward forward(RecordedLayer record, DataType type) {
        return record.cachedValue("simpleRnnForward" + type, () -> new Forward(record.layer(),
                channelsFirst(record.layer(), record.input()).castTo(type).dup('c')));
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return true;
    }

    /**
     * {@inheritDoc} The Hessian needs the activation's second derivative and 0/1 masks (for mask weights
     * between 0 and 1 DL4J's backward step is not the derivative of its forward step, so there is no
     * Hessian of what it computes).
     */
    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return hessian ? ElementwiseActivations.unsupported(conf(layer).getActivationFn(), true) : null;
    }

    /** {@inheritDoc} Always: the recurrent weights multiply a state that depends on them. */
    @Override
    public boolean hasInternalResidual(Layer layer) {
        return true;
    }

    /**
     * {@inheritDoc} With {@code λ_t = m_t (ε_t + δ_{t+1} RWᵀ)} the gradient at the activation's output
     * {@code a_t = act(z_t)} and {@code δ_t} at {@code z_t}: the activation's residual
     * {@code r_t = λ_t ⊙ act''(z_t)}, one unit column per unit and step, in a part per sign, each column
     * entering at {@code z_t} and going back through the earlier steps (to the parameters and the input);
     * and the product {@code h_{t−1} RW}, whose factor {@code h_{t−1}} depends on {@code RW}: it adds
     * {@code 2 Σ_t δ_t,i ∂h_{t−1,j}/∂RW_ji} to the diagonal of {@code RW_ji} alone, with
     * {@code ∂h_{u,j}/∂RW_ji = Σ_{s≤u} (∂h_{u,j}/∂z_{s,i}) h_{s−1,j}} from the unit vector {@code e_j}
     * at state {@code h_u} back-propagated through time (one column per unit and step).
     */
    @Override
    public java.util.List<InternalResidualPart> internalResidual(RecordedLayer record) {
        Layer layer = record.layer();
        DataType type = record.outputGradient().dataType();
        Forward f = forward(record, type);
        INDArray epsilon = channelsFirst(layer, record.outputGradient()).castTo(type).dup('c');
        INDArray delta = f.backward(epsilon);
        long n = epsilon.size(0);
        long units = epsilon.size(1);
        long length = epsilon.size(2);
        // λ_t = m_t (ε_t + δ_{t+1} RWᵀ)
        INDArray following = Nd4j.zeros(type, n, units, length);
        if (length > 1) {
            following.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(0, length - 1))
                    .assign(delta.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(1, length)));
        }
        INDArray byStep = following.permute(0, 2, 1).dup('c').reshape('c', n * length, units);
        INDArray stateGradient = DenseDerivatives.gemm(byStep, false, f.rw, true).reshape('c', n, length, units)
                .permute(0, 2, 1).addi(epsilon);
        INDArray residual = ElementwiseActivations.secondDerivative(f.activation, f.maskedPreActivation)
                .muli(stateGradient);
        if (f.mask != null) {
            residual.muli(f.mask.reshape('c', n, 1, length).broadcast(n, units, length));
        }
        java.util.List<InternalResidualPart> parts = new java.util.ArrayList<>();
        if (!ElementwiseActivations.isPiecewiseLinear(f.activation)) {
            for (double sign : new double[] {1.0, -1.0}) {
                INDArray root = Transforms.sqrt(Transforms.relu(residual.mul(sign), false), false)
                        .reshape('c', n, units * length);
                parts.add(new ActivationResidual(record, f, root, sign));
            }
        }
        parts.add(new RecurrentWeightProduct(eps -> f.backward(eps, null), delta, f.previousOutput,
                SimpleRnnParamInitializer.RECURRENT_WEIGHT_KEY, units));
        return parts;
    }

    /** One sign of the activations' residual: unit columns at the pre-activations, back through time. */
    private static final class ActivationResidual extends SignedColumnsPart {
        private final RecordedLayer record;
        private final Forward f;

        ActivationResidual(RecordedLayer record, Forward f, INDArray root, double sign) {
            super(sign, root);
            this.record = record;
            this.f = f;
        }

        @Override
        public INDArray push(long from, long to, CurvatureSink sink) {
            long n = values.size(0);
            long v = to - from;
            INDArray injection = unitColumns(from, to).reshape('c', n * v, f.w.size(1), f.x.size(2));
            INDArray delta = f.backward(null, injection);
            if (sink != null) {
                accumulateColumns(record, f, delta.reshape('c', n, v, delta.size(1), delta.size(2)), sign, sink);
            }
            return atInput(record, f, delta);
        }
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return "Kronecker factors of SimpleRnn are not implemented yet";
    }

    /** {@inheritDoc} Each column goes back through time as an output gradient does: {@code Σ_t W δ_t}. */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        Forward f = forward(record, factor.dataType());
        INDArray delta = record.sharedForColumns(factor, () -> f.backward(channelsFirst(record.layer(), factor)));
        return atInput(record, f, delta);
    }

    /** @return columns back-propagated through time, {@code δ [R, nOut, T]}, at the layer input: {@code Σ_t W δ_t} */
    private static INDArray atInput(RecordedLayer record, Forward f, INDArray delta) {
        long rows = delta.size(0);
        long length = delta.size(2);
        INDArray byStep = delta.permute(0, 2, 1).dup('c').reshape('c', rows * length, delta.size(1));
        INDArray in = DenseDerivatives.gemm(byStep, false, f.w, true).reshape('c', rows, length, f.x.size(1));
        return conf(record.layer()).getRnnDataFormat() == RNNFormat.NWC ? in : in.permute(0, 2, 1).dup('c');
    }

    @Override
    public long scratchFeatures(RecordedLayer record) {
        long units = record.layer().getParam(SimpleRnnParamInitializer.RECURRENT_WEIGHT_KEY).size(0);
        return 2 * (3 * record.outputFeatures() + 4 * units + record.inputFeatures());
    }

    /**
     * {@inheritDoc} The columns entering inside the layer, their back-propagation through time (about eight
     * step-sized temporaries per step) and the states' sensitivities of the recurrent product.
     */
    @Override
    public long internalResidualScratchFeatures(RecordedLayer record) {
        return 12 * record.outputFeatures() + 2 * record.inputFeatures();
    }

    /**
     * {@inheritDoc} Column {@code s_nv} back-propagated through time gives {@code δ_nvt}; its parameter
     * Jacobian-transpose products are {@code Σ_t x_nt δ_nvtᵀ}, {@code Σ_t y_n,t−1 δ_nvtᵀ} and {@code Σ_t δ_nvt}.
     */
    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        long n = factor.size(0);
        long v = factor.size(1);
        Forward f = forward(record, factor.dataType());
        INDArray folded = factor.reshape('c', n * v, factor.size(2), factor.size(3));
        INDArray delta = record.sharedForColumns(folded, () -> f.backward(channelsFirst(record.layer(), folded)));
        accumulateColumns(record, f, delta.reshape('c', n, v, delta.size(1), delta.size(2)), sign, sink);
    }

    /** Adds {@code sign · Σ_v (J_θᵀ s_nv)²} of columns already back-propagated through time, {@code [N, V, H, T]}. */
    private static void accumulateColumns(RecordedLayer record, Forward f, INDArray columns, double sign,
                                          CurvatureSink sink) {
        long n = columns.size(0);
        boolean perExample = sink.perExample();
        long[] bShape = record.layer().getParam(SimpleRnnParamInitializer.BIAS_KEY).shape();
        sink.add(SimpleRnnParamInitializer.WEIGHT_KEY, toParameterLayout(
                OuterProductTerms.squaredColumnGradients(columns, f.x, perExample), f.w.shape()).muli(sign));
        sink.add(SimpleRnnParamInitializer.RECURRENT_WEIGHT_KEY, toParameterLayout(
                OuterProductTerms.squaredColumnGradients(columns, f.previousOutput, perExample), f.rw.shape())
                .muli(sign));
        INDArray bias = OuterProductTerms.squaredColumnSums(columns, perExample);
        sink.add(SimpleRnnParamInitializer.BIAS_KEY, bias.reshape('c', perExample
                ? UnfoldedConvolutionDerivatives.withBatchAxis(n, bShape) : bShape).muli(sign));
    }

    /** @return the matrix-layout gradients {@code [O, K]} or {@code [n, O, K]} transposed to {@code [K, O]} */
    private static INDArray toParameterLayout(INDArray matrices, long[] shape) {
        if (matrices.rank() == 2) {
            return matrices.transpose().dup('c').reshape('c', shape);
        }
        return matrices.permute(0, 2, 1).dup('c')
                .reshape('c', UnfoldedConvolutionDerivatives.withBatchAxis(matrices.size(0), shape));
    }

}
