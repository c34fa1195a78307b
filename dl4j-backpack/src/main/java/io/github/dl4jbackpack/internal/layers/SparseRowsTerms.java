// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.impl.scatter.ScatterAdd;
import org.nd4j.linalg.api.ops.impl.transforms.segment.UnsortedSegmentSum;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * First-order terms of a table whose rows are looked up by index (embeddings): example n reads row
 * {@code k_nt} of {@code W [vocabulary, dim]} at each of its T steps, {@code z_nt = W[k_nt] + b}, so its
 * gradient is nonzero only in the rows it uses, {@code g_n(W)[v] = R_nv = Σ_{t: k_nt = v} δ_nt}, and
 * {@code g_n(b) = Σ_t δ_nt}.
 *
 * <p>The N·T steps are grouped into the G ≤ N·T distinct (example, row) pairs they use (a sort of the
 * N·T indices), and the pairs' row sums {@code R [G, dim]} are formed once by a segment sum. Costs,
 * none proportional to {@code N × vocabulary}:
 * <ul>
 * <li>squared norms: {@code ‖g_n(W)‖² = Σ_v ‖R_nv‖²}, {@code O(N·T·dim)};</li>
 * <li>second moment: {@code Σ_n R_nv⊙R_nv} summed into the rows used, {@code O(N·T·dim)} plus the
 *     {@code [vocabulary, dim]} result;</li>
 * <li>variance, without cancellation: at row v, {@code (1/N)[Σ_{n using v} (R_nv − ḡ_v)² + (N − c_v) ḡ_v²]}
 *     with {@code ḡ_v} the mean gradient's row and {@code c_v} the number of examples using row v (the
 *     others deviate by {@code −ḡ_v}), {@code O(N·T·dim)} plus the result;</li>
 * <li>dot products: {@code ⟨g_n, g_m⟩ = Σ_{v} R_nv·R_mv}, from the Gram matrix of the pairs' row sums
 *     masked to pairs of the same row and summed in blocks per example: {@code O(G²·dim)} time and
 *     {@code O(G²)} memory, {@code G ≤ N·T} (fine for moderate N·T);</li>
 * <li>individual gradients {@code [N, vocabulary, dim]} (the result itself): the row sums placed into
 *     zeros, {@code O(N·T·dim)} besides the result.</li>
 * </ul>
 * The bias's terms are those of its small per-example gradients {@code [N, dim]}.
 */
public final class SparseRowsTerms extends FirstOrderTerms {

    private final String weight;
    private final String bias;
    private final INDArray delta;
    private final long examples;
    private final long vocabulary;
    /** The distinct (example, row) pairs, sorted by example then row: their key {@code n·vocabulary + v}. */
    private final long[] pairKeys;
    private final long[] pairExamples;
    private final long[] pairRows;
    /** The rows some example uses, sorted, and each pair's position among them. */
    private final long[] usedRows;
    private final long[] pairUsedRows;
    /** {@code c_v}: how many examples use each of the used rows. */
    private final long[] examplesPerUsedRow;
    /** {@code R}: each pair's sum of {@code δ_nt} over the steps of example n that read row v, {@code [G, dim]}. */
    private final INDArray rowSums;

    /**
     * @param weight the DL4J name of the table {@code W [vocabulary, dim]}
     * @param bias the DL4J name of the bias {@code [dim]}, or null for none
     * @param rows {@code k_nt} in row-major order ({@code n·T + t}), each in {@code [0, vocabulary)}
     * @param delta {@code δ = ∂L/∂z} of the mean loss, {@code [N, T, dim]}
     * @param vocabulary the number of rows of {@code W}
     */
    public SparseRowsTerms(String weight, String bias, long[] rows, INDArray delta, long vocabulary) {
        this.weight = weight;
        this.bias = bias;
        this.delta = delta;
        this.examples = delta.size(0);
        this.vocabulary = vocabulary;
        long steps = delta.size(1);
        long[] stepKeys = new long[rows.length];
        for (int i = 0; i < rows.length; i++) {
            stepKeys[i] = (i / steps) * vocabulary + rows[i];
        }
        pairKeys = distinctSorted(stepKeys);
        long[] stepPairs = new long[rows.length];
        for (int i = 0; i < rows.length; i++) {
            stepPairs[i] = Arrays.binarySearch(pairKeys, stepKeys[i]);
        }
        int pairs = pairKeys.length;
        pairExamples = new long[pairs];
        pairRows = new long[pairs];
        for (int g = 0; g < pairs; g++) {
            pairExamples[g] = pairKeys[g] / vocabulary;
            pairRows[g] = pairKeys[g] % vocabulary;
        }
        usedRows = distinctSorted(pairRows);
        pairUsedRows = new long[pairs];
        examplesPerUsedRow = new long[usedRows.length];
        for (int g = 0; g < pairs; g++) {
            int u = Arrays.binarySearch(usedRows, pairRows[g]);
            pairUsedRows[g] = u;
            examplesPerUsedRow[u]++;
        }
        INDArray stepDeltas = delta.dup('c').reshape('c', rows.length, delta.size(2));
        rowSums = sumsBySegment(stepDeltas, stepPairs, pairs);
    }

    static long[] distinctSorted(long[] values) {
        long[] sorted = values.clone();
        Arrays.sort(sorted);
        int distinct = 0;
        for (int i = 0; i < sorted.length; i++) {
            if (i == 0 || sorted[i] != sorted[i - 1]) {
                sorted[distinct++] = sorted[i];
            }
        }
        return Arrays.copyOf(sorted, distinct);
    }

    /**
     * @param values {@code [M, ...]}
     * @param segments the segment of each of the M rows, in {@code [0, count)}, repeats allowed
     * @param count the number of segments
     * @return the sums of the rows of each segment, {@code [count, ...]} (zero for an empty segment)
     */
    static INDArray sumsBySegment(INDArray values, long[] segments, long count) {
        return Nd4j.exec(new UnsortedSegmentSum(values, Nd4j.createFromArray(segments), Math.toIntExact(count)))[0];
    }

    /** @return {@code g_n(b) = Σ_t δ_nt}, {@code [N, dim]} */
    private INDArray biasGradients() {
        return delta.sum(1);
    }

    @Override
    protected Map<String, INDArray> computeIndividualGradients() {
        long dim = delta.size(2);
        INDArray gradients = Nd4j.zeros(delta.dataType(), examples, vocabulary, dim);
        INDArray byPair = gradients.reshape('c', examples * vocabulary, dim);
        // every pair's key is distinct: each row of the result receives at most one row sum
        ScatterAdd place = new ScatterAdd(byPair, Nd4j.createFromArray(pairKeys), rowSums);
        place.addOutputArgument(byPair);
        Nd4j.exec(place);
        Map<String, INDArray> out = new LinkedHashMap<>();
        out.put(weight, gradients);
        if (bias != null) {
            out.put(bias, biasGradients());
        }
        return out;
    }

    /**
     * Keeps the pairs' row sums: {@code Σ_n w_n g_n(W)[v] = Σ_{pairs (n, v)} w_n R_nv} ({@code O(N·T·dim)}
     * besides the {@code [vocabulary, dim]} result), and the bias's {@code [N, dim]} gradients.
     */
    @Override
    protected Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred> computeWeightedGradientSums() {
        INDArray sums = DeferredSum.copy(rowSums);
        long dim = delta.size(2);
        long[] examplesOfPairs = pairExamples;
        long[] rowsOfPairs = pairRows;
        long n = examples;
        long rowsInTable = vocabulary;
        Map<String, io.github.dl4jbackpack.extensions.WeightedGradientSum.Deferred> out = new LinkedHashMap<>();
        out.put(weight, new DeferredSum(n, new long[] {rowsInTable, dim}, sums.dataType(), w -> {
            double[] byExample = w.toDoubleVector();
            double[] byPair = new double[examplesOfPairs.length];
            for (int g = 0; g < byPair.length; g++) {
                byPair[g] = byExample[(int) examplesOfPairs[g]];
            }
            INDArray scaled = sums.mulColumnVector(Nd4j.createFromArray(byPair).castTo(sums.dataType())
                    .reshape('c', byPair.length, 1));
            return sumsBySegment(scaled, rowsOfPairs, rowsInTable);
        }).owning(sums));
        if (bias != null) {
            INDArray biasCopy = DeferredSum.copy(biasGradients());
            out.put(bias, DeferredSum.ofIndividualGradients(biasCopy).owning(biasCopy));
        }
        return out;
    }

    @Override
    protected Map<String, INDArray> computeSquaredNorms() {
        INDArray pairSquares = rowSums.mul(rowSums).sum(1);
        Map<String, INDArray> out = new LinkedHashMap<>();
        out.put(weight, sumsBySegment(pairSquares, pairExamples, examples));
        if (bias != null) {
            INDArray b = biasGradients();
            out.put(bias, b.muli(b).sum(1));
        }
        return out;
    }

    @Override
    protected Map<String, INDArray> computeSumGradSquared() {
        Map<String, INDArray> out = new LinkedHashMap<>();
        out.put(weight, sumsBySegment(rowSums.mul(rowSums), pairRows, vocabulary));
        if (bias != null) {
            INDArray b = biasGradients();
            out.put(bias, b.muli(b).sum(0));
        }
        return out;
    }

    @Override
    protected Map<String, INDArray> computeVariance() {
        int used = usedRows.length;
        INDArray mean = sumsBySegment(rowSums, pairUsedRows, used).divi(examples);
        int[] meanRowOfPair = Arrays.stream(pairUsedRows).mapToInt(Math::toIntExact).toArray();
        INDArray deviations = rowSums.sub(Nd4j.pullRows(mean, 1, meanRowOfPair));
        INDArray squares = sumsBySegment(deviations.muli(deviations), pairUsedRows, used);
        double[] nonUsers = new double[used];
        for (int u = 0; u < used; u++) {
            nonUsers[u] = examples - examplesPerUsedRow[u];
        }
        INDArray nonUserDeviations = mean.muli(mean).muliColumnVector(
                Nd4j.createFromArray(nonUsers).castTo(mean.dataType()).reshape(used, 1));
        INDArray usedRowVariance = squares.addi(nonUserDeviations).divi(examples);
        Map<String, INDArray> out = new LinkedHashMap<>();
        // rows no example uses have g_n = ḡ = 0 there
        out.put(weight, sumsBySegment(usedRowVariance, usedRows, vocabulary));
        if (bias != null) {
            out.put(bias, twoPassVariance(biasGradients()));
        }
        return out;
    }

    @Override
    protected Map<String, INDArray> computeDots() {
        int pairs = pairKeys.length;
        INDArray gram = DenseDerivatives.gemm(rowSums, false, rowSums, true);
        INDArray row = Nd4j.createFromArray(Arrays.stream(pairUsedRows).asDoubleStream().toArray());
        INDArray sameRow = row.reshape(pairs, 1).sub(row.reshape(1, pairs)).eq(0.0).castTo(gram.dataType());
        INDArray byExampleAndPair = sumsBySegment(gram.muli(sameRow), pairExamples, examples);
        Map<String, INDArray> out = new LinkedHashMap<>();
        // the masked Gram is symmetric: summing its blocks in both directions gives ⟨g_n, g_m⟩
        out.put(weight, sumsBySegment(byExampleAndPair.transpose().dup('c'), pairExamples, examples));
        if (bias != null) {
            INDArray b = biasGradients();
            out.put(bias, DenseDerivatives.gemm(b, false, b, true));
        }
        return out;
    }
}
