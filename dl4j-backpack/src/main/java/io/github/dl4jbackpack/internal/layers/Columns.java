// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Broadcast;

/**
 * Operations on blocks of factor columns. The second-order pass keeps the columns of all examples
 * in one array {@code [N·V, *shape]} (example-major: row {@code n·V + v} is column v of example n).
 */
public final class Columns {

    private Columns() {
    }

    /** @return the number of elements per example of an array of this shape (batch axis first) */
    public static long features(long[] shape) {
        long f = 1;
        for (int i = 1; i < shape.length; i++) {
            f *= shape[i];
        }
        return f;
    }

    /** @return {@code [rows, *shape[1:]]} */
    public static long[] withRows(long rows, long[] shape) {
        long[] out = shape.clone();
        out[0] = rows;
        return out;
    }

    /**
     * @param columns {@code [N·V, *shape]}
     * @param values per-example values {@code [N, *shape]}
     * @return a new array with column {@code (n, v)} multiplied elementwise by {@code values[n]}
     */
    public static INDArray timesPerExample(INDArray columns, INDArray values) {
        long n = values.size(0);
        long features = values.length() / n;
        long v = columns.size(0) / n;
        INDArray out = columns.dup('c').reshape('c', n, v, features);
        Broadcast.mul(out, values.castTo(columns.dataType()).dup('c').reshape('c', n, features), out, 0, 2);
        return out.reshape('c', columns.shape());
    }

    /**
     * @param columns {@code [N·V, *shape]}
     * @param values per-example scalars {@code [N]} (or {@code [N, 1]})
     * @return a new array with every column of example n multiplied by {@code values[n]}
     */
    public static INDArray timesPerExampleScalar(INDArray columns, INDArray values) {
        long n = values.length();
        long rest = columns.length() / n;
        INDArray out = columns.dup('c').reshape('c', n, rest);
        Broadcast.mul(out, values.castTo(columns.dataType()).reshape(n), out, 0);
        return out.reshape('c', columns.shape());
    }

    /**
     * @param columns {@code [N·V, *shape]}
     * @param values per-example values {@code [N, *shape]}
     * @return {@code [N·V]}: for every column, its dot product with {@code values[n]}
     */
    public static INDArray dotPerExample(INDArray columns, INDArray values) {
        long n = values.size(0);
        long features = values.length() / n;
        long v = columns.size(0) / n;
        INDArray prod = columns.dup('c').reshape('c', n, v, features);
        Broadcast.mul(prod, values.castTo(columns.dataType()).dup('c').reshape('c', n, features), prod, 0, 2);
        return prod.sum(2).reshape(n * v);
    }

    /**
     * @param scale per-example scales {@code [N, F]}
     * @param from first feature
     * @param to end of the range (exclusive)
     * @return {@code [N, to − from, F]}: column j of example n is {@code scale[n, from + j]} at feature
     *     {@code from + j}, zero elsewhere
     */
    public static INDArray unitColumns(INDArray scale, long from, long to) {
        long n = scale.size(0);
        long features = scale.size(1);
        long v = to - from;
        INDArray unitRows = org.nd4j.linalg.factory.Nd4j.zeros(scale.dataType(), v, features);
        for (long c = 0; c < v; c++) {
            unitRows.putScalar(c, from + c, 1.0);
        }
        INDArray columns = unitRows.reshape('c', 1, v, features).broadcast(n, v, features).dup('c');
        Broadcast.mul(columns, scale, columns, 0, 2);
        return columns;
    }

    /**
     * Columns of a projection: column j of example n is {@code w[n] · (e_f − Σ_k u_k[n] u_k[n, f])}
     * for {@code f = from + j}, i.e. {@code w[n] P_n e_f} with {@code P_n = I − Σ_k u_k u_kᵀ}.
     *
     * @param weight per-example weights {@code [N]}
     * @param basis orthonormal vectors {@code u_k}, each {@code [N, F]} (rows may be zero)
     * @param from first feature
     * @param to end of the range (exclusive)
     * @return {@code [N, to − from, F]}
     */
    public static INDArray projectionColumns(INDArray weight, INDArray[] basis, long from, long to) {
        long n = weight.length();
        long features = basis[0].size(1);
        long v = to - from;
        INDArray ones = weight.ulike().reshape(n).assign(1.0);
        INDArray columns = unitColumns(ones.reshape(n, 1).broadcast(n, features).dup(), from, to);
        for (INDArray u : basis) {
            INDArray part = u.get(org.nd4j.linalg.indexing.NDArrayIndex.all(),
                    org.nd4j.linalg.indexing.NDArrayIndex.interval(from, to)).dup('c');
            columns.subi(org.nd4j.linalg.factory.Nd4j.matmul(part.reshape('c', n, v, 1),
                    u.dup('c').reshape('c', n, 1, features)));
        }
        Broadcast.mul(columns, weight.reshape(n), columns, 0);
        return columns;
    }

    /**
     * @param values per-example values {@code [N, *shape]}
     * @param columnsPerExample V
     * @return {@code [N·V, *shape]}, every example repeated V times in a row
     */
    public static INDArray repeatPerColumn(INDArray values, long columnsPerExample) {
        long n = values.size(0);
        if (columnsPerExample == 1) {
            return values;
        }
        long features = values.length() / n;
        INDArray out = org.nd4j.linalg.factory.Nd4j.createUninitialized(values.dataType(), n, columnsPerExample,
                features);
        Broadcast.copy(out, values.dup('c').reshape('c', n, features), out, 0, 2);
        return out.reshape('c', withRows(n * columnsPerExample, values.shape()));
    }
}
