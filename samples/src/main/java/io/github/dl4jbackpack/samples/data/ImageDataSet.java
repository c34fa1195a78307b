// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import io.github.dl4jbackpack.samples.Digits;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Arrays;
import java.util.Random;

/**
 * An in-memory image classification data set: pixels scaled to [0, 1] as a {@code [N, C·H·W]}
 * array and integer labels, turned into one-hot {@link DataSet}s shaped for a network's input
 * (flat {@code [N, C·H·W]} for dense networks, {@code [N, C, H, W]} for convolutional ones).
 */
public final class ImageDataSet {

    private final INDArray features;
    private final int[] labels;
    private final int channels;
    private final int height;
    private final int width;
    private final int classes;

    private ImageDataSet(INDArray features, int[] labels, int channels, int height, int width, int classes) {
        this.features = features;
        this.labels = labels;
        this.channels = channels;
        this.height = height;
        this.width = width;
        this.classes = classes;
    }

    /**
     * @param images pixels and labels as read from disk
     * @param dataType the type of the feature arrays
     * @return the data set, pixels divided by 255
     */
    public static ImageDataSet of(LabelledImages images, DataType dataType) {
        int n = images.count();
        int d = images.imageSize();
        float[] values = new float[n * d];
        byte[] pixels = images.pixels();
        for (int i = 0; i < values.length; i++) {
            values[i] = (pixels[i] & 0xff) / 255f;
        }
        INDArray features = Nd4j.create(values, new long[] {n, d}, 'c').castTo(dataType);
        return new ImageDataSet(features, images.labels().clone(), images.channels(), images.height(), images.width(),
                images.classes());
    }

    /** The two parts of {@link #split}. */
    public record Split(ImageDataSet train, ImageDataSet validation) {
    }

    /** @return the number of examples */
    public int size() {
        return labels.length;
    }

    /** @return the number of classes */
    public int classes() {
        return classes;
    }

    /**
     * Splits off a random validation set.
     *
     * @param validationSize examples in the validation part, in {@code [0, size()]}
     * @param seed the seed of the random partition (the same seed gives the same split)
     * @return the rest and the validation part
     */
    public Split split(int validationSize, long seed) {
        if (validationSize < 0 || validationSize > size()) {
            throw new IllegalArgumentException("validation size " + validationSize + " not in [0, " + size() + "]");
        }
        int[] order = Digits.shuffledIndices(size(), new Random(seed));
        return new Split(rows(Arrays.copyOfRange(order, validationSize, size())),
                rows(Arrays.copyOfRange(order, 0, validationSize)));
    }

    /**
     * @param n the number of examples to keep
     * @param seed the seed of the random choice
     * @return {@code n} examples chosen at random without replacement (this set if {@code n ≥ size()})
     */
    public ImageDataSet sample(int n, long seed) {
        if (n >= size()) {
            return this;
        }
        return rows(Arrays.copyOf(Digits.shuffledIndices(size(), new Random(seed)), n));
    }

    /**
     * @param flat {@code [N, C·H·W]} features if true, {@code [N, C, H, W]} otherwise
     * @return all examples with one-hot labels
     */
    public DataSet toDataSet(boolean flat) {
        return batch(allIndices(), flat);
    }

    /**
     * A training iterator: minibatches of a fresh random permutation on every pass ({@code reset()}),
     * the last one smaller if {@code batch} does not divide the size.
     *
     * @param batch the minibatch size
     * @param flat see {@link #toDataSet(boolean)}
     * @param seed the seed of the permutations
     * @return the iterator
     */
    public DataSetIterator iterator(int batch, boolean flat, long seed) {
        return new ShufflingIterator(this, batch, flat, new Random(seed));
    }

    DataSet batch(int[] indices, boolean flat) {
        INDArray x = Nd4j.pullRows(features, 1, indices);
        if (!flat) {
            x = x.reshape('c', indices.length, channels, height, width);
        }
        INDArray y = Nd4j.zeros(features.dataType(), indices.length, classes);
        for (int i = 0; i < indices.length; i++) {
            y.putScalar(i, labels[indices[i]], 1.0);
        }
        return new DataSet(x, y);
    }

    int inputColumns() {
        return channels * height * width;
    }

    private int[] allIndices() {
        int[] all = new int[size()];
        Arrays.setAll(all, i -> i);
        return all;
    }

    private ImageDataSet rows(int[] indices) {
        int[] picked = new int[indices.length];
        for (int i = 0; i < indices.length; i++) {
            picked[i] = labels[indices[i]];
        }
        INDArray x = indices.length == 0 ? Nd4j.create(features.dataType(), 0, inputColumns())
                : Nd4j.pullRows(features, 1, indices);
        return new ImageDataSet(x, picked, channels, height, width, classes);
    }
}
