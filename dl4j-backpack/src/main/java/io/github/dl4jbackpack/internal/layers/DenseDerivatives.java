// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.internal.memory.ResultMemory;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.layers.OutputLayer;
import org.deeplearning4j.nn.layers.feedforward.dense.DenseLayer;
import org.deeplearning4j.nn.layers.recurrent.RnnOutputLayer;
import org.deeplearning4j.nn.layers.training.CenterLossOutputLayer;
import org.deeplearning4j.nn.params.CenterLossParamInitializer;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Derivatives of the affine map {@code z_n = x_n W + b} of DL4J's {@code DenseLayer} and
 * {@code OutputLayer} ({@code W [nIn, nOut]}, {@code b [nOut]}), and of {@code RnnOutputLayer}, which applies it
 * at every time step. Applied over time (or to rows a {@code StackVertex} stacks), an example's gradient
 * sums over its steps, {@code g_n(W) = Σ_t x_nt δ_ntᵀ} ({@link OuterProductTerms}).
 *
 * <p>With {@code δ_n = ∂L/∂z_n}: {@code g_n(W) = x_n δ_nᵀ}, {@code g_n(b) = δ_n},
 * {@code ‖g_n(W)‖² = ‖x_n‖²‖δ_n‖²}, {@code Σ_n g_n(W)⊙g_n(W) = (X⊙X)ᵀ(Δ⊙Δ)} and
 * {@code ⟨g_n(W), g_m(W)⟩ = (x_n·x_m)(δ_n·δ_m)}: only the individual gradients themselves need
 * {@code [N, nIn, nOut]} memory.
 *
 * <p>Second order: {@code J_xᵀ s = W s}; the squared parameter Jacobian of a column {@code s_n}
 * at {@code z_n} is {@code x_n² (s_n²)ᵀ} for W and {@code s_n²} for b, so sums over columns need
 * only {@code Σ_v s_nv²}. The output layer's activation belongs to the loss.
 *
 * <p>A {@code CenterLossOutputLayer} is an output layer whose score adds the centre loss
 * {@code (λ/2)‖x_n − c_{y_n}‖²} on its input: its {@code W} and {@code b} have the output layer's
 * quantities (the centre term does not depend on them; DL4J hands the layers below a gradient that
 * includes it). Its class centres {@code cL} get no quantities: DL4J moves them by the centre-loss
 * rule (towards the class means of the batch, divided by the class counts in the batch), not by a
 * gradient of the score. The Hessian factor of the centre term is not implemented, so second-order
 * extensions refuse the layer.
 */
public final class DenseDerivatives implements LayerDerivatives {

    static final String W = "W";
    static final String B = "b";

    @Override
    public String kindName() {
        return "DenseLayer/OutputLayer/CenterLossOutputLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == DenseLayer.class || layer.getClass() == OutputLayer.class
                || layer.getClass() == CenterLossOutputLayer.class || layer.getClass() == RnnOutputLayer.class;
    }

    @Override
    public java.util.Set<String> trainableParameters(Layer layer) {
        java.util.Set<String> keys = new java.util.LinkedHashSet<>(layer.paramTable().keySet());
        keys.remove(CenterLossParamInitializer.CENTER_KEY);
        return keys;
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        BaseLayer conf = (BaseLayer) layer.conf().getLayer();
        if (conf.getWeightNoise() != null) {
            return "weight noise (" + conf.getWeightNoise().getClass().getSimpleName() + ") is not supported";
        }
        if (conf instanceof org.deeplearning4j.nn.conf.layers.DenseLayer
                && ((org.deeplearning4j.nn.conf.layers.DenseLayer) conf).hasLayerNorm()) {
            return "layer normalisation (hasLayerNorm=true) is not supported";
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

    @Override
    public IActivation activation(Layer layer) {
        return layer.getClass() == DenseLayer.class
                ? ElementwiseActivations.plain(((BaseLayer) layer.conf().getLayer()).getActivationFn()) : null;
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        if (layer.getClass() == CenterLossOutputLayer.class) {
            return "the Hessian of its centre-loss term (λ/2)‖x − c_y‖² on the layer input is not implemented "
                    + "(first-order extensions for W and b are supported)";
        }
        IActivation activation = activation(layer);
        return activation == null ? null : ElementwiseActivations.unsupported(activation, hessian);
    }


    /** @return whether the layer is an RnnOutputLayer in NWC layout ({@code [N, T, ·]}) */
    private static boolean nwc(Layer layer) {
        return layer.conf().getLayer() instanceof org.deeplearning4j.nn.conf.layers.RnnOutputLayer
                && ((org.deeplearning4j.nn.conf.layers.RnnOutputLayer) layer.conf().getLayer()).getRnnDataFormat()
                == org.deeplearning4j.nn.conf.RNNFormat.NWC;
    }

    /**
     * {@inheritDoc} For an RnnOutputLayer ({@code [R, nOut, T]} columns, NWC {@code [R, T, nOut]}), {@code W}
     * applied at every step.
     */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        INDArray w = record.layer().getParam(W).castTo(factor.dataType());
        if (factor.rank() == 3) {
            boolean nwc = nwc(record.layer());
            INDArray rows = (nwc ? factor : factor.permute(0, 2, 1)).dup('c');
            INDArray in = gemm(rows.reshape('c', rows.size(0) * rows.size(1), rows.size(2)), false, w, true)
                    .reshape('c', rows.size(0), rows.size(1), w.size(0));
            return nwc ? in : in.permute(0, 2, 1).dup('c');
        }
        return gemm(factor, false, w, true);
    }

    /**
     * {@inheritDoc} For an RnnOutputLayer, a column's parameter Jacobian-transpose product sums over the time
     * steps, {@code Σ_t x_t s_tᵀ} ({@link OuterProductTerms#squaredColumnGradients}).
     */
    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        if (factor.rank() == 4) {
            boolean nwc = nwc(record.layer());
            INDArray columns = nwc ? factor.permute(0, 1, 3, 2).dup('c') : factor;
            INDArray x = record.input().castTo(factor.dataType());
            INDArray u = nwc ? x.permute(0, 2, 1).dup('c') : x;
            INDArray weight = OuterProductTerms.squaredColumnGradients(columns, u, sink.perExample()).muli(sign);
            sink.add(W, (weight.rank() == 2 ? weight.transpose() : weight.permute(0, 2, 1)).dup('c'));
            if (record.layer().paramTable().containsKey(B)) {
                sink.add(B, OuterProductTerms.squaredColumnSums(columns, sink.perExample()).muli(sign));
            }
            return;
        }
        accumulateSquares(record, factor.mul(factor).sum(1).muli(sign), sink);
    }

    @Override
    public boolean supportsSharedColumns(Layer layer) {
        return true;
    }

    /** Per column c, {@code Σ_m x_m s_mcᵀ = Xᵀ S_c}: one GEMM for a chunk of columns, squared and summed. */
    @Override
    public void accumulateSharedCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray x = record.input().castTo(factor.dataType());
        long n = factor.size(0);
        long columns = factor.size(1);
        long out = factor.size(2);
        long in = x.size(1);
        long step = Math.max(1, Math.min(columns, ConvolutionDerivatives.CHUNK_ELEMENTS / Math.max(1, in * out)));
        INDArray weight = Nd4j.create(factor.dataType(), in, out);
        long stepBytes = 4 * step * out * (n + in) * factor.dataType().width();
        for (long from = 0; from < columns; from += step) {
            long to = Math.min(columns, from + step);
            try (ScratchWorkspace ignored = ScratchWorkspace.open(ScratchWorkspace.LOOP_STEP, stepBytes)) {
                INDArray s = factor.get(NDArrayIndex.all(), NDArrayIndex.interval(from, to), NDArrayIndex.all())
                        .dup('c').reshape('c', n, (to - from) * out);
                INDArray g = gemm(x, true, s, false).reshape('c', in, to - from, out);
                weight.addi(g.muli(g).sum(1));
            }
        }
        sink.add(W, weight.muli(sign));
        if (record.layer().paramTable().containsKey(B)) {
            INDArray t = factor.sum(0);
            sink.add(B, t.muli(t).sum(0).muli(sign));
        }
    }

    /**
     * {@inheritDoc} Applied at every step ({@code r [N, O, T]}, input {@code [N, F, T]}):
     * {@code Σ_t x_t² r_tᵀ} and {@code Σ_t r_t}.
     */
    @Override
    public void accumulateResidual(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        if (residual.rank() == 3) {
            INDArray x = record.input().castTo(residual.dataType());
            INDArray weight = Nd4j.matmul(x.mul(x), residual, false, true, false);
            sink.add(W, sink.perExample() ? weight : weight.sum(0));
            if (record.layer().paramTable().containsKey(B)) {
                INDArray bias = residual.sum(2);
                sink.add(B, sink.perExample() ? bias : bias.sum(0));
            }
            return;
        }
        accumulateSquares(record, residual.dup(), sink);
    }

    /**
     * {@inheritDoc} A hidden dense layer is: its rows are independent, so over the flattened steps of a series it
     * is the dense layer applied at every step.
     */
    @Override
    public boolean supportsFlattenedSteps(Layer layer) {
        return layer.getClass() == DenseLayer.class;
    }

    /**
     * {@inheritDoc} Applied at every step ({@code [N, V, nOut, T]}, NWC {@code [N, V, T, nOut]}), the
     * "expand" setting: every step's column is a column of its own, {@code Σ_n Σ_v Σ_t s_nvt s_nvtᵀ}.
     */
    @Override
    public void accumulateOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        if (factor.rank() == 4) {
            INDArray steps = (nwc(record.layer()) ? factor : factor.permute(0, 1, 3, 2)).dup('c');
            INDArray s = steps.reshape('c', steps.length() / steps.size(3), steps.size(3));
            sink.addOutputFactor(gemm(s, true, s, false));
            return;
        }
        INDArray s = factor.reshape('c', factor.size(0) * factor.size(1), factor.size(2));
        sink.addOutputFactor(gemm(s, true, s, false));
    }

    @Override
    public INDArray outputFactorOfAveraged(RecordedLayer record, INDArray averaged) {
        return averaged.dup();
    }

    /**
     * Input-side factor {@code A = (1/N) Σ_n x_n x_nᵀ}, summed over an example's rows when the layer sees
     * a stacked batch (as a convolution sums over positions); applied at every step of a series, the
     * "expand" setting {@code A = (1/(N·T)) Σ_n Σ_t x_nt x_ntᵀ}. With fewer rows than inputs, {@code A} is handed
     * over as its square root {@code x/√N}.
     */
    @Override
    public Map<String, KroneckerFactors> kroneckerFactors(RecordedLayer record, INDArray outputFactor) {
        INDArray x = record.input().castTo(outputFactor.dataType());
        long examples = record.examples();
        if (x.rank() == 3) {
            // applied at every step ("expand"): every step is an example, A = (1/(N·T)) Σ_n Σ_t x_nt x_ntᵀ
            INDArray steps = (nwc(record.layer()) ? x : x.permute(0, 2, 1)).dup('c');
            examples = steps.size(0) * steps.size(1);
            x = steps.reshape('c', examples, steps.size(2));
        }
        Map<String, KroneckerFactors> out = new LinkedHashMap<>();
        if (x.size(0) < x.size(1)) {
            // fewer rows than inputs: A has rank ≤ rows and is kept as its square root x/√examples, formed only if
            // read (a preconditioner applies its damped inverse through a rows × rows system)
            out.put(W, KroneckerFactors.denseWeightOfInputs(x, examples, outputFactor));
        } else {
            out.put(W, KroneckerFactors.denseWeight(gemm(x, true, x, false).divi(examples), outputFactor));
        }
        if (record.layer().paramTable().containsKey(B)) {
            out.put(B, KroneckerFactors.bias(outputFactor));
        }
        return out;
    }

    /**
     * {@code op(a)·op(b)} by BLAS gemm: ND4J 1.0.0-M2.1's {@code mmul} mishandles an inner dimension of
     * 1 holding NaN (a batch of one, a single unit), returning finite values. Operands that are whole matrices in
     * row- or column-major order go to BLAS as they are (a row-major one as the transpose of a column-major one);
     * others are copied first.
     */
    static INDArray gemm(INDArray a, boolean transposeA, INDArray b, boolean transposeB) {
        return Nd4j.gemm(blasReady(a), blasReady(b), transposeA, transposeB);
    }

    /** @return the matrix itself if it fills its own buffer in row- or column-major order, else a column-major copy */
    private static INDArray blasReady(INDArray m) {
        if (m.rank() == 2 && !m.isView() && m.size(0) > 1 && m.size(1) > 1
                && (m.ordering() == 'c' && m.stride(1) == 1 && m.stride(0) == m.size(1)
                || m.ordering() == 'f' && m.stride(0) == 1 && m.stride(1) == m.size(0))) {
            return m;
        }
        return m.dup('f');
    }

    /** Adds {@code x_n² q_nᵀ} to W and {@code q_n} to b, summed over n unless the sink is per example. */
    private static void accumulateSquares(RecordedLayer record, INDArray q, CurvatureSink sink) {
        INDArray x = record.input().castTo(q.dataType());
        INDArray x2 = x.mul(x);
        long n = x.size(0);
        if (sink.perExample()) {
            sink.add(W, Nd4j.matmul(x2.reshape('c', n, x.size(1), 1), q.reshape('c', n, 1, q.size(1))));
        } else {
            sink.add(W, gemm(x2, true, q, false));
        }
        if (record.layer().paramTable().containsKey(B)) {
            sink.add(B, sink.perExample() ? q : q.sum(0));
        }
    }

    /**
     * @return whether the layer is a plain {@code DenseLayer} (no layer normalisation, input dropout or weight
     *     noise), whose training forward step computes the {@code z} of its backward step
     */
    @Override
    public boolean reusesForwardPreActivation(Layer layer) {
        if (layer.getClass() != DenseLayer.class) {
            return false;
        }
        org.deeplearning4j.nn.conf.layers.DenseLayer conf =
                (org.deeplearning4j.nn.conf.layers.DenseLayer) layer.conf().getLayer();
        return !((DenseLayer) layer).hasLayerNorm() && conf.getIDropout() == null && conf.getWeightNoise() == null;
    }

    /**
     * {@inheritDoc} For a plain {@code DenseLayer} (no layer normalisation, input dropout, weight noise or mask):
     * DL4J's {@code BaseLayer.backpropGradient} less its weight product: {@code z = XW + b} taken from the
     * forward step or recomputed as DL4J recomputes it, {@code Δ} from the activation, the bias gradient
     * {@code Σ_n δ_n} into its view, and {@code ∂L/∂X = (W Δᵀ)ᵀ}.
     */
    @Override
    public org.nd4j.common.primitives.Pair<org.deeplearning4j.nn.gradient.Gradient, INDArray>
            backwardWithoutWeightGradient(Layer layer, INDArray epsilon, INDArray forwardPreActivation,
                                          org.deeplearning4j.nn.workspace.LayerWorkspaceMgr workspaceMgr) {
        if (!reusesForwardPreActivation(layer) || layer.getMaskArray() != null || layer.input() == null
                || layer.input().rank() != 2 || epsilon == null) {
            return null;
        }
        org.deeplearning4j.nn.conf.layers.DenseLayer conf =
                (org.deeplearning4j.nn.conf.layers.DenseLayer) layer.conf().getLayer();
        DenseLayer dense = (DenseLayer) layer;
        INDArray w = layer.getParam(W);
        INDArray z = forwardPreActivation;
        if (z == null || z.size(0) != layer.input().size(0) || z.size(1) != w.size(1)
                || z.dataType() != w.dataType()) {
            INDArray input = layer.input().castTo(w.dataType());
            z = workspaceMgr.createUninitialized(org.deeplearning4j.nn.workspace.ArrayType.ACTIVATIONS,
                    w.dataType(), input.size(0), w.size(1));
            input.castTo(z.dataType()).mmuli(w, z);
            if (dense.hasBias()) {
                z.addiRowVector(layer.getParam(B));
            }
        }
        INDArray delta = conf.getActivationFn().backprop(z, epsilon).getFirst();
        Map<String, INDArray> views = conf.initializer().getGradientsFromFlattened(layer.conf(),
                layer.getGradientsViewArray());
        org.deeplearning4j.nn.gradient.Gradient gradient = new org.deeplearning4j.nn.gradient.DefaultGradient();
        if (dense.hasBias()) {
            INDArray biasGradient = views.get(B);
            delta.sum(biasGradient, 0);
            gradient.gradientForVariable().put(B, biasGradient);
        }
        INDArray inputGradient = workspaceMgr.createUninitialized(
                org.deeplearning4j.nn.workspace.ArrayType.ACTIVATION_GRAD, delta.dataType(),
                new long[] {w.size(0), delta.size(0)}, 'f');
        inputGradient = w.mmuli(delta.transpose(), inputGradient).transpose();
        INDArray weightGradient = views.get(W);
        weightGradient.assign(0);
        gradient.gradientForVariable().put(W, weightGradient);
        return new org.nd4j.common.primitives.Pair<>(gradient, inputGradient);
    }

    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        if (input.rank() == 3) {
            // RnnOutputLayer: x [N, nIn, T] (NWC: [N, T, nIn]); δ [T·N, nOut] in DL4J's rows t·N + n
            INDArray x = layer.conf().getLayer() instanceof org.deeplearning4j.nn.conf.layers.RnnOutputLayer
                    && ((org.deeplearning4j.nn.conf.layers.RnnOutputLayer) layer.conf().getLayer()).getRnnDataFormat()
                    == org.deeplearning4j.nn.conf.RNNFormat.NWC ? input.permute(0, 2, 1) : input;
            long n = x.size(0);
            return overTime(layer, x.castTo(outputGradient.dataType()), outputGradient.reshape('c', x.size(2), n,
                    outputGradient.size(1)).permute(1, 2, 0));
        }
        return new Terms(input.castTo(outputGradient.dataType()), outputGradient, layer.paramTable().containsKey(B));
    }

    /**
     * The layer applied at every row of an example (time steps, stacked copies): {@code g_n(W) = Σ_t x_nt δ_ntᵀ},
     * summed over rows without forming the rows' gradients.
     */
    @Override
    public FirstOrderTerms firstOrderOfRows(Layer layer, INDArray input, INDArray outputGradient,
                                            boolean runningStatistics, long rows) {
        long n = input.size(0) / rows;
        INDArray x = input.castTo(outputGradient.dataType()).reshape('c', rows, n, input.size(1)).permute(1, 2, 0);
        return overTime(layer, x, outputGradient.reshape('c', rows, n, outputGradient.size(1)).permute(1, 2, 0));
    }

    /**
     * @param x inputs {@code [N, nIn, T]}
     * @param delta {@code ∂L/∂z} {@code [N, nOut, T]}
     * @return the terms of {@code g_n(W) = X_n Δ_nᵀ}, {@code g_n(b) = Σ_t δ_nt}
     */
    private static FirstOrderTerms overTime(Layer layer, INDArray x, INDArray delta) {
        OuterProductTerms terms = new OuterProductTerms().inputMajorWeight(W, delta, x,
                java.util.function.UnaryOperator.identity());
        return layer.paramTable().containsKey(B) ? terms.bias(B, delta, g -> g) : terms;
    }

    private static final class Terms extends FirstOrderTerms {
        private final INDArray x;
        private final INDArray delta;
        private final boolean hasBias;

        Terms(INDArray x, INDArray delta, boolean hasBias) {
            this.x = x;
            this.delta = delta;
            this.hasBias = hasBias;
        }

        @Override
        protected Map<String, INDArray> computeIndividualGradients() {
            long n = x.size(0);
            INDArray x3 = x.reshape('c', n, x.size(1), 1);
            INDArray d3 = delta.reshape('c', n, 1, delta.size(1));
            Map<String, INDArray> out = new LinkedHashMap<>();
            // in the memory of closed results where there is some
            out.put(W, Nd4j.matmul(x3, d3, ResultMemory.uninitialized(delta.dataType(), n, x.size(1), delta.size(1)),
                    false, false, false));
            if (hasBias) {
                out.put(B, ResultMemory.uninitialized(delta.dataType(), delta.shape()).assign(delta));
            }
            return out;
        }

        /** Keeps {@code X} and {@code Δ}: {@code Σ_n w_n g_n(W) = Xᵀ diag(w) Δ}, {@code Σ_n w_n g_n(b) = Δᵀ w}. */
        @Override
        protected Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred>
                computeWeightedGradientSums() {
            long n = x.size(0);
            long k = x.size(1);
            long o = delta.size(1);
            // column-major, as the matrix products read them
            INDArray xs = DeferredSum.copy(x, 'f');
            INDArray ds = DeferredSum.copy(delta, 'f');
            Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred> out = new LinkedHashMap<>();
            out.put(W, new DeferredSum(n, new long[] {k, o}, ds.dataType(),
                    w -> Nd4j.gemm(xs, ds.mulColumnVector(w.reshape('c', n, 1)), true, false),
                    (w, target) -> {
                        // accumulated by the product itself into a column-major target (DL4J's gradient views)
                        if (target.rank() != 2 || target.stride(0) != 1 || target.stride(1) != k) {
                            return false;
                        }
                        Nd4j.gemm(xs, ds.mulColumnVector(w.reshape('c', n, 1)), target, true, false, 1.0, 1.0);
                        return true;
                    }).owning(xs, ds));
            if (hasBias) {
                out.put(B, new DeferredSum(n, new long[] {o}, ds.dataType(),
                        w -> w.reshape('c', 1, n).mmul(ds).reshape('c', new long[] {o})).owning(ds));
            }
            return out;
        }

        @Override
        protected Map<String, INDArray> computeSquaredNorms() {
            INDArray deltaSq = delta.mul(delta).sum(1);
            Map<String, INDArray> out = new LinkedHashMap<>();
            out.put(W, x.mul(x).sum(1).muli(deltaSq));
            if (hasBias) {
                out.put(B, deltaSq);
            }
            return out;
        }

        @Override
        protected Map<String, INDArray> computeSumGradSquared() {
            INDArray deltaSq = delta.mul(delta);
            Map<String, INDArray> out = new LinkedHashMap<>();
            out.put(W, gemm(x.mul(x), true, deltaSq, false));
            if (hasBias) {
                out.put(B, deltaSq.sum(0));
            }
            return out;
        }

        /**
         * With {@code x̄, δ̄} the batch means, {@code A = X − x̄}, {@code B = Δ − δ̄} and {@code C = AᵀB / N}
         * (so that {@code ḡ = x̄δ̄ᵀ + C}): {@code g_n − ḡ = a_n δ̄ᵀ + x_n b_nᵀ − C}, whose squares sum to
         * {@code Σa²·δ̄² + (X⊙X)ᵀ(B⊙B) + 2 ((A⊙X)ᵀB)⊙δ̄ − N C⊙C} (the cross terms with {@code C} reduce to
         * {@code −2N C⊙C} as {@code Σ a_n = Σ b_n = 0}): three products, every term at the scale of the deviations
         * from the mean gradient, so that a large mean gradient cancels nothing.
         */
        @Override
        protected Map<String, INDArray> computeVariance() {
            long n = x.size(0);
            INDArray xMean = x.mean(0);
            INDArray dMean = delta.mean(0);
            INDArray a = x.subRowVector(xMean);
            INDArray b = delta.subRowVector(dMean);
            INDArray b2 = b.mul(b);
            INDArray c = gemm(a, true, b, false).divi(n);
            INDArray sum = gemm(x.mul(x), true, b2, false);
            INDArray dRow = dMean.reshape(1, dMean.length());
            sum.addi(gemm(a.mul(x), true, b, false).muliRowVector(dRow.mul(2.0)));
            sum.addi(gemm(a.mul(a).sum(0).reshape(xMean.length(), 1), false, dRow.mul(dRow), false));
            sum.subi(c.muli(c).muli(n));
            Map<String, INDArray> out = new LinkedHashMap<>();
            out.put(W, sum.divi(n));
            if (hasBias) {
                out.put(B, b2.sum(0).divi(n));
            }
            return out;
        }

        @Override
        protected Map<String, INDArray> computeDots() {
            INDArray deltaGram = gemm(delta, false, delta, true);
            Map<String, INDArray> out = new LinkedHashMap<>();
            out.put(W, gemm(x, false, x, true).muli(deltaGram));
            if (hasBias) {
                out.put(B, deltaGram);
            }
            return out;
        }
    }
}
