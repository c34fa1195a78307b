// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.zip.GZIPOutputStream;

/** Writes small files in the IDX and CIFAR binary formats for the tests. */
public final class TestFiles {

    private TestFiles() {
    }

    /**
     * @param dims the dimensions
     * @param data the unsigned bytes
     * @return an IDX file's bytes (type 0x08)
     */
    public static byte[] idx(int[] dims, byte[] data) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(0);
        out.write(0);
        out.write(0x08);
        out.write(dims.length);
        for (int d : dims) {
            out.write(d >>> 24);
            out.write(d >>> 16);
            out.write(d >>> 8);
            out.write(d);
        }
        out.writeBytes(data);
        return out.toByteArray();
    }

    /**
     * @param bytes content
     * @return the content gzipped
     */
    public static byte[] gzip(byte[] bytes) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
            gz.write(bytes);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /**
     * @param file where to write
     * @param bytes content
     * @return the file
     */
    public static Path write(Path file, byte[] bytes) {
        try {
            Files.createDirectories(file.getParent());
            return Files.write(file, bytes);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Writes an MNIST-like data set: {@code dir/train-*} and {@code dir/t10k-*} IDX files whose images
     * are a noisy bright square at a label-dependent position (so that classes are learnable).
     *
     * @param dir the directory (e.g. {@code data/mnist})
     * @param train training images
     * @param test test images
     * @param gzipped whether to write {@code .gz} files
     * @param seed the seed
     */
    public static void mnistLike(Path dir, int train, int test, boolean gzipped, long seed) {
        Random random = new Random(seed);
        for (String prefix : new String[] {"train", "t10k"}) {
            int n = prefix.equals("train") ? train : test;
            byte[] images = new byte[n * 28 * 28];
            byte[] labels = new byte[n];
            for (int i = 0; i < n; i++) {
                int label = random.nextInt(10);
                labels[i] = (byte) label;
                for (int p = 0; p < 28 * 28; p++) {
                    images[i * 784 + p] = (byte) random.nextInt(60);
                }
                int r0 = 2 + (label / 5) * 12;
                int c0 = 2 + (label % 5) * 5;
                for (int r = r0; r < r0 + 8; r++) {
                    for (int c = c0; c < c0 + 4; c++) {
                        images[i * 784 + r * 28 + c] = (byte) (200 + random.nextInt(56));
                    }
                }
            }
            String suffix = gzipped ? ".gz" : "";
            byte[] x = idx(new int[] {n, 28, 28}, images);
            byte[] y = idx(new int[] {n}, labels);
            write(dir.resolve(prefix + "-images-idx3-ubyte" + suffix), gzipped ? gzip(x) : x);
            write(dir.resolve(prefix + "-labels-idx1-ubyte" + suffix), gzipped ? gzip(y) : y);
        }
    }
}
