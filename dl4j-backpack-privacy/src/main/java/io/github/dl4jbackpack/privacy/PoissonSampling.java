// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.DataSetPreProcessor;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.indexing.SpecifiedIndex;

import java.util.Arrays;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.SplittableRandom;

/**
 * Poisson sampling of an in-memory data set, as the privacy analysis of DP-SGD assumes: every batch contains each
 * of the M examples independently with probability q (the sample rate), so its size varies around the expected
 * {@code q·M}, and an epoch is {@code ⌊1/q⌋} batches (Opacus' convention). A batch that happens to be empty is
 * not skipped (that would reveal it): the iterator hands out one example as a stand-in, which the private
 * training weights by 0, so that the step applies the noise alone, through DL4J's own training step. A batch larger
 * than the training's physical batch size is handed out in parts (virtual steps): all but the last go to the
 * training at once, which sums their clipped gradients, and DL4J trains on the last, whose step adds them.
 *
 * <p>Obtained from {@link PrivateTraining#iterator()}; sampling happens on the thread that trains (no
 * asynchronous prefetching), with the training's random source.
 */
public final class PoissonSampling implements DataSetIterator {

    private static final long serialVersionUID = 1L;

    // DL4J's iterators are Serializable; a sampler is bound to its training and its random source, so nothing of
    // it is serialised
    private final transient DataSet data;
    private final transient double rate;
    private final transient int stepsPerEpoch;
    private final transient SplittableRandom random;
    private transient DataSetPreProcessor preProcessor;
    private transient int step;
    private transient long issued;
    private transient long emptyBatches;
    private transient boolean lastEmpty;
    private final transient int physicalBatch;
    private final transient java.util.function.Consumer<DataSet> accumulate;

    /**
     * @param data the examples
     * @param rate q in (0, 1]
     * @param random the sampling randomness
     * @param physicalBatch the largest part of a batch handed to DL4J at once (0: no limit)
     * @param accumulate takes the parts of a larger batch but the last (virtual steps)
     */
    PoissonSampling(DataSet data, double rate, SplittableRandom random, int physicalBatch,
                    java.util.function.Consumer<DataSet> accumulate) {
        this.data = data;
        this.rate = rate;
        this.stepsPerEpoch = stepsPerEpoch(rate);
        this.random = random;
        this.physicalBatch = physicalBatch;
        this.accumulate = accumulate;
    }

    /**
     * @param rate q in (0, 1]
     * @return the number of batches of an epoch, {@code ⌊1/q⌋} (at least 1)
     */
    static int stepsPerEpoch(double rate) {
        return (int) Math.max(1, Math.floor(1.0 / rate));
    }

    /** @return the sample rate q */
    public double sampleRate() {
        return rate;
    }

    /** @return the number of batches (steps) of an epoch, {@code ⌊1/q⌋} */
    public int stepsPerEpoch() {
        return stepsPerEpoch;
    }

    /** @return how many batches this iterator has handed out */
    public long batchesIssued() {
        return issued;
    }

    /** @return how many sampled batches were empty (each a step with noise alone) */
    public long emptyBatches() {
        return emptyBatches;
    }

    @Override
    public boolean hasNext() {
        return step < stepsPerEpoch;
    }

    /** @return whether the batch handed out last was sampled empty (and is a stand-in to be weighted by 0) */
    boolean lastBatchEmpty() {
        return lastEmpty;
    }

    private int[] sample() {
        int m = data.numExamples();
        int[] chosen = new int[m];
        int count = 0;
        for (int i = 0; i < m; i++) {
            if (random.nextDouble() < rate) {
                chosen[count++] = i;
            }
        }
        return Arrays.copyOf(chosen, count);
    }

    @Override
    public DataSet next() {
        if (!hasNext()) {
            throw new NoSuchElementException("the epoch's " + stepsPerEpoch + " batches have been sampled; reset()");
        }
        step++;
        int[] rows = sample();
        lastEmpty = rows.length == 0;
        if (lastEmpty) {
            emptyBatches++;
            rows = new int[] {0};
        }
        // a logical batch larger than the physical limit: every part but the last is accumulated now, the last is
        // the one DL4J trains on (whose step adds the accumulated sums)
        int from = 0;
        while (physicalBatch > 0 && rows.length - from > physicalBatch) {
            accumulate.accept(batch(Arrays.copyOfRange(rows, from, from + physicalBatch)));
            from += physicalBatch;
        }
        issued++;
        return batch(from == 0 ? rows : Arrays.copyOfRange(rows, from, rows.length));
    }

    private DataSet batch(int[] rows) {
        DataSet batch = new DataSet(rows(data.getFeatures(), rows), rows(data.getLabels(), rows),
                rows(data.getFeaturesMaskArray(), rows), rows(data.getLabelsMaskArray(), rows));
        if (preProcessor != null) {
            preProcessor.preProcess(batch);
        }
        return batch;
    }

    private static INDArray rows(INDArray array, int[] rows) {
        if (array == null) {
            return null;
        }
        INDArrayIndex[] index = new INDArrayIndex[array.rank()];
        index[0] = new SpecifiedIndex(Arrays.stream(rows).asLongStream().toArray());
        for (int d = 1; d < index.length; d++) {
            index[d] = NDArrayIndex.all();
        }
        return array.get(index).dup();
    }

    /**
     * Not supported: a Poisson-sampled batch has no fixed size.
     *
     * @param num ignored
     * @return never
     */
    @Override
    public DataSet next(int num) {
        throw new UnsupportedOperationException("Poisson-sampled batches have no fixed size; use next()");
    }

    @Override
    public int inputColumns() {
        return (int) data.getFeatures().size(1);
    }

    @Override
    public int totalOutcomes() {
        return (int) data.getLabels().size(1);
    }

    @Override
    public boolean resetSupported() {
        return true;
    }

    /** @return false: batches are sampled on the training thread, where an empty batch's step runs */
    @Override
    public boolean asyncSupported() {
        return false;
    }

    /** Starts a new epoch of {@code ⌊1/q⌋} batches (the random source continues). */
    @Override
    public void reset() {
        step = 0;
    }

    /** @return the expected batch size {@code q·M}, rounded */
    @Override
    public int batch() {
        return (int) Math.round(rate * data.numExamples());
    }

    @Override
    public void setPreProcessor(DataSetPreProcessor preProcessor) {
        this.preProcessor = preProcessor;
    }

    @Override
    public DataSetPreProcessor getPreProcessor() {
        return preProcessor;
    }

    @Override
    public List<String> getLabels() {
        return data.getLabelNamesList();
    }
}
