// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.layers.AbstractLSTM;
import org.deeplearning4j.nn.layers.recurrent.GravesLSTM;
import org.deeplearning4j.nn.layers.recurrent.FwdPassReturn;
import org.deeplearning4j.nn.layers.recurrent.LSTM;
import org.deeplearning4j.nn.layers.recurrent.LSTMHelpers;
import org.deeplearning4j.nn.conf.CacheMode;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationRReLU;
import org.nd4j.linalg.activations.impl.ActivationSigmoid;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * DL4J's recurrent {@code LSTM} and {@code GravesLSTM} (peephole connections), per sequence. With the
 * input {@code x_t [nIn]}, the previous output {@code h_{t-1}} and cell {@code c_{t-1}} (zero at the first
 * step: DL4J's backward pass starts from a zero state, whatever {@code rnnTimeStep} stored), the
 * activation {@code φ} ({@code getActivationFn()}, tanh by default) and the gate activation {@code σ}
 * ({@code getGateActivationFn()}), DL4J computes per step, in the column order of its {@code 4n} block
 * {@code [i, f, o, g]}:
 *
 * <pre>
 *   a_t = x_t W + h_{t-1} RW[:, 0:4n] + b
 *   i = φ(a_i)                      block input
 *   f = σ(a_f + c_{t-1} ⊙ p_f)      forget gate
 *   g = σ(a_g + c_{t-1} ⊙ p_g)      input gate ("input modulation gate")
 *   c̃ = f ⊙ c_{t-1} + g ⊙ i
 *   o = σ(a_o + c̃ ⊙ p_o)            output gate
 *   h_t = m_t o ⊙ φ(c̃),  c_t = m_t c̃
 * </pre>
 *
 * where the peephole weights {@code p_f, p_o, p_g} are GravesLSTM's last three columns of {@code RW}
 * ({@code [n, 4n+3]}, in that order) and absent (zero) for LSTM, and {@code m_t} is the layer's own mask
 * ({@code [N, T]}, 1 when absent): a masked step outputs zero and resets the state. A MultiLayerNetwork or
 * ComputationGraph never hands its features mask to the layer (the layer's {@code feedForwardMaskArray}
 * passes it on without keeping it), so in a network masked steps run like real ones and only the output
 * layer's mask removes them; the layer has a mask only when it is set on the layer itself.
 *
 * <p>The gradients are DL4J's backward pass, replayed per sequence and vectorised over the batch:
 * back-propagation through time of the gate pre-activation gradients {@code δ_t [4n]}, then
 * {@code g_n(W) = Σ_t x_t δ_tᵀ}, {@code g_n(RW[:, 0:4n]) = Σ_t h_{t-1} δ_tᵀ}, {@code g_n(b) = Σ_t δ_t} (an
 * {@link OuterProductTerms} over the T steps) and, for GravesLSTM, the peephole columns
 * {@code Σ_t δ_f ⊙ c_{t-1}}, {@code Σ_t δ_o ⊙ c_t}, {@code Σ_t δ_g ⊙ c_{t-1}}. With a layer mask, DL4J's
 * backward pass is not exactly the derivative of its masked forward pass, and the replay follows DL4J,
 * not the derivative: it uses the unmasked recurrence's derivatives at the masked state values (the
 * cell's {@code φ'} at the masked {@code c_t}); LSTM does not mask {@code δ_t} (so a masked step that
 * precedes real steps contributes to the gradients) while GravesLSTM does (its cell-state gradient still
 * flows back through masked steps). Both agree with the derivative when only steps after the last real
 * step are masked and they carry no output gradient. An LSTM with sigmoid gates (DL4J's default) and no mask,
 * dropout or weight noise is not replayed: its forward pass is shared with DL4J's step and its gate gradients
 * are read from what the step leaves in it ({@code GateGradientsOfStep}), about a dozen operations over all
 * steps at once.
 *
 * <p>Costs: the replay stores the gate values of every step, {@code O(N·T·n)}; the outer-product terms
 * cost what {@link OuterProductTerms} says, and GravesLSTM's peephole columns {@code N·3n} more.
 *
 * <p>Second order (the generalised Gauss-Newton diagonals, docs/math.md#sequences): every factor column at
 * the layer output is back-propagated through time as the output gradient is, with the forward values of
 * its sequence (replayed once per pass); its gate gradients give the column's parameter Jacobian-transpose
 * products by the gradient formulas above and, times {@code W}, the column at the layer input. Cost per chunk
 * of V columns: one backward replay of N·V rows, shared by the curvature and the input columns, and
 * {@code O(N·V·T·n)} scratch. The Hessian adds the residual inside the cell ({@link #internalResidual}, for a
 * layer without a mask): {@code 17·n·T} columns per sequence ({@code 18·n·T} with peepholes), each a
 * back-propagation through time, about {@code n·T} times the generalised Gauss-Newton diagonal's cost per output
 * column. Kronecker factors are not supported.
 */
public final class LstmDerivatives implements LayerDerivatives {

    /** DL4J's name of the input weight {@code [nIn, 4n]}. */
    public static final String W = "W";
    /** DL4J's name of the recurrent weight {@code [n, 4n]} ({@code [n, 4n+3]} with peepholes). */
    public static final String RW = "RW";
    /** DL4J's name of the bias ({@code 4n} values). */
    public static final String B = "b";

    @Override
    public String kindName() {
        return "LSTM";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == LSTM.class || layer.getClass() == GravesLSTM.class;
    }

    private static AbstractLSTM conf(Layer layer) {
        return (AbstractLSTM) layer.conf().getLayer();
    }

    private static boolean hasPeepholes(Layer layer) {
        return layer.getClass() == GravesLSTM.class;
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        AbstractLSTM conf = conf(layer);
        if (conf.getWeightNoise() != null) {
            return "weight noise (" + conf.getWeightNoise().getClass().getSimpleName() + ") is not supported";
        }
        if (conf.getActivationFn() instanceof ActivationRReLU || conf.getGateActivationFn() instanceof ActivationRReLU) {
            return "the randomised activation RReLU in a recurrent layer is not supported (its training-mode "
                    + "slopes cannot be replayed)";
        }
        if (layer instanceof LSTM && ((LSTM) layer).getHelper() != null) {
            return "the LSTM layer uses DL4J's " + ((LSTM) layer).getHelper().getClass().getSimpleName()
                    + " (cuDNN), whose backward pass dl4j-backpack has not verified";
        }
        if (layer instanceof LSTM && conf.getRnnDataFormat() == RNNFormat.NWC && conf.getIDropout() != null) {
            return "input dropout on an LSTM layer in NWC format is not supported (DL4J's backward pass of such "
                    + "a layer recomputes its forward pass without the dropout)";
        }
        return null;
    }

    @Override
    public boolean supportsSequences(Layer layer) {
        return true;
    }

    @Override
    public boolean hasParameters() {
        return true;
    }

    /** {@inheritDoc} The Hessian needs activations that have second derivatives. */
    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        if (!hessian) {
            return null;
        }
        String activation = ElementwiseActivations.unsupported(conf(layer).getActivationFn(), true);
        return activation != null ? activation : ElementwiseActivations.unsupported(conf(layer).getGateActivationFn(),
                true);
    }

    /**
     * {@inheritDoc} DL4J's backward step of an LSTM or GravesLSTM that sees a mask is not the derivative of its
     * masked forward step (see the class comment), so there is no Hessian of what it computes.
     */
    @Override
    public String maskedHessianUnsupported(Layer layer) {
        return "DL4J's backward step of an " + layer.getClass().getSimpleName() + " that sees a mask (set by the "
                + "wrapper) is not the derivative of its masked forward step, so the Hessian is computed for layers "
                + "without one (a network does not hand its feature mask to an LSTM layer); the generalised "
                + "Gauss-Newton extensions are supported";
    }

    /** {@inheritDoc} The activations and products inside the cell, the recurrent and peephole weights. */
    @Override
    public boolean hasInternalResidual(Layer layer) {
        return true;
    }

    /**
     * {@inheritDoc} With {@code dh_t} and {@code dc_t} the gradients of the mean loss at the output and the cell
     * of step t (after everything that follows), each nonlinear map inside the cell weighted with the gradient
     * at its result (docs/math.md#hessian-through-recurrent-layers): the diagonal residuals of the activations
     * at the gate pre-activations, {@code dc ⊙ g ⊙ φ''(z_i)}, {@code dc ⊙ c_{t−1} ⊙ σ''(z_f)},
     * {@code dh ⊙ φ(c̃) ⊙ σ''(z_o)}, {@code dc ⊙ i ⊙ σ''(z_g)}, and at the cell, {@code dh ⊙ o ⊙ φ''(c̃)}; the
     * products {@code f ⊙ c_{t−1}} and {@code g ⊙ i} (weight {@code dc}) and {@code o ⊙ φ(c̃)} (weight
     * {@code dh}), whose residual {@code λ (e_a e_bᵀ + e_b e_aᵀ)} per unit is
     * {@code |λ|/2 [(e_a + s e_b)(e_a + s e_b)ᵀ − (e_a − s e_b)(e_a − s e_b)ᵀ]} with {@code s = sign(λ)}; every
     * column enters where its nodes are (a gate's value through the gate's derivative, {@code φ(c̃)} through
     * {@code φ'(c̃)}) and goes back through the earlier steps. Then the recurrent weights' product with the
     * state ({@link RecurrentWeightProduct}).
     */
    @Override
    public java.util.List<InternalResidualPart> internalResidual(RecordedLayer record) {
        Layer layer = record.layer();
        DataType type = record.outputGradient().dataType();
        Forward f = forward(record, type);
        if (f.mask != null) {
            throw new IllegalStateException("the Hessian residual of " + layer.getClass().getSimpleName()
                    + " with a mask is not supported");
        }
        INDArray epsilon = channelsFirst(layer, record.outputGradient()).castTo(type).dup('c');
        Backward first = new Backward(f, epsilon, null, null, 1, true);
        long n = epsilon.size(0);
        long h = f.units;
        int length = f.steps.length;
        INDArray z = Nd4j.create(type, n, 4 * h, length);
        INDArray a = Nd4j.create(type, n, 4 * h, length);
        INDArray cell = Nd4j.create(type, n, h, length);
        INDArray previousCell = Nd4j.create(type, n, h, length);
        INDArray cellActivation = Nd4j.create(type, n, h, length);
        for (int t = 0; t < length; t++) {
            Step step = f.steps[t];
            z.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)).assign(step.z);
            a.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)).assign(step.a);
            cell.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)).assign(step.cell);
            previousCell.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)).assign(step.previousCell);
            cellActivation.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)).assign(step.cellActivation);
        }
        INDArray dh = first.outputGradients.permute(1, 2, 0).dup('c');
        INDArray dc = first.cellGradients.permute(1, 2, 0).dup('c');
        INDArray firstDerivative = z.ulike();
        INDArray secondDerivative = z.ulike();
        for (int k = 0; k < 4; k++) {
            IActivation function = k == 0 ? f.activation : f.gate;
            INDArray pre = gates(z, k, h).dup('c');
            gates(firstDerivative, k, h).assign(ElementwiseActivations.firstDerivative(function, pre));
            gates(secondDerivative, k, h).assign(ElementwiseActivations.secondDerivative(function, pre));
        }
        INDArray cellDerivative = ElementwiseActivations.firstDerivative(f.activation, cell);
        // the activations' diagonal residuals: [gates (4n); cell (n)] per step
        INDArray diagonal = Nd4j.create(type, n, 5 * h, length);
        gates(diagonal, 0, h).assign(dc.mul(gates(a, 3, h)).muli(gates(secondDerivative, 0, h)));
        gates(diagonal, 1, h).assign(dc.mul(previousCell).muli(gates(secondDerivative, 1, h)));
        gates(diagonal, 2, h).assign(dh.mul(cellActivation).muli(gates(secondDerivative, 2, h)));
        gates(diagonal, 3, h).assign(dc.mul(gates(a, 0, h)).muli(gates(secondDerivative, 3, h)));
        gates(diagonal, 4, h).assign(dh.mul(gates(a, 2, h))
                .muli(ElementwiseActivations.secondDerivative(f.activation, cell)));
        // the products' weights [f ⊙ c_{t−1}; g ⊙ i; o ⊙ φ(c̃)] (c_{−1} = 0 is a constant)
        INDArray weights = Nd4j.concat(1, dc.dup('c'), dc, dh);
        weights.get(NDArrayIndex.all(), NDArrayIndex.interval(0, h), NDArrayIndex.point(0)).assign(0.0);
        INDArray halfRoot = Transforms.sqrt(Transforms.abs(weights, true).muli(0.5), false);
        INDArray weightSign = Transforms.sign(weights, true);
        // each product's first node, a gate value, enters at its pre-activation
        INDArray towardA = Nd4j.concat(1, gates(firstDerivative, 1, h), gates(firstDerivative, 3, h),
                gates(firstDerivative, 2, h));
        // its second node: c_{t−1} (as it is), i through φ'(z_i), φ(c̃) through φ'(c̃)
        INDArray towardB = Nd4j.concat(1, Nd4j.onesLike(dc), gates(firstDerivative, 0, h), cellDerivative);
        // λ (u vᵀ + v uᵀ) with u = α e_a, v = β e_b is split with both nodes' values rescaled to the same size,
        // u' = √|αβ| sign(α) e_a and v' = √|αβ| sign(β) e_b, so that the two signs' squares cancel little
        INDArray balanced = Transforms.sqrt(Transforms.abs(towardA.mul(towardB), false), false).muli(halfRoot);
        INDArray atA = balanced.mul(Transforms.sign(towardA, true));
        INDArray atB = balanced.muli(Transforms.sign(towardB, true)).muli(weightSign);
        long[][] targets = residualTargets(h, length);
        java.util.List<InternalResidualPart> parts = new java.util.ArrayList<>();
        for (double sign : new double[] {1.0, -1.0}) {
            INDArray coefficientA = Nd4j.concat(1, Transforms.sqrt(Transforms.relu(diagonal.mul(sign), false), false),
                    atA);
            INDArray coefficientB = Nd4j.concat(1, Nd4j.zeros(type, n, 5 * h, length), atB.mul(sign));
            parts.add(new CellResidual(record, f, coefficientA.reshape('c', n, 8 * h * length),
                    coefficientB.reshape('c', n, 8 * h * length), targets, sign));
        }
        long recurrentColumns = layer.getParam(RW).size(1);
        parts.add(new RecurrentWeightProduct(eps -> new Backward(f, eps, eps.size(0) / n).delta,
                first.delta.dup('c'), f.previousOutputs.dup('c'), RW, recurrentColumns));
        if (f.peephole) {
            parts.add(new PeepholeProduct(f, first.delta.dup('c')));
        }
        return parts;
    }

    /** @return block k ({@code [i, f, o, g]}, then the cell) of {@code [N, ·, T]} values of n units each, a view */
    private static INDArray gates(INDArray values, int k, long units) {
        return values.get(NDArrayIndex.all(), NDArrayIndex.interval(k * units, (k + 1) * units), NDArrayIndex.all());
    }

    /**
     * @param units n
     * @param length T
     * @return for each column of the cell's residual (feature {@code q·T + t} of {@code [8n, T]}: the diagonal at
     *     the gates and the cell, then the products {@code f ⊙ c_{t−1}}, {@code g ⊙ i}, {@code o ⊙ φ(c̃)}), where
     *     its two nodes enter, as indices {@code r·T + s} of the gradients entering {@code [gates (4n); cell (n)]}
     *     at step s (−1: no second node)
     */
    private static long[][] residualTargets(long units, long length) {
        long[][] targets = new long[2][(int) (8 * units * length)];
        for (long q = 0; q < 8 * units; q++) {
            for (long t = 0; t < length; t++) {
                int feature = (int) (q * length + t);
                long k = q % units;
                long a;
                long b = -1;
                if (q < 5 * units) {
                    a = q * length + t;
                } else if (q < 6 * units) {
                    a = (units + k) * length + t;                                   // f
                    b = t > 0 ? (4 * units + k) * length + t - 1 : -1;              // c_{t−1}
                } else if (q < 7 * units) {
                    a = (3 * units + k) * length + t;                               // g
                    b = k * length + t;                                             // i
                } else {
                    a = (2 * units + k) * length + t;                               // o
                    b = (4 * units + k) * length + t;                               // φ(c̃) at the cell
                }
                targets[0][feature] = a;
                targets[1][feature] = b;
            }
        }
        return targets;
    }

    /**
     * GravesLSTM's peephole weights multiply a cell state that depends on them ({@code z_f ∋ c_{t−1} ⊙ p_f},
     * {@code z_g ∋ c_{t−1} ⊙ p_g}, {@code z_o ∋ c̃_t ⊙ p_o}): as for the recurrent weights
     * ({@link RecurrentWeightProduct}), {@code 2 Σ_t δ_{f,t,k} ∂c_{t−1,k}/∂p_{f,k}} on the diagonal of
     * {@code p_{f,k}} alone (likewise {@code p_g}, and {@code p_o} with {@code c̃_t}), with
     * {@code ∂c̃_{u,k}/∂p_{f,k} = Σ_s δ^{(u,k)}_{f,s,k} c_{s−1,k}} from the unit vector at the cell {@code c̃_u}
     * back-propagated through time: the peephole gradient of that column, read at unit k. Column {@code (k, u)}
     * is feature {@code k·T + u}; the values are gathered outside the scratch memory and added at the end.
     */
    private static final class PeepholeProduct implements InternalResidualPart {
        private final Forward f;
        private final INDArray delta;
        private INDArray gathered;

        /** @param delta {@code δ} of the mean loss, {@code [N, 4n, T]} */
        PeepholeProduct(Forward f, INDArray delta) {
            this.f = f;
            this.delta = delta;
        }

        @Override
        public double sign() {
            return 1.0;
        }

        @Override
        public long columns() {
            return f.units * f.steps.length;
        }

        @Override
        public INDArray push(long from, long to, CurvatureSink sink) {
            if (sink == null) {
                return null;
            }
            DataType type = delta.dataType();
            long n = delta.size(0);
            long units = f.units;
            long length = f.steps.length;
            long v = to - from;
            INDArray unitOf = Nd4j.zeros(type, v, units);
            INDArray unitCells = Nd4j.zeros(type, v, units * length);
            // per column, the weights of the peephole products (f and g: δ at the next step; o: at the same step)
            INDArray weights = Nd4j.zeros(type, n, v, 3);
            for (int c = 0; c < v; c++) {
                long feature = from + c;
                long k = feature / length;
                long u = feature % length;
                unitOf.putScalar(c, k, 1.0);
                unitCells.putScalar(c, feature, 1.0);
                weights.get(NDArrayIndex.all(), NDArrayIndex.point(c), NDArrayIndex.point(1))
                        .assign(delta.get(NDArrayIndex.all(), NDArrayIndex.point(2 * units + k), NDArrayIndex.point(u)));
                if (u + 1 < length) {
                    weights.get(NDArrayIndex.all(), NDArrayIndex.point(c), NDArrayIndex.point(0)).assign(delta.get(
                            NDArrayIndex.all(), NDArrayIndex.point(units + k), NDArrayIndex.point(u + 1)));
                    weights.get(NDArrayIndex.all(), NDArrayIndex.point(c), NDArrayIndex.point(2)).assign(delta.get(
                            NDArrayIndex.all(), NDArrayIndex.point(3 * units + k), NDArrayIndex.point(u + 1)));
                }
            }
            INDArray cells = unitCells.reshape('c', 1, v * units * length).broadcast(n, v * units * length)
                    .reshape('c', n * v, units, length);
            Backward b = new Backward(f, null, null, cells, v, false);
            // the column's peephole gradients at its own unit, [N, V, 3] (columns f, o, g)
            INDArray own = b.peepholes.reshape('c', n, v, units, 3)
                    .mul(unitOf.reshape('c', 1, v, units, 1).broadcast(n, v, units, 3)).sum(2);
            INDArray weighted = own.muli(weights).muli(2.0);
            // gathered per unit: [N, n, 3]
            INDArray perUnit = DenseDerivatives.gemm(unitOf, true,
                    weighted.permute(1, 0, 2).dup('c').reshape('c', v, n * 3), false)
                    .reshape('c', units, n, 3).permute(1, 0, 2);
            try (org.nd4j.linalg.api.memory.MemoryWorkspace ignored =
                         Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                if (gathered == null) {
                    gathered = Nd4j.zeros(type, n, units, 3);
                }
                gathered.addi(perUnit);
            }
            return null;
        }

        @Override
        public void finish(CurvatureSink sink) {
            if (gathered == null) {
                return;
            }
            long n = gathered.size(0);
            long units = f.units;
            INDArray full = Nd4j.zeros(gathered.dataType(), n, units, 4 * units + 3);
            full.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(4 * units, 4 * units + 3))
                    .assign(gathered);
            sink.add(RW, sink.perExample() ? full : full.sum(0));
            gathered = null;
        }
    }

    /** One sign of the residual inside the cell: columns entering at the gates and cells, back through time. */
    private static final class CellResidual extends SignedColumnsPart {
        private final RecordedLayer record;
        private final Forward f;
        private final INDArray coefficientB;
        private final long[][] targets;

        /**
         * @param coefficientA per example and column, the value at its first node {@code [N, 8n·T]}
         * @param coefficientB per example and column, the value at its second node {@code [N, 8n·T]}
         */
        CellResidual(RecordedLayer record, Forward f, INDArray coefficientA, INDArray coefficientB, long[][] targets,
                     double sign) {
            super(sign, coefficientA);
            this.record = record;
            this.f = f;
            this.coefficientB = coefficientB;
            this.targets = targets;
        }

        @Override
        public INDArray push(long from, long to, CurvatureSink sink) {
            long n = values.size(0);
            long v = to - from;
            long units = f.units;
            long length = f.steps.length;
            long space = 5 * units * length;
            DataType type = values.dataType();
            // column c of example n: its coefficients at its nodes, zero elsewhere
            INDArray injection = Nd4j.zeros(type, n, v, space);
            for (int c = 0; c < v; c++) {
                int feature = (int) from + c;
                injection.get(NDArrayIndex.all(), NDArrayIndex.point(c), NDArrayIndex.point(targets[0][feature]))
                        .assign(values.get(NDArrayIndex.all(), NDArrayIndex.point(feature)));
                long b = targets[1][feature];
                if (b >= 0) {
                    injection.get(NDArrayIndex.all(), NDArrayIndex.point(c), NDArrayIndex.point(b))
                            .addi(coefficientB.get(NDArrayIndex.all(), NDArrayIndex.point(feature)));
                }
            }
            injection = injection.reshape('c', n * v, 5 * units, length);
            Backward b = new Backward(f, null,
                    injection.get(NDArrayIndex.all(), NDArrayIndex.interval(0, 4 * units), NDArrayIndex.all()),
                    injection.get(NDArrayIndex.all(), NDArrayIndex.interval(4 * units, 5 * units), NDArrayIndex.all()),
                    v, false);
            if (sink != null) {
                accumulateColumns(record, f, b, n, v, sign, sink);
            }
            return atInput(record, f, b.delta);
        }
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return "the Kronecker factors of recurrent layers (" + layer.getClass().getSimpleName()
                + ") are not implemented yet";
    }

    /** @return the layer's replayed forward pass in the data type of the columns, computed once per pass */
    private static Forward forward(RecordedLayer record, DataType type) {
        return record.cachedValue("lstmForward" + type, () -> new Forward(record.layer(),
                channelsFirst(record.layer(), record.input()).castTo(type).dup('c')));
    }

    private static boolean nwc(Layer layer) {
        return conf(layer).getRnnDataFormat() == RNNFormat.NWC;
    }

    /** @return an array in the layer's layout as {@code [·, C, T]} */
    private static INDArray channelsFirst(Layer layer, INDArray a) {
        return nwc(layer) ? a.permute(0, 2, 1) : a;
    }

    /** @return the back-propagation through time of columns {@code [R, n, T]} at the output, R = N·V */
    private static Backward columns(RecordedLayer record, INDArray factor) {
        // the curvature accumulation and the input product of the same columns share one replay
        return record.sharedForColumns(factor, () -> {
            Forward f = forward(record, factor.dataType());
            INDArray epsilon = channelsFirst(record.layer(), factor);
            return new Backward(f, epsilon, factor.size(0) / f.x.size(0));
        });
    }

    /**
     * {@inheritDoc} The columns go back through time as output gradients do: {@code J_xᵀ s = Σ_t W δ_t} of
     * their gate pre-activation gradients {@code δ_t} (DL4J's backward pass, for N·V rows; shared with
     * {@link #accumulateCurvature} of the same columns).
     */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        return atInput(record, forward(record, factor.dataType()), columns(record, factor).delta);
    }

    /** @return columns back-propagated through time, {@code δ [R, 4n, T]}, at the layer input: {@code Σ_t W δ_t} */
    private static INDArray atInput(RecordedLayer record, Forward f, INDArray delta) {
        long rows = delta.size(0);
        long length = delta.size(2);
        INDArray byStep = delta.permute(0, 2, 1).dup('c').reshape('c', rows * length, delta.size(1));
        INDArray in = DenseDerivatives.gemm(byStep, false, f.inputWeight, true).reshape('c', rows, length, f.x.size(1));
        return nwc(record.layer()) ? in : in.permute(0, 2, 1).dup('c');
    }

    @Override
    public long scratchFeatures(RecordedLayer record) {
        // the gate gradients of every step, the per-step values repeated for the columns, the input columns
        long units = record.layer().getParam(RW).size(0);
        long length = record.input().size(nwc(record.layer()) ? 1 : 2);
        return 2 * (4 * units * length + 12 * units + record.inputFeatures() + record.outputFeatures());
    }

    /**
     * {@inheritDoc} The gradients entering at the gates and cells ({@code 5n} per step), their back-propagation
     * through time (about twelve {@code n}-sized temporaries per step) and the states' sensitivities of the
     * recurrent product ({@code 4n} per step, kept with their products).
     */
    @Override
    public long internalResidualScratchFeatures(RecordedLayer record) {
        return 30 * record.outputFeatures() + 2 * record.inputFeatures();
    }

    /**
     * {@inheritDoc} Column {@code s_nv} back-propagated through time gives gate gradients {@code δ_nvt}, and
     * its parameter Jacobian-transpose products are the gradient formulas with them: {@code Σ_t x_nt δ_nvtᵀ},
     * {@code Σ_t h_n,t−1 δ_nvtᵀ}, {@code Σ_t δ_nvt} and the peephole sums; their squares are summed over v.
     */
    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        long n = factor.size(0);
        long v = factor.size(1);
        long[] folded = new long[] {n * v, factor.size(2), factor.size(3)};
        Backward b = columns(record, factor.reshape('c', folded));
        accumulateColumns(record, forward(record, factor.dataType()), b, n, v, sign, sink);
    }

    /** Adds {@code sign · Σ_v (J_θᵀ s_nv)²} of columns already back-propagated through time ({@code N·V} rows). */
    private static void accumulateColumns(RecordedLayer record, Forward f, Backward b, long n, long v, double sign,
                                          CurvatureSink sink) {
        INDArray delta = b.delta.dup('c').reshape('c', n, v, b.delta.size(1), b.delta.size(2));
        boolean perExample = sink.perExample();
        INDArray w = OuterProductTerms.squaredColumnGradients(delta, f.x, perExample);
        INDArray rw = OuterProductTerms.squaredColumnGradients(delta, f.previousOutputs.dup('c'), perExample);
        w = transposed(w);
        rw = transposed(rw);
        if (b.peepholes != null) {
            INDArray p = b.peepholes.reshape('c', n, v, f.units, 3);
            INDArray squares = p.mul(p).sum(1);
            rw = Nd4j.concat(perExample ? 2 : 1, rw, perExample ? squares : squares.sum(0)).dup('c');
        }
        INDArray bias = OuterProductTerms.squaredColumnSums(delta, perExample);
        long[] biasShape = record.layer().getParam(B).shape();
        sink.add(W, w.muli(sign));
        sink.add(RW, rw.muli(sign));
        sink.add(B, bias.reshape('c', perExample ? UnfoldedConvolutionDerivatives.withBatchAxis(n, biasShape)
                : biasShape).muli(sign));
    }

    /**
     * @param layer an LSTM or GravesLSTM layer, after DL4J's forward pass
     * @param input its input {@code [N, nIn, T]} ({@code [N, T, nIn]} in NWC format)
     * @param outputGradient {@code ∂L/∂h} of the mean loss at the layer output, shaped like the output
     * @return the per-sequence terms of {@code W}, {@code RW} and {@code b}
     */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        boolean nwc = conf(layer).getRnnDataFormat() == RNNFormat.NWC;
        DataType type = outputGradient.dataType();
        INDArray x = (nwc ? input.permute(0, 2, 1) : input).castTo(type);
        INDArray epsilon = nwc ? outputGradient.permute(0, 2, 1) : outputGradient;
        Forward forward = new Forward(layer, x);
        Backward replay = new Backward(forward, epsilon, 1);
        return terms(layer, forward.x, forward.previousOutputs, replay.delta, replay.peepholes);
    }

    /**
     * @param x the input {@code [N, nIn, T]}
     * @param previousOutputs {@code h_{t−1}} {@code [N, n, T]}
     * @param delta the gate pre-activation gradients {@code [N, 4n, T]}
     * @param peepholes GravesLSTM's per-sequence peephole gradients {@code [N, n, 3]}, or null
     * @return the per-sequence terms of the gradient
     */
    private static FirstOrderTerms terms(Layer layer, INDArray x, INDArray previousOutputs, INDArray delta,
                                         INDArray peepholes) {
        Map<String, long[]> shapes = new LinkedHashMap<>();
        layer.paramTable().forEach((name, value) -> shapes.put(name, value.shape()));
        OuterProductTerms terms = new OuterProductTerms()
                .inputMajorWeight(W, delta, x, UnaryOperator.identity())
                .inputMajorWeight(RW, delta, previousOutputs, UnaryOperator.identity())
                .bias(B, delta, g -> g.reshape('c', g.rank() == 1 ? shapes.get(B)
                        : UnfoldedConvolutionDerivatives.withBatchAxis(g.size(0), shapes.get(B))));
        return peepholes == null ? terms : new PeepholeTerms(terms, peepholes);
    }

    /**
     * {@inheritDoc} For an LSTM (NCW, without mask, input dropout, weight noise or platform helper): DL4J's own
     * forward pass for its backward step ({@code LSTMHelpers.activateHelper}, called as the layer calls it),
     * computed once, replayed backwards here first (DL4J's step changes some of its values in place), then handed
     * to the layer, which takes it instead of computing it again ({@code cachedFwdPass}): DL4J's step computes
     * exactly what it computes without the sharing, and neither forward pass is computed twice. With sigmoid gates
     * (DL4J's default) nothing is replayed: DL4J's step leaves the gradients of its recurrence in the forward
     * values it was handed, and the terms read them once the step is done ({@code GateGradientsOfStep}).
     */
    @Override
    public FirstOrderTerms firstOrderSharingForward(Layer layer, INDArray input, INDArray outputGradient,
                                                    org.deeplearning4j.nn.workspace.LayerWorkspaceMgr workspaceMgr) {
        if (!sharesForward(layer)) {
            return null;
        }
        LSTM lstm = (LSTM) layer;
        AbstractLSTM conf = conf(layer);
        FwdPassReturn fwd = LSTMHelpers.activateHelper(lstm, lstm.conf(), conf.getGateActivationFn(), lstm.input(),
                lstm.getParam(RW), lstm.getParam(W), lstm.getParam(B), true, null, null, true, true, W, null, false,
                null, CacheMode.NONE, workspaceMgr, conf.isHelperAllowFallback());
        FirstOrderTerms terms;
        try (org.nd4j.linalg.api.memory.MemoryWorkspace ignored =
                     ScratchWorkspace.borrow(ScratchWorkspace.SHARED_STEP)) {
            DataType type = outputGradient.dataType();
            INDArray x = lstm.input().castTo(type).dup('c');
            if (conf.getGateActivationFn() instanceof ActivationSigmoid) {
                GateGradientsOfStep gates = new GateGradientsOfStep(layer, fwd, type);
                double scale = 1.0 / outputGradient.size(0);
                terms = new AfterStepTerms(terms(layer, x, gates.previousOutputs, gates.delta, null),
                        () -> gates.complete(scale));
            } else {
                Forward forward = new Forward(layer, x, fwd);
                terms = terms(layer, x, forward.previousOutputs, new Backward(forward, outputGradient, 1).delta, null);
            }
        }
        LayerSettings.write(LSTM.class, layer, "cachedFwdPass", fwd);
        return terms;
    }

    /** {@inheritDoc} The forward pass handed to the layer is withdrawn if DL4J's step did not take it. */
    @Override
    public void afterSharedBackward(Layer layer) {
        if (layer instanceof LSTM) {
            LayerSettings.write(LSTM.class, layer, "cachedFwdPass", null);
        }
    }

    /**
     * The gate pre-activation gradients of the mean loss of an LSTM with sigmoid gates (no mask, no peepholes), read
     * from what DL4J's backward step ({@code backpropGradientHelper}) leaves in the forward values it is handed:
     * it multiplies in place each step's output gate by the gradient at the step's output,
     * {@code oa_t ← o_t ⊙ dh_t}, and each forget gate but the first by the gradient at its cell,
     * {@code fa_t ← f_t ⊙ dc_t}. Then, over every step at once, {@code dc_t = φ'(c_t) ⊙ (o_t ⊙ dh_t) +
     * f_{t+1} ⊙ dc_{t+1}} (no second term at the last step) and, with {@code σ' = σ(1 − σ)},
     * {@code δ_i = g ⊙ φ'(z_i) ⊙ dc_t}, {@code δ_f = σ'(f) ⊙ c_{t−1} ⊙ dc_t},
     * {@code δ_o = (1 − o) ⊙ φ(c_t) ⊙ (o ⊙ dh_t)}, {@code δ_g = σ'(g) ⊙ i ⊙ dc_t}: DL4J's gradients of the summed
     * loss, times {@code 1/N}, with no product and no step-by-step recurrence. The coefficients are formed
     * before DL4J's step, from the values it changes. Every array is stacked step-major ({@code [T, N, n]}, each
     * step's rows contiguous), so that each operation runs once over all steps on contiguous memory (ND4J's
     * operations on strided views are an order of magnitude slower).
     */
    private static final class GateGradientsOfStep {
        /** {@code h_{t−1}} {@code [N, n, T]}, zero at t = 0. */
        final INDArray previousOutputs;
        /** {@code δ} {@code [N, 4n, T]}, a view of {@link #deltaByStep}; filled by {@link #complete}. */
        final INDArray delta;
        private final INDArray deltaByStep;
        private final FwdPassReturn fwd;
        private final INDArray inputCoefficient;
        private final INDArray forgetCoefficient;
        private final INDArray outputCoefficient;
        private final INDArray modulationCoefficient;
        private final INDArray cellDerivative;

        /**
         * @param layer the LSTM layer
         * @param fwd DL4J's forward pass for the layer's backward step, before the step
         * @param type the data type to compute in
         */
        GateGradientsOfStep(Layer layer, FwdPassReturn fwd, DataType type) {
            this.fwd = fwd;
            IActivation activation = conf(layer).getActivationFn();
            int length = fwd.ia.length;
            long n = fwd.ia[0].size(0);
            long units = fwd.ia[0].size(1);
            INDArray i = stepMajor(fwd.ia, 0, length, type);
            INDArray f = stepMajor(fwd.fa, 0, length, type);
            INDArray g = stepMajor(fwd.ga, 0, length, type);
            INDArray cellActivations = stepMajor(fwd.memCellActivations, 0, length, type);
            // c_{t−1} and c_t as two overlapping ranges of one array, c_{−1} = 0
            INDArray cells = Nd4j.createUninitialized(type, length + 1, n, units);
            cells.slice(0).assign(0);
            fill(cells, 1, fwd.memCellState, 0, length);
            INDArray previousCells = cells.get(NDArrayIndex.interval(0, length), NDArrayIndex.all(), NDArrayIndex.all());
            INDArray currentCells = cells.get(NDArrayIndex.interval(1, length + 1), NDArrayIndex.all(),
                    NDArrayIndex.all());
            INDArray outputs = Nd4j.createUninitialized(type, length, n, units);
            outputs.slice(0).assign(0);
            fill(outputs, 1, fwd.fwdPassOutputAsArrays, 0, length - 1);
            previousOutputs = outputs.permute(1, 2, 0);
            // DL4J's step overwrites z_i with δ_i: read it now where φ' is not computed from φ
            INDArray inputPreActivations = activation instanceof org.nd4j.linalg.activations.impl.ActivationTanH ? null
                    : stepMajor(fwd.iz, 0, length, type);
            cellDerivative = derivative(activation, currentCells, cellActivations);
            inputCoefficient = derivative(activation, inputPreActivations, i).muli(g);
            forgetCoefficient = f.rsub(1.0).muli(f).muli(previousCells);
            outputCoefficient = stepMajor(fwd.oa, 0, length, type).rsubi(1.0).muli(cellActivations);
            modulationCoefficient = g.rsub(1.0).muli(g).muli(i);
            deltaByStep = Nd4j.createUninitialized(type, length, n, 4 * units);
            delta = deltaByStep.permute(1, 2, 0);
        }

        /**
         * Fills {@link #delta}, once DL4J's step is done.
         *
         * @param scale {@code 1/N}
         */
        void complete(double scale) {
            int length = (int) deltaByStep.size(0);
            long n = deltaByStep.size(1);
            long units = deltaByStep.size(2) / 4;
            DataType type = deltaByStep.dataType();
            INDArray gatedOutput = stepMajor(fwd.oa, 0, length, type).muli(scale);
            INDArray carried = Nd4j.createUninitialized(type, length, n, units);
            fill(carried, 0, fwd.fa, 1, length - 1);
            carried.slice(length - 1).assign(0);
            INDArray cellGradient = cellDerivative.muli(gatedOutput).addi(carried.muli(scale));
            INDArray rows = deltaByStep.reshape('c', (long) length * n, 4 * units);
            INDArray[] coefficients = {inputCoefficient, forgetCoefficient, outputCoefficient, modulationCoefficient};
            for (int k = 0; k < 4; k++) {
                INDArray factor = k == 2 ? gatedOutput : cellGradient;
                Nd4j.getExecutioner().exec(new org.nd4j.linalg.api.ops.impl.transforms.pairwise.arithmetic.MulOp(
                        coefficients[k].reshape('c', (long) length * n, units), factor.reshape('c', (long) length * n,
                        units), block(rows, k, 1, units)));
            }
        }

        /** @return {@code values[from … from+count−1]} ({@code [N, n]} each) stacked, {@code [count, N, n]} */
        private static INDArray stepMajor(INDArray[] values, int from, int count, DataType type) {
            INDArray out = Nd4j.createUninitialized(type, count, values[from].size(0), values[from].size(1));
            fill(out, 0, values, from, count);
            return out;
        }

        /**
         * Copies {@code values[from … from+count−1]} to steps {@code at …} of {@code out} ({@code slice}: the
         * cheapest view of one step).
         */
        private static void fill(INDArray out, int at, INDArray[] values, int from, int count) {
            for (int t = 0; t < count; t++) {
                out.slice(at + t).assign(values[from + t]);
            }
        }
    }

    /** @return whether DL4J's forward pass of the layer can be shared with its backward step as it is */
    private static boolean sharesForward(Layer layer) {
        AbstractLSTM conf = conf(layer);
        return layer.getClass() == LSTM.class && conf.getRnnDataFormat() != RNNFormat.NWC
                && conf.getIDropout() == null && conf.getWeightNoise() == null && layer.getMaskArray() == null
                && layer.input() != null && layer.input().rank() == 3
                && LayerSettings.read(LSTM.class, layer, "helper") == null
                && LayerSettings.read(LSTM.class, layer, "cachedFwdPass") == null;
    }

    /** @return {@code out} {@code [N, 4n]}, with the four gates' {@code [N, n]} values side by side (cheaper than hstack) */
    private static INDArray assignGates(INDArray out, INDArray i, INDArray f, INDArray o, INDArray g) {
        long units = i.size(1);
        INDArray[] gates = {i, f, o, g};
        for (int k = 0; k < 4; k++) {
            block(out, k, 1, units).assign(gates[k]);
        }
        return out;
    }

    /** @return {@code [O, K]} as {@code [K, O]}, or {@code [n, O, K]} as {@code [n, K, O]} */
    private static INDArray transposed(INDArray matrices) {
        return (matrices.rank() == 2 ? matrices.transpose() : matrices.permute(0, 2, 1)).dup('c');
    }

    /**
     * DL4J's forward pass of the layer ({@code activateHelper}), vectorised over the batch: every step's
     * gate values, as its backward pass uses them.
     */
    private static final class Forward {
        /** The input {@code [N, nIn, T]}. */
        final INDArray x;
        /** {@code h_{t-1} [N, n, T]}, zero at t = 0. */
        final INDArray previousOutputs;
        final Step[] steps;
        final IActivation activation;
        final IActivation gate;
        final boolean peephole;
        final INDArray inputWeight;
        final INDArray recurrentTranspose;
        final INDArray[] peepholeWeights = new INDArray[3];
        /** Every step's values stacked step-major when recorded so (DL4J's forward pass), else null. */
        private INDArray stackedZ;
        private INDArray stackedA;
        private INDArray stackedCells;
        private INDArray stackedCellActivations;
        /** The layer's mask {@code [N, T]}, or null. */
        final INDArray mask;
        final long units;

        /**
         * The values of DL4J's own forward pass of an LSTM for its backward step (no peepholes, no mask, gates
         * other than sigmoid: DL4J keeps every pre-activation), copied.
         *
         * @param layer the layer
         * @param x its input {@code [N, nIn, T]}, in the data type to compute in
         * @param fwd DL4J's forward pass ({@code forBackprop})
         */
        Forward(Layer layer, INDArray x, FwdPassReturn fwd) {
            DataType type = x.dataType();
            this.x = x;
            activation = conf(layer).getActivationFn();
            gate = conf(layer).getGateActivationFn();
            peephole = false;
            inputWeight = layer.getParam(W).castTo(type);
            INDArray recurrent = layer.getParam(RW).castTo(type);
            long n = x.size(0);
            units = recurrent.size(0);
            int length = (int) x.size(2);
            recurrentTranspose = recurrent.get(NDArrayIndex.all(), NDArrayIndex.interval(0, 4 * units)).transpose().dup();
            mask = null;
            steps = new Step[length];
            // copied once, into the step-major arrays the replay reads whole (rows t·N + n; the cells from row N,
            // after c_{-1} = 0), each step's values being views of them
            stackedZ = Nd4j.createUninitialized(type, length * n, 4 * units);
            stackedA = Nd4j.createUninitialized(type, length * n, 4 * units);
            stackedCells = Nd4j.createUninitialized(type, (length + 1) * n, units);
            stackedCellActivations = Nd4j.createUninitialized(type, length * n, units);
            rows(stackedCells, -1, n).assign(0);
            INDArray previousByStep = Nd4j.createUninitialized(type, length, n, units);
            previousByStep.get(NDArrayIndex.point(0), NDArrayIndex.all(), NDArrayIndex.all()).assign(0);
            for (int t = 0; t < length; t++) {
                Step step = new Step();
                step.z = assignGates(rows(stackedZ, t, n), fwd.iz[t], fwd.fz[t], fwd.oz[t], fwd.gz[t]);
                step.a = assignGates(rows(stackedA, t, n), fwd.ia[t], fwd.fa[t], fwd.oa[t], fwd.ga[t]);
                step.cell = rows(stackedCells, t, n).assign(fwd.memCellState[t]);
                step.previousCell = rows(stackedCells, t - 1, n);
                step.cellActivation = rows(stackedCellActivations, t, n).assign(fwd.memCellActivations[t]);
                if (t > 0) {
                    previousByStep.get(NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.all())
                            .assign(fwd.fwdPassOutputAsArrays[t - 1]);
                }
                steps[t] = step;
            }
            previousOutputs = previousByStep.permute(1, 2, 0);
        }

        /** @return the rows of step t of a step-major array ({@code t = −1}: the first N rows of the cells) */
        private INDArray rows(INDArray stacked, long t, long n) {
            long offset = stacked == stackedCells ? n : 0;
            return stacked.get(NDArrayIndex.interval(offset + t * n, offset + (t + 1) * n), NDArrayIndex.all());
        }

        /** @return every step's gate values {@code [T·N, 4n]} */
        INDArray stackedA() {
            return stackedA != null ? stackedA : stacked(steps, st -> st.a);
        }

        /** @return every step's gate pre-activations {@code [T·N, 4n]} */
        INDArray stackedZ() {
            return stackedZ != null ? stackedZ : stacked(steps, st -> st.z);
        }

        /** @return every step's cell {@code [T·N, n]} */
        INDArray stackedCells() {
            return stackedCells != null ? stackedCells.get(NDArrayIndex.interval(steps[0].a.size(0),
                    stackedCells.size(0)), NDArrayIndex.all()) : stacked(steps, st -> st.cell);
        }

        /** @return every step's previous cell {@code [T·N, n]} */
        INDArray stackedPreviousCells() {
            return stackedCells != null ? stackedCells.get(NDArrayIndex.interval(0,
                    stackedCells.size(0) - steps[0].a.size(0)), NDArrayIndex.all()) : stacked(steps, st -> st.previousCell);
        }

        /** @return every step's cell activation {@code [T·N, n]} */
        INDArray stackedCellActivations() {
            return stackedCellActivations != null ? stackedCellActivations : stacked(steps, st -> st.cellActivation);
        }

        Forward(Layer layer, INDArray x) {
            DataType type = x.dataType();
            this.x = x;
            activation = conf(layer).getActivationFn();
            gate = conf(layer).getGateActivationFn();
            peephole = hasPeepholes(layer);
            inputWeight = layer.getParam(W).castTo(type);
            INDArray recurrent = layer.getParam(RW).castTo(type);
            INDArray bias = layer.getParam(B).castTo(type).reshape(1, -1);
            long n = x.size(0);
            units = recurrent.size(0);
            int length = (int) x.size(2);
            INDArray recurrentGates = recurrent.get(NDArrayIndex.all(), NDArrayIndex.interval(0, 4 * units));
            recurrentTranspose = recurrentGates.transpose().dup();
            for (int k = 0; k < 3 && peephole; k++) {
                peepholeWeights[k] = recurrent.get(NDArrayIndex.all(), NDArrayIndex.point(4 * units + k)).reshape(1, units);
            }
            INDArray layerMask = layer.getMaskArray();
            if (layerMask != null && (layerMask.rank() != 2 || layerMask.size(0) != n || layerMask.size(1) != length)) {
                throw new IllegalStateException("a recurrent layer's mask must be [N, T] = [" + n + ", " + length
                        + "], got " + java.util.Arrays.toString(layerMask.shape()));
            }
            mask = layerMask == null ? null : layerMask.castTo(type);

            // the input's part of every step in one product, rows t·N + n
            INDArray inputPart = x.permute(2, 0, 1).dup('c').reshape('c', (long) length * n, x.size(1))
                    .mmul(inputWeight).addiRowVector(bias);
            steps = new Step[length];
            INDArray h = Nd4j.zeros(type, n, units);
            INDArray c = Nd4j.zeros(type, n, units);
            // stored step-major, [T, N, ·], so that each step's rows are contiguous
            INDArray previousByStep = Nd4j.zeros(type, length, n, units);
            for (int t = 0; t < length; t++) {
                previousByStep.get(NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.all()).assign(h);
                Step step = new Step();
                step.z = inputPart.get(NDArrayIndex.interval((long) t * n, (long) (t + 1) * n), NDArrayIndex.all())
                        .add(h.mmul(recurrentGates));
                step.previousCell = c;
                if (peephole) {
                    block(step.z, 1, 1, units).addi(c.mulRowVector(peepholeWeights[0]));
                    block(step.z, 3, 1, units).addi(c.mulRowVector(peepholeWeights[2]));
                }
                // the activations applied in place to blocks of a copy: φ on [i], σ on [f, o, g] (GravesLSTM:
                // σ on o once the cell is known)
                step.a = step.z.dup();
                activation.getActivation(block(step.a, 0, 1, units), true);
                if (peephole) {
                    gate.getActivation(block(step.a, 1, 1, units), true);
                    gate.getActivation(block(step.a, 3, 1, units), true);
                } else {
                    gate.getActivation(block(step.a, 1, 3, units), true);
                }
                INDArray cell = block(step.a, 1, 1, units).mul(c).addi(block(step.a, 3, 1, units)
                        .mul(block(step.a, 0, 1, units)));
                if (peephole) {
                    INDArray zo = block(step.z, 2, 1, units).addi(cell.mulRowVector(peepholeWeights[1]));
                    gate.getActivation(block(step.a, 2, 1, units).assign(zo), true);
                }
                step.cellActivation = activation.getActivation(cell.dup(), true);
                h = step.cellActivation.mul(block(step.a, 2, 1, units));
                if (mask != null) {
                    INDArray m = mask.getColumn(t, true);
                    h.muliColumnVector(m);
                    cell.muliColumnVector(m);
                }
                step.cell = cell;
                c = cell;
                steps[t] = step;
            }
            previousOutputs = previousByStep.permute(1, 2, 0);
        }
    }

    /**
     * DL4J's backward pass of the layer ({@code backpropGradientHelper}; LSTM passes no mask to it,
     * GravesLSTM its mask) for output gradients of {@code V} rows per sequence (row {@code n·V + v} of
     * sequence n: the factor columns of the curvature extensions; V = 1 for the gradient itself), vectorised
     * over the rows: the gate pre-activation gradients of every step.
     */
    private static final class Backward {
        /** {@code δ [N·V, 4n, T]}, in DL4J's gate order {@code [i, f, o, g]}. */
        final INDArray delta;
        /** GravesLSTM's peephole gradients per row {@code [N·V, n, 3]} (columns f, o, g), or null. */
        final INDArray peepholes;
        /** {@code dh_t}, the gradient at each step's output, {@code [T, N·V, n]}, when recorded, else null. */
        final INDArray outputGradients;
        /** {@code dc_t}, the gradient at each step's cell, {@code [T, N·V, n]}, when recorded, else null. */
        final INDArray cellGradients;

        Backward(Forward f, INDArray epsilon, long repeats) {
            this(f, epsilon, null, null, repeats, false);
        }

        /**
         * @param f the forward pass
         * @param epsilon gradients at the layer output {@code [N·V, n, T]}, or null (with injections)
         * @param gateInjection gradients entering at the gate pre-activations {@code [N·V, 4n, T]}, or null
         * @param cellInjection gradients entering at the cells {@code [N·V, n, T]}, or null
         * @param repeats V
         * @param record whether to keep {@code dh_t} and {@code dc_t}
         */
        Backward(Forward f, INDArray epsilon, INDArray gateInjection, INDArray cellInjection, long repeats,
                 boolean record) {
            INDArray given = epsilon != null ? epsilon : gateInjection != null ? gateInjection : cellInjection;
            DataType type = given.dataType();
            long rows = given.size(0);
            long units = f.units;
            int length = f.steps.length;
            IActivation activation = f.activation;
            IActivation gate = f.gate;
            boolean peephole = f.peephole;
            // every step's rows are assigned below
            INDArray deltaByStep = Nd4j.createUninitialized(type, length, rows, 4 * units);
            peepholes = peephole ? Nd4j.zeros(type, rows, units, 3) : null;
            outputGradients = record ? Nd4j.create(type, length, rows, units) : null;
            cellGradients = record ? Nd4j.create(type, length, rows, units) : null;
            if (!peephole) {
                withoutPeepholes(f, epsilon, gateInjection, cellInjection, repeats, deltaByStep, outputGradients,
                        cellGradients);
                delta = deltaByStep.permute(1, 2, 0);
                return;
            }
            INDArray nextDelta = null;
            INDArray nextCellGradient = null;
            INDArray nextForget = null;
            for (int t = length - 1; t >= 0; t--) {
                Step step = f.steps[t];
                INDArray z = repeated(step.z, repeats);
                INDArray a = repeated(step.a, repeats);
                INDArray cell = repeated(step.cell, repeats);
                INDArray previousCell = repeated(step.previousCell, repeats);
                INDArray entering = gateInjection == null ? null
                        : gateInjection.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t));
                INDArray outputGradient = epsilon != null
                        ? epsilon.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)).dup()
                        : Nd4j.zeros(type, rows, units);
                if (nextDelta != null) {
                    outputGradient.addi(nextDelta.mmul(f.recurrentTranspose));
                }
                // the output gate first: its pre-activation reads the cell through the peephole
                INDArray stepDelta = deltaByStep.get(NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.all());
                INDArray deltaO = gate.backprop(block(z, 2, 1, units).dup(),
                        outputGradient.mul(repeated(step.cellActivation, repeats))).getFirst();
                if (entering != null) {
                    deltaO.addi(block(entering, 2, 1, units));
                }
                INDArray cellGradient = activation.backprop(cell.dup(), block(a, 2, 1, units).mul(outputGradient))
                        .getFirst().dup();
                cellGradient.addi(deltaO.mulRowVector(f.peepholeWeights[1]));
                if (nextDelta != null) {
                    cellGradient.addi(block(nextDelta, 1, 1, units).mulRowVector(f.peepholeWeights[0]));
                    cellGradient.addi(block(nextDelta, 3, 1, units).mulRowVector(f.peepholeWeights[2]));
                }
                if (nextCellGradient != null) {
                    cellGradient.addi(nextForget.mul(nextCellGradient));
                }
                if (cellInjection != null) {
                    cellGradient.addi(cellInjection.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)));
                }
                block(stepDelta, 0, 1, units).assign(activation.backprop(block(z, 0, 1, units).dup(),
                        cellGradient.mul(block(a, 3, 1, units))).getFirst());
                block(stepDelta, 1, 1, units).assign(gate.backprop(block(z, 1, 1, units).dup(),
                        cellGradient.mul(previousCell)).getFirst());
                block(stepDelta, 2, 1, units).assign(deltaO);
                block(stepDelta, 3, 1, units).assign(gate.backprop(block(z, 3, 1, units).dup(),
                        cellGradient.mul(block(a, 0, 1, units))).getFirst());
                if (entering != null) {
                    block(stepDelta, 0, 2, units).addi(block(entering, 0, 2, units));
                    block(stepDelta, 3, 1, units).addi(block(entering, 3, 1, units));
                }
                if (f.mask != null) {
                    stepDelta.muliColumnVector(repeated(f.mask.getColumn(t, true), repeats));
                }
                peephole(0).addi(block(stepDelta, 1, 1, units).mul(previousCell));
                peephole(1).addi(block(stepDelta, 2, 1, units).mul(cell));
                peephole(2).addi(block(stepDelta, 3, 1, units).mul(previousCell));
                if (outputGradients != null) {
                    outputGradients.get(NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.all())
                            .assign(outputGradient);
                    cellGradients.get(NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.all()).assign(cellGradient);
                }
                nextDelta = stepDelta;
                nextCellGradient = cellGradient;
                nextForget = block(a, 1, 1, units);
            }
            delta = deltaByStep.permute(1, 2, 0);
        }

        /**
         * The recurrence of an LSTM without peepholes with every factor that does not depend on the recurrence
         * computed first, per step for all rows at once: with {@code dh_t = ε_t + δ_{t+1} RWᵀ} and
         * {@code dc_t = dh_t ⊙ o_t ⊙ φ'(c_t) + f_{t+1} ⊙ dc_{t+1}}, the gate gradients are
         * {@code δ_o = dh_t ⊙ φ(c̃_t) ⊙ σ'(o)}, {@code δ_f = dc_t ⊙ c_{t−1} ⊙ σ'(f)},
         * {@code δ_g = dc_t ⊙ i_t ⊙ σ'(g)}, {@code δ_i = dc_t ⊙ g_t ⊙ φ'(z_i)} (DL4J's backward pass, without masks
         * on {@code δ}, as LSTM's); each step then costs a product with {@code RWᵀ} and a few elementwise
         * operations. Gradients entering inside the cell (the Hessian's columns) are added where they enter:
         * to {@code dc_t} at the cell, to {@code δ_t} at the gate pre-activations.
         */
        private static void withoutPeepholes(Forward f, INDArray epsilon, INDArray gateInjection,
                                             INDArray cellInjection, long repeats, INDArray deltaByStep,
                                             INDArray outputGradients, INDArray cellGradients) {
            DataType type = deltaByStep.dataType();
            long rows = deltaByStep.size(1);
            long units = f.units;
            int length = f.steps.length;
            // every step's factors at once, over rows t·N + n of the steps stacked (one operation each rather than
            // one per step)
            INDArray a = f.stackedA();
            INDArray z = f.stackedZ();
            INDArray gates = block(a, 1, 3, units);
            INDArray gateDerivative = f.gate.backprop(block(z, 1, 3, units).dup(), Nd4j.onesLike(gates)).getFirst();
            INDArray inputDerivative = derivative(f.activation, block(z, 0, 1, units), block(a, 0, 1, units));
            INDArray k = Nd4j.createUninitialized(a.dataType(), a.size(0), 4 * units);
            block(k, 0, 1, units).assign(block(a, 3, 1, units).mul(inputDerivative));                // g ⊙ φ'(z_i)
            block(k, 1, 1, units).assign(f.stackedPreviousCells()
                    .mul(block(gateDerivative, 0, 1, units)));                                      // c ⊙ σ'(f)
            block(k, 2, 1, units).assign(f.stackedCellActivations()
                    .mul(block(gateDerivative, 1, 1, units)));                                      // φ(c̃) ⊙ σ'(o)
            block(k, 3, 1, units).assign(block(a, 0, 1, units).mul(block(gateDerivative, 2, 1, units))); // i ⊙ σ'(g)
            // φ(c_t) is the recorded cell activation where no mask changed c_t after it
            INDArray cellFactors = derivative(f.activation, f.stackedCells(),
                    f.mask == null ? f.stackedCellActivations() : null)
                    .muli(block(a, 2, 1, units)).castTo(type);                                      // o ⊙ φ'(c)
            INDArray coefficientRows = k.castTo(type);
            long n = f.steps[0].a.size(0);
            INDArray[] coefficients = new INDArray[length];
            INDArray[] cellFactor = new INDArray[length];
            for (int t = 0; t < length; t++) {
                coefficients[t] = coefficientRows.get(NDArrayIndex.interval(t * n, (t + 1) * n), NDArrayIndex.all());
                cellFactor[t] = cellFactors.get(NDArrayIndex.interval(t * n, (t + 1) * n), NDArrayIndex.all());
            }
            INDArray next = null;
            INDArray nextCellGradient = null;
            for (int t = length - 1; t >= 0; t--) {
                INDArray outputGradient = epsilon != null
                        ? epsilon.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)).dup('c')
                        : Nd4j.zeros(type, rows, units);
                if (next != null) {
                    Nd4j.gemm(next, f.recurrentTranspose, outputGradient, false, false, 1.0, 1.0);
                }
                INDArray cellGradient = outputGradient.mul(repeated(cellFactor[t], repeats));
                if (nextCellGradient != null) {
                    cellGradient.addi(repeated(block(f.steps[t + 1].a, 1, 1, units), repeats).mul(nextCellGradient));
                }
                if (cellInjection != null) {
                    cellGradient.addi(cellInjection.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)));
                }
                INDArray stepDelta = deltaByStep.get(NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.all());
                stepDelta.assign(repeated(coefficients[t], repeats));
                block(stepDelta, 0, 1, units).muli(cellGradient);
                block(stepDelta, 1, 1, units).muli(cellGradient);
                block(stepDelta, 2, 1, units).muli(outputGradient);
                block(stepDelta, 3, 1, units).muli(cellGradient);
                if (gateInjection != null) {
                    stepDelta.addi(gateInjection.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t)));
                }
                if (outputGradients != null) {
                    outputGradients.get(NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.all())
                            .assign(outputGradient);
                    cellGradients.get(NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.all()).assign(cellGradient);
                }
                next = stepDelta;
                nextCellGradient = cellGradient;
            }
        }

        private INDArray peephole(int column) {
            return peepholes.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(column));
        }
    }

    /**
     * @param activation φ
     * @param z its argument
     * @param a {@code φ(z)} when known, else null
     * @return {@code φ'(z)}, for tanh from {@code φ(z)} as {@code 1 − φ(z)²} (DL4J's derivative of tanh, without
     *     evaluating tanh again)
     */
    private static INDArray derivative(IActivation activation, INDArray z, INDArray a) {
        if (a != null && activation instanceof org.nd4j.linalg.activations.impl.ActivationTanH) {
            return a.mul(a).rsubi(1.0);
        }
        return activation.backprop(z.dup(), Nd4j.onesLike(z)).getFirst();
    }

    /**
     * @return each step's {@code [N, k]} value stacked, {@code [T·N, k]} (rows {@code t·N + n}), a new array (one
     *     copy per step: ND4J's concatenation of many arrays costs far more)
     */
    private static INDArray stacked(Step[] steps, java.util.function.Function<Step, INDArray> value) {
        INDArray first = value.apply(steps[0]);
        long n = first.size(0);
        INDArray out = Nd4j.createUninitialized(first.dataType(), steps.length * n, first.size(1));
        for (int t = 0; t < steps.length; t++) {
            out.get(NDArrayIndex.interval(t * n, (t + 1) * n), NDArrayIndex.all()).assign(value.apply(steps[t]));
        }
        return out;
    }

    /** @return per-sequence values {@code [N, k]} repeated for the V rows of each sequence, {@code [N·V, k]} */
    private static INDArray repeated(INDArray values, long repeats) {
        if (repeats == 1) {
            return values;
        }
        long n = values.size(0);
        long k = values.size(1);
        return values.reshape('c', n, 1, k).broadcast(n, repeats, k).dup('c').reshape('c', n * repeats, k);
    }

    /** @return the view of gate blocks {@code k … k+count−1} ({@code [i, f, o, g]}) of {@code [N, 4n]} values */
    private static INDArray block(INDArray gates, int k, int count, long units) {
        return gates.get(NDArrayIndex.all(), NDArrayIndex.interval(k * units, (k + count) * units));
    }

    /** One step's forward values, as DL4J's backward pass uses them. */
    private static final class Step {
        /** The gate pre-activations {@code [N, 4n]} ({@code [i, f, o, g]}, peepholes included). */
        INDArray z;
        /** The activated gates {@code [N, 4n]}. */
        INDArray a;
        /** {@code φ(c̃_t)}, unmasked. */
        INDArray cellActivation;
        /** {@code c_t}, masked. */
        INDArray cell;
        /** {@code c_{t-1}}, masked. */
        INDArray previousCell;
    }

    /**
     * Terms whose gate gradients are known only once DL4J's backward step is done: completed on first use, which
     * is after the step (the terms are read only when it succeeded), in the workspace of values shared with the
     * step.
     */
    private static final class AfterStepTerms extends FirstOrderTerms {
        private final FirstOrderTerms terms;
        private Runnable completion;

        AfterStepTerms(FirstOrderTerms terms, Runnable completion) {
            this.terms = terms;
            this.completion = completion;
        }

        private FirstOrderTerms completed() {
            if (completion != null) {
                try (org.nd4j.linalg.api.memory.MemoryWorkspace ignored =
                             ScratchWorkspace.borrow(ScratchWorkspace.SHARED_STEP)) {
                    completion.run();
                }
                completion = null;
            }
            return terms;
        }

        @Override
        protected Map<String, INDArray> computeIndividualGradients() {
            return new LinkedHashMap<>(completed().individualGradients());
        }

        @Override
        protected Map<String, INDArray> computeSquaredNorms() {
            return new LinkedHashMap<>(completed().individualGradientSquaredNorms());
        }

        @Override
        protected Map<String, INDArray> computeSumGradSquared() {
            return new LinkedHashMap<>(completed().sumGradSquared());
        }

        @Override
        protected Map<String, INDArray> computeDots() {
            return new LinkedHashMap<>(completed().individualGradientDots());
        }

        @Override
        protected Map<String, INDArray> computeVariance() {
            return new LinkedHashMap<>(completed().variance());
        }

        @Override
        protected Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred>
                computeWeightedGradientSums() {
            return new LinkedHashMap<>(completed().weightedGradientSums());
        }
    }

    /**
     * GravesLSTM's terms: the outer-product terms, whose {@code RW} covers the first {@code 4n} columns,
     * and the per-sequence peephole columns {@code [N, n, 3]}, formed directly ({@code N·3n} values). Every
     * quantity splits over the two column blocks of {@code RW}: squared norms and dot products add, the
     * individual gradients, the second moment and the variance are concatenated.
     */
    private static final class PeepholeTerms extends FirstOrderTerms {
        private final FirstOrderTerms outer;
        private final INDArray peepholes;

        PeepholeTerms(FirstOrderTerms outer, INDArray peepholes) {
            this.outer = outer;
            this.peepholes = peepholes;
        }

        private static Map<String, INDArray> replaced(Map<String, INDArray> values, UnaryOperator<INDArray> rw) {
            Map<String, INDArray> out = new LinkedHashMap<>(values);
            out.put(RW, rw.apply(values.get(RW)));
            return out;
        }

        private INDArray flatPeepholes() {
            return peepholes.dup('c').reshape('c', peepholes.size(0), peepholes.length() / peepholes.size(0));
        }

        @Override
        protected Map<String, INDArray> computeIndividualGradients() {
            return replaced(outer.individualGradients(), g -> Nd4j.concat(2, g, peepholes).dup('c'));
        }

        /** The outer products' deferred sums of {@code RW}, with the peephole columns' sum appended. */
        @Override
        protected Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred>
                computeWeightedGradientSums() {
            Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred> out =
                    new LinkedHashMap<>(outer.weightedGradientSums());
            DeferredSum recurrent = (DeferredSum) out.get(RW);
            INDArray columns = DeferredSum.copy(peepholes);
            long n = columns.size(0);
            long[] shape = recurrent.shape();
            long[] columnShape = {columns.size(1), columns.size(2)};
            shape[1] += columnShape[1];
            out.put(RW, new DeferredSum(n, shape, recurrent.dataType(), w -> Nd4j.concat(1, recurrent.of(w),
                    w.reshape('c', 1, n).mmul(columns.reshape('c', n, columns.length() / n)).reshape('c', columnShape)))
                    .owning(columns, recurrent));
            return out;
        }

        @Override
        protected Map<String, INDArray> computeSquaredNorms() {
            INDArray f = flatPeepholes();
            return replaced(outer.individualGradientSquaredNorms(), g -> g.add(f.muli(f).sum(1)));
        }

        @Override
        protected Map<String, INDArray> computeSumGradSquared() {
            return replaced(outer.sumGradSquared(), g -> Nd4j.concat(1, g, peepholes.mul(peepholes).sum(0)));
        }

        @Override
        protected Map<String, INDArray> computeVariance() {
            return replaced(outer.variance(), g -> Nd4j.concat(1, g, twoPassVariance(peepholes)));
        }

        @Override
        protected Map<String, INDArray> computeDots() {
            INDArray f = flatPeepholes();
            return replaced(outer.individualGradientDots(), g -> g.add(f.mmul(f.transpose())));
        }
    }
}
