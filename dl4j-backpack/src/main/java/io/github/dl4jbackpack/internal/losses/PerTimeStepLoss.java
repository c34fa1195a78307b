// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.losses;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

/**
 * A loss applied at every time step of a sequence output, as DL4J's {@code RnnOutputLayer} and
 * {@code RnnLossLayer} apply it: with the label mask {@code m_nt} ({@code [N, T]}, ones without one), the
 * loss of sequence n is {@code ℓ_n = Σ_t m_nt ℓ(z_nt, y_nt)} and the score {@code (1/N) Σ_n ℓ_n}
 * (docs/math.md#sequences). The Hessian of {@code ℓ_n} is block-diagonal over the steps, block t being
 * {@code m_nt H(z_nt)}: the exact factor has one column per (step, column of the step's factor), scaled by
 * {@code √m_nt} and nonzero at its step only; a sampled column draws every step's label independently and
 * sums them over the steps (independent draws with mean-zero gradients leave no cross terms in
 * expectation). A masked step contributes nothing.
 *
 * <p>The pre-activations come as DL4J's loss sees them, {@code [T·N, C]} with row {@code t·N + n}, and
 * the mask as DL4J hands it to the loss, {@code [T·N, 1]} in the same rows; factors are returned over the
 * layer's output {@code [N, V, C, T]}, or {@code [N, V, T, C]} in NWC layout.
 */
final class PerTimeStepLoss implements LossCurvature {

    private final LossCurvature perVector;
    private final long batch;
    private final long channels;
    private final long steps;
    private final boolean nwc;
    /** {@code √m} per row {@code t·N + n}, {@code [T·N, 1]}, or null. */
    private final INDArray rootMask;

    /**
     * @param perVector the loss of one step's output vector
     * @param batch N
     * @param channels C
     * @param steps T
     * @param nwc whether the output is laid out {@code [N, T, C]}
     * @param mask the label mask as DL4J hands it to the loss ({@code [T·N, 1]}), or null
     */
    PerTimeStepLoss(LossCurvature perVector, long batch, long channels, long steps, boolean nwc, INDArray mask) {
        if (mask != null && (mask.length() != batch * steps)) {
            throw new IllegalArgumentException("a per-step loss takes one mask value per sequence and step ("
                    + batch * steps + "), got a mask of shape " + java.util.Arrays.toString(mask.shape()));
        }
        this.perVector = perVector;
        this.batch = batch;
        this.channels = channels;
        this.steps = steps;
        this.nwc = nwc;
        try (org.nd4j.linalg.api.memory.MemoryWorkspace ignored =
                     Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            // built during DL4J's backward step, used after it: outside its workspaces
            this.rootMask = mask == null ? null : Transforms.sqrt(mask.reshape('c', batch * steps, 1), true);
        }
    }

    @Override
    public String describe() {
        return perVector.describe() + " at every time step";
    }

    /** @return the rows' factors {@code [T·N, V, C]} times {@code √m} of their row */
    private INDArray masked(INDArray rows) {
        if (rootMask == null) {
            return rows;
        }
        long v = rows.size(1);
        INDArray flat = rows.reshape('c', rows.size(0), v * channels);
        flat.muliColumnVector(rootMask.castTo(rows.dataType()));
        return flat.reshape('c', rows.size(0), v, channels);
    }

    /** @return {@code [T, N, V, C]} per-step columns as {@code [N, V, C, T]} (NCW) or {@code [N, V, T, C]} (NWC) */
    private INDArray inLayout(INDArray byStep) {
        return (nwc ? byStep.permute(1, 2, 0, 3) : byStep.permute(1, 2, 3, 0)).dup('c');
    }

    @Override
    public INDArray hessian(INDArray z) {
        INDArray blocks = perVector.hessian(z);                                   // [T·N, C, C]
        if (rootMask != null) {
            blocks = blocks.reshape('c', batch * steps, channels * channels)
                    .mulColumnVector(rootMask.mul(rootMask).castTo(z.dataType()))
                    .reshape('c', batch * steps, channels, channels);
        }
        INDArray byStep = blocks.reshape('c', steps, batch, channels, channels);
        // [N, C, T, C, T] (NCW flattening c·T + t) or [N, T, C, T, C] (NWC, t·C + c)
        INDArray out = nwc ? Nd4j.create(z.dataType(), batch, steps, channels, steps, channels)
                : Nd4j.create(z.dataType(), batch, channels, steps, channels, steps);
        for (long t = 0; t < steps; t++) {
            INDArray block = byStep.get(NDArrayIndex.point(t));
            if (nwc) {
                out.get(NDArrayIndex.all(), NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.point(t),
                        NDArrayIndex.all()).assign(block);
            } else {
                out.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(t), NDArrayIndex.all(),
                        NDArrayIndex.point(t)).assign(block);
            }
        }
        return out.reshape('c', batch, channels * steps, channels * steps);
    }

    @Override
    public INDArray sqrtHessian(INDArray z, long batchSize) {
        INDArray factor = masked(perVector.sqrtHessian(z, batchSize));          // [T·N, V, C]
        long v = factor.size(1);
        INDArray byStep = factor.reshape('c', steps, batch, v, channels);
        // column (t, v) of sequence n is the step-t factor column, zero at the other steps
        INDArray out = Nd4j.zeros(z.dataType(), steps, batch, steps * v, channels);
        for (long t = 0; t < steps; t++) {
            out.get(NDArrayIndex.point(t), NDArrayIndex.all(), NDArrayIndex.interval(t * v, (t + 1) * v),
                    NDArrayIndex.all()).assign(byStep.get(NDArrayIndex.point(t)));
        }
        return inLayout(out);
    }

    @Override
    public INDArray sampledSqrtHessian(INDArray z, long batchSize, int samples) {
        INDArray factor = masked(perVector.sampledSqrtHessian(z, batchSize, samples));   // [T·N, M, C]
        return inLayout(factor.reshape('c', steps, batch, samples, channels));
    }
}
