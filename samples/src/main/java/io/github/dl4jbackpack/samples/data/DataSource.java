// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The image data sets of the DeepOBS problems and where they live in a data directory:
 * {@code mnist/} and {@code fashion-mnist/} hold the four IDX files
 * ({@code train-images-idx3-ubyte}, {@code train-labels-idx1-ubyte}, {@code t10k-images-idx3-ubyte},
 * {@code t10k-labels-idx1-ubyte}, each plain or with {@code .gz}; {@code scripts/fetch-data.sh}
 * puts them there), {@code cifar-10-batches-bin/} and {@code cifar-100-binary/} the files of the
 * official binary archives.
 */
public enum DataSource {

    /** MNIST handwritten digits, 60,000 + 10,000 grey images of 28×28. */
    MNIST("mnist", 10),
    /** Fashion-MNIST, same shape as MNIST. */
    FASHION_MNIST("fashion-mnist", 10),
    /** CIFAR-10, 50,000 + 10,000 colour images of 32×32, 10 classes. */
    CIFAR10("cifar-10-batches-bin", 10),
    /** CIFAR-100 with fine labels, 50,000 + 10,000 colour images of 32×32, 100 classes. */
    CIFAR100("cifar-100-binary", 100);

    private final String directory;
    private final int classes;

    DataSource(String directory, int classes) {
        this.directory = directory;
        this.classes = classes;
    }

    /** The official training and test sets. */
    public record TrainTest(LabelledImages train, LabelledImages test) {
    }

    /** @return the subdirectory of the data directory */
    public String directory() {
        return directory;
    }

    /**
     * @param dataDir the data directory
     * @return whether all files are there
     */
    public boolean available(Path dataDir) {
        return missing(dataDir).isEmpty();
    }

    /**
     * Reads the training and test sets.
     *
     * @param dataDir the data directory
     * @return both sets
     * @throws IllegalStateException if files are missing (naming them)
     * @throws IllegalArgumentException if a file is invalid (see the readers)
     */
    public TrainTest load(Path dataDir) {
        List<String> missing = missing(dataDir);
        if (!missing.isEmpty()) {
            throw new IllegalStateException(this + " not found: missing " + String.join(", ", missing)
                    + (this == MNIST || this == FASHION_MNIST ? " (run scripts/fetch-data.sh " + dataDir + ")"
                    : " (CIFAR binary files must be provided by hand)"));
        }
        Path dir = dataDir.resolve(directory);
        switch (this) {
            case MNIST:
            case FASHION_MNIST:
                return new TrainTest(idx(dir, "train"), idx(dir, "t10k"));
            case CIFAR10: {
                List<LabelledImages> parts = new ArrayList<>();
                for (int i = 1; i <= 5; i++) {
                    parts.add(CifarReader.read(dir.resolve("data_batch_" + i + ".bin"), CifarReader.Format.CIFAR10));
                }
                return new TrainTest(LabelledImages.concat(parts),
                        CifarReader.read(dir.resolve("test_batch.bin"), CifarReader.Format.CIFAR10));
            }
            default:
                return new TrainTest(CifarReader.read(dir.resolve("train.bin"), CifarReader.Format.CIFAR100_FINE),
                        CifarReader.read(dir.resolve("test.bin"), CifarReader.Format.CIFAR100_FINE));
        }
    }

    /**
     * Reads an IDX image file ({@code [N, H, W]}) and its label file ({@code [N]}).
     *
     * @param images the image file
     * @param labels the label file
     * @param classes the number of classes
     * @return one-channel images with their labels
     * @throws IllegalArgumentException if the files are invalid or do not match
     */
    public static LabelledImages idxPair(Path images, Path labels, int classes) {
        IdxReader.Idx x = IdxReader.read(images);
        IdxReader.Idx y = IdxReader.read(labels);
        if (x.dims().length != 3) {
            throw new IllegalArgumentException("IDX image file " + images + " has " + x.dims().length
                    + " dimensions, expected 3 (images, rows, columns)");
        }
        if (y.dims().length != 1) {
            throw new IllegalArgumentException("IDX label file " + labels + " has " + y.dims().length
                    + " dimensions, expected 1");
        }
        if (x.count() != y.count()) {
            throw new IllegalArgumentException("IDX files do not match: " + images + " holds " + x.count() + " images, "
                    + labels + " holds " + y.count() + " labels");
        }
        int[] l = new int[y.count()];
        for (int i = 0; i < l.length; i++) {
            l[i] = y.unsigned(i);
            if (l[i] >= classes) {
                throw new IllegalArgumentException("IDX label file " + labels + " is corrupt: label " + l[i] + " of item "
                        + i + " is not in [0, " + classes + ")");
            }
        }
        return new LabelledImages(1, x.dims()[1], x.dims()[2], classes, x.data(), l);
    }

    private LabelledImages idx(Path dir, String prefix) {
        return idxPair(find(dir, prefix + "-images-idx3-ubyte"), find(dir, prefix + "-labels-idx1-ubyte"), classes);
    }

    private static Path find(Path dir, String name) {
        Path plain = dir.resolve(name);
        return Files.isRegularFile(plain) ? plain : dir.resolve(name + ".gz");
    }

    private List<String> missing(Path dataDir) {
        Path dir = dataDir.resolve(directory);
        List<String> names = new ArrayList<>();
        switch (this) {
            case MNIST:
            case FASHION_MNIST:
                for (String n : List.of("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte")) {
                    if (!Files.isRegularFile(find(dir, n))) {
                        names.add(dir.resolve(n) + "[.gz]");
                    }
                }
                break;
            case CIFAR10:
                for (String n : List.of("data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                        "data_batch_5.bin", "test_batch.bin")) {
                    if (!Files.isRegularFile(dir.resolve(n))) {
                        names.add(dir.resolve(n).toString());
                    }
                }
                break;
            default:
                for (String n : List.of("train.bin", "test.bin")) {
                    if (!Files.isRegularFile(dir.resolve(n))) {
                        names.add(dir.resolve(n).toString());
                    }
                }
        }
        return names;
    }
}
