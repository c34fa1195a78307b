// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.dataset.DataSet;

import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The CIFAR binary format on generated files. */
class CifarReaderTest {

    @TempDir
    Path dir;

    /** A record: label bytes, then pixel (c, r, col) = (labelSum + c·7 + r·3 + col) mod 256. */
    private static byte[] records(int n, int labelBytes, int[][] labels) {
        int size = labelBytes + 3072;
        byte[] b = new byte[n * size];
        for (int i = 0; i < n; i++) {
            for (int l = 0; l < labelBytes; l++) {
                b[i * size + l] = (byte) labels[i][l];
            }
            for (int c = 0; c < 3; c++) {
                for (int r = 0; r < 32; r++) {
                    for (int col = 0; col < 32; col++) {
                        b[i * size + labelBytes + c * 1024 + r * 32 + col] = (byte) (i + c * 7 + r * 3 + col);
                    }
                }
            }
        }
        return b;
    }

    @Test
    void cifar10RecordsBecomeNchwImagesAndLabels() {
        Path f = TestFiles.write(dir.resolve("data_batch_1.bin"), records(3, 1, new int[][] {{3}, {0}, {9}}));
        LabelledImages images = CifarReader.read(f, CifarReader.Format.CIFAR10);
        assertEquals(3, images.count());
        assertArrayEquals(new int[] {3, 0, 9}, images.labels());
        assertEquals(10, images.classes());
        DataSet ds = ImageDataSet.of(images, DataType.FLOAT).toDataSet(false);
        assertArrayEquals(new long[] {3, 3, 32, 32}, ds.getFeatures().shape());
        // image 2, channel 1 (green), row 4, column 5: (2 + 7 + 12 + 5) / 255
        assertEquals(26 / 255.0, ds.getFeatures().getDouble(2, 1, 4, 5), 1e-6);
        assertEquals(1.0, ds.getLabels().getDouble(0, 3));
        assertEquals(1.0, ds.getLabels().sumNumber().doubleValue() / 3, 0);
    }

    @Test
    void cifar100HasCoarseAndFineLabels() {
        Path f = TestFiles.write(dir.resolve("train.bin"), records(2, 2, new int[][] {{19, 99}, {4, 42}}));
        assertArrayEquals(new int[] {99, 42}, CifarReader.read(f, CifarReader.Format.CIFAR100_FINE).labels());
        assertArrayEquals(new int[] {19, 4}, CifarReader.read(f, CifarReader.Format.CIFAR100_COARSE).labels());
        assertEquals(100, CifarReader.read(f, CifarReader.Format.CIFAR100_FINE).classes());
        // The same pixels as the CIFAR-10 layout, shifted by the second label byte.
        assertEquals((byte) (1 + 14 + 3 + 2), CifarReader.read(f, CifarReader.Format.CIFAR100_FINE).pixels()[3072
                + 2 * 1024 + 32 + 2]);
    }

    @Test
    void truncatedFileIsReported() {
        byte[] b = records(2, 1, new int[][] {{1}, {2}});
        Path f = TestFiles.write(dir.resolve("test_batch.bin"), Arrays.copyOf(b, b.length - 100));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CifarReader.read(f, CifarReader.Format.CIFAR10));
        assertTrue(e.getMessage().contains(f.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("truncated") && e.getMessage().contains("1 records and 2973 bytes"),
                e.getMessage());
    }

    @Test
    void cifar100FileReadAsCifar10IsReported() {
        // 3,074-byte records are not a whole number of 3,073-byte records (for 2 records).
        Path f = TestFiles.write(dir.resolve("train.bin"), records(2, 2, new int[][] {{1, 2}, {3, 4}}));
        assertThrows(IllegalArgumentException.class, () -> CifarReader.read(f, CifarReader.Format.CIFAR10));
    }

    @Test
    void outOfRangeLabelIsReported() {
        Path f = TestFiles.write(dir.resolve("data_batch_2.bin"), records(2, 1, new int[][] {{1}, {200}}));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CifarReader.read(f, CifarReader.Format.CIFAR10));
        assertTrue(e.getMessage().contains("record 1 has label 200"), e.getMessage());
    }

    @Test
    void emptyFileIsReported() {
        Path f = TestFiles.write(dir.resolve("empty.bin"), new byte[0]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CifarReader.read(f, CifarReader.Format.CIFAR100_FINE));
        assertTrue(e.getMessage().contains("is empty"), e.getMessage());
    }

    @Test
    void cifar10DirectoryConcatenatesTheFiveTrainingBatches() {
        Path d = dir.resolve(DataSource.CIFAR10.directory());
        for (int i = 1; i <= 5; i++) {
            TestFiles.write(d.resolve("data_batch_" + i + ".bin"), records(2, 1, new int[][] {{i}, {i}}));
        }
        TestFiles.write(d.resolve("test_batch.bin"), records(1, 1, new int[][] {{7}}));
        assertTrue(DataSource.CIFAR10.available(dir));
        DataSource.TrainTest tt = DataSource.CIFAR10.load(dir);
        assertArrayEquals(new int[] {1, 1, 2, 2, 3, 3, 4, 4, 5, 5}, tt.train().labels());
        assertArrayEquals(new int[] {7}, tt.test().labels());
        assertEquals(false, DataSource.CIFAR100.available(dir));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> DataSource.CIFAR100.load(dir));
        assertTrue(e.getMessage().contains("train.bin"), e.getMessage());
    }
}
