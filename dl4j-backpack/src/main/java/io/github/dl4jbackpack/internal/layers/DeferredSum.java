// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.UnaryOperator;

/**
 * The library's {@link WeightedGradientSum.Deferred}: the parameter's shape and a function of the weights that
 * forms {@code Σ_n w_n g_n} from arrays copied out of the pass. Checks the weights and hands the function an
 * {@code [N]} vector in the pass's data type; every sum of {@link #of} and its temporaries are made in the
 * caller's current workspace, if any, those of {@link #addTo} in the first-order scratch workspace. Keeps the
 * copies it owns ({@link #owning}) until {@link #close()} or a garbage collection frees them.
 */
final class DeferredSum implements WeightedGradientSum.Deferred {

    /** The most scratch memory one {@link #addTo} needed so far: the size of the scope it opens. */
    private static final AtomicLong ADD_SCRATCH = new AtomicLong();

    private final long batchSize;
    private final long[] shape;
    private final DataType dataType;
    private final UnaryOperator<INDArray> sum;
    /** What this sum alone keeps: its own copies (INDArray) and the sums it is built on (DeferredSum). */
    private final java.util.List<Object> owned = new java.util.ArrayList<>();
    private volatile boolean closed;
    /** Whether the sum's function opens the scratch scopes of its temporaries itself ({@link #scopingItself}). */
    private boolean scopesItself;
    /** Adds the sum for weights {@code [N]} to a target in place, or null to add {@link #of}'s array. */
    private final java.util.function.BiConsumer<INDArray, INDArray> adder;

    /**
     * @param batchSize N
     * @param shape the parameter's shape
     * @param dataType the pass's data type
     * @param sum maps weights {@code [N]} (in that data type) to the sum, of that shape
     */
    DeferredSum(long batchSize, long[] shape, DataType dataType, UnaryOperator<INDArray> sum) {
        this(batchSize, shape, dataType, sum, null);
    }

    /**
     * @param batchSize N
     * @param shape the parameter's shape
     * @param dataType the pass's data type
     * @param sum maps weights {@code [N]} (in that data type) to the sum, of that shape
     * @param adder adds the sum for weights {@code [N]} to a target of that shape and data type in place, where the
     *     target's layout allows (returns false otherwise)
     */
    DeferredSum(long batchSize, long[] shape, DataType dataType, UnaryOperator<INDArray> sum,
                java.util.function.BiPredicate<INDArray, INDArray> adder) {
        this.batchSize = batchSize;
        this.shape = shape.clone();
        this.dataType = dataType;
        this.sum = sum;
        this.adder = adder == null ? null : (w, target) -> {
            if (!adder.test(w, target)) {
                target.addi(sum.apply(w));
            }
        };
    }

    /**
     * Marks a sum whose function opens scratch scopes for its temporaries itself (chunk by chunk): {@link #addTo}
     * then opens none around it.
     *
     * @return this
     */
    DeferredSum scopingItself() {
        scopesItself = true;
        return this;
    }

    /**
     * @param parts copies made for this sum alone (freed by {@link #close}), or sums it is built on (closed with it)
     * @return this
     */
    DeferredSum owning(Object... parts) {
        owned.addAll(Arrays.asList(parts));
        return this;
    }

    /**
     * Frees the copies this sum keeps, now rather than at a garbage collection; sums afterwards are refused, as
     * are those of the layer's other sums sharing a copy (a bias sharing its weight's {@code Δ}). Idempotent.
     */
    @Override
    public void close() {
        closed = true;
        for (Object part : owned) {
            if (part instanceof INDArray a) {
                if (!a.wasClosed() && a.closeable()) {
                    a.close();
                }
            } else {
                ((DeferredSum) part).close();
            }
        }
        owned.clear();
    }

    /** @throws IllegalStateException if this sum, or a sum of its layer sharing its copies, was closed */
    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("this weighted sum was closed (its copies freed)");
        }
        for (Object part : owned) {
            if (part instanceof INDArray a ? a.wasClosed() : ((DeferredSum) part).closed) {
                throw new IllegalStateException("this weighted sum's copies were freed when another sum of its "
                        + "layer sharing them was closed");
            }
        }
    }

    /**
     * The sums of parameters whose individual gradients are formed anyway: one product of the weights with them.
     *
     * @param gradients {@code g_n}, {@code [N, *p]}, outside any workspace and never modified afterwards
     * @return the deferred sums of that parameter
     */
    static DeferredSum ofIndividualGradients(INDArray gradients) {
        long n = gradients.size(0);
        long[] shape = Arrays.copyOfRange(gradients.shape(), 1, gradients.rank());
        INDArray g = copyIfAttached(gradients);
        DeferredSum sum = new DeferredSum(n, shape, g.dataType(), w -> {
            INDArray flat = g.reshape('c', n, g.length() / n);
            return w.reshape('c', 1, n).mmul(flat).reshape('c', shape);
        });
        // gradients not copied here may be another extension's value (BatchGrad's): not this sum's to free
        return g != gradients ? sum.owning(g) : sum;
    }

    /**
     * @param array an array of the pass, possibly in a workspace or overwritten by DL4J later
     * @return a c-ordered copy outside any workspace
     */
    static INDArray copy(INDArray array) {
        return copy(array, 'c');
    }

    /**
     * @param array an array of the pass, possibly in a workspace or overwritten by DL4J later
     * @param order the copy's order, {@code 'c'} or {@code 'f'}
     * @return a copy in that order outside any workspace
     */
    static INDArray copy(INDArray array, char order) {
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            return array.dup(order);
        }
    }

    private static INDArray copyIfAttached(INDArray array) {
        return array.isAttached() ? copy(array) : array;
    }

    /**
     * @param layout maps a matrix-layout value to the parameter's shape
     * @param dataType the pass's data type
     * @param matrixShape the matrix layout's shape
     * @return the parameter's shape (the layout applied to zeros)
     */
    static long[] shapeOf(UnaryOperator<INDArray> layout, DataType dataType, long... matrixShape) {
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            return layout.apply(Nd4j.create(dataType, matrixShape)).shape().clone();
        }
    }

    /** @return the pass's data type, that of every sum */
    DataType dataType() {
        return dataType;
    }

    @Override
    public long batchSize() {
        return batchSize;
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    @Override
    public INDArray of(INDArray weights) {
        INDArray result = sum.apply(checked(weights));
        return result.isView() || !Arrays.equals(result.shape(), shape) ? result.dup('c').reshape('c', shape) : result;
    }

    /**
     * {@inheritDoc} Nothing the sum needs outlives the call, so its temporaries live in the first-order scratch
     * workspace of the calling thread (the one the extended passes compute in, grown to what the largest sum
     * needed so far), unless that workspace is in use (then in the caller's current workspace).
     */
    @Override
    public void addTo(INDArray weights, INDArray target) {
        if (!Arrays.equals(target.shape(), shape)) {
            throw new IllegalArgumentException("the target must have the parameter's shape " + Arrays.toString(shape)
                    + ", got " + Arrays.toString(target.shape()));
        }
        String id = ScratchWorkspace.FIRST_ORDER;
        if (scopesItself || ScratchWorkspace.isActive(id)) {
            add(weights, target);
            return;
        }
        try (ScratchWorkspace scratch = ScratchWorkspace.open(id, Math.max(ADD_SCRATCH.get(),
                ScratchWorkspace.allocatedBytes(id)))) {
            add(weights, target);
            ADD_SCRATCH.accumulateAndGet(scratch.used(), Math::max);
        }
    }

    private void add(INDArray weights, INDArray target) {
        INDArray w = checked(weights);
        if (adder == null || target.dataType() != dataType) {
            target.addi(sum.apply(w));
        } else {
            adder.accept(w, target);
        }
    }

    /** @return the weights as an {@code [N]} vector of the pass's data type */
    private INDArray checked(INDArray weights) {
        checkOpen();
        if (weights == null || weights.length() != batchSize) {
            throw new IllegalArgumentException("weights must have one value per example, N = " + batchSize
                    + ", got " + (weights == null ? "null" : "shape " + Arrays.toString(weights.shape())));
        }
        return weights.castTo(dataType).reshape('c', new long[] {batchSize});
    }
}
