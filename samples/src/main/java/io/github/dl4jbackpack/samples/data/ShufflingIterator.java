// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import io.github.dl4jbackpack.samples.Digits;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.DataSetPreProcessor;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;

import java.util.Arrays;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Random;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

/** Minibatches over an {@link ImageDataSet} in a new random order after every reset. */
final class ShufflingIterator implements DataSetIterator {

    private static final long serialVersionUID = 1L;

    private final transient ImageDataSet data;
    private final int batch;
    private final boolean flat;
    private final Random random;
    private int[] order;
    private int cursor;
    private transient DataSetPreProcessor preProcessor;

    ShufflingIterator(ImageDataSet data, int batch, boolean flat, Random random) {
        if (batch < 1) {
            throw new IllegalArgumentException("batch size must be positive, got " + batch);
        }
        this.data = data;
        this.batch = batch;
        this.flat = flat;
        this.random = random;
        reset();
    }

    @Override
    public DataSet next(int num) {
        if (!hasNext()) {
            throw new NoSuchElementException();
        }
        int[] idx = Arrays.copyOfRange(order, cursor, Math.min(order.length, cursor + num));
        cursor += idx.length;
        DataSet ds = data.batch(idx, flat);
        if (preProcessor != null) {
            preProcessor.preProcess(ds);
        }
        return ds;
    }

    @Override
    public DataSet next() {
        return next(batch);
    }

    @Override
    public boolean hasNext() {
        return cursor < order.length;
    }

    @Override
    public int inputColumns() {
        return data.inputColumns();
    }

    @Override
    public int totalOutcomes() {
        return data.classes();
    }

    @Override
    public boolean resetSupported() {
        return true;
    }

    @Override
    public boolean asyncSupported() {
        return false;
    }

    @Override
    public void reset() {
        order = Digits.shuffledIndices(data.size(), random);
        cursor = 0;
    }

    @Override
    public int batch() {
        return batch;
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
        return IntStream.range(0, data.classes()).mapToObj(Integer::toString).collect(Collectors.toList());
    }
}
