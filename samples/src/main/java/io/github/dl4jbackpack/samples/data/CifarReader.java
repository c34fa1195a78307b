// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Reads the binary version of CIFAR-10 and CIFAR-100 (https://www.cs.toronto.edu/~kriz/cifar.html):
 * fixed-size records of label bytes followed by a 32×32 colour image as 1,024 red, 1,024 green and
 * 1,024 blue bytes, each plane row-major. CIFAR-10 records have one label byte (3,073 bytes);
 * CIFAR-100 records a coarse (20 superclasses) and a fine (100 classes) label byte (3,074 bytes).
 *
 * <p>A file whose size is not a whole number of records, or that holds a label out of range, is
 * rejected with an {@link IllegalArgumentException} naming the file and what is wrong.
 */
public final class CifarReader {

    /** Image channels. */
    public static final int CHANNELS = 3;
    /** Image side length. */
    public static final int SIDE = 32;
    private static final int IMAGE_BYTES = CHANNELS * SIDE * SIDE;

    /** Which data set, and for CIFAR-100 which label. */
    public enum Format {
        /** CIFAR-10: one label byte, 10 classes. */
        CIFAR10(1, 0, 10),
        /** CIFAR-100 with its 100 fine labels (the second label byte). */
        CIFAR100_FINE(2, 1, 100),
        /** CIFAR-100 with its 20 coarse labels (the first label byte). */
        CIFAR100_COARSE(2, 0, 20);

        private final int labelBytes;
        private final int labelOffset;
        private final int classes;

        Format(int labelBytes, int labelOffset, int classes) {
            this.labelBytes = labelBytes;
            this.labelOffset = labelOffset;
            this.classes = classes;
        }

        /** @return bytes per record */
        public int recordBytes() {
            return labelBytes + IMAGE_BYTES;
        }

        /** @return the number of classes of the chosen label */
        public int classes() {
            return classes;
        }
    }

    private CifarReader() {
    }

    /**
     * Reads one binary batch file.
     *
     * @param file e.g. {@code data_batch_1.bin} or {@code train.bin}
     * @param format the record layout and label
     * @return the images (NCHW, as stored) and labels
     * @throws IllegalArgumentException if the file is empty, truncated or holds an invalid label
     */
    public static LabelledImages read(Path file, Format format) {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
        int record = format.recordBytes();
        if (bytes.length == 0) {
            throw new IllegalArgumentException("CIFAR file " + file + " is empty");
        }
        if (bytes.length % record != 0) {
            throw new IllegalArgumentException("CIFAR file " + file + " is truncated or not in " + format + " format: "
                    + bytes.length + " bytes is not a whole number of " + record + "-byte records ("
                    + bytes.length / record + " records and " + bytes.length % record + " bytes)");
        }
        int n = bytes.length / record;
        byte[] pixels = new byte[n * IMAGE_BYTES];
        int[] labels = new int[n];
        for (int i = 0; i < n; i++) {
            int label = bytes[i * record + format.labelOffset] & 0xff;
            if (label >= format.classes) {
                throw new IllegalArgumentException("CIFAR file " + file + " is corrupt or not in " + format
                        + " format: record " + i + " has label " + label + ", expected 0 to " + (format.classes - 1));
            }
            labels[i] = label;
            System.arraycopy(bytes, i * record + format.labelBytes, pixels, i * IMAGE_BYTES, IMAGE_BYTES);
        }
        return new LabelledImages(CHANNELS, SIDE, SIDE, format.classes, pixels, labels);
    }
}
