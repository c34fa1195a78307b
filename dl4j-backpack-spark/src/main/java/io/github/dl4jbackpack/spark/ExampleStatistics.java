// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import java.io.Serializable;
import java.util.Objects;

/** One example's loss and gradient norm, from {@link SparkQuantities#perExample}. Immutable. */
public final class ExampleStatistics implements Serializable {

    private static final long serialVersionUID = 1L;

    /** The example's metadata in its record, or null. */
    private final Serializable id;
    /** The RDD partition of the example. */
    private final int partition;
    /** The example's position within its partition. */
    private final long index;
    /** {@code ℓ_n}. */
    private final double loss;
    /** {@code ‖∇ℓ_n‖}. */
    private final double gradientNorm;

    /**
     * @param id the example's metadata in its record ({@code DataSet.getExampleMetaData()}), its identifier; null
     *     if the record has none
     * @param partition the index of the RDD partition the example is in
     * @param index the example's position within its partition, counting from 0 over the partition's records
     * @param loss its loss {@code ℓ_n} (DL4J's per-example score, without regularisation)
     * @param gradientNorm {@code ‖∇ℓ_n‖} over all parameters (without regularisation)
     */
    public ExampleStatistics(Serializable id, int partition, long index, double loss, double gradientNorm) {
        this.id = id;
        this.partition = partition;
        this.index = index;
        this.loss = loss;
        this.gradientNorm = gradientNorm;
    }

    /** @return the example's metadata in its record, its identifier; null if the record has none */
    public Serializable id() {
        return id;
    }

    /** @return the index of the RDD partition the example is in */
    public int partition() {
        return partition;
    }

    /** @return the example's position within its partition, counting from 0 over the partition's records in order */
    public long index() {
        return index;
    }

    /** @return its loss {@code ℓ_n} (DL4J's per-example score in inference mode, without regularisation) */
    public double loss() {
        return loss;
    }

    /** @return {@code ‖∇ℓ_n‖}, the l2 norm of its loss's gradient over all parameters (without regularisation) */
    public double gradientNorm() {
        return gradientNorm;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ExampleStatistics e && Objects.equals(id, e.id) && partition == e.partition
                && index == e.index && Double.compare(loss, e.loss) == 0
                && Double.compare(gradientNorm, e.gradientNorm) == 0;
    }

    @Override
    public int hashCode() {
        return Objects.hash(id, partition, index, loss, gradientNorm);
    }

    @Override
    public String toString() {
        return "ExampleStatistics[id=" + id + ", partition=" + partition + ", index=" + index + ", loss=" + loss
                + ", gradientNorm=" + gradientNorm + "]";
    }
}
