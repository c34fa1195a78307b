// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

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
 * <p>Immutable: accessors return copies. Serializable (Java serialization of its arrays), so that results can
 * travel between machines.
 */
public final class KroneckerFactors implements Serializable, AutoCloseable {

    private static final long serialVersionUID = 1L;

    /** Largest matrix {@link #toMatrix()} builds, in elements. */
    public static final long MAX_MATRIX_ELEMENTS = 1L << 26;

    /** The factors in the order of the Kronecker product. */
    private final List<INDArray> factors;
    /** {@code A}, or null for a bias. */
    private final INDArray inputFactor;
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
        this.outputFactor = outputFactor.dup();
        this.inputSideFirst = inputSideFirst;
        this.swappedInputChannels = swappedInputChannels;
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
        if ((inputFactor == null) != (this.inputFactor == null)) {
            throw new IllegalArgumentException(this.inputFactor == null ? "a bias has no input-side factor"
                    : "the input-side factor is missing");
        }
        if (!java.util.Arrays.equals(outputFactor.shape(), this.outputFactor.shape()) || inputFactor != null
                && !java.util.Arrays.equals(inputFactor.shape(), this.inputFactor.shape())) {
            throw new IllegalArgumentException("new factors must have the shapes of " + this);
        }
        List<INDArray> ordered = factors.size() == 1 ? List.of(outputFactor)
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
        List<INDArray> all = new ArrayList<>(factors);
        all.add(outputFactor);
        if (inputFactor != null) {
            all.add(inputFactor);
        }
        for (INDArray a : all) {
            if (a.closeable() && !a.wasClosed()) {
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
        for (INDArray f : factors) {
            copies.add(f.dup());
        }
        return copies;
    }

    /** @return the input-side factor {@code A}; empty for a bias */
    public Optional<INDArray> inputFactor() {
        checkOpen();
        return Optional.ofNullable(inputFactor).map(INDArray::dup);
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
        long d = 1;
        for (INDArray f : factors) {
            d *= f.rows();
        }
        return d;
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
        INDArray result = factors.get(0).dup();
        for (int i = 1; i < factors.size(); i++) {
            result = kron(result, factors.get(i));
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
        StringBuilder s = new StringBuilder("KroneckerFactors[");
        for (int i = 0; i < factors.size(); i++) {
            s.append(i == 0 ? "" : " ⊗ ").append(factors.get(i).rows()).append('×').append(factors.get(i).columns());
        }
        return s.append(']').toString();
    }
}
