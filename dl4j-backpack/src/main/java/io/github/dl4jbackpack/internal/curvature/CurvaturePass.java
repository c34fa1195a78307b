package io.github.dl4jbackpack.internal.curvature;

import io.github.dl4jbackpack.internal.ScratchWorkspace;
import io.github.dl4jbackpack.internal.layers.ConvolutionDerivatives;
import io.github.dl4jbackpack.internal.layers.CurvatureSink;
import io.github.dl4jbackpack.internal.layers.ElementwiseActivations;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.RecordedLayer;
import io.github.dl4jbackpack.internal.losses.LossCurvature;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Broadcast;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The second-order backward pass (MATH.md, "Second order"), run right after DL4J's own backward
 * pass on what the layers recorded: it factors the loss Hessian at the output, pushes the factor's
 * columns down through every layer with Jacobian-transpose products ({@code S ← Jᵀ S}), and at
 * every layer with parameters adds {@code Σ_v (J_θᵀ s_nv)²} to that layer's curvature diagonal.
 * For the Hessian it also starts, at every activation with {@code φ'' ≠ 0}, the residual
 * {@code diag(φ''(z) ⊙ ∂L/∂a)} split into positive and negative parts, and pushes their square
 * roots down the same way with signs.
 *
 * <p>Memory: the columns are processed in chunks so that a chunk's factor, at the widest layer,
 * stays within the memory budget; the cost in time is that of one backward pass per column.
 */
public final class CurvaturePass {

    private final List<RecordedLayer> layers;
    private final long batchSize;
    private final long memoryBudget;
    private final int lowestParametric;
    private final long scratchPerRow;

    /**
     * @param layers the records of every layer, in network order
     * @param memoryBudget bytes that one chunk of factor columns may occupy
     */
    public CurvaturePass(List<RecordedLayer> layers, long memoryBudget) {
        this.layers = layers;
        this.batchSize = layers.get(0).batchSize();
        this.memoryBudget = memoryBudget;
        int lowest = -1;
        for (RecordedLayer r : layers) {
            if (lowest < 0 && r.kind().hasParameters()) {
                lowest = r.index();
            }
        }
        this.lowestParametric = lowest;
        long scratch = 0;
        for (RecordedLayer r : layers.subList(Math.max(0, lowest), layers.size())) {
            // the layer's own temporaries, the activation- and dropout-scaled copies of the columns
            scratch += r.kind().scratchFeatures(r) + 2 * r.outputFeatures();
        }
        this.scratchPerRow = scratch;
    }

    /**
     * Columns pushed down at once: everything one chunk allocates, over all layers, stays in the
     * scratch workspace, which the memory budget bounds.
     */
    private long chunkColumns(long columns, int bytesPerElement) {
        long available = memoryBudget - fixedScratchBytes(bytesPerElement);
        return Math.max(1, Math.min(columns, available / Math.max(1, columnBytes(bytesPerElement))));
    }

    private long columnBytes(int bytesPerElement) {
        return batchSize * scratchPerRow * bytesPerElement;
    }

    private static long fixedScratchBytes(int bytesPerElement) {
        return 2 * ConvolutionDerivatives.CHUNK_ELEMENTS * bytesPerElement;
    }

    /** Opens the scratch workspace sized for chunks of {@code chunk} columns. */
    private ScratchWorkspace scratch(long chunk, int bytesPerElement) {
        return ScratchWorkspace.open(ScratchWorkspace.CURVATURE,
                chunk * columnBytes(bytesPerElement) + fixedScratchBytes(bytesPerElement));
    }

    /**
     * Runs the pass for every requested kind of factor.
     *
     * @param loss the curvature of the network's loss
     * @param requests what the extensions need
     * @return per kind, per layer index with parameters, the accumulated diagonal
     */
    public Map<FactorKind, Map<Integer, CurvatureSink>> run(LossCurvature loss, Set<CurvatureRequest> requests) {
        Map<FactorKind, Map<Integer, CurvatureSink>> out = new HashMap<>();
        for (CurvatureRequest request : requests) {
            FactorKind kind = request.kind();
            if (out.containsKey(kind)) {
                continue;
            }
            boolean perExample = requests.contains(CurvatureRequest.batchDiagonal(kind));
            boolean diagonal = perExample || requests.contains(CurvatureRequest.diagonal(kind));
            boolean outputFactor = requests.contains(CurvatureRequest.outputFactor(kind));
            Map<Integer, CurvatureSink> sinks = new HashMap<>();
            for (RecordedLayer r : layers) {
                if (r.kind().hasParameters()) {
                    sinks.put(r.index(), new CurvatureSink(diagonal, perExample, outputFactor));
                }
            }
            out.put(kind, sinks);
            if (lowestParametric < 0) {
                continue;
            }
            RecordedLayer top = layers.get(layers.size() - 1);
            switch (kind.type()) {
                case EXACT:
                    propagateColumns(loss.sqrtHessian(top.preActivation(), batchSize), top.index(), false, 1.0, sinks);
                    break;
                case SAMPLED:
                    propagateColumns(loss.sampledSqrtHessian(top.preActivation(), batchSize, kind.samples()),
                            top.index(), false, 1.0, sinks);
                    break;
                case RESIDUAL:
                    propagateResiduals(sinks);
                    break;
                case AVERAGED:
                    propagateAveraged(loss.hessian(top.preActivation()).mean(0), sinks);
                    break;
                default:
                    throw new IllegalStateException(kind.toString());
            }
        }
        return out;
    }

    /**
     * The memory KFRA's averaged pass needs: the largest averaged matrix and, through layers whose
     * Jacobian differs between examples, the per-example products, in bytes.
     *
     * @param layers the records
     * @param bytesPerElement size of one number
     * @return index of the layer needing most, and the bytes
     */
    static long[] averagedMemory(List<RecordedLayer> layers, int bytesPerElement) {
        long worst = 0;
        long worstLayer = -1;
        for (RecordedLayer r : layers) {
            long z = r.outputFeatures();
            long x = r.inputFeatures();
            long n = r.kind().jacobianVariesByExample(r.layer()) ? r.batchSize() : 1;
            long elements = Math.max(z * z, x * x) + n * x * Math.max(x, z) * 2;
            if (elements > worst) {
                worst = elements;
                worstLayer = r.index();
            }
        }
        return new long[] {worstLayer, worst * bytesPerElement};
    }

    /**
     * KFRA (Botev et al. 2017): pushes one batch-averaged matrix down instead of per-example
     * factors, {@code Ḡ(z(i−1)) = (1/N) Σ_n J_nᵀ Ḡ(z(i)) J_n}, averaging after every module (linear
     * map, pooling, dropout, activation) as the reference implementation does; the output-side
     * factor of a layer is {@code Ḡ} at its output.
     */
    private void propagateAveraged(INDArray outputAverage, Map<Integer, CurvatureSink> sinks) {
        long[] need = averagedMemory(layers, outputAverage.dataType().width());
        if (need[1] > memoryBudget) {
            throw new IllegalStateException(String.format("KFRA needs the batch-averaged curvature of whole layer "
                    + "outputs as dense matrices: about %.1f MB at layer %d, more than the curvature memory budget of "
                    + "%.1f MB. Use KFLR or KFAC, which do not, or raise the budget with "
                    + "BackPackNetwork.setCurvatureMemoryBudget(bytes).", need[1] / 1e6, need[0], memoryBudget / 1e6));
        }
        INDArray g = outputAverage;
        int top = layers.size() - 1;
        for (int i = top; i >= lowestParametric; i--) {
            RecordedLayer record = layers.get(i);
            LayerDerivatives kind = record.kind();
            if (i != top) {
                IActivation activation = kind.activation(record.layer());
                if (activation != null) {
                    INDArray d = ElementwiseActivations.firstDerivative(activation, preActivation(record));
                    g = g.mul(secondMoment(d));
                }
            }
            if (kind.hasParameters()) {
                sinks.get(i).addOutputFactor(kind.outputFactorOfAveraged(record, g));
            }
            if (i == lowestParametric) {
                break;
            }
            g = averagedInputJacobianTranspose(record, g);
            if (record.dropoutMask() != null) {
                g = g.muli(secondMoment(record.dropoutMask()));
            }
            // the supported preprocessors only reshape, in the row-major order of the flattened features
        }
    }

    /** @return {@code (1/N) Σ_n d_n d_nᵀ} over the flattened features of {@code d [N, ...]} */
    private INDArray secondMoment(INDArray d) {
        INDArray flat = d.reshape('c', batchSize, d.length() / batchSize);
        return flat.transpose().mmul(flat).divi(batchSize);
    }

    /** @return {@code (1/N) Σ_n J_nᵀ g J_n} for the layer's input Jacobian, {@code [hx, hx]} */
    private INDArray averagedInputJacobianTranspose(RecordedLayer record, INDArray g) {
        LayerDerivatives kind = record.kind();
        long[] outputShape = record.outputShape();
        long hz = record.outputFeatures();
        long hx = record.inputFeatures();
        long examples = kind.jacobianVariesByExample(record.layer()) ? batchSize : 1;
        // rows of g, once per example: J_nᵀ applied to every row gives (g J_n) row by row
        INDArray rows = g.reshape('c', 1, hz, hz).broadcast(examples, hz, hz).dup('c');
        INDArray left = kind.inputJacobianTranspose(record, rows.reshape('c', withRows(examples * hz, outputShape)));
        INDArray transposed = left.reshape('c', examples, hz, hx).permute(0, 2, 1).dup('c');
        INDArray both = kind.inputJacobianTranspose(record,
                transposed.reshape('c', withRows(examples * hx, outputShape)));
        return both.reshape('c', examples, hx, hx).mean(0);
    }

    /** @return {@code [rows, *shape[1:]]} */
    private static long[] withRows(long rows, long[] shape) {
        long[] out = shape.clone();
        out[0] = rows;
        return out;
    }

    /**
     * @param factor columns at layer {@code start}'s output {@code z}, {@code [N, V, *zShape]}
     * @param start the layer at whose output the columns live
     * @param skipStart whether the start layer's own parameters are already accounted for
     * @param sign +1 or −1
     * @param sinks where each layer with parameters accumulates
     */
    private void propagateColumns(INDArray factor, int start, boolean skipStart, double sign,
                                  Map<Integer, CurvatureSink> sinks) {
        long columns = factor.size(1);
        long chunk = chunkColumns(columns, factor.dataType().width());
        for (long from = 0; from < columns; from += chunk) {
            long to = Math.min(columns, from + chunk);
            try (ScratchWorkspace ignored = scratch(chunk, factor.dataType().width())) {
                INDArray part = chunk == columns ? factor
                        : factor.get(NDArrayIndex.all(), NDArrayIndex.interval(from, to)).dup('c');
                propagate(part, start, skipStart, sign, sinks);
            }
        }
    }

    private void propagate(INDArray factor, int start, boolean skipStart, double sign,
                           Map<Integer, CurvatureSink> sinks) {
        INDArray s = factor;
        boolean atOutputZ = true;
        for (int i = start; i >= lowestParametric; i--) {
            RecordedLayer record = layers.get(i);
            LayerDerivatives kind = record.kind();
            if (!atOutputZ) {
                IActivation activation = kind.activation(record.layer());
                if (activation != null) {
                    s = scaleColumns(s, record.cached("activationDerivative",
                            () -> ElementwiseActivations.firstDerivative(activation, preActivation(record))));
                }
            }
            atOutputZ = false;
            if (kind.hasParameters() && !(skipStart && i == start)) {
                CurvatureSink sink = sinks.get(i);
                if (sink.wantsDiagonal()) {
                    kind.accumulateCurvature(record, s, sign, sink);
                }
                if (sink.wantsOutputFactor()) {
                    kind.accumulateOutputFactor(record, s, sink);
                }
            }
            if (i == lowestParametric) {
                break;
            }
            long v = s.size(1);
            INDArray folded = kind.inputJacobianTranspose(record, fold(s));
            if (record.dropoutMask() != null) {
                folded = fold(scaleColumns(unfold(folded, v), record.dropoutMask()));
            }
            if (record.preProcessor() != null) {
                // the supported preprocessors only reshape, in the row-major order of the features
                folded = folded.reshape('c', withRows(folded.size(0), layers.get(i - 1).outputShape()));
            }
            s = unfold(folded, v);
        }
    }

    private void propagateResiduals(Map<Integer, CurvatureSink> sinks) {
        for (int j = layers.size() - 2; j >= lowestParametric; j--) {
            RecordedLayer record = layers.get(j);
            IActivation activation = record.kind().activation(record.layer());
            if (activation == null || ElementwiseActivations.isPiecewiseLinear(activation)) {
                continue;
            }
            INDArray z = preActivation(record);
            INDArray r = ElementwiseActivations.secondDerivative(activation, z).muli(record.outputGradient());
            if (record.kind().hasParameters()) {
                record.kind().accumulateResidual(record, r, sinks.get(j));
            }
            if (j == lowestParametric && record.kind().hasParameters()) {
                continue;
            }
            long features = r.length() / batchSize;
            INDArray flat = r.reshape('c', batchSize, features);
            for (double sign : new double[] {1.0, -1.0}) {
                INDArray root = Transforms.sqrt(Transforms.relu(flat.mul(sign), false), false);
                if (root.maxNumber().doubleValue() == 0.0) {
                    continue;
                }
                propagateDiagonal(root, z.shape(), j, sign, sinks);
            }
        }
    }

    /** Pushes {@code diag(root_n)} (columns = features) from layer j's output down, in chunks of columns. */
    private void propagateDiagonal(INDArray root, long[] zShape, int j, double sign, Map<Integer, CurvatureSink> sinks) {
        long features = root.size(1);
        long chunk = chunkColumns(features, root.dataType().width());
        for (long from = 0; from < features; from += chunk) {
            long to = Math.min(features, from + chunk);
            try (ScratchWorkspace ignored = scratch(chunk, root.dataType().width())) {
                propagateUnitColumns(root, zShape, j, sign, sinks, from, to);
            }
        }
    }

    private void propagateUnitColumns(INDArray root, long[] zShape, int j, double sign,
                                      Map<Integer, CurvatureSink> sinks, long from, long to) {
        long features = root.size(1);
        {
            long v = to - from;
            INDArray unitRows = Nd4j.zeros(root.dataType(), v, features);
            for (long c = 0; c < v; c++) {
                unitRows.putScalar(c, from + c, 1.0);
            }
            INDArray columns = unitRows.reshape('c', 1, v, features).broadcast(batchSize, v, features).dup('c');
            Broadcast.mul(columns, root, columns, 0, 2);
            long[] shape = new long[zShape.length + 1];
            shape[0] = batchSize;
            shape[1] = v;
            System.arraycopy(zShape, 1, shape, 2, zShape.length - 1);
            propagate(columns.reshape('c', shape), j, true, sign, sinks);
        }
    }

    private static INDArray preActivation(RecordedLayer record) {
        return record.preActivation() != null ? record.preActivation() : record.input();
    }

    /** @return {@code s[n, v, ...] · d[n, ...]} for every column v */
    private INDArray scaleColumns(INDArray s, INDArray d) {
        long v = s.size(1);
        long features = s.length() / (batchSize * v);
        INDArray s3 = s.reshape('c', batchSize, v, features).dup('c');
        Broadcast.mul(s3, d.castTo(s.dataType()).reshape('c', batchSize, features), s3, 0, 2);
        return s3.reshape('c', s.shape());
    }

    /** {@code [N, V, ...] → [N·V, ...]} */
    private static INDArray fold(INDArray s) {
        long[] shape = s.shape();
        long[] folded = Arrays.copyOfRange(shape, 1, shape.length);
        folded[0] = shape[0] * shape[1];
        return s.reshape('c', folded);
    }

    /** {@code [N·V, ...] → [N, V, ...]} */
    private INDArray unfold(INDArray folded, long v) {
        long[] shape = folded.shape();
        long[] out = new long[shape.length + 1];
        out[0] = batchSize;
        out[1] = v;
        System.arraycopy(shape, 1, out, 2, shape.length - 1);
        return folded.reshape('c', out);
    }
}
