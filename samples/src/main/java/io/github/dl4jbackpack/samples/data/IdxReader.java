// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import java.io.BufferedInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.GZIPInputStream;
import java.util.zip.ZipException;

/**
 * Reads IDX files (the format of MNIST and Fashion-MNIST), plain or gzipped: gzip is recognised by
 * its magic bytes {@code 1f 8b}, not by the file name. Only unsigned-byte data (type code
 * {@code 0x08}) is supported, which is what the image and label files hold.
 *
 * <p>A file that is truncated, too long, has a wrong header or is a broken gzip stream is rejected
 * with an {@link IllegalArgumentException} naming the file and what is wrong.
 */
public final class IdxReader {

    private static final int UNSIGNED_BYTE = 0x08;
    private static final int MAX_DIMENSIONS = 4;

    private IdxReader() {
    }

    /**
     * The content of an IDX file.
     *
     * @param dims the dimensions, e.g. {@code [60000, 28, 28]} for images or {@code [60000]} for labels
     * @param data the values in row-major order, unsigned (0–255) held in Java's signed bytes
     */
    public record Idx(int[] dims, byte[] data) {

        /** @return the first dimension (the number of items) */
        public int count() {
            return dims[0];
        }

        /** @return the number of values per item (the product of the other dimensions) */
        public int itemSize() {
            int size = 1;
            for (int i = 1; i < dims.length; i++) {
                size *= dims[i];
            }
            return size;
        }

        /**
         * @param i a flat index into {@link #data()}
         * @return the unsigned value
         */
        public int unsigned(long i) {
            return data[(int) i] & 0xff;
        }
    }

    /**
     * Reads a whole IDX file.
     *
     * @param file plain or gzipped IDX
     * @return dimensions and data
     * @throws IllegalArgumentException if the file is not a complete unsigned-byte IDX file
     * @throws UncheckedIOException if it cannot be read
     */
    public static Idx read(Path file) {
        try (InputStream in = open(file)) {
            byte[] header = in.readNBytes(4);
            if (header.length < 4) {
                throw invalid(file, "is truncated: " + header.length + " bytes, shorter than the 4-byte IDX magic number");
            }
            if (header[0] != 0 || header[1] != 0) {
                throw invalid(file, String.format("is not an IDX file: magic number starts with %02x %02x, expected 00 00",
                        header[0] & 0xff, header[1] & 0xff));
            }
            if ((header[2] & 0xff) != UNSIGNED_BYTE) {
                throw invalid(file, String.format("has IDX data type 0x%02x; only unsigned bytes (0x08) are supported",
                        header[2] & 0xff));
            }
            int rank = header[3] & 0xff;
            if (rank < 1 || rank > MAX_DIMENSIONS) {
                throw invalid(file, "has " + rank + " dimensions in its IDX header; expected 1 to " + MAX_DIMENSIONS);
            }
            byte[] dimBytes = in.readNBytes(4 * rank);
            if (dimBytes.length < 4 * rank) {
                throw invalid(file, "is truncated inside its header: " + rank + " dimensions need " + 4 * rank
                        + " bytes, found " + dimBytes.length);
            }
            int[] dims = new int[rank];
            long size = 1;
            for (int d = 0; d < rank; d++) {
                dims[d] = ((dimBytes[4 * d] & 0xff) << 24) | ((dimBytes[4 * d + 1] & 0xff) << 16)
                        | ((dimBytes[4 * d + 2] & 0xff) << 8) | (dimBytes[4 * d + 3] & 0xff);
                if (dims[d] < 0) {
                    throw invalid(file, "has a negative dimension in its header: " + Arrays.toString(dims));
                }
                size *= dims[d];
            }
            if (size > Integer.MAX_VALUE - 16) {
                throw invalid(file, "declares " + size + " values " + Arrays.toString(dims) + ", too many for one array");
            }
            byte[] data = in.readNBytes((int) size);
            if (data.length < size) {
                throw invalid(file, "is truncated: its header " + Arrays.toString(dims) + " declares " + size
                        + " data bytes, found " + data.length);
            }
            long extra = in.transferTo(OutputStream.nullOutputStream());
            if (extra > 0) {
                throw invalid(file, "has " + extra + " bytes after the " + size + " data bytes its header "
                        + Arrays.toString(dims) + " declares");
            }
            return new Idx(dims, data);
        } catch (ZipException | EOFException e) {
            throw invalid(file, "is a corrupt or truncated gzip stream (" + e.getMessage() + ")");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    private static InputStream open(Path file) throws IOException {
        InputStream in = new BufferedInputStream(Files.newInputStream(file), 1 << 16);
        in.mark(2);
        int b0 = in.read();
        int b1 = in.read();
        in.reset();
        return b0 == 0x1f && b1 == 0x8b ? new BufferedInputStream(new GZIPInputStream(in, 1 << 16), 1 << 16) : in;
    }

    private static IllegalArgumentException invalid(Path file, String what) {
        return new IllegalArgumentException("IDX file " + file + " " + what);
    }
}
