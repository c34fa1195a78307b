// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.layers.recurrent.LastTimeStepLayer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;


/**
 * DL4J's {@code LastTimeStep} wrapper: the wrapped recurrent layer's output read at each sequence's last
 * real step (the last step whose feature mask is nonzero, the last step without a mask), {@code [N, H]}.
 * The gradient at the wrapper's output is the wrapped layer's output gradient at those steps and zero at
 * every other step, so the wrapped layer's kind computes the first-order terms from it. Wrapped kinds
 * whose output gradient the library takes from a fused activation are not supported (the recurrent
 * kinds differentiate their own activations). The curvature extensions pass it where they pass the wrapped
 * layer on sequences: factor columns at the output are placed at the last real steps in the same way.
 */
public final class LastTimeStepKind extends SingleLayerWrapperKind {

    /** @param wrapped the kind of the wrapped layer */
    LastTimeStepKind(LayerDerivatives wrapped) {
        super(wrapped);
    }

    @Override
    protected Layer inner(Layer layer) {
        return ((LastTimeStepLayer) layer).getUnderlying();
    }

    @Override
    protected String wrapperName() {
        return "LastTimeStep";
    }

    @Override
    public String kindName() {
        return "LastTimeStep(" + wrapped.kindName() + ")";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer instanceof LastTimeStepLayer && wrapped.matches(inner(layer));
    }

    /** The wrapped layer's terms, for the output gradient placed at each sequence's last real step. */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        Layer inner = inner(layer);
        long steps = input.size(nwc(inner) ? 1 : 2);
        return wrapped.firstOrder(inner, input, atLastSteps(layer, outputGradient, steps, 1));
    }

    /** The wrapped layer's shared terms, for the output gradient placed at each sequence's last real step. */
    @Override
    public FirstOrderTerms firstOrderSharingForward(Layer layer, INDArray input, INDArray outputGradient,
                                                    org.deeplearning4j.nn.workspace.LayerWorkspaceMgr workspaceMgr) {
        Layer inner = inner(layer);
        long steps = input.size(nwc(inner) ? 1 : 2);
        INDArray placed;
        try (org.nd4j.linalg.api.memory.MemoryWorkspace ignored =
                     ScratchWorkspace.borrow(ScratchWorkspace.SHARED_STEP)) {
            placed = atLastSteps(layer, outputGradient, steps, 1);
        }
        return wrapped.firstOrderSharingForward(inner, input, placed, workspaceMgr);
    }

    @Override
    public void afterSharedBackward(Layer layer) {
        wrapped.afterSharedBackward(inner(layer));
    }

    /** @return whether the wrapped layer's series are laid out {@code [N, T, H]} */
    private static boolean nwc(Layer inner) {
        // DL4J's own reading of the layout, which also knows the Bidirectional configuration
        return org.deeplearning4j.util.TimeSeriesUtils.getFormatFromRnnLayer(inner.conf().getLayer()) == RNNFormat.NWC;
    }

    /**
     * @param layer the wrapper
     * @param rows values at the wrapper output, {@code [N·V, H]} (row {@code n·V + v} of sequence n)
     * @param steps T
     * @param repeats V
     * @return the rows placed at the last real step of their sequence, zero elsewhere, {@code [N·V, H, T]}
     *     ({@code [N·V, T, H]} in NWC layout)
     */
    private INDArray atLastSteps(Layer layer, INDArray rows, long steps, long repeats) {
        INDArray expanded = placedAtSteps(rows, lastSteps(layer.getMaskArray(), rows.size(0) / repeats, steps), steps);
        if (nwc(inner(layer))) {
            expanded = expanded.permute(0, 2, 1).dup('c');
        }
        return expanded;
    }

    /**
     * @param rows values {@code [N·V, H]}, row {@code n·V + v} of sequence n
     * @param step per sequence, the step to place its rows at
     * @param steps T
     * @return the rows at their sequence's step and zero at the others, {@code [N·V, H, T]}
     */
    static INDArray placedAtSteps(INDArray rows, long[] step, long steps) {
        long count = rows.size(0);
        long units = rows.size(1);
        long repeats = count / step.length;
        if (step.length > 0 && java.util.Arrays.stream(step).allMatch(s -> s == step[0])) {
            // every sequence ends at the same step (no mask): one copy into that step
            INDArray placed = Nd4j.zeros(rows.dataType(), count, units, steps);
            placed.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(step[0])).assign(rows);
            return placed;
        }
        INDArray hot = Nd4j.zeros(rows.dataType(), count, steps);
        for (int i = 0; i < count; i++) {
            hot.putScalar(i, step[(int) (i / repeats)], 1.0);
        }
        return rows.reshape('c', count, units, 1).broadcast(count, units, steps)
                .mul(hot.reshape('c', count, 1, steps).broadcast(count, units, steps));
    }

    /** @return the wrapped layer's record (its input is the wrapper's), kept with the wrapper's */
    @Override
    protected RecordedLayer innerRecord(RecordedLayer record) {
        return record.cachedValue("lastTimeStepInner", () -> {
            Layer inner = inner(record.layer());
            long steps = record.input().size(nwc(inner) ? 1 : 2);
            long units = record.outputShape()[1];
            long n = record.batchSize();
            return new RecordedLayer(record.node(), inner, wrapped, record.input(), null, null, null,
                    nwc(inner) ? new long[] {n, steps, units} : new long[] {n, units, steps});
        });
    }

    /** {@inheritDoc} Only the network's feature mask. */
    @Override
    protected boolean alwaysMasks() {
        return false;
    }

    /** {@inheritDoc} The wrapper's output gradient placed at each sequence's last real step. */
    @Override
    protected INDArray innerOutputGradient(RecordedLayer record) {
        Layer inner = inner(record.layer());
        return atLastSteps(record.layer(), record.outputGradient(), record.input().size(nwc(inner) ? 1 : 2), 1);
    }

    /** {@inheritDoc} The columns placed at each sequence's last real step, through the wrapped layer. */
    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        RecordedLayer inner = innerRecord(record);
        long steps = record.input().size(nwc(inner.layer()) ? 1 : 2);
        return wrapped.inputJacobianTranspose(inner, atLastSteps(record.layer(), factor, steps,
                factor.size(0) / record.batchSize()));
    }

    @Override
    public long scratchFeatures(RecordedLayer record) {
        return wrapped.scratchFeatures(innerRecord(record)) + 2 * innerRecord(record).outputFeatures();
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        RecordedLayer inner = innerRecord(record);
        long n = factor.size(0);
        long v = factor.size(1);
        long[] shape = inner.outputShape();
        INDArray placed = atLastSteps(record.layer(), factor.reshape('c', n * v, factor.size(2)),
                record.input().size(nwc(inner.layer()) ? 1 : 2), v);
        wrapped.accumulateCurvature(inner, placed.reshape('c', n, v, shape[1], shape[2]), sign, sink);
    }

    /**
     * @param mask the feature mask {@code [N, T]}, or null
     * @return per sequence the last step with a nonzero mask (as DL4J reads it), the last step without a mask
     */
    static long[] lastSteps(INDArray mask, long n, long steps) {
        long[] last = new long[(int) n];
        for (int i = 0; i < n; i++) {
            last[i] = steps - 1;
            if (mask != null) {
                last[i] = 0;
                for (long t = steps - 1; t >= 0; t--) {
                    if (mask.getDouble(i, t) != 0) {
                        last[i] = t;
                        break;
                    }
                }
            }
        }
        return last;
    }
}
