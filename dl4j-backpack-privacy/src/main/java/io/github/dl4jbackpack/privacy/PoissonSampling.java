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
 * training weights by 0, so that the step applies the noise alone, through DL4J's own training step.
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

    /**
     * @param data the examples
     * @param rate q in (0, 1]
     * @param random the sampling randomness
     */
    PoissonSampling(DataSet data, double rate, SplittableRandom random) {
        this.data = data;
        this.rate = rate;
        this.stepsPerEpoch = stepsPerEpoch(rate);
        this.random = random;
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
        DataSet batch = new DataSet(rows(data.getFeatures(), rows), rows(data.getLabels(), rows),
                rows(data.getFeaturesMaskArray(), rows), rows(data.getLabelsMaskArray(), rows));
        if (preProcessor != null) {
            preProcessor.preProcess(batch);
        }
        issued++;
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
