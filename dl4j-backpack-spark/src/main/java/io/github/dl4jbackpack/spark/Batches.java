// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.api.MultiDataSet;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

/**
 * The mini-batches of one partition: its records' examples in order, {@code size} at a time (the last batch of the
 * partition may be smaller), records merged or split as needed ({@code MultiDataSet.merge} pads sequences of
 * different lengths with masks, as DL4J does). Each batch carries its examples' identifiers.
 */
final class Batches implements Iterator<Batches.Batch> {

    /**
     * @param data the batch
     * @param ids per example, its metadata or null
     */
    record Batch(MultiDataSet data, List<Serializable> ids) {
        long size() {
            return data.getFeatures(0).size(0);
        }
    }

    private final Iterator<? extends MultiDataSet> records;
    private final int size;
    private final List<MultiDataSet> pending = new ArrayList<>();
    private final List<Serializable> pendingIds = new ArrayList<>();
    private long pendingCount;

    /**
     * @param records the partition's records
     * @param size the batch size
     */
    Batches(Iterator<? extends MultiDataSet> records, int size) {
        this.records = records;
        this.size = size;
    }

    @Override
    public boolean hasNext() {
        fill();
        return pendingCount > 0;
    }

    @Override
    public Batch next() {
        fill();
        if (pendingCount == 0) {
            throw new NoSuchElementException();
        }
        MultiDataSet merged = pending.size() == 1 ? pending.get(0)
                : org.nd4j.linalg.dataset.MultiDataSet.merge(List.copyOf(pending));
        List<Serializable> ids = new ArrayList<>(pendingIds);
        pending.clear();
        pendingIds.clear();
        if (pendingCount <= size) {
            pendingCount = 0;
            return new Batch(merged, ids);
        }
        long count = pendingCount;
        pending.add(slice(merged, size, count));
        pendingIds.addAll(ids.subList(size, (int) count));
        pendingCount = count - size;
        return new Batch(slice(merged, 0, size), new ArrayList<>(ids.subList(0, size)));
    }

    private void fill() {
        while (pendingCount < size && records.hasNext()) {
            MultiDataSet record = records.next();
            if (record == null || record.getFeatures() == null || record.getFeatures().length == 0) {
                throw new IllegalArgumentException("a record of the data set has no features");
            }
            long n = record.getFeatures(0).size(0);
            if (n == 0) {
                continue;
            }
            pending.add(record);
            List<Serializable> meta = record.getExampleMetaData();
            for (int i = 0; i < n; i++) {
                pendingIds.add(meta != null && meta.size() == n ? meta.get(i) : null);
            }
            pendingCount += n;
        }
    }

    /** @return examples {@code [from, to)} of a batch, its masks included */
    static MultiDataSet slice(MultiDataSet data, long from, long to) {
        return new org.nd4j.linalg.dataset.MultiDataSet(rows(data.getFeatures(), from, to),
                rows(data.getLabels(), from, to), rows(data.getFeaturesMaskArrays(), from, to),
                rows(data.getLabelsMaskArrays(), from, to));
    }

    private static INDArray[] rows(INDArray[] arrays, long from, long to) {
        if (arrays == null) {
            return null;
        }
        INDArray[] out = new INDArray[arrays.length];
        for (int i = 0; i < arrays.length; i++) {
            INDArray a = arrays[i];
            if (a != null) {
                INDArrayIndex[] index = new INDArrayIndex[a.rank()];
                index[0] = NDArrayIndex.interval(from, to);
                for (int d = 1; d < index.length; d++) {
                    index[d] = NDArrayIndex.all();
                }
                out[i] = a.get(index).dup();
            }
        }
        return out;
    }
}
