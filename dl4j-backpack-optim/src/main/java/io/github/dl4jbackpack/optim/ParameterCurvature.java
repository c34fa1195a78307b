// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.spi.BlockCurvature;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.io.Serializable;
import java.util.Arrays;

/**
 * What a preconditioned updater carries from one iteration to the next for one parameter: where the parameter
 * lies in its updater block, its curvature averaged over the curvature iterations so far (the diagonal, or the
 * Kronecker factors), and the damped inverses last computed from it. Float64.
 */
final class ParameterCurvature {

    /** Where the parameter lies in the block, and its L2 strength as of the last curvature iteration. */
    BlockCurvature.Segment segment;
    /**
     * The averaged curvature: {@code [diag G]}, {@code [B]} (a bias's Kronecker factor) or {@code [A, B]}; owned by
     * this state, outside every workspace. {@code A} is null while it is kept as {@link #sqrtInputFactor} alone
     * ({@link #formedFactors()} forms it).
     */
    INDArray[] factors;
    /**
     * {@code R} with {@code A = RᵀR} where the averaged {@code A} is one iteration's input factor of a dense weight
     * that was handed over as its square root (no average over several iterations); null otherwise. Owned, float64.
     */
    INDArray sqrtInputFactor;
    /** Whether the weight's Kronecker arrangement is {@code A ⊗ B} (dense) rather than {@code B ⊗ A}. */
    boolean inputSideFirst;
    /**
     * The damped inverses in the order they are applied, or null until computed; owned, outside workspaces. Where
     * {@link #lowRankDamping} is positive they are {@code [R, K, B̃⁻¹]} instead: the input side's damped inverse
     * {@code (A + δI)⁻¹ = (I − RᵀKR)/δ} with {@code K = (δI + RRᵀ)⁻¹}, then the output side's.
     */
    INDArray[] inverses;
    /** δ of the input side's damped inverse kept in low-rank form (see {@link #inverses}), or 0 for explicit ones. */
    double lowRankDamping;
    /** Whether the factors changed since the inverses were computed. */
    boolean inversesStale = true;
    /** The damping λ the inverses were computed with (adaptive damping changes it). */
    double invertedDamping;
    /** The inverses in the data type of a float32 network's gradients, made when first applied; not saved. */
    private INDArray[] appliedInverses;

    /**
     * Adds one iteration's curvature to the average: {@code F ← ρ F + (1 − ρ) F_new}, the first observation
     * taking the place of the average.
     *
     * @param fresh this iteration's curvature, float64, in the order of {@link #factors}
     * @param decay ρ in {@code [0, 1)}
     */
    void average(Preconditioner.Curvature fresh, double decay) {
        inversesStale = true;
        if (factors == null || decay == 0 || factors.length != fresh.factors().length) {
            factors = overwrite(factors, fresh.factors());
            sqrtInputFactor = overwrite(sqrtInputFactor, fresh.sqrtInputFactor());
            return;
        }
        formedFactors();
        INDArray[] added = fresh.formedFactors();
        for (int i = 0; i < factors.length; i++) {
            factors[i].muli(decay).addi(added[i].mul(1 - decay));
        }
        // an average of several iterations' factors: no longer of rank ≤ m
        release(sqrtInputFactor);
        sqrtInputFactor = null;
    }

    /** @return {@link #factors}, {@code A} formed from its square root if it is kept as that alone */
    INDArray[] formedFactors() {
        if (factors != null && factors.length == 2 && factors[0] == null) {
            try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                factors[0] = gram(sqrtInputFactor);
            }
        }
        return factors;
    }

    /** @return {@code RᵀR}, a new array */
    static INDArray gram(INDArray r) {
        return Nd4j.gemm(r.dup('f'), r.dup('f'), true, false);
    }

    /**
     * @param inverses newly computed inverses, possibly in a workspace: replace the cached ones
     * @param damping the λ they were computed with
     * @param lowRankDamping δ where they are {@code [R, K, B̃⁻¹]} (see {@link #inverses}), else 0
     */
    void setInverses(INDArray[] inverses, double damping, double lowRankDamping) {
        invertedDamping = damping;
        this.lowRankDamping = lowRankDamping;
        release(appliedInverses);
        appliedInverses = null;
        this.inverses = overwrite(this.inverses, inverses);
        inversesStale = false;
    }

    /**
     * @param type the data type of the gradient they are applied to
     * @return the cached inverses in that type: float64 as computed, or a float32 copy for a float32 network (the
     *     products with its gradient then cost half as much); low-rank ones always float64 (their difference
     *     {@code v − RᵀKRv} cancels digits)
     */
    INDArray[] inversesIn(DataType type) {
        if (type == DataType.DOUBLE || lowRankDamping > 0) {
            return inverses;
        }
        if (appliedInverses == null || appliedInverses[0].dataType() != type) {
            release(appliedInverses);
            appliedInverses = detachedCopies(Arrays.stream(inverses).map(a -> a.castTo(type)).toArray(INDArray[]::new));
        }
        return appliedInverses;
    }

    /**
     * Copies new values into arrays this state owns: into the same memory where shape, type and order agree (the
     * exact rule replaces its curvature and inverses in every iteration; fresh native memory costs more than the
     * copy), else into new arrays outside every workspace, the old ones released.
     *
     * @param owned the arrays owned now (entries may be null), or null
     * @param values the new values (entries may be null), possibly in a workspace
     * @return the owned arrays holding the new values
     */
    private static INDArray[] overwrite(INDArray[] owned, INDArray[] values) {
        INDArray[] out = owned != null && owned.length == values.length ? owned : new INDArray[values.length];
        if (out != owned) {
            release(owned);
        }
        for (int i = 0; i < values.length; i++) {
            out[i] = overwrite(out[i], values[i]);
        }
        return out;
    }

    /** One array of {@link #overwrite(INDArray[], INDArray[])}. */
    private static INDArray overwrite(INDArray owned, INDArray value) {
        if (value == null) {
            release(owned);
            return null;
        }
        if (owned != null && owned != value && owned.dataType() == value.dataType() && owned.ordering() == value.ordering()
                && Arrays.equals(owned.shape(), value.shape()) && !owned.wasClosed()) {
            owned.assign(value);
            return owned;
        }
        if (owned == value) {
            return owned;
        }
        release(owned);
        return detachedCopies(new INDArray[] {value})[0];
    }

    /**
     * @param arrays arrays, possibly in a workspace or owned by someone else
     * @return copies of them outside every workspace, owned by this state
     */
    private static INDArray[] detachedCopies(INDArray[] arrays) {
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            return Arrays.stream(arrays).map(a -> a == null ? null : a.dup()).toArray(INDArray[]::new);
        }
    }

    /**
     * Returns the memory of arrays this state owns now rather than at some later garbage collection (ND4J frees
     * arrays outside workspaces only then, and a training loop makes little Java garbage to trigger one).
     */
    private static void release(INDArray... arrays) {
        if (arrays != null) {
            for (INDArray a : arrays) {
                if (a != null && a.closeable()) {
                    a.close();
                }
            }
        }
    }

    /** @return the state as plain Java values, for a checkpoint */
    Saved save() {
        return new Saved(segment.layer(), segment.param(), segment.offset(), segment.length(), segment.shape().clone(),
                segment.order(), segment.l2(), inputSideFirst, values(formedFactors()), shapes(factors), values(inverses),
                shapes(inverses), inversesStale, invertedDamping,
                sqrtInputFactor == null ? null : values(new INDArray[] {sqrtInputFactor})[0],
                sqrtInputFactor == null ? null : sqrtInputFactor.shape().clone(), lowRankDamping);
    }

    /**
     * @param saved a state from {@link #save}
     * @return the state
     */
    static ParameterCurvature restore(Saved saved) {
        ParameterCurvature state = new ParameterCurvature();
        state.segment = new BlockCurvature.Segment(saved.layer(), saved.param(), saved.offset(), saved.length(),
                saved.shape().clone(), saved.order(), saved.l2());
        state.inputSideFirst = saved.inputSideFirst();
        state.factors = arrays(saved.factors(), saved.factorShapes());
        state.inverses = arrays(saved.inverses(), saved.inverseShapes());
        state.inversesStale = saved.inversesStale();
        state.invertedDamping = saved.invertedDamping();
        state.sqrtInputFactor = saved.sqrtInputFactor() == null ? null
                : arrays(new double[][] {saved.sqrtInputFactor()}, new long[][] {saved.sqrtInputFactorShape()})[0];
        state.lowRankDamping = saved.lowRankDamping();
        return state;
    }

    private static double[][] values(INDArray[] arrays) {
        return arrays == null ? null : Arrays.stream(arrays).map(a -> a.dup('c').data().asDouble())
                .toArray(double[][]::new);
    }

    private static long[][] shapes(INDArray[] arrays) {
        return arrays == null ? null : Arrays.stream(arrays).map(a -> a.shape().clone()).toArray(long[][]::new);
    }

    private static INDArray[] arrays(double[][] values, long[][] shapes) {
        if (values == null) {
            return null;
        }
        INDArray[] out = new INDArray[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = Nd4j.create(values[i], shapes[i], DataType.DOUBLE);
        }
        return out;
    }

    /**
     * One parameter's state in a checkpoint (Java serialization, as DL4J's {@code ModelSerializer} stores extra
     * objects).
     *
     * @param layer the layer's name in the network
     * @param param DL4J's parameter key
     * @param offset the parameter's offset in its updater block
     * @param length its number of values
     * @param shape its shape
     * @param order its ordering
     * @param l2 its L2 strength as of the last curvature iteration
     * @param inputSideFirst the Kronecker arrangement
     * @param factors the averaged curvature, row-major
     * @param factorShapes their shapes
     * @param inverses the cached damped inverses, row-major, or null
     * @param inverseShapes their shapes, or null
     * @param inversesStale whether the factors changed since the inverses were computed
     * @param invertedDamping the λ of the cached inverses (0 in a state saved before adaptive damping existed:
     *     the inverses are then recomputed at the next refresh, from the same factors and λ)
     * @param sqrtInputFactor {@code R} with {@code A = RᵀR}, row-major, where the state keeps it; null otherwise (and
     *     in a state saved before it existed)
     * @param sqrtInputFactorShape its shape, or null
     * @param lowRankDamping δ of low-rank inverses ({@code [R, K, B̃⁻¹]}), 0 for explicit ones
     */
    record Saved(String layer, String param, long offset, long length, long[] shape, char order, double l2,
                 boolean inputSideFirst, double[][] factors, long[][] factorShapes, double[][] inverses,
                 long[][] inverseShapes, boolean inversesStale, double invertedDamping, double[] sqrtInputFactor,
                 long[] sqrtInputFactorShape, double lowRankDamping) implements Serializable {
    }
}
