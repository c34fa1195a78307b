// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Optional;

/**
 * A Kronecker-factored approximation {@code F_1 ⊗ F_2 ⊗ …} of the curvature block of one
 * parameter, flattened row-major in its {@code paramTable()} shape (docs/math.md#kronecker-factors):
 * dense {@code W [nIn, nOut]} → {@code [A, B]}; convolution {@code W [nOut, nIn, kH, kW]} →
 * {@code [B, A]}; bias → {@code [B]}. A transposed convolution ({@code Deconvolution2D},
 * {@code W [nIn, nOut, kH, kW]}) also has {@code [B, A]}, with {@code A} over the transposed
 * unfolding: {@code B ⊗ A} approximates the block of {@code W} with its first two axes swapped
 * ({@code [nOut, nIn, kH, kW]}, flattened row-major), and {@link #toMatrix()} reorders its rows and
 * columns to the {@code paramTable()} flattening. {@code A} is the input-side factor (from the layer input),
 * {@code B} the output-side factor (from the curvature propagated to the layer output).
 *
 * <p>A dense weight whose layer saw fewer input rows {@code m} than it has inputs (a batch smaller than the
 * layer's fan-in) may carry its input factor as a square root {@code R [m, nIn]}, {@code A = RᵀR}
 * ({@link #sqrtInputFactor()}): {@code A} then has rank at most {@code m}, is formed only when read, and a
 * damped inverse {@code (A + δI)⁻¹} can be applied through an {@code m × m} system instead of an
 * {@code nIn × nIn} one (docs/math.md#kronecker-factors).
 *
 * <p>Immutable: accessors return copies. Serializable (Java serialization of its arrays), so that results can
 * travel between machines.
 */
public final class KroneckerFactors implements Serializable, AutoCloseable {

    private static final long serialVersionUID = 1L;

    /** Largest matrix {@link #toMatrix()} builds, in elements. */
    public static final long MAX_MATRIX_ELEMENTS = 1L << 26;

    /** The factors in the order of the Kronecker product; null until {@link #factorList()} forms {@code A}. */
    private List<INDArray> factors;
    /** {@code A}, or null for a bias, or until {@link #inputFactorValue()} forms it from its square root. */
    private INDArray inputFactor;
    /** The layer's input rows {@code X} with {@code A = XᵀX / N}, or null where {@code A} is given as it is. */
    private final INDArray inputs;
    /** {@code N}, the count {@code A} averages over (0 without {@link #inputs}). */
    private final long inputCount;
    /** {@code B}. */
    private final INDArray outputFactor;
    /** Whether the product is {@code A ⊗ B}. */
    private final boolean inputSideFirst;
    /** Whether {@link #close()} freed the arrays. */
    private volatile boolean closed;
    /** {@code nIn} of a transposed-convolution weight, whose first two axes the factors swap; 0 otherwise. */
    private final long swappedInputChannels;

    private KroneckerFactors(List<INDArray> factors, INDArray inputFactor, INDArray outputFactor,
                             boolean inputSideFirst) {
        this(factors, inputFactor, outputFactor, inputSideFirst, 0);
    }

    private KroneckerFactors(List<INDArray> factors, INDArray inputFactor, INDArray outputFactor,
                             boolean inputSideFirst, long swappedInputChannels) {
        List<INDArray> copies = new ArrayList<>();
        for (INDArray f : factors) {
            copies.add(f.dup());
        }
        this.factors = Collections.unmodifiableList(copies);
        this.inputFactor = inputFactor == null ? null : inputFactor.dup();
        this.inputs = null;
        this.inputCount = 0;
        this.outputFactor = outputFactor.dup();
        this.inputSideFirst = inputSideFirst;
        this.swappedInputChannels = swappedInputChannels;
    }

    /** A dense weight's factors with {@code A = XᵀX / N}, {@code A} formed when first read. */
    private KroneckerFactors(INDArray inputs, long count, INDArray outputFactor) {
        this.factors = null;
        this.inputFactor = null;
        this.inputs = inputs.dup();
        this.inputCount = count;
        this.outputFactor = outputFactor.dup();
        this.inputSideFirst = true;
        this.swappedInputChannels = 0;
    }

    /**
     * @param inputFactor {@code A}, {@code [nIn, nIn]}
     * @param outputFactor {@code B}, {@code [nOut, nOut]}
     * @return the factors of a dense weight {@code W [nIn, nOut]}: {@code A ⊗ B}
     */
    public static KroneckerFactors denseWeight(INDArray inputFactor, INDArray outputFactor) {
        return new KroneckerFactors(List.of(inputFactor, outputFactor), inputFactor, outputFactor, true);
    }

    /**
     * @param inputs {@code X}, {@code [m, nIn]}: the input rows of a dense layer, with {@code m < nIn} where this
     *     form pays
     * @param count {@code N}, what the input factor averages over: {@code A = XᵀX / N} (the examples, or examples
     *     times steps of a series)
     * @param outputFactor {@code B}, {@code [nOut, nOut]}
     * @return the factors of a dense weight {@code W [nIn, nOut]}: {@code A ⊗ B}, with {@code A} kept as its
     *     square root {@code X/√N} ({@link #sqrtInputFactor()}) and formed when first read
     */
    public static KroneckerFactors denseWeightOfInputs(INDArray inputs, long count, INDArray outputFactor) {
        if (inputs.rank() != 2 || count < 1) {
            throw new IllegalArgumentException("the input factor XᵀX/N needs inputs X [m, nIn] and N ≥ 1, got shape "
                    + java.util.Arrays.toString(inputs.shape()) + " and N = " + count);
        }
        return new KroneckerFactors(inputs, count, outputFactor);
    }

    /**
     * @param outputFactor {@code B}, {@code [nOut, nOut]}
     * @param inputFactor {@code A}, {@code [nIn·kH·kW, nIn·kH·kW]}
     * @return the factors of a convolution weight {@code W [nOut, nIn, kH, kW]}: {@code B ⊗ A}
     */
    public static KroneckerFactors convolutionWeight(INDArray outputFactor, INDArray inputFactor) {
        return new KroneckerFactors(List.of(outputFactor, inputFactor), inputFactor, outputFactor, false);
    }

    /**
     * @param outputFactor {@code B}, {@code [nOut, nOut]}
     * @param inputFactor {@code A}, {@code [nIn·kH·kW, nIn·kH·kW]}, over the transposed unfolding
     * @param nIn the number of input channels
     * @return the factors of a transposed-convolution weight {@code W [nIn, nOut, kH, kW]}: {@code B ⊗ A}
     *     for the weight with its first two axes swapped ({@code [nOut, nIn, kH, kW]});
     *     {@link #toMatrix()} is in the {@code paramTable()} flattening
     */
    public static KroneckerFactors transposedConvolutionWeight(INDArray outputFactor, INDArray inputFactor,
                                                               long nIn) {
        return new KroneckerFactors(List.of(outputFactor, inputFactor), inputFactor, outputFactor, false, nIn);
    }

    /**
     * @param outputFactor {@code B}, {@code [nOut, nOut]}
     * @return the factor of a bias: {@code B} itself
     */
    public static KroneckerFactors bias(INDArray outputFactor) {
        return new KroneckerFactors(List.of(outputFactor), null, outputFactor, false);
    }

    /**
     * The factors of the same parameter in the same arrangement with other values, e.g. averaged over several
     * batches.
     *
     * @param inputFactor the new {@code A}, shaped as this one's; null for a bias
     * @param outputFactor the new {@code B}, shaped as this one's
     * @return the new factors
     * @throws IllegalArgumentException if a shape differs or {@code A} is given for a bias (or missing otherwise)
     */
    public KroneckerFactors withValues(INDArray inputFactor, INDArray outputFactor) {
        checkOpen();
        boolean bias = !hasInputFactor();
        if ((inputFactor == null) != bias) {
            throw new IllegalArgumentException(bias ? "a bias has no input-side factor"
                    : "the input-side factor is missing");
        }
        if (!java.util.Arrays.equals(outputFactor.shape(), this.outputFactor.shape()) || inputFactor != null
                && (inputFactor.rank() != 2 || inputFactor.rows() != inputSide() || inputFactor.columns() != inputSide())) {
            throw new IllegalArgumentException("new factors must have the shapes of " + this);
        }
        List<INDArray> ordered = bias ? List.of(outputFactor)
                : inputSideFirst ? List.of(inputFactor, outputFactor) : List.of(outputFactor, inputFactor);
        return new KroneckerFactors(ordered, inputFactor, outputFactor, inputSideFirst, swappedInputChannels);
    }

    /**
     * Frees the native memory of the factors now instead of at a garbage collection (optional, idempotent);
     * reading them afterwards throws {@link IllegalStateException}. Arrays read before are copies and stay valid.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        List<INDArray> all;
        synchronized (this) {
            all = factors == null ? new ArrayList<>() : new ArrayList<>(factors);
            all.add(outputFactor);
            if (inputFactor != null) {
                all.add(inputFactor);
            }
            if (inputs != null) {
                all.add(inputs);
            }
        }
        for (INDArray a : all) {
            if (a != null && a.closeable() && !a.wasClosed()) {
                a.close();
            }
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("these Kronecker factors were closed");
        }
    }

    /** @return the factors, in the order whose Kronecker product approximates the block */
    public List<INDArray> factors() {
        checkOpen();
        List<INDArray> copies = new ArrayList<>();
        for (INDArray f : factorList()) {
            copies.add(f.dup());
        }
        return copies;
    }

    /** @return the input-side factor {@code A}; empty for a bias */
    public Optional<INDArray> inputFactor() {
        checkOpen();
        return Optional.ofNullable(inputFactorValue()).map(INDArray::dup);
    }

    /**
     * @return {@code R [m, nIn]} with {@code A = RᵀR} where this dense weight's input factor is kept as that
     *     square root (its layer saw {@code m} input rows, fewer than its {@code nIn} inputs, so that {@code A} has
     *     rank at most {@code m}); empty otherwise. {@code (A + δI)⁻¹ v = (v − Rᵀ(δI + RRᵀ)⁻¹Rv)/δ} then costs an
     *     {@code m × m} system instead of an {@code nIn × nIn} one.
     */
    public Optional<INDArray> sqrtInputFactor() {
        checkOpen();
        return Optional.ofNullable(inputs).map(x -> x.mul(1 / Math.sqrt(inputCount)));
    }

    /** @return whether there is an input-side factor (false for a bias) */
    private boolean hasInputFactor() {
        return inputs != null || inputFactor != null;
    }

    /** @return the side length of {@code A} */
    private long inputSide() {
        return inputs != null ? inputs.columns() : inputFactor.rows();
    }

    /** @return {@code A}, formed from its square root on first use (outside every workspace), or null for a bias */
    private synchronized INDArray inputFactorValue() {
        if (inputFactor == null && inputs != null) {
            try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                INDArray x = inputs.dup('f');
                inputFactor = Nd4j.gemm(x, x, true, false).divi(inputCount);
            }
        }
        return inputFactor;
    }

    /** @return the factors in the order of the product, {@code A} formed if kept as its square root */
    private synchronized List<INDArray> factorList() {
        if (factors == null) {
            factors = List.of(inputFactorValue(), outputFactor);
        }
        return factors;
    }

    /** @return the output-side factor {@code B} */
    public INDArray outputFactor() {
        checkOpen();
        return outputFactor.dup();
    }

    /**
     * @return whether the input-side factor comes first in {@link #factors()} (dense weights,
     *     {@code A ⊗ B}); false for convolution weights ({@code B ⊗ A}) and biases ({@code B})
     */
    public boolean inputSideFirst() {
        return inputSideFirst;
    }

    /** @return the side length of the approximated block, the parameter's number of elements */
    public long dimension() {
        return (hasInputFactor() ? inputSide() : 1) * outputFactor.rows();
    }

    /**
     * The Kronecker product of the factors, for small layers, with rows and columns in the
     * parameter's {@code paramTable()} flattening (for a transposed convolution, the product of the
     * factors reordered from {@code [nOut, nIn, kH, kW]} to {@code [nIn, nOut, kH, kW]}).
     *
     * @return the {@code [dimension, dimension]} matrix
     * @throws IllegalStateException if it would exceed {@link #MAX_MATRIX_ELEMENTS} elements
     */
    public INDArray toMatrix() {
        checkOpen();
        long d = dimension();
        if (d * d > MAX_MATRIX_ELEMENTS) {
            throw new IllegalStateException("the Kronecker product would be a " + d + "×" + d + " matrix, larger than "
                    + MAX_MATRIX_ELEMENTS + " elements; use the factors instead");
        }
        List<INDArray> list = factorList();
        INDArray result = list.get(0).dup();
        for (int i = 1; i < list.size(); i++) {
            result = kron(result, list.get(i));
        }
        if (swappedInputChannels > 0) {
            long o = outputFactor.rows();
            long c = swappedInputChannels;
            long k = d / (o * c);
            result = result.reshape('c', o, c, k, o, c, k).permute(1, 0, 2, 4, 3, 5).dup('c').reshape('c', d, d);
        }
        return result;
    }

    /** @return {@code X ⊗ Y}, with entry {@code [(i,k),(j,l)] = X[i,j] Y[k,l]} */
    static INDArray kron(INDArray x, INDArray y) {
        long a = x.rows();
        long a2 = x.columns();
        long b = y.rows();
        long b2 = y.columns();
        INDArray outer = x.dup('c').reshape(a * a2, 1).mmul(y.dup('c').reshape(1, b * b2));
        return outer.reshape('c', a, a2, b, b2).permute(0, 2, 1, 3).dup('c').reshape('c', a * b, a2 * b2);
    }

    @Override
    public String toString() {
        long b = outputFactor.rows();
        if (!hasInputFactor()) {
            return "KroneckerFactors[" + b + "×" + b + "]";
        }
        long a = inputSide();
        String input = a + "×" + a + (inputs != null ? " (rank ≤ " + inputs.rows() + ")" : "");
        return "KroneckerFactors[" + (inputSideFirst ? input + " ⊗ " + b + "×" + b : b + "×" + b + " ⊗ " + input) + "]";
    }
}
