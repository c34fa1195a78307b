// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.losses;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * A loss applied at every position of an image output, as DL4J's {@code CnnLossLayer} applies it: the
 * loss (with its activation) of the channel vector at each position, summed over the positions, so
 * that {@code ℓ_n = Σ_p ℓ(z_np, y_np)} and the score is {@code (1/N) Σ_n ℓ_n}
 * (docs/math.md#loss-hessian-factors). The Hessian of {@code ℓ_n} is block-diagonal over positions:
 * the exact factor has one column per (position, channel), nonzero at its position only; a sampled
 * column draws every position's label independently and sums them (independent draws with mean-zero
 * gradients leave no cross terms in expectation).
 *
 * <p>The pre-activations come as DL4J's loss sees them, {@code [N·P, C]} with row {@code n·P + p},
 * position {@code p = h·W + w} (in both layouts); factors are returned over the layer's input
 * {@code [N, V, C, H, W]}, or {@code [N, V, H, W, C]} channels last.
 */
final class PerPositionLoss implements LossCurvature {

    private final LossCurvature perVector;
    private final long[] shape;
    private final boolean channelsLast;

    /**
     * @param perVector the loss of one channel vector
     * @param shape the output shape in channels-first order, {@code [N, C, H, W]}
     * @param channelsLast whether the output is laid out {@code [N, H, W, C]}
     */
    PerPositionLoss(LossCurvature perVector, long[] shape, boolean channelsLast) {
        this.perVector = perVector;
        this.shape = shape.clone();
        this.channelsLast = channelsLast;
    }

    /** @return columns {@code [N, V, C, H, W]} in the output's layout */
    private INDArray inLayout(INDArray columns) {
        return channelsLast ? columns.permute(0, 1, 3, 4, 2).dup('c') : columns;
    }

    @Override
    public String describe() {
        return perVector.describe() + " at every position";
    }

    private long positions() {
        return shape[2] * shape[3];
    }

    /** @return {@code [N·P, ...]} as {@code [N, C, H, W]}-shaped columns: {@code [N, V, C, P]} from {@code [N, P, V, C]} */
    private INDArray toChannelsFirst(INDArray perPosition) {
        return perPosition.permute(0, 2, 3, 1).dup('c');
    }

    @Override
    public INDArray hessian(INDArray z) {
        long n = shape[0];
        long c = shape[1];
        long p = positions();
        INDArray blocks = perVector.hessian(z).reshape('c', n, p, c, c);
        INDArray out = Nd4j.create(z.dataType(), n, c, p, c, p);
        for (long q = 0; q < p; q++) {
            out.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.point(q), NDArrayIndex.all(),
                    NDArrayIndex.point(q)).assign(blocks.get(NDArrayIndex.all(), NDArrayIndex.point(q)));
        }
        if (channelsLast) {
            return out.permute(0, 2, 1, 4, 3).dup('c').reshape('c', n, p * c, p * c);
        }
        return out.reshape('c', n, c * p, c * p);
    }

    @Override
    public INDArray sqrtHessian(INDArray z, long batchSize) {
        long n = shape[0];
        long c = shape[1];
        long p = positions();
        INDArray factor = perVector.sqrtHessian(z, batchSize);                  // [N·P, V, C]
        long v = factor.size(1);
        INDArray blocks = factor.reshape('c', n, p, v, c);
        // column (q, v) of example n is the position-q factor column, zero at the other positions
        INDArray out = Nd4j.create(z.dataType(), n, p, v, c, p);
        for (long q = 0; q < p; q++) {
            out.get(NDArrayIndex.all(), NDArrayIndex.point(q), NDArrayIndex.all(), NDArrayIndex.all(),
                    NDArrayIndex.point(q)).assign(blocks.get(NDArrayIndex.all(), NDArrayIndex.point(q)));
        }
        return inLayout(out.reshape('c', n, p * v, c, shape[2], shape[3]));
    }

    @Override
    public INDArray sampledSqrtHessian(INDArray z, long batchSize, int samples) {
        long n = shape[0];
        long c = shape[1];
        INDArray factor = perVector.sampledSqrtHessian(z, batchSize, samples);   // [N·P, M, C]
        INDArray columns = toChannelsFirst(factor.reshape('c', n, positions(), samples, c));
        return inLayout(columns.reshape('c', n, samples, c, shape[2], shape[3]));
    }
}
