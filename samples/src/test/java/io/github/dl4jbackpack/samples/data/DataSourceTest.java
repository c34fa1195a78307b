// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** MNIST-layout directories, splits and shuffling iterators. */
class DataSourceTest {

    @TempDir
    Path dir;

    @Test
    void plainAndGzippedDirectoriesGiveTheSameData() {
        TestFiles.mnistLike(dir.resolve("mnist"), 50, 20, false, 11);
        TestFiles.mnistLike(dir.resolve("fashion-mnist"), 50, 20, true, 11);
        DataSource.TrainTest plain = DataSource.MNIST.load(dir);
        DataSource.TrainTest gz = DataSource.FASHION_MNIST.load(dir);
        assertEquals(50, plain.train().count());
        assertEquals(20, plain.test().count());
        assertArrayEquals(plain.train().pixels(), gz.train().pixels());
        assertArrayEquals(plain.test().labels(), gz.test().labels());
        assertEquals(28, plain.train().height());
        assertEquals(1, plain.train().channels());
    }

    @Test
    void missingFilesAreNamed() {
        TestFiles.mnistLike(dir.resolve("mnist"), 5, 5, false, 3);
        assertTrue(DataSource.MNIST.available(dir));
        assertFalse(DataSource.FASHION_MNIST.available(dir));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> DataSource.FASHION_MNIST.load(dir));
        assertTrue(e.getMessage().contains("train-images-idx3-ubyte") && e.getMessage().contains("fetch-data.sh"),
                e.getMessage());
    }

    @Test
    void mismatchedImageAndLabelCountsAreReported() {
        Path images = TestFiles.write(dir.resolve("x"), TestFiles.idx(new int[] {2, 1, 1}, new byte[] {1, 2}));
        Path labels = TestFiles.write(dir.resolve("y"), TestFiles.idx(new int[] {3}, new byte[] {1, 2, 3}));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DataSource.idxPair(images, labels, 10));
        assertTrue(e.getMessage().contains("2 images") && e.getMessage().contains("3 labels"), e.getMessage());
        Path bad = TestFiles.write(dir.resolve("z"), TestFiles.idx(new int[] {2}, new byte[] {1, 12}));
        e = assertThrows(IllegalArgumentException.class, () -> DataSource.idxPair(images, bad, 10));
        assertTrue(e.getMessage().contains("label 12 of item 1"), e.getMessage());
    }

    @Test
    void splitIsADisjointSeededPartition() {
        TestFiles.mnistLike(dir.resolve("mnist"), 100, 1, false, 5);
        ImageDataSet all = ImageDataSet.of(DataSource.MNIST.load(dir).train(), DataType.FLOAT);
        ImageDataSet.Split a = all.split(30, 17);
        ImageDataSet.Split b = all.split(30, 17);
        ImageDataSet.Split c = all.split(30, 18);
        assertEquals(70, a.train().size());
        assertEquals(30, a.validation().size());
        DataSet va = a.validation().toDataSet(true);
        assertEquals(va.getFeatures(), b.validation().toDataSet(true).getFeatures());
        assertNotEquals(va.getFeatures(), c.validation().toDataSet(true).getFeatures());
        // Disjoint and complete: the rows of both parts together are the rows of the whole set.
        Set<String> rows = new HashSet<>();
        DataSet whole = all.toDataSet(true);
        for (int i = 0; i < 100; i++) {
            rows.add(Arrays.toString(whole.getFeatures().getRow(i).toFloatVector()));
        }
        Set<String> parts = new HashSet<>();
        DataSet tr = a.train().toDataSet(true);
        for (int i = 0; i < 70; i++) {
            parts.add(Arrays.toString(tr.getFeatures().getRow(i).toFloatVector()));
        }
        for (int i = 0; i < 30; i++) {
            parts.add(Arrays.toString(va.getFeatures().getRow(i).toFloatVector()));
        }
        assertEquals(rows, parts);
    }

    @Test
    void iteratorCoversEveryExampleOncePerEpochInANewOrder() {
        TestFiles.mnistLike(dir.resolve("mnist"), 45, 1, false, 9);
        ImageDataSet data = ImageDataSet.of(DataSource.MNIST.load(dir).train(), DataType.FLOAT);
        DataSetIterator it = data.iterator(16, false, 23);
        float[][] epochs = new float[2][];
        for (int e = 0; e < 2; e++) {
            it.reset();
            int[] sizes = new int[3];
            float[] firstPixels = new float[45];
            int seen = 0;
            for (int b = 0; it.hasNext(); b++) {
                DataSet ds = it.next();
                assertEquals(4, ds.getFeatures().rank());
                assertArrayEquals(new long[] {1, 28, 28}, Arrays.copyOfRange(ds.getFeatures().shape(), 1, 4));
                assertEquals(ds.numExamples(), ds.getLabels().sumNumber().intValue(), "one-hot labels");
                sizes[b] = ds.numExamples();
                for (int i = 0; i < ds.numExamples(); i++) {
                    // A per-example signature: the sum of its pixels.
                    firstPixels[seen++] = ds.getFeatures().slice(i).sumNumber().floatValue();
                }
            }
            assertArrayEquals(new int[] {16, 16, 13}, sizes);
            epochs[e] = firstPixels;
        }
        float[] a = epochs[0].clone();
        float[] b = epochs[1].clone();
        assertFalse(Arrays.equals(a, b), "a new order every epoch");
        Arrays.sort(a);
        Arrays.sort(b);
        assertArrayEquals(a, b, "the same examples every epoch");
        float max = 0;
        DataSet all = data.toDataSet(true);
        max = all.getFeatures().maxNumber().floatValue();
        assertTrue(max <= 1f && all.getFeatures().minNumber().floatValue() >= 0f, "pixels scaled to [0, 1]");
    }
}
