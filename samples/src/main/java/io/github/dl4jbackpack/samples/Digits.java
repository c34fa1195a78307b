// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.zip.GZIPInputStream;

/**
 * The UCI handwritten digits (1,797 images of 8×8 pixels, 10 classes) that ship inside this module
 * (see {@code DIGITS-NOTICE.md} beside the data file for source and licence).
 */
public final class Digits {

    /** Number of classes. */
    public static final int CLASSES = 10;
    /** Image side length in pixels. */
    public static final int SIDE = 8;

    private static final String RESOURCE = "/io/github/dl4jbackpack/samples/digits.csv.gz";

    private Digits() {
    }

    /**
     * @param n number of examples
     * @param random the source of randomness
     * @return the indices {@code 0 … n−1} in a random order (Fisher-Yates), for minibatches of an epoch
     */
    public static int[] shuffledIndices(int n, Random random) {
        int[] order = new int[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        for (int i = n - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        return order;
    }

    /**
     * Loads all examples.
     *
     * @param dataType the type of the arrays
     * @return features {@code [1797, 1, 8, 8]} scaled to [0, 1] and one-hot labels {@code [1797, 10]}
     */
    public static DataSet load(DataType dataType) {
        List<double[]> rows = new ArrayList<>();
        try (InputStream in = Digits.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("digits data missing from the classpath: " + RESOURCE);
            }
            BufferedReader reader = new BufferedReader(new InputStreamReader(new GZIPInputStream(in),
                    StandardCharsets.US_ASCII));
            for (String line = reader.readLine(); line != null; line = reader.readLine()) {
                if (!line.isBlank()) {
                    String[] cells = line.split(",");
                    double[] row = new double[cells.length];
                    for (int i = 0; i < cells.length; i++) {
                        row[i] = Double.parseDouble(cells[i]);
                    }
                    rows.add(row);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        int n = rows.size();
        INDArray x = Nd4j.create(dataType, n, 1, SIDE, SIDE);
        INDArray y = Nd4j.zeros(dataType, n, CLASSES);
        for (int i = 0; i < n; i++) {
            double[] row = rows.get(i);
            for (int p = 0; p < SIDE * SIDE; p++) {
                x.putScalar(new long[] {i, 0, p / SIDE, p % SIDE}, row[p] / 16.0);
            }
            y.putScalar(i, (int) row[SIDE * SIDE], 1.0);
        }
        return new DataSet(x, y);
    }
}
