// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.extensions;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

/**
 * Weighted sums {@code Σ_n w_n g_n} of the individual gradients {@code g_n = (1/N) ∇θ ℓ_n}, for weights
 * {@code w} chosen after the pass: for example from the per-example norms of {@link BatchL2Grad}, to clip every
 * example's gradient before summing (differentially private training). With every weight 1 the sum is the
 * gradient of the mean loss.
 *
 * <p>Value per parameter: a {@link Deferred}, which keeps what the layer's sum needs and forms
 * {@link Deferred#of(INDArray) the sum for any weights} later, in the parameter's {@code paramTable()} shape,
 * without the {@code [N, *p]} individual gradients where the layer allows:
 * <ul>
 * <li>dense layers and layers over time (dense, LSTM, SimpleRnn): the layer input and output gradient,
 *     {@code O(N·P·(K + O))} for {@code P} positions (time steps; 1 for a dense layer) of {@code K} inputs and
 *     {@code O} outputs; each sum is one matrix product per weight;</li>
 * <li>convolutions (1D, 2D, 3D, transposed): the layer input and output gradient, {@code O(N·(C_in·H·W + O·P))};
 *     each sum unfolds the input again ({@code K = C_in·k_h·k_w} values per output position) for its one matrix
 *     product; or, where they are smaller ({@code O·K < O·P + C_in·H·W}: a first convolution over a large image),
 *     the individual gradients, {@code O(N·O·K)};</li>
 * <li>embeddings: the row sums of the (example, row) pairs used, {@code O(N·T·dim)};</li>
 * <li>every other parameter (batch normalisation, PReLU, depthwise and separable convolutions, ...): its
 *     individual gradients, {@code N × #params} of the parameter, summed with the weights.</li>
 * </ul>
 * What a {@code Deferred} keeps is copied out of the pass and stays valid after it; it is immutable, and freed
 * when it is garbage-collected or, at once, by {@link Deferred#close()} ({@code Quantities.close()}). A
 * convolution's sum unfolds its input again in chunks of examples, so that its temporaries stay small.
 */
public final class WeightedGradientSum implements Extension<WeightedGradientSum.Deferred> {

    private final boolean replacesGradient;

    /** Creates the extension; DL4J's gradient is computed as always. */
    public WeightedGradientSum() {
        this(false);
    }

    private WeightedGradientSum(boolean replacesGradient) {
        this.replacesGradient = replacesGradient;
    }

    /**
     * The extension for a caller that overwrites every parameter's gradient of each training pass with weighted
     * sums before the updater reads it (from a {@code TrainingListener.onGradientCalculation}, as private training
     * does). In passes with it, DL4J's own product for the weight gradient of a plain {@code DenseLayer} (no layer
     * normalisation, dropout, weight noise or mask) is skipped, since it would be overwritten: that gradient is
     * left at zero until the caller writes it; everything else DL4J computes as always (the same input gradients,
     * biases, scores). {@link LayerSignals#gradient} is then unavailable for those weights. Saves one matrix
     * product per dense layer, about a third of its backward step.
     *
     * @return the extension, replacing DL4J's dense weight gradients
     */
    public static WeightedGradientSum replacingGradient() {
        return new WeightedGradientSum(true);
    }

    /** @return whether passes with this extension skip DL4J's dense weight gradients ({@link #replacingGradient()}) */
    public boolean replacesGradient() {
        return replacesGradient;
    }

    @Override
    public String name() {
        return replacesGradient ? "WeightedGradientSum(replacing the gradient)" : "WeightedGradientSum";
    }

    @Override
    public Map<String, Deferred> compute(LayerSignals layer) {
        return layer.weightedGradientSums();
    }

    /**
     * One parameter's weighted sum of individual gradients, formed for weights given after the pass. Closing it
     * ({@link io.github.dl4jbackpack.Quantities#close()} closes every value) frees what it keeps at once rather
     * than at a garbage collection.
     */
    public interface Deferred extends AutoCloseable {

        /** @return the number of examples N of the pass */
        long batchSize();

        /** @return the parameter's {@code paramTable()} shape, that of every sum */
        long[] shape();

        /**
         * @param weights {@code w}, N values (a vector or any array of N elements, in example order)
         * @return {@code Σ_n w_n g_n}, a new array of the parameter's shape, in the pass's data type; made, with its
         *     temporaries, in the caller's current ND4J workspace if one is open (a caller that opens one for
         *     the temporaries of a step reads the sum before closing it), else outside any
         * @throws IllegalArgumentException if {@code weights} does not have N elements
         */
        INDArray of(INDArray weights);

        /**
         * Adds {@code Σ_n w_n g_n} to {@code target}: for a dense layer's weights one matrix product accumulated
         * into the target (no array of the sum, no separate addition), else {@code target.addi(of(weights))}.
         *
         * @param weights {@code w}, N values as for {@link #of}
         * @param target an array of the parameter's shape, in the pass's data type (for example the parameter's
         *     view of DL4J's gradient); the temporaries, which never outlive the call, in the library's own
         *     per-thread scratch workspace (by default: as for {@link #of})
         * @throws IllegalArgumentException if {@code weights} does not have N elements or the target's shape is not
         *     the parameter's
         */
        default void addTo(INDArray weights, INDArray target) {
            if (!java.util.Arrays.equals(target.shape(), shape())) {
                throw new IllegalArgumentException("the target must have the parameter's shape "
                        + java.util.Arrays.toString(shape()) + ", got " + java.util.Arrays.toString(target.shape()));
            }
            target.addi(of(weights));
        }

        /**
         * Frees the native memory this sum keeps (copies of the pass's arrays), now rather than at a garbage
         * collection; {@link #of} and {@link #addTo} are refused afterwards ({@link IllegalStateException}), also
         * on the layer's other sums that share a copy with it (close a layer's sums together, as
         * {@link io.github.dl4jbackpack.Quantities#close()} does); sums formed before stay valid. Idempotent. By
         * default nothing to free.
         */
        @Override
        default void close() {
        }
    }
}
