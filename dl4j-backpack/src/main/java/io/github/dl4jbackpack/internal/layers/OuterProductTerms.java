// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import io.github.dl4jbackpack.internal.memory.ResultMemory;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * First-order terms of parameters shared over positions: a weight's per-example gradient is a sum of
 * outer products over P positions, {@code g_n = Σ_p δ_np u_npᵀ = Δ_n U_nᵀ} (a convolution's output
 * positions with its unfolded input, a layer applied at every time step with its inputs, a recurrent
 * weight with the previous step's output), and a bias's is {@code Σ_p δ_np}.
 *
 * <p>Costs: the individual gradients are one batched product ({@code [N, O, K]}); the squared norms
 * use the Gram matrices of positions, {@code ‖g_n‖² = Σ_{p,q} (U_nᵀU_n)_pq (Δ_nᵀΔ_n)_pq}, when
 * {@code P² < O·K}, and otherwise, like the second moment and the variance (each chunk's deviations
 * from its own mean, merged pairwise), per-example gradients formed in chunks of at most {@link #CHUNK_ELEMENTS} elements:
 * only {@code BatchGrad} and {@code BatchDotGrad} hold {@code N × #params} at once. A convolution's
 * unfolded input is never held for the whole batch: it is unfolded chunk by chunk of examples
 * ({@link #unfoldedWeight}), and its norms use Gram matrices only where they cost fewer operations.
 * Weighted sums keep the individual gradients where they are smaller than the copies of {@code Δ}
 * and the input they would keep otherwise (a first convolution over a large image).
 */
public final class OuterProductTerms extends FirstOrderTerms {

    /** Upper bound on the number of elements of individual gradients formed at once for reductions. */
    public static final long CHUNK_ELEMENTS = 1L << 24;
    /**
     * The largest temporary of a weighted sum that unfolds its input again, in numbers: such a sum runs after the
     * pass, often in every training step (private training), so its chunks of examples are kept small.
     */
    public static final long UNFOLDED_SUM_CHUNK_ELEMENTS = 1L << 21;
    /**
     * The temporaries of one step of a pass's loop over chunks of examples whose input is unfolded by chunks, in
     * numbers (32 MB in float): chunks four times those of {@link #UNFOLDED_SUM_CHUNK_ELEMENTS}, as the pass forms
     * gradients or Gram matrices besides the unfolding (measured on 3C3D: a quarter of this made a private step
     * 15–20% slower at two threads for 15 MB less).
     */
    public static final long UNFOLDED_STEP_ELEMENTS = 1L << 23;

    /** One parameter: a weight (outer products) or a bias (sums), and the map to its parameter layout. */
    private static final class Entry {
        final String name;
        final INDArray delta;      // [N, O, P]
        /** {@code U}, {@code [N, K, P]}; null for a bias and for a weight whose {@code U} is unfolded by chunks. */
        final INDArray input;
        /** K, the rows of {@code U} (0 for a bias). */
        final long k;
        final UnaryOperator<INDArray> layout;
        /** Whether the matrix layout is {@code [K, O]} (the transpose of {@code Δ_n U_nᵀ}) rather than {@code [O, K]}. */
        final boolean inputMajor;
        /** The smaller array {@code U} is computed from (a convolution's input before unfolding), or null. */
        final INDArray source;
        /** Computes {@code U} from {@link #source} or a part or copy of it, or null. */
        final UnaryOperator<INDArray> unfold;
        /** The matrix-layout gradients of all examples, once formed in this pass (for the norms or a sum), or null. */
        INDArray wholeGradients;

        Entry(String name, INDArray delta, INDArray input, long k, UnaryOperator<INDArray> layout, boolean inputMajor,
              INDArray source, UnaryOperator<INDArray> unfold) {
            this.name = name;
            this.delta = delta;
            this.input = input;
            this.k = k;
            this.layout = layout;
            this.inputMajor = inputMajor;
            this.source = source;
            this.unfold = unfold;
        }

        long n() {
            return delta.size(0);
        }

        boolean isBias() {
            return k == 0;
        }

        long size() {
            return delta.size(1) * (isBias() ? 1 : k);
        }

        /** @return the shape of a value in matrix layout: {@code [O]}, {@code [O, K]} or {@code [K, O]} */
        long[] matrixShape() {
            long o = delta.size(1);
            return isBias() ? new long[] {o} : inputMajor ? new long[] {k, o} : new long[] {o, k};
        }

        /** @return the rows {@code [from, to)} of an array */
        static INDArray rows(INDArray a, long from, long to) {
            org.nd4j.linalg.indexing.INDArrayIndex[] index = new org.nd4j.linalg.indexing.INDArrayIndex[a.rank()];
            java.util.Arrays.fill(index, NDArrayIndex.all());
            index[0] = NDArrayIndex.interval(from, to);
            return a.get(index);
        }

        /** @return {@code U} of examples {@code [from, to)}: a view of it, or unfolded now in the current scope */
        INDArray inputOf(long from, long to) {
            return input != null ? rows(input, from, to) : unfold.apply(rows(source, from, to));
        }

        /**
         * @param gradientCopies how many arrays of its gradients a step allocates per example: 0 where it writes them
         *     into an array made before the loop, 1 where it reduces them in place, 2 where it squares a copy
         * @return the numbers one example adds to a step's temporaries where {@code U} is unfolded by chunks: its
         *     unfolding and its gradients as many times as allocated ({@code Δ}'s rows are views). Measured on 3C3D,
         *     a step used what this counts to within 10%.
         */
        long stepElementsPerExample(int gradientCopies) {
            return k * delta.size(2) + gradientCopies * size();
        }

        /**
         * @return the numbers one example adds to a step of the squared norms: its unfolding and the two Gram
         *     matrices of positions where the norms use them, else two arrays of its gradients
         */
        long normStepElementsPerExample() {
            long p = delta.size(2);
            return normsFromGrams() ? k * p + 2 * p * p : stepElementsPerExample(2);
        }

        /**
         * @return whether the squared norms come from Gram matrices of positions rather than from the gradients:
         *     where {@code U} is held, when they are smaller ({@code P² < O·K}); where it is unfolded by chunks
         *     (memory bounded either way), when they cost fewer operations ({@code P²(K + O) < O·K·P})
         */
        boolean normsFromGrams() {
            if (isBias()) {
                return false;
            }
            long p = delta.size(2);
            return input != null ? p * p < size() : p * (k + delta.size(1)) < size();
        }

        /**
         * @param elementsPerExample the numbers one example adds to a step's temporaries where {@code U} is unfolded
         *     by chunks
         * @return how many examples one step of a loop over examples takes: at most {@link #CHUNK_ELEMENTS} numbers
         *     of gradients and, where {@code U} is unfolded by chunks, at most {@link #UNFOLDED_STEP_ELEMENTS}
         *     numbers of temporaries; the batch is split into as few steps as that allows, of equal sizes
         */
        long chunk(long elementsPerExample) {
            long step = Math.max(1, Math.min(n(), CHUNK_ELEMENTS / Math.max(1, size())));
            if (input == null && !isBias()) {
                step = Math.max(1, Math.min(step, UNFOLDED_STEP_ELEMENTS / elementsPerExample));
            }
            long steps = (n() + step - 1) / step;
            return (n() + steps - 1) / steps;
        }

        /**
         * Runs a step per chunk of examples ({@link #chunk}); where {@code U} is unfolded by chunks, each step in a
         * loop-step workspace of its own (unless one is open already), so that the steps' temporaries reuse one
         * block: a step writes what it keeps into arrays made before the loop.
         *
         * @param elementsPerExample the numbers one example adds to a step's temporaries
         *     ({@link #stepElementsPerExample}, {@link #normStepElementsPerExample})
         * @param step receives the examples {@code [from, to)}
         */
        void forEachChunk(long elementsPerExample, java.util.function.BiConsumer<Long, Long> step) {
            long chunk = chunk(elementsPerExample);
            boolean scoped = input == null && !isBias() && !ScratchWorkspace.isActive(ScratchWorkspace.LOOP_STEP);
            // besides the examples' temporaries, a few vectors of one gradient's size per step (a chunk's mean); a
            // loop of several steps plans the whole step budget, so that one workspace serves the loops of every
            // large layer rather than being made again larger (the chunks' equal sizes leave part of it unused)
            long planned = Math.max(Math.min(UNFOLDED_STEP_ELEMENTS, elementsPerExample * n()),
                    elementsPerExample * chunk);
            long stepBytes = (planned + 4 * size()) * delta.dataType().width() + ScratchWorkspace.MINIMUM_BYTES;
            for (long from = 0; from < n(); from += chunk) {
                long to = Math.min(n(), from + chunk);
                if (!scoped) {
                    step.accept(from, to);
                    continue;
                }
                try (ScratchWorkspace ignored = ScratchWorkspace.open(ScratchWorkspace.LOOP_STEP, stepBytes)) {
                    step.accept(from, to);
                }
            }
        }

        /**
         * @return the matrix-layout gradients of examples {@code [from, to)}: {@code [n, O, K]} ({@code [n, K, O]}
         *     input-major) or {@code [n, O]}
         */
        INDArray gradients(long from, long to) {
            return gradients(from, to, null);
        }

        /**
         * @param out receives the gradients (shaped as returned), or null to allocate them in the current scope
         * @return the gradients of examples {@code [from, to)}, as {@link #gradients(long, long)}
         */
        private INDArray gradients(long from, long to, INDArray out) {
            INDArray d = rows(delta, from, to);
            if (isBias()) {
                return out == null ? d.sum(2) : out.assign(d.sum(2));
            }
            INDArray u = inputOf(from, to);
            if (out == null) {
                return inputMajor ? Nd4j.matmul(u, d, false, true, false) : Nd4j.matmul(d, u, false, true, false);
            }
            return inputMajor ? Nd4j.matmul(u, d, out, false, true, false) : Nd4j.matmul(d, u, out, false, true, false);
        }

        /** @return the shape of all examples' matrix-layout gradients */
        private long[] wholeShape() {
            long o = delta.size(1);
            return isBias() ? new long[] {n(), o} : inputMajor ? new long[] {n(), k, o} : new long[] {n(), o, k};
        }

        /**
         * @return whether a weighted sum keeps the individual gradients ({@code N·O·K} numbers) rather than copies
         *     of {@code Δ} and {@code U} or its source: where they are smaller (a first convolution over a large
         *     image with few input channels: {@code K ≪ P})
         */
        boolean sumKeepsGradients() {
            if (isBias()) {
                return false;
            }
            long copies = delta.length() + (unfold != null ? source.length() : input.length());
            return n() * size() < copies;
        }

        /**
         * @return the matrix-layout gradients of all examples: those formed before in this pass, else formed now
         *     (by chunks where {@code U} is unfolded by chunks) in the current scope and remembered
         */
        INDArray wholeGradients() {
            if (wholeGradients == null) {
                if (input != null || isBias()) {
                    wholeGradients = gradients(0, n());
                } else {
                    INDArray all = Nd4j.create(delta.dataType(), wholeShape());
                    forEachChunk(stepElementsPerExample(1),
                            (from, to) -> rows(all, from, to).assign(gradients(from, to)));
                    wholeGradients = all;
                }
            }
            return wholeGradients;
        }

        /**
         * @return the matrix-layout gradients of all examples as a result outside every workspace, in memory that
         *     closed results released ({@link ResultMemory}): a copy of those formed before in this pass, else
         *     formed into it now (by chunks where {@code U} is unfolded by chunks) and remembered
         */
        INDArray wholeGradientsAsResult() {
            if (wholeGradients != null) {
                return ResultMemory.outsideWorkspaces(wholeGradients);
            }
            INDArray all = ResultMemory.uninitialized(delta.dataType(), wholeShape());
            if (input != null || isBias()) {
                gradients(0, n(), all);
            } else {
                forEachChunk(stepElementsPerExample(0), (from, to) -> gradients(from, to, rows(all, from, to)));
            }
            wholeGradients = all;
            return all;
        }

        /**
         * @param copies the copies already made for other entries of this layer, by the array copied ({@code Δ}
         *     shared by a recurrent layer's weights is copied once)
         * @return {@code Σ_n w_n g_n} for later weights: a bias keeps {@code Σ_p δ_np} ({@code [N, O]}), a weight
         *     keeps {@code Δ} as {@code [O, N·P]} and {@code U} as {@code [K, N·P]} (or, where {@code U} is computed
         *     from a smaller source, the source, unfolded again for each sum), and forms one product with the
         *     examples' columns of {@code Δ} scaled
         */
        DeferredSum deferredSum(Map<INDArray, INDArray> copies) {
            long n = n();
            long o = delta.size(1);
            long p = delta.size(2);
            DataType type = delta.dataType();
            if (isBias()) {
                INDArray sums = DeferredSum.copy(delta.sum(2));
                return new DeferredSum(n, DeferredSum.shapeOf(layout, type, o), type,
                        w -> layout.apply(w.reshape('c', 1, n).mmul(sums).reshape('c', new long[] {o}))).owning(sums);
            }
            if (sumKeepsGradients()) {
                INDArray kept = wholeGradients != null ? DeferredSum.copy(wholeGradients) : outOfWorkspaces();
                return DeferredSum.ofIndividualGradients(layout.apply(kept)).owning(kept);
            }
            INDArray d = copies.computeIfAbsent(delta, a -> positionsAsColumns(a));
            long[] matrix = inputMajor ? new long[] {k, o} : new long[] {o, k};
            if (unfold != null) {
                return unfoldingSum(n, o, k, p, type, matrix, d, copies.computeIfAbsent(source, DeferredSum::copy));
            }
            INDArray u = copies.computeIfAbsent(input, a -> positionsAsColumns(a));
            return new DeferredSum(n, DeferredSum.shapeOf(layout, type, matrix), type, w -> {
                INDArray scaled = org.nd4j.linalg.factory.Broadcast.mul(d.reshape('c', o, n, p), w,
                        Nd4j.create(type, o, n, p), 1).reshape('c', o, n * p);
                return layout.apply(inputMajor ? u.mmul(scaled.transpose()) : scaled.mmul(u.transpose()));
            }).owning(d, u);
        }

        /** @return {@link #wholeGradients()} formed outside every workspace */
        private INDArray outOfWorkspaces() {
            try (org.nd4j.linalg.api.memory.MemoryWorkspace ignored =
                         Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                return wholeGradients();
            }
        }

        /**
         * The sum of a weight whose {@code U} is unfolded again from the kept source: in chunks of examples, each
         * unfolded, laid out {@code [K, c·P]} and multiplied by its examples' scaled columns of {@code Δ} in a
         * loop-step scope, so that a sum needs the memory of a chunk ({@link #UNFOLDED_SUM_CHUNK_ELEMENTS} numbers
         * per temporary) rather than of the whole batch's unfolded input twice.
         */
        private DeferredSum unfoldingSum(long n, long o, long k, long p, DataType type, long[] matrix, INDArray d,
                                         INDArray kept) {
            long step = Math.max(1, Math.min(n, UNFOLDED_SUM_CHUNK_ELEMENTS / Math.max(1, Math.max(k, o) * p)));
            // the unfolded chunk, its [K, c·P] layout, the scaled columns, the product
            long stepBytes = ((2 * k + o) * step * p + 2 * o * k) * type.width() + ScratchWorkspace.MINIMUM_BYTES;
            return new DeferredSum(n, DeferredSum.shapeOf(layout, type, matrix), type, w -> {
                // in the caller's workspace: it outlives the chunks' scopes
                INDArray sum = Nd4j.create(type, matrix);
                for (long from = 0; from < n; from += step) {
                    long to = Math.min(n, from + step);
                    long c = to - from;
                    // after the pass (a private step) the chunks reuse the first-order scratch workspace, which the
                    // pass sized; inside a scope of it, a loop-step workspace of their own
                    String scratch = ScratchWorkspace.isActive(ScratchWorkspace.FIRST_ORDER)
                            ? ScratchWorkspace.LOOP_STEP : ScratchWorkspace.FIRST_ORDER;
                    try (ScratchWorkspace ignored = ScratchWorkspace.open(scratch, Math.max(stepBytes,
                            ScratchWorkspace.allocatedBytes(scratch)))) {
                        INDArray u = columnsOf(unfold.apply(rows(kept, from, to)));
                        INDArray columns = d.get(NDArrayIndex.all(), NDArrayIndex.interval(from * p, to * p))
                                .reshape('c', o, c, p);
                        INDArray scaled = org.nd4j.linalg.factory.Broadcast.mul(columns,
                                w.get(NDArrayIndex.interval(from, to)), Nd4j.create(type, o, c, p), 1)
                                .reshape('c', o, c * p);
                        sum.addi(inputMajor ? u.mmul(scaled.transpose()) : scaled.mmul(u.transpose()));
                    }
                }
                return layout.apply(sum);
            }).owning(d, kept).scopingItself();
        }

        /**
         * @return {@code [N, C, P]} as a c-ordered copy {@code [C, N·P]} outside any workspace (the copy itself, not
         *     a reshaped view of it, so that it can be freed)
         */
        private static INDArray positionsAsColumns(INDArray a) {
            try (org.nd4j.linalg.api.memory.MemoryWorkspace ignored =
                         Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                INDArray columns = Nd4j.createUninitialized(a.dataType(), new long[] {a.size(1), a.size(0) * a.size(2)},
                        'c');
                columns.reshape('c', a.size(1), a.size(0), a.size(2)).assign(a.permute(1, 0, 2));
                return columns;
            }
        }

        /** @return {@code [N, C, P]} as {@code [C, N·P]}, in the current workspace */
        private static INDArray columnsOf(INDArray a) {
            return a.permute(1, 0, 2).dup('c').reshape('c', a.size(1), a.size(0) * a.size(2));
        }
    }

    private final List<Entry> entries = new ArrayList<>();

    /**
     * Adds a weight with {@code g_n = Δ_n U_nᵀ}.
     *
     * @param name the DL4J parameter name
     * @param delta {@code Δ}, {@code [N, O, P]}
     * @param input {@code U}, {@code [N, K, P]}, in the data type of {@code delta}
     * @param layout maps matrix-layout values {@code [O, K]} or {@code [n, O, K]} to the parameter's shape
     *     ({@code [*p]} or {@code [n, *p]})
     * @return this
     */
    public OuterProductTerms weight(String name, INDArray delta, INDArray input, UnaryOperator<INDArray> layout) {
        entries.add(new Entry(name, delta, input, input.size(1), layout, false, null, null));
        return this;
    }

    /**
     * Adds a weight with {@code g_n = Δ_n U_nᵀ} whose {@code U} is computed from a smaller array (a convolution's
     * unfolded input from its input) and never held for the whole batch: each computation unfolds chunks of
     * examples ({@link #UNFOLDED_STEP_ELEMENTS} numbers of temporaries at most) in a loop-step workspace, and
     * the weighted sums of {@link #weightedGradientSums()} keep a copy of that array and unfold it again when a sum
     * is formed.
     *
     * @param name the DL4J parameter name
     * @param delta {@code Δ}, {@code [N, O, P]}
     * @param k the rows of {@code U} ({@code [N, K, P]})
     * @param layout maps matrix-layout values {@code [O, K]} or {@code [n, O, K]} to the parameter's shape
     * @param source the array {@code U} is computed from, in the data type of {@code delta}
     * @param unfold computes {@code U} from {@code source}, a part of it (its first axis being the examples') or a
     *     copy of it
     * @return this
     */
    public OuterProductTerms unfoldedWeight(String name, INDArray delta, long k, UnaryOperator<INDArray> layout,
                                            INDArray source, UnaryOperator<INDArray> unfold) {
        entries.add(new Entry(name, delta, null, k, layout, false, source, unfold));
        return this;
    }

    /**
     * Adds a weight stored input-major, {@code [K, O]} (DL4J's dense and recurrent weights), whose individual
     * gradients {@code g_nᵀ = U_n Δ_nᵀ} are formed in that layout directly (no transposed copy).
     *
     * @param name the DL4J parameter name
     * @param delta {@code Δ}, {@code [N, O, P]}
     * @param input {@code U}, {@code [N, K, P]}, in the data type of {@code delta}
     * @param layout maps values {@code [K, O]} or {@code [n, K, O]} to the parameter's shape
     * @return this
     */
    public OuterProductTerms inputMajorWeight(String name, INDArray delta, INDArray input,
                                              UnaryOperator<INDArray> layout) {
        entries.add(new Entry(name, delta, input, input.size(1), layout, true, null, null));
        return this;
    }

    /**
     * Adds a bias with {@code g_n = Σ_p δ_np}.
     *
     * @param name the DL4J parameter name
     * @param delta {@code Δ}, {@code [N, O, P]}
     * @param layout maps {@code [O]} or {@code [n, O]} to the parameter's shape
     * @return this
     */
    public OuterProductTerms bias(String name, INDArray delta, UnaryOperator<INDArray> layout) {
        entries.add(new Entry(name, delta, null, 0, layout, false, null, null));
        return this;
    }

    /**
     * The second-order counterpart of a weight's outer products: for factor columns {@code s_nv [O, P]} at
     * the positions of example n and its input {@code U_n [K, P]}, {@code Σ_v (s_nv U_nᵀ)²} (squared
     * elementwise), the contribution of the columns to the weight's curvature diagonal in matrix layout. The
     * products {@code [examples, columns·O, K]} are formed in chunks of at most {@link #CHUNK_ELEMENTS}
     * elements, each in the loop-step scratch workspace.
     *
     * @param columns {@code [N, V, O, P]}
     * @param input {@code U}, {@code [N, K, P]}, in the data type of the columns
     * @param perExample whether to keep the examples apart
     * @return {@code [N, O, K]} per example, else {@code [O, K]} summed over the examples
     */
    public static INDArray squaredColumnGradients(INDArray columns, INDArray input, boolean perExample) {
        long n = columns.size(0);
        long v = columns.size(1);
        long o = columns.size(2);
        long k = input.size(1);
        long p = input.size(2);
        long columnStep = Math.max(1, Math.min(v, CHUNK_ELEMENTS / Math.max(1, o * k)));
        long step = Math.max(1, Math.min(n, CHUNK_ELEMENTS / Math.max(1, columnStep * o * k)));
        INDArray out = perExample ? Nd4j.create(columns.dataType(), n, o, k) : Nd4j.create(columns.dataType(), o, k);
        long stepBytes = 3 * (columnStep * o * p * n + step * columnStep * o * k) * columns.dataType().width();
        for (long c0 = 0; c0 < v; c0 += columnStep) {
            long c1 = Math.min(v, c0 + columnStep);
            for (long from = 0; from < n; from += step) {
                long to = Math.min(n, from + step);
                try (ScratchWorkspace ignored = ScratchWorkspace.open(ScratchWorkspace.LOOP_STEP, stepBytes)) {
                    INDArray s = columns.get(NDArrayIndex.interval(from, to), NDArrayIndex.interval(c0, c1)).dup('c')
                            .reshape('c', to - from, (c1 - c0) * o, p);
                    INDArray g = Nd4j.matmul(s, input.get(NDArrayIndex.interval(from, to), NDArrayIndex.all(),
                            NDArrayIndex.all()), false, true, false);
                    INDArray squares = g.muli(g).reshape('c', to - from, c1 - c0, o, k).sum(1);
                    if (perExample) {
                        out.get(NDArrayIndex.interval(from, to), NDArrayIndex.all(), NDArrayIndex.all()).addi(squares);
                    } else {
                        out.addi(squares.sum(0));
                    }
                }
            }
        }
        return out;
    }

    /**
     * The second-order counterpart of a bias's sums: {@code Σ_v (Σ_p s_nvp)²}.
     *
     * @param columns {@code [N, V, O, P]}
     * @param perExample whether to keep the examples apart
     * @return {@code [N, O]} per example, else {@code [O]}
     */
    public static INDArray squaredColumnSums(INDArray columns, boolean perExample) {
        INDArray t = columns.sum(3);
        INDArray squares = t.muli(t).sum(1);
        return perExample ? squares : squares.sum(0);
    }

    /** Weights keep their layer's {@code Δ} and {@code U} (copied once per layer), biases their sums over positions. */
    @Override
    protected Map<String, WeightedGradientSum.Deferred> computeWeightedGradientSums() {
        Map<String, WeightedGradientSum.Deferred> out = new LinkedHashMap<>();
        Map<String, INDArray> known = individualGradientsIfComputed();
        Map<INDArray, INDArray> copies = new IdentityHashMap<>();
        for (Entry e : entries) {
            out.put(e.name, known != null ? DeferredSum.ofIndividualGradients(known.get(e.name)) : e.deferredSum(copies));
        }
        return out;
    }

    @Override
    protected Map<String, INDArray> computeIndividualGradients() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (Entry e : entries) {
            out.put(e.name, e.layout.apply(e.wholeGradientsAsResult()));
        }
        return out;
    }

    /**
     * Adds the sum over the first axis of {@code values} to {@code target}: one BLAS product of a row of ones with
     * the values as {@code [n, m]}, accumulated into the target itself (ND4J's reduction along the first axis reads
     * the array with a stride per element, and a product that returns its result allocates it).
     *
     * @param values {@code [n, …]}, c-ordered
     * @param target {@code […]} (or any shape of as many elements), c-ordered and contiguous
     * @return the target
     */
    private static INDArray addSumOverExamples(INDArray values, INDArray target) {
        long n = values.size(0);
        long m = values.length() / n;
        INDArray ones = Nd4j.ones(values.dataType(), 1, n);
        Nd4j.gemm(ones, values.reshape('c', n, m), target.reshape('c', 1, m), false, false, 1.0, 1.0);
        return target;
    }

    private static INDArray flat(INDArray g) {
        return g.reshape('c', g.size(0), g.length() / g.size(0));
    }

    @Override
    protected Map<String, INDArray> computeSquaredNorms() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        Map<String, INDArray> known = individualGradientsIfComputed();
        for (Entry e : entries) {
            if (known != null) {
                INDArray g = flat(known.get(e.name).dup('c'));
                out.put(e.name, g.muli(g).sum(1));
            } else if (e.wholeGradients != null || (e.sumKeepsGradients() && e.n() * e.size() <= CHUNK_ELEMENTS)) {
                // formed once for the norms and a weighted sum of the same pass
                INDArray g = flat(e.wholeGradients().dup('c'));
                out.put(e.name, g.muli(g).sum(1));
            } else {
                INDArray norms = Nd4j.create(e.delta.dataType(), e.n());
                boolean gram = e.normsFromGrams();
                e.forEachChunk(e.normStepElementsPerExample(), (from, to) -> {
                    INDArray chunk;
                    if (gram) {
                        // tr(Δ_n (U_nᵀ U_n) Δ_nᵀ) = Σ_{p,q} (U_nᵀU_n)_pq (Δ_nᵀΔ_n)_pq
                        INDArray u = e.inputOf(from, to);
                        INDArray d = Entry.rows(e.delta, from, to);
                        chunk = Nd4j.matmul(u, u, true, false, false).muli(Nd4j.matmul(d, d, true, false, false))
                                .sum(1, 2);
                    } else {
                        INDArray g = flat(e.gradients(from, to).dup('c'));
                        chunk = g.muli(g).sum(1);
                    }
                    norms.get(NDArrayIndex.interval(from, to)).assign(chunk);
                });
                out.put(e.name, norms);
            }
        }
        return out;
    }

    @Override
    protected Map<String, INDArray> computeSumGradSquared() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        Map<String, INDArray> known = individualGradientsIfComputed();
        for (Entry e : entries) {
            if (known != null) {
                INDArray g = known.get(e.name);
                out.put(e.name, g.mul(g).sum(0));
                continue;
            }
            INDArray sum = Nd4j.create(e.delta.dataType(), e.matrixShape());
            e.forEachChunk(e.stepElementsPerExample(1), (from, to) -> {
                INDArray g = e.gradients(from, to);
                addSumOverExamples(g.muli(g), sum);
            });
            out.put(e.name, e.layout.apply(sum));
        }
        return out;
    }

    /**
     * One pass over chunks of examples: each chunk's mean and sum of squared deviations from it, merged into the
     * batch's (Chan, Golub and LeVeque's pairwise update: {@code M2 = M2_a + M2_b + δ²·n_a·n_b/n}, with {@code δ} the
     * difference of the means), so that no {@code E[g²] − E[g]²} cancels and the gradients are formed once.
     */
    @Override
    protected Map<String, INDArray> computeVariance() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        Map<String, INDArray> known = individualGradientsIfComputed();
        for (Entry e : entries) {
            if (known != null) {
                out.put(e.name, twoPassVariance(known.get(e.name)));
                continue;
            }
            INDArray mean = Nd4j.create(e.delta.dataType(), e.size());
            INDArray squares = Nd4j.create(e.delta.dataType(), e.size());
            long[] seen = {0};
            e.forEachChunk(e.stepElementsPerExample(1), (from, to) -> {
                long c = to - from;
                // [c, size]: the chunk's gradients as rows (a view of the product's c-ordered result)
                INDArray g = flat(e.gradients(from, to));
                INDArray chunkMean = addSumOverExamples(g, Nd4j.create(g.dataType(), g.size(1))).divi(c);
                g.subiRowVector(chunkMean);
                long before = seen[0];
                long after = before + c;
                INDArray shift = chunkMean.subi(mean);
                addSumOverExamples(g.muli(g), squares);
                if (before > 0) {
                    squares.addi(shift.mul(shift).muli((double) before * c / after));
                }
                mean.addi(shift.muli((double) c / after));
                seen[0] = after;
            });
            out.put(e.name, e.layout.apply(squares.divi(e.n()).reshape('c', e.matrixShape())));
        }
        return out;
    }

    /**
     * One product {@code G Gᵀ} of the flattened individual gradients per parameter: those of {@code BatchGrad} if
     * asked in the same pass, else formed in the current (scratch) scope, where they need not outlive the pass.
     */
    @Override
    protected Map<String, INDArray> computeDots() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        Map<String, INDArray> known = individualGradientsIfComputed();
        for (Entry e : entries) {
            INDArray g = known != null ? flat(known.get(e.name).dup('c')) : flat(e.wholeGradients());
            out.put(e.name, g.mmul(g.transpose()));
        }
        return out;
    }
}
