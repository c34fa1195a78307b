// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import java.io.Serializable;

/**
 * One example's loss and gradient norm, from {@link SparkQuantities#perExample}.
 *
 * @param id the example's metadata in its record ({@code DataSet.getExampleMetaData()}), its identifier; null if
 *     the record has none
 * @param partition the index of the RDD partition the example is in
 * @param index the example's position within its partition, counting from 0 over the partition's records in order
 * @param loss its loss {@code ℓ_n} (DL4J's per-example score, without regularisation)
 * @param gradientNorm {@code ‖∇ℓ_n‖}, the l2 norm of its loss's gradient over all parameters (without
 *     regularisation)
 */
public record ExampleStatistics(Serializable id, int partition, long index, double loss, double gradientNorm)
        implements Serializable {
}
