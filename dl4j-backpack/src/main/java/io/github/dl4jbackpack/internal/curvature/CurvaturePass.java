// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.curvature;

import io.github.dl4jbackpack.extensions.CurvatureRequest;
import io.github.dl4jbackpack.extensions.FactorKind;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.internal.graph.Topology;
import io.github.dl4jbackpack.internal.layers.Columns;
import io.github.dl4jbackpack.internal.layers.ConvolutionDerivatives;
import io.github.dl4jbackpack.internal.layers.CurvatureSink;
import io.github.dl4jbackpack.internal.layers.ElementwiseActivations;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.RecordedLayer;
import io.github.dl4jbackpack.internal.layers.VertexDerivatives;
import io.github.dl4jbackpack.internal.layers.VertexRecord;
import io.github.dl4jbackpack.internal.losses.LossCurvature;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Broadcast;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The second-order backward pass (docs/math.md#second-order, #graphs), run right after DL4J's own
 * backward pass on what the nodes recorded. For every output it factors the loss Hessian at the
 * output layer's pre-activation and pushes the factor's columns down the network in reverse
 * topological order with Jacobian-transpose products ({@code S ← Jᵀ S}); where a node feeds several
 * consumers the columns arriving from them are summed; at every layer with parameters it adds
 * {@code Σ_v (J_θᵀ s_nv)²} to that layer's curvature diagonal (and/or the output-side Kronecker
 * factor). The outputs' columns are independent columns (the loss Hessian is block-diagonal over
 * outputs), so they are propagated one output at a time and their contributions add. For the
 * Hessian it also starts, at every activation with {@code φ'' ≠ 0}, the residual
 * {@code diag(φ''(z) ⊙ ∂L/∂a)} split into positive and negative parts, and pushes their square roots
 * down the same way with signs.
 *
 * <p>Memory: columns are processed in chunks so that a chunk, over all nodes it passes, stays within
 * the memory budget; the cost in time is that of one backward pass per column.
 */
public final class CurvaturePass {

    private final Topology topology;
    private final boolean[] region;
    private final Object[] records;
    private final Map<Integer, LossCurvature> losses;
    private final long batchSize;
    /** Per node position, the rows of its output: N, or k·N for a stacked batch. */
    private final long[] rows;
    private final long memoryBudget;
    /** Scratch elements per example and column at nodes whose columns are of one example each. */
    private final long plainPerRow;
    /** Scratch elements per example and column at nodes whose columns span the batch (N rows each). */
    private final long spanningPerRow;
    private final long widestConvolution;
    /**
     * The examples whose columns the current chunk carries, {@code [exampleFrom, exampleTo)}: where one
     * column spanning the batch for every example does not fit the budget, the examples are taken in
     * groups (docs/math.md#batch-normalization).
     */
    private long exampleFrom;
    private long exampleTo;
    /**
     * Scratch features per column and row that the chunks being planned need beyond every node's (a layer's
     * internal residual, whose columns start inside it), zero otherwise.
     */
    private long internalPerRow;

    /**
     * @param topology the network
     * @param region the nodes the pass walks ({@link #region(Topology)})
     * @param records per node position: a {@link RecordedLayer} or {@link VertexRecord} for every node in the region
     * @param losses the curvature of every output's loss, by output position
     * @param memoryBudget bytes that one chunk of factor columns may occupy
     * @param batchSize N
     * @param copies per node position, how many rows per example its output has (1, or k between a
     *     {@code StackVertex} of k inputs and the {@code UnstackVertex}es that undo it)
     */
    public CurvaturePass(Topology topology, boolean[] region, Object[] records, Map<Integer, LossCurvature> losses,
                         long memoryBudget, long batchSize, double[] copies) {
        this.topology = topology;
        this.region = region;
        this.records = records;
        this.losses = losses;
        this.batchSize = batchSize;
        this.rows = new long[copies.length];
        for (int i = 0; i < copies.length; i++) {
            rows[i] = Math.round(copies[i] * batchSize);
        }
        this.memoryBudget = memoryBudget;
        long plain = 0;
        long spanningScratch = 0;
        long convolution = 0;
        for (Node n : topology.nodes()) {
            if (region[n.position()] && records[n.position()] == null) {
                throw new IllegalStateException("the backward pass did not reach " + n.describe());
            }
        }
        // below a layer that normalises over the batch, or an unstacking vertex, every column spans the
        // batch: N times the rows (and k times more in a stacked batch)
        boolean[] spanning = topology.ancestorsOf(n -> region[n.position()]
                && (records[n.position()] instanceof RecordedLayer
                && ((RecordedLayer) records[n.position()]).couplesExamples()
                || records[n.position()] instanceof VertexRecord
                && ((VertexRecord) records[n.position()]).kind().requiresSpanningColumns()));
        for (Node n : topology.nodes()) {
            if (!region[n.position()]) {
                continue;
            }
            long copiesPerExample = Math.max(1, rows[n.position()] / batchSize);
            Object r = records[n.position()];
            long features;
            if (r instanceof RecordedLayer) {
                RecordedLayer l = (RecordedLayer) r;
                // the layer's own temporaries, the activation- and dropout-scaled copies of the columns
                features = l.kind().scratchFeatures(l) + 2 * l.outputFeatures();
                if (io.github.dl4jbackpack.internal.layers.ChannelsLastKind.channelsFirst(l.kind())
                        instanceof ConvolutionDerivatives) {
                    convolution = Math.max(convolution, l.layer().getParam("W").length());
                }
            } else {
                VertexRecord v = (VertexRecord) r;
                features = v.kind().scratchFeatures(v) + v.outputFeatures();
            }
            if (spanning[n.position()]) {
                spanningScratch += copiesPerExample * features;
            } else {
                plain += copiesPerExample * features;
            }
        }
        this.plainPerRow = plain;
        this.spanningPerRow = spanningScratch;
        this.widestConvolution = convolution;
        this.exampleFrom = 0;
        this.exampleTo = batchSize;
    }

    /**
     * @param node a node
     * @return whether it is a layer with trainable parameters: not frozen ({@code FrozenLayer},
     *     {@code FrozenLayerWithBackprop}, inside a {@code FrozenVertex}), whose parameters DL4J does
     *     not train and for which no quantity is computed
     */
    public static boolean isParametric(Node node) {
        if (!node.isLayer() || node.isFrozen() || node.layer().numParams() == 0) {
            return false;
        }
        return io.github.dl4jbackpack.internal.layers.LayerKinds.of(node.layer())
                .map(kind -> !kind.trainableParameters(node.layer()).isEmpty()).orElse(true);
    }

    /**
     * A softmax followed by cross-entropy on probabilities, split over two layers as Keras import and
     * some zoo models build it ({@code Dense(softmax)} or {@code ActivationLayer(softmax)}, then
     * {@code LossLayer(identity, MCXENT)}), is softmax cross-entropy of the first layer's
     * pre-activation: the pass starts there, with that loss's curvature, and the softmax is part of the
     * loss (no Jacobian or residual of its own).
     *
     * @param topology the network
     * @param output an output node
     * @return the layer whose softmax the output's loss completes, or null
     */
    public static Node fusedSoftmax(Topology topology, Node output) {
        if (!output.isLayer() || output.inputCount() != 1 || output.input(0) < 0 || output.preProcessor() != null
                || !(output.conf().getLayer() instanceof org.deeplearning4j.nn.conf.layers.LossLayer)) {
            return null;
        }
        org.deeplearning4j.nn.conf.layers.LossLayer conf =
                (org.deeplearning4j.nn.conf.layers.LossLayer) output.conf().getLayer();
        if (!io.github.dl4jbackpack.internal.losses.LossCurvatures.isCrossEntropyOfProbabilities(conf.getLossFn(),
                conf.getActivationFn())) {
            return null;
        }
        Node producer = topology.node(output.input(0));
        if (!producer.isLayer() || producer.isFrozen() || producer.consumers().size() != 1) {
            return null;
        }
        LayerDerivatives kind = io.github.dl4jbackpack.internal.layers.LayerKinds.of(producer.layer()).orElse(null);
        org.nd4j.linalg.activations.IActivation activation = kind == null ? null : kind.activation(producer.layer());
        return activation instanceof org.nd4j.linalg.activations.impl.ActivationSoftmax ? producer : null;
    }

    /**
     * @param topology a network
     * @return per position, whether the second-order pass walks the node: it lies on a path from a
     *     layer with parameters to an output
     */
    public static boolean[] region(Topology topology) {
        boolean[] up = topology.ancestorsOf(Node::isOutput);
        boolean[] down = topology.descendantsOf(CurvaturePass::isParametric);
        boolean[] region = new boolean[up.length];
        for (int i = 0; i < up.length; i++) {
            region[i] = up[i] && down[i];
        }
        return region;
    }

    /** What a chunk of the second-order pass processes: groups of examples, and columns of each. */
    private record Chunking(long examples, long columns) {
    }

    /**
     * Plans chunks of columns whose scratch memory fits the budget: every example's columns at once and as
     * many columns as fit; where not even one column of every example fits (columns spanning the batch
     * below a normalisation cost N times more each), one column of as many examples as fit. Columns that
     * already span the batch (residual parts of a normalisation) count as columns of one example each.
     *
     * @param columns the columns per example, or the columns spanning the batch
     * @param bytesPerElement size of one number
     * @param spanning whether the columns already span the batch
     * @throws IllegalStateException if not even one column of one example fits
     */
    private Chunking plan(long columns, int bytesPerElement, boolean spanning) {
        if (scratchBytes(1, 1, bytesPerElement) > memoryBudget) {
            throw new IllegalStateException(String.format("one factor column of this network and batch needs %.1f MB "
                    + "of scratch memory, more than the curvature memory budget of %.1f MB; raise it with "
                    + "BackPackNetwork.setCurvatureMemoryBudget(bytes) or use a smaller batch",
                    scratchBytes(1, 1, bytesPerElement) / 1e6, memoryBudget / 1e6));
        }
        if (spanning) {
            return new Chunking(batchSize, largest(columns, c -> scratchBytes(1, c, bytesPerElement) <= memoryBudget));
        }
        if (scratchBytes(batchSize, 1, bytesPerElement) > memoryBudget) {
            return new Chunking(largest(batchSize, e -> scratchBytes(e, 1, bytesPerElement) <= memoryBudget), 1);
        }
        return new Chunking(batchSize, largest(columns,
                c -> scratchBytes(batchSize, c, bytesPerElement) <= memoryBudget));
    }

    /** @return the largest k in [1, max] with {@code fits(k)}, for a monotone {@code fits} true at 1 */
    private static long largest(long max, java.util.function.LongPredicate fits) {
        long low = 1;
        long high = max;
        while (low < high) {
            long mid = low + (high - low + 1) / 2;
            if (fits.test(mid)) {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        return low;
    }

    /**
     * @return the scratch memory of a chunk of columns of some examples: every node's temporaries per
     *     column and example (N rows per column where columns span the batch, one per chunk example and
     *     column), plus the per-example products of convolutions, which are formed in bounded chunks
     */
    private long scratchBytes(long examples, long chunk, int bytesPerElement) {
        long rows = batchSize * chunk;
        long convolution = Math.min(2 * ConvolutionDerivatives.CHUNK_ELEMENTS, 2 * rows * widestConvolution);
        return (rows * (plainPerRow + internalPerRow) + examples * chunk * batchSize * spanningPerRow + convolution)
                * bytesPerElement;
    }

    /** One chunk's work on columns {@code [from, to)} of the examples of the current chunk. */
    private interface ChunkWork {
        void run(long from, long to);
    }

    /**
     * Runs the work chunk by chunk, each within the budget in the curvature scratch workspace, the
     * examples of the current chunk set in {@link #exampleFrom}/{@link #exampleTo} (all of them for
     * columns that already span the batch).
     */
    private void inChunks(long columns, int bytesPerElement, boolean spanning, ChunkWork work) {
        Chunking plan = plan(columns, bytesPerElement, spanning);
        long budgetExamples = spanning ? 1 : plan.examples();
        try {
            for (long e = 0; e < batchSize; e += plan.examples()) {
                exampleFrom = e;
                exampleTo = Math.min(batchSize, e + plan.examples());
                for (long from = 0; from < columns; from += plan.columns()) {
                    long to = Math.min(columns, from + plan.columns());
                    try (ScratchWorkspace ignored = ScratchWorkspace.open(ScratchWorkspace.CURVATURE,
                            scratchBytes(budgetExamples, plan.columns(), bytesPerElement), memoryBudget)) {
                        work.run(from, to);
                    }
                }
            }
        } finally {
            exampleFrom = 0;
            exampleTo = batchSize;
        }
    }

    /**
     * @param folded columns of one row each at a node of R rows, {@code [R·V, *shape]}
     * @param rowCount R
     * @return the columns with those of the rows outside the current chunk's examples set to zero (the
     *     array itself when the chunk has every example)
     */
    private INDArray restrictToChunkExamples(INDArray folded, long rowCount) {
        if (exampleFrom == 0 && exampleTo == batchSize) {
            return folded;
        }
        INDArray mask = Nd4j.zeros(folded.dataType(), rowCount);
        for (long r = 0; r < rowCount; r++) {
            long example = r % batchSize;
            if (example >= exampleFrom && example < exampleTo) {
                mask.putScalar(r, 1.0);
            }
        }
        INDArray rowsFirst = folded.dup('c').reshape('c', rowCount, folded.length() / rowCount);
        rowsFirst.muliColumnVector(mask.reshape(rowCount, 1));
        return rowsFirst.reshape('c', folded.shape());
    }

    /**
     * The guard for passes whose batch was not checked beforehand ({@code fit}): every node of the region
     * that sees a time axis or a mask must be of a kind whose derivatives know them, and a mask must belong
     * to a time series.
     *
     * @throws UnsupportedOperationException naming the first node that does not
     */
    private void checkSequences() {
        for (Node node : topology.nodes()) {
            if (!region[node.position()]) {
                continue;
            }
            Object r = records[node.position()];
            String refused = null;
            if (r instanceof RecordedLayer) {
                RecordedLayer l = (RecordedLayer) r;
                boolean masked = l.layer().getMaskArray() != null;
                boolean series = l.input().rank() == 3 || l.outputShape().length == 3;
                if (masked && !series) {
                    refused = node.describe() + " sees a mask on data without a time axis: curvature extensions "
                            + "support masks on time series only";
                } else if ((masked || series) && !l.kind().supportsSequences(l.layer())) {
                    refused = node.describe() + " sees a time series: curvature extensions do not support "
                            + l.kind().kindName() + " on sequences";
                }
            } else {
                VertexRecord v = (VertexRecord) r;
                boolean series = v.outputShape().length == 3;
                for (int i = 0; i < v.inputCount(); i++) {
                    series |= v.inputShape(i).length == 3;
                }
                if (series && !v.kind().supportsSequences(v.vertex())) {
                    refused = node.describe() + " sees a time series: curvature extensions do not support "
                            + v.kind().kindName() + " on sequences";
                }
            }
            if (refused != null) {
                throw new UnsupportedOperationException(refused + " (first-order extensions do)");
            }
        }
    }

    /**
     * Runs the pass for every requested kind of factor.
     *
     * @param requests what the extensions need
     * @return per kind, per name of a layer with parameters, the accumulated curvature
     */
    public Map<FactorKind, Map<String, CurvatureSink>> run(Set<CurvatureRequest> requests) {
        checkSequences();
        Map<FactorKind, Map<String, CurvatureSink>> out = new HashMap<>();
        for (CurvatureRequest request : requests) {
            FactorKind kind = request.kind();
            if (out.containsKey(kind)) {
                continue;
            }
            boolean perExample = requests.contains(CurvatureRequest.batchDiagonal(kind));
            boolean diagonal = perExample || requests.contains(CurvatureRequest.diagonal(kind));
            boolean outputFactor = requests.contains(CurvatureRequest.outputFactor(kind));
            Map<Integer, CurvatureSink> sinks = new HashMap<>();
            Map<String, CurvatureSink> named = new LinkedHashMap<>();
            for (Node n : topology.nodes()) {
                if (isParametric(n)) {
                    CurvatureSink sink = new CurvatureSink(diagonal, perExample, outputFactor);
                    sinks.put(n.position(), sink);
                    named.put(n.name(), sink);
                }
            }
            out.put(kind, named);
            if (kind.type() == FactorKind.Type.RESIDUAL) {
                propagateResiduals(sinks);
                continue;
            }
            for (Node output : topology.outputs()) {
                if (!region[output.position()]) {
                    continue;
                }
                Node fused = fusedSoftmax(topology, output);
                Node start = fused != null ? fused : output;
                LossCurvature loss = fused != null ? io.github.dl4jbackpack.internal.losses.LossCurvatures
                        .softmaxCrossEntropy() : losses.get(output.position());
                if (loss == null) {
                    throw new IllegalStateException("no loss curvature was recorded for " + output.describe());
                }
                INDArray z = preActivation(layer(start.position()));
                switch (kind.type()) {
                    case EXACT:
                        propagateColumns(loss.sqrtHessian(z, batchSize), start.position(), false, 1.0, sinks);
                        break;
                    case SAMPLED:
                        propagateColumns(loss.sampledSqrtHessian(z, batchSize, kind.samples()), start.position(),
                                false, 1.0, sinks);
                        break;
                    case AVERAGED:
                        propagateAveraged(loss.hessian(z).mean(0), start.position(), sinks);
                        break;
                    default:
                        throw new IllegalStateException(kind.toString());
                }
            }
        }
        return out;
    }

    private boolean isFusedSoftmax(Node node) {
        for (Node output : topology.outputs()) {
            if (fusedSoftmax(topology, output) == node) {
                return true;
            }
        }
        return false;
    }

    private RecordedLayer layer(int position) {
        return (RecordedLayer) records[position];
    }

    /** @return the output shape recorded for a node */
    private long[] outputShape(int position) {
        Object r = records[position];
        return r instanceof RecordedLayer ? ((RecordedLayer) r).outputShape() : ((VertexRecord) r).outputShape();
    }

    private boolean anyInputInRegion(Node node) {
        for (int input : node.inputs()) {
            if (input >= 0 && region[input]) {
                return true;
            }
        }
        return false;
    }

    /**
     * @param factor columns at the start node's output (a layer's pre-activation {@code z} when
     *     {@code skipActivation}), {@code [N, V, *shape]}
     * @param start the start node's position
     * @param skipStart whether the start layer's own parameters are already accounted for
     * @param sign +1 or −1
     * @param sinks where each layer with parameters accumulates
     */
    private void propagateColumns(INDArray factor, int start, boolean skipStart, double sign,
                                  Map<Integer, CurvatureSink> sinks) {
        long columns = factor.size(1);
        inChunks(columns, factor.dataType().width(), false, (from, to) -> {
            INDArray part = from == 0 && to == columns ? factor
                    : factor.get(NDArrayIndex.all(), NDArrayIndex.interval(from, to)).dup('c');
            propagate(restrictToChunkExamples(part, part.size(0)), start, skipStart, sign, sinks);
        });
    }

    /** Pushes columns that start at a layer's pre-activation down the graph. */
    private void propagate(INDArray factor, int start, boolean skipStart, double sign,
                           Map<Integer, CurvatureSink> sinks) {
        Map<Integer, INDArray> pending = new HashMap<>();
        pending.put(start, fold(factor));
        propagate(pending, new java.util.HashSet<>(), start, start, skipStart, sign, sinks);
    }

    /**
     * Pushes columns down the graph in reverse topological order.
     *
     * <p>Columns start as columns of one example each ({@code [N·V, *shape]}, example n's at rows
     * {@code n·V + v}); at a layer that normalises over the batch they are spread, each column becoming
     * one that spans the batch ({@code [N·N·V, *shape]}, example m's part of column c at row
     * {@code m·NV + c}), and stay so below it; at layers with parameters such columns sum over the
     * examples before squaring (docs/math.md#batch-normalization).
     *
     * @param pending folded columns waiting at node outputs (consumed)
     * @param spanning the positions in {@code pending} whose columns span the batch (consumed)
     * @param top the highest position with columns
     * @param zStart the position whose columns are at the layer's pre-activation (skip its
     *     activation), or −1
     * @param skipStart whether {@code zStart}'s own parameters are already accounted for
     * @param sign +1 or −1
     * @param sinks where each layer with parameters accumulates
     */
    private void propagate(Map<Integer, INDArray> pending, java.util.Set<Integer> spanning, int top, int zStart,
                           boolean skipStart, double sign, Map<Integer, CurvatureSink> sinks) {
        // the positions whose spanning columns mix examples (below a layer that normalises over the
        // batch), as opposed to spanning only an example's stacked copies
        java.util.Set<Integer> coupled = new java.util.HashSet<>();
        for (int p = top; p >= 0; p--) {
            INDArray s = pending.remove(p);
            if (s == null) {
                continue;
            }
            boolean spans = spanning.remove(p);
            boolean couples = coupled.remove(p);
            Node node = topology.node(p);
            INDArray[] toInputs;
            if (node.isLayer()) {
                RecordedLayer record = layer(p);
                LayerDerivatives kind = record.kind();
                if (p != zStart) {
                    if (record.outputMask() != null) {
                        s = Columns.timesPerExample(s, record.outputMask());
                    }
                    IActivation activation = kind.activation(record.layer());
                    if (activation != null) {
                        s = Columns.timesPerExample(s, record.cached("activationDerivative",
                                () -> ElementwiseActivations.firstDerivative(activation, preActivation(record))));
                    }
                }
                if (isParametric(node) && !(skipStart && p == zStart)) {
                    CurvatureSink sink = sinks.get(p);
                    INDArray unfolded = unfold(s, rows[p]);
                    if (sink.wantsDiagonal()) {
                        if (spans && sink.perExample()) {
                            accumulateSharedPerExample(record, unfolded, sign, sink);
                        } else if (spans) {
                            kind.accumulateSharedCurvature(record, unfolded, sign, sink);
                        } else {
                            kind.accumulateCurvature(record, unfolded, sign, sink.foldingCopies(rows[p] / batchSize));
                        }
                    }
                    if (sink.wantsOutputFactor()) {
                        if (spans && couples) {
                            kind.accumulateSharedOutputFactor(record, unfolded, sink);
                        } else if (spans) {
                            kind.accumulateReducedOutputFactor(record, unfolded, sink);
                        } else {
                            kind.accumulateOutputFactor(record, unfolded, sink);
                        }
                    }
                }
                if (!anyInputInRegion(node)) {
                    continue;
                }
                if (record.couplesExamples() && !spans) {
                    s = spread(s, rows[p]);
                    spans = true;
                }
                couples |= record.couplesExamples();
                INDArray in = kind.inputJacobianTranspose(record, s);
                if (record.dropoutMask() != null) {
                    in = Columns.timesPerExample(in, record.dropoutMask());
                }
                if (node.preProcessor() != null) {
                    // the supported preprocessors only reshape, in the row-major order of the features
                    in = in.reshape('c', Columns.withRows(in.size(0), outputShape(node.input(0))));
                }
                toInputs = new INDArray[] {in};
            } else {
                VertexRecord record = (VertexRecord) records[p];
                if (record.kind().requiresSpanningColumns() && !spans) {
                    s = spread(s, rows[p]);
                    spans = true;
                }
                toInputs = record.kind().inputJacobianTranspose(record, s);
            }
            for (int slot = 0; slot < toInputs.length; slot++) {
                int producer = node.input(slot);
                if (producer >= 0 && region[producer]) {
                    INDArray columns = toInputs[slot];
                    INDArray known = pending.get(producer);
                    boolean knownSpans = spanning.contains(producer);
                    if (known != null && knownSpans != spans) {
                        // one consumer's columns span the batch, the other's not yet: spread those
                        if (spans) {
                            known = spread(known, rows[producer]);
                        } else {
                            columns = spread(columns, rows[producer]);
                        }
                    }
                    pending.put(producer, known == null ? columns : known.add(columns));
                    if (spans || knownSpans) {
                        spanning.add(producer);
                    }
                    if (couples) {
                        coupled.add(producer);
                    }
                }
            }
        }
    }

    /**
     * Per-example curvature from columns that span a stacked batch (an example's copies in several
     * rows, no other example's): the columns are grouped by the example they started from (columns
     * {@code [i·V, (i+1)·V)} for the chunk's i-th example, as spreading numbers them) and each group is accumulated as shared
     * columns; the results become row n of the per-example values.
     */
    private void accumulateSharedPerExample(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        long columns = factor.size(1);
        long examples = exampleTo - exampleFrom;
        long v = columns / examples;
        for (long i = 0; i < examples; i++) {
            long n = exampleFrom + i;
            CurvatureSink one = new CurvatureSink(true, false, false);
            record.kind().accumulateSharedCurvature(record,
                    factor.get(NDArrayIndex.all(), NDArrayIndex.interval(i * v, (i + 1) * v)).dup('c'), sign, one);
            for (Map.Entry<String, INDArray> e : one.values().entrySet()) {
                INDArray value = e.getValue();
                INDArray perExample = Nd4j.zeros(value.dataType(), withBatch(batchSize, value.shape()));
                perExample.get(NDArrayIndex.point(n)).assign(value);
                sink.add(e.getKey(), perExample);
            }
        }
    }

    private static long[] withBatch(long n, long[] shape) {
        long[] out = new long[shape.length + 1];
        out[0] = n;
        System.arraycopy(shape, 0, out, 1, shape.length);
        return out;
    }

    /**
     * @param folded columns of one row each, {@code [R·V, *shape]}
     * @param n the rows R of the node whose output the columns are at
     * @return the columns of the rows whose example belongs to the current chunk ({@code K} rows) as
     *     columns spanning the batch, zero at the other rows, {@code [R·K·V, *shape]}: row m's part of the
     *     column of chunk row k and column v at row {@code m·KV + k·V + v}
     */
    private INDArray spread(INDArray folded, long n) {
        long v = folded.size(0) / n;
        long features = folded.length() / folded.size(0);
        INDArray rowsFirst = folded.dup('c').reshape('c', n, v, features);
        java.util.List<Long> chunkRows = new java.util.ArrayList<>();
        for (long r = 0; r < n; r++) {
            long example = r % batchSize;
            if (example >= exampleFrom && example < exampleTo) {
                chunkRows.add(r);
            }
        }
        long k = chunkRows.size();
        INDArray out = Nd4j.create(folded.dataType(), n, k, v, features);
        for (int i = 0; i < k; i++) {
            long m = chunkRows.get(i);
            out.get(NDArrayIndex.point(m), NDArrayIndex.point(i)).assign(rowsFirst.get(NDArrayIndex.point(m)));
        }
        long[] shape = folded.shape().clone();
        shape[0] = n * k * v;
        return out.reshape('c', shape);
    }

    private void propagateResiduals(Map<Integer, CurvatureSink> sinks) {
        Map<Integer, INDArray> epsilons = new HashMap<>();
        for (Node node : topology.nodes()) {
            int j = node.position();
            if (region[j] && !node.isLayer()) {
                propagateVertexResidual((VertexRecord) records[j], epsilons, sinks);
            }
            if (!region[j] || !node.isLayer() || node.isOutput() || isFusedSoftmax(node)) {
                continue;
            }
            RecordedLayer record = layer(j);
            if (record.couplesExamples() || record.kind().hasInputResidual(record.layer())) {
                propagateInputResidual(record, sinks);
                continue;
            }
            if (record.kind().hasInternalResidual(record.layer())) {
                propagateInternalResidual(record, sinks);
                continue;
            }
            IActivation activation = record.kind().activation(record.layer());
            if (activation == null || ElementwiseActivations.isPiecewiseLinear(activation)) {
                continue;
            }
            INDArray z = preActivation(record);
            INDArray r = ElementwiseActivations.secondDerivative(activation, z).muli(record.outputGradient());
            if (record.outputMask() != null) {
                r.muli(record.outputMask());
            }
            if (isParametric(node)) {
                record.kind().accumulateResidual(record, r, sinks.get(j).foldingCopies(rows[j] / batchSize));
            }
            if (!anyInputInRegion(node)) {
                continue;
            }
            INDArray flat = r.reshape('c', rows[j], r.length() / rows[j]);
            for (double sign : new double[] {1.0, -1.0}) {
                INDArray root = Transforms.sqrt(Transforms.relu(flat.mul(sign), false), false);
                if (root.maxNumber().doubleValue() == 0.0) {
                    continue;
                }
                propagateDiagonal(root, z.shape(), j, sign, sinks);
            }
        }
    }

    /**
     * The Hessian residual of a layer at its input (a normalisation over the batch, local response
     * normalisation, p-norm pooling): each signed part's columns (of one example each, or spanning the
     * batch) start at the layer's producer and are pushed down, in chunks.
     */
    private void propagateInputResidual(RecordedLayer record, Map<Integer, CurvatureSink> sinks) {
        Node node = record.node();
        int producer = node.input(0);
        if (producer < 0 || !region[producer]) {
            return;
        }
        for (VertexDerivatives.ResidualPart part : record.kind().inputResidual(record)) {
            inChunks(part.columns(), record.outputGradient().dataType().width(), part.spansBatch(), (from, to) -> {
                INDArray atInput = part.columns(from, to)[0];
                if (node.preProcessor() != null) {
                    atInput = atInput.reshape('c', Columns.withRows(atInput.size(0), outputShape(producer)));
                }
                Map<Integer, INDArray> pending = new HashMap<>();
                java.util.Set<Integer> spanning = new java.util.HashSet<>();
                if (part.spansBatch()) {
                    spanning.add(producer);
                } else {
                    atInput = restrictToChunkExamples(atInput, rows[producer]);
                }
                pending.put(producer, atInput);
                propagate(pending, spanning, producer, -1, false, part.sign(), sinks);
            });
        }
    }

    /**
     * The Hessian residual inside a layer (a recurrent layer's steps): each part's columns, in chunks, add
     * to the layer's own parameters and continue from the layer's producer.
     */
    private void propagateInternalResidual(RecordedLayer record, Map<Integer, CurvatureSink> sinks) {
        Node node = record.node();
        int j = node.position();
        CurvatureSink sink = isParametric(node) ? sinks.get(j).foldingCopies(rows[j] / batchSize) : null;
        int producer = node.input(0);
        boolean below = producer >= 0 && region[producer];
        internalPerRow = record.kind().internalResidualScratchFeatures(record) * Math.max(1, rows[j] / batchSize);
        try {
            pushInternalResidual(record, sink, below, sinks);
        } finally {
            internalPerRow = 0;
        }
    }

    private void pushInternalResidual(RecordedLayer record, CurvatureSink sink, boolean below,
                                      Map<Integer, CurvatureSink> sinks) {
        Node node = record.node();
        int producer = node.input(0);
        for (LayerDerivatives.InternalResidualPart part : record.kind().internalResidual(record)) {
            if (part.columns() == 0) {
                continue;
            }
            inChunks(part.columns(), record.outputGradient().dataType().width(), false, (from, to) -> {
                if (exampleFrom != 0 || exampleTo != batchSize) {
                    // only columns below a normalisation over the batch are chunked by example, and a
                    // recurrent layer does not take such columns (Validation refuses it)
                    throw new IllegalStateException(node.describe() + ": the residual inside a layer is pushed "
                            + "for every example at once");
                }
                INDArray atInput = part.push(from, to, sink);
                if (atInput == null || !below) {
                    return;
                }
                if (node.preProcessor() != null) {
                    atInput = atInput.reshape('c', Columns.withRows(atInput.size(0), outputShape(producer)));
                }
                Map<Integer, INDArray> pending = new HashMap<>();
                pending.put(producer, atInput);
                propagate(pending, new java.util.HashSet<>(), producer, -1, false, part.sign(), sinks);
            });
            if (sink != null) {
                part.finish(sink);
            }
        }
    }

    /**
     * A vertex's Hessian residual: each signed part's columns (one per output feature) start at the
     * vertex's inputs at once and are pushed down, in chunks of features.
     */
    private void propagateVertexResidual(VertexRecord record, Map<Integer, INDArray> epsilons,
                                         Map<Integer, CurvatureSink> sinks) {
        Node node = record.node();
        if (!anyInputInRegion(node)) {
            return;
        }
        INDArray gradient = vertexGradient(node, epsilons);
        List<VertexDerivatives.ResidualPart> parts = record.kind().residual(record, gradient);
        for (VertexDerivatives.ResidualPart part : parts) {
            inChunks(part.columns(), gradient.dataType().width(), false, (from, to) -> {
                INDArray[] atInputs = part.columns(from, to);
                Map<Integer, INDArray> pending = new HashMap<>();
                int top = -1;
                for (int slot = 0; slot < node.inputCount(); slot++) {
                    int producer = node.input(slot);
                    if (producer >= 0 && region[producer]) {
                        pending.merge(producer, restrictToChunkExamples(atInputs[slot], rows[producer]), INDArray::add);
                        top = Math.max(top, producer);
                    }
                }
                propagate(pending, new java.util.HashSet<>(), top, -1, false, part.sign(), sinks);
            });
        }
    }

    /**
     * @return {@code ∂L/∂y} of the mean loss at a vertex's output, {@code [N, *outShape]}: the sum over
     *     its consumers of the gradient they pass back (a layer's recorded input gradient, or a vertex's
     *     Jacobian transpose of its own output gradient)
     */
    private INDArray vertexGradient(Node node, Map<Integer, INDArray> memo) {
        INDArray known = memo.get(node.position());
        if (known != null) {
            return known;
        }
        long[] shape = outputShape(node.position());
        INDArray sum = null;
        for (int consumer : new java.util.LinkedHashSet<>(node.consumers())) {
            Node c = topology.node(consumer);
            if (!region[consumer]) {
                continue;
            }
            INDArray[] contributions;
            if (c.isLayer()) {
                INDArray g = layer(consumer).inputGradient();
                if (g == null) {
                    throw new IllegalStateException("the gradient at the input of " + c.describe() + " was not recorded");
                }
                contributions = new INDArray[] {g.dup('c').reshape('c', shape)};
            } else {
                VertexRecord r = (VertexRecord) records[consumer];
                contributions = r.kind().inputJacobianTranspose(r, vertexGradient(c, memo));
            }
            for (int slot = 0; slot < c.inputCount(); slot++) {
                if (c.input(slot) == node.position()) {
                    INDArray g = contributions[slot].reshape('c', shape);
                    sum = sum == null ? g.dup('c') : sum.addi(g);
                }
            }
        }
        if (sum == null) {
            throw new IllegalStateException(node.describe() + " passes no gradient back");
        }
        memo.put(node.position(), sum);
        return sum;
    }

    private static INDArray unitColumns(INDArray scale, long from, long to) {
        return Columns.unitColumns(scale, from, to);
    }

    /** Pushes {@code diag(root_n)} (columns = features) from node j's pre-activation down, in chunks. */
    private void propagateDiagonal(INDArray root, long[] zShape, int j, double sign, Map<Integer, CurvatureSink> sinks) {
        long features = root.size(1);
        inChunks(features, root.dataType().width(), false, (from, to) -> {
            long v = to - from;
            INDArray columns = unitColumns(root, from, to);
            long[] shape = new long[zShape.length + 1];
            shape[0] = root.size(0);
            shape[1] = v;
            System.arraycopy(zShape, 1, shape, 2, zShape.length - 1);
            INDArray unfolded = columns.reshape('c', shape);
            propagate(restrictToChunkExamples(unfolded, unfolded.size(0)), j, true, sign, sinks);
        });
    }

    /**
     * The memory KFRA's averaged pass needs: the largest averaged matrix and, through nodes whose
     * Jacobian differs between examples, the per-example products, in bytes.
     *
     * @param bytesPerElement size of one number
     * @return the node needing most, and the bytes
     */
    private Object[] averagedMemory(int bytesPerElement) {
        long worst = 0;
        Node worstNode = null;
        for (Node n : topology.nodes()) {
            if (!region[n.position()]) {
                continue;
            }
            Object r = records[n.position()];
            long z;
            long x;
            boolean varies;
            if (r instanceof RecordedLayer) {
                RecordedLayer l = (RecordedLayer) r;
                z = l.outputFeatures();
                x = l.inputFeatures();
                varies = l.kind().jacobianVariesByExample(l.layer());
            } else {
                VertexRecord vr = (VertexRecord) r;
                z = vr.outputFeatures();
                x = vr.inputFeatures();
                varies = vr.kind().needsInputValues();
            }
            long e = varies ? batchSize : 1;
            long elements = Math.max(z * z, x * x) + e * x * Math.max(x, z) * 2;
            if (elements > worst) {
                worst = elements;
                worstNode = n;
            }
        }
        return new Object[] {worstNode, worst * bytesPerElement};
    }

    /**
     * KFRA (Botev et al. 2017): pushes one batch-averaged matrix down instead of per-example
     * factors, {@code Ḡ(x) = (1/N) Σ_n J_nᵀ Ḡ(z) J_n}, averaging after every module (linear map,
     * pooling, dropout, activation) as the reference implementation does; the output-side factor of
     * a layer is {@code Ḡ} at its output. Defined where no node has several consumers (checked
     * before the pass runs).
     */
    private void propagateAveraged(INDArray outputAverage, int start, Map<Integer, CurvatureSink> sinks) {
        Object[] need = averagedMemory(outputAverage.dataType().width());
        if ((Long) need[1] > memoryBudget) {
            throw new IllegalStateException(String.format("KFRA needs the batch-averaged curvature of whole layer "
                    + "outputs as dense matrices: about %.1f MB at %s, more than the curvature memory budget of "
                    + "%.1f MB. Use KFLR or KFAC, which do not, or raise the budget with "
                    + "BackPackNetwork.setCurvatureMemoryBudget(bytes).", (Long) need[1] / 1e6, need[0],
                    memoryBudget / 1e6));
        }
        Map<Integer, INDArray> pending = new HashMap<>();
        for (int p = start; p >= 0; p--) {
            INDArray g = p == start ? outputAverage : pending.remove(p);
            if (g == null) {
                continue;
            }
            Node node = topology.node(p);
            INDArray[] toInputs;
            if (node.isLayer()) {
                RecordedLayer record = layer(p);
                LayerDerivatives kind = record.kind();
                if (p != start) {
                    IActivation activation = kind.activation(record.layer());
                    if (activation != null) {
                        INDArray d = ElementwiseActivations.firstDerivative(activation, preActivation(record));
                        g = g.mul(secondMoment(d));
                    }
                }
                if (isParametric(node)) {
                    sinks.get(p).addOutputFactor(kind.outputFactorOfAveraged(record, g));
                }
                if (!anyInputInRegion(node)) {
                    continue;
                }
                INDArray in = averaged(g, record.outputShape(), record.inputFeatures(),
                        kind.jacobianVariesByExample(record.layer()),
                        rows -> new INDArray[] {kind.inputJacobianTranspose(record, rows)}, 0);
                if (record.dropoutMask() != null) {
                    in = in.muli(secondMoment(record.dropoutMask()));
                }
                // the supported preprocessors only reshape, in the row-major order of the flattened features
                toInputs = new INDArray[] {in};
            } else {
                VertexRecord record = (VertexRecord) records[p];
                toInputs = new INDArray[record.inputCount()];
                for (int slot = 0; slot < toInputs.length; slot++) {
                    toInputs[slot] = averaged(g, record.outputShape(), Columns.features(record.inputShape(slot)),
                            record.kind().needsInputValues(), rows -> record.kind().inputJacobianTranspose(record, rows),
                            slot);
                }
            }
            for (int slot = 0; slot < toInputs.length; slot++) {
                int producer = node.input(slot);
                if (producer >= 0 && region[producer]) {
                    pending.merge(producer, toInputs[slot], INDArray::add);
                }
            }
        }
    }

    /** @return {@code (1/N) Σ_n d_n d_nᵀ} over the flattened features of {@code d [N, ...]} */
    private INDArray secondMoment(INDArray d) {
        INDArray flat = d.reshape('c', batchSize, d.length() / batchSize);
        return flat.transpose().mmul(flat).divi(batchSize);
    }

    /**
     * @return {@code (1/N) Σ_n J_nᵀ g J_n} for one input's Jacobian, {@code [hx, hx]}: rows of g, once
     *     per example (or once when the Jacobian is the same for all), go through {@code Jᵀ} twice
     */
    private INDArray averaged(INDArray g, long[] outputShape, long hx, boolean variesByExample,
                              java.util.function.Function<INDArray, INDArray[]> jacobianTranspose, int slot) {
        long hz = g.rows();
        long examples = variesByExample ? batchSize : 1;
        INDArray rows = g.reshape('c', 1, hz, hz).broadcast(examples, hz, hz).dup('c');
        INDArray left = jacobianTranspose.apply(rows.reshape('c', Columns.withRows(examples * hz, outputShape)))[slot];
        INDArray transposed = left.reshape('c', examples, hz, hx).permute(0, 2, 1).dup('c');
        INDArray both = jacobianTranspose.apply(transposed.reshape('c', Columns.withRows(examples * hx, outputShape)))[slot];
        return both.reshape('c', examples, hx, hx).mean(0);
    }

    private static INDArray preActivation(RecordedLayer record) {
        return record.preActivation() != null ? record.preActivation() : record.input();
    }

    /** {@code [N, V, ...] → [N·V, ...]} */
    private static INDArray fold(INDArray s) {
        long[] shape = s.shape();
        long[] folded = Arrays.copyOfRange(shape, 1, shape.length);
        folded[0] = shape[0] * shape[1];
        return s.reshape('c', folded);
    }

    /** {@code [R·V, ...] → [R, V, ...]} for a node of R rows */
    private static INDArray unfold(INDArray folded, long rows) {
        long v = folded.size(0) / rows;
        long[] shape = folded.shape();
        long[] out = new long[shape.length + 1];
        out[0] = rows;
        out[1] = v;
        System.arraycopy(shape, 1, out, 2, shape.length - 1);
        return folded.reshape('c', out);
    }
}
