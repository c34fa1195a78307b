// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** IDX files, plain and gzipped, valid and broken. */
class IdxReaderTest {

    @TempDir
    Path dir;

    private static final byte[] PIXELS = {0, 1, 2, (byte) 255, 10, 20, 30, (byte) 128, 7, 8, 9, 100};

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void readsDimensionsAndUnsignedValues(boolean gzipped) {
        byte[] file = TestFiles.idx(new int[] {3, 2, 2}, PIXELS);
        // A gzipped file is recognised by content, whatever its name.
        Path f = TestFiles.write(dir.resolve("images"), gzipped ? TestFiles.gzip(file) : file);
        IdxReader.Idx idx = IdxReader.read(f);
        assertArrayEquals(new int[] {3, 2, 2}, idx.dims());
        assertEquals(3, idx.count());
        assertEquals(4, idx.itemSize());
        assertEquals(255, idx.unsigned(3));
        assertEquals(128, idx.unsigned(7));
        assertEquals(100, idx.unsigned(11));
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void truncatedDataIsReportedWithTheFileName(boolean gzipped) {
        byte[] file = TestFiles.idx(new int[] {3, 2, 2}, PIXELS);
        byte[] cut = Arrays.copyOf(file, file.length - 5);
        Path f = TestFiles.write(dir.resolve("cut-images"), gzipped ? TestFiles.gzip(cut) : cut);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> IdxReader.read(f));
        assertTrue(e.getMessage().contains(f.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("truncated") && e.getMessage().contains("declares 12 data bytes, found 7"),
                e.getMessage());
    }

    @Test
    void truncatedHeaderIsReported() {
        byte[] file = Arrays.copyOf(TestFiles.idx(new int[] {3, 2, 2}, PIXELS), 9);
        Path f = TestFiles.write(dir.resolve("short"), file);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> IdxReader.read(f));
        assertTrue(e.getMessage().contains("truncated inside its header"), e.getMessage());
    }

    @Test
    void trailingBytesAreReported() {
        byte[] file = TestFiles.idx(new int[] {2, 2, 2}, PIXELS);
        Path f = TestFiles.write(dir.resolve("long"), file);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> IdxReader.read(f));
        assertTrue(e.getMessage().contains("4 bytes after the 8 data bytes"), e.getMessage());
    }

    @Test
    void wrongMagicNumberIsReported() {
        byte[] file = TestFiles.idx(new int[] {3, 2, 2}, PIXELS);
        file[0] = 'P';
        Path f = TestFiles.write(dir.resolve("png"), file);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> IdxReader.read(f));
        assertTrue(e.getMessage().contains("is not an IDX file"), e.getMessage());
    }

    @Test
    void otherDataTypesAreRejected() {
        byte[] file = TestFiles.idx(new int[] {3}, new byte[] {1, 2, 3});
        file[2] = 0x0D; // float
        Path f = TestFiles.write(dir.resolve("floats"), file);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> IdxReader.read(f));
        assertTrue(e.getMessage().contains("data type 0x0d"), e.getMessage());
    }

    @Test
    void corruptGzipIsReported() {
        byte[] gz = TestFiles.gzip(TestFiles.idx(new int[] {3, 2, 2}, PIXELS));
        for (int i = 12; i < gz.length - 8; i++) {
            gz[i] ^= (byte) 0x5a;
        }
        Path f = TestFiles.write(dir.resolve("corrupt.gz"), gz);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> IdxReader.read(f));
        assertTrue(e.getMessage().contains(f.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("corrupt or truncated gzip") || e.getMessage().contains("truncated"),
                e.getMessage());
    }

    @Test
    void truncatedGzipStreamIsReported() {
        byte[] gz = TestFiles.gzip(TestFiles.idx(new int[] {3, 2, 2}, PIXELS));
        Path f = TestFiles.write(dir.resolve("cut.gz"), Arrays.copyOf(gz, gz.length / 2));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> IdxReader.read(f));
        assertTrue(e.getMessage().contains(f + " is a corrupt or truncated gzip stream"), e.getMessage());
    }

    @Test
    void emptyFileIsReported() {
        Path f = TestFiles.write(dir.resolve("empty"), new byte[0]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> IdxReader.read(f));
        assertTrue(e.getMessage().contains("shorter than the 4-byte IDX magic number"), e.getMessage());
    }
}
