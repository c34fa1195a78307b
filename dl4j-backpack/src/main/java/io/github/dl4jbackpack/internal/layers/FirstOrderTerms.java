package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Collections;
import java.util.Map;

/**
 * First-order quantities of one layer with parameters in one backward pass, computed from the
 * layer input and the gradient of the mean loss w.r.t. the layer's (pre-activation) output
 * ({@code δ_n}, which already carries the {@code 1/N}). Each quantity is computed at most once
 * per pass, so extensions asking for the same term share it.
 *
 * <p>Returned arrays live in the scope they were computed in (the first-order scratch workspace
 * during a pass), except the individual gradients, which are made outside every workspace: they are
 * {@code BatchGrad}'s result as they are, often the largest array of the pass, and are not copied
 * again. Maps are keyed by DL4J parameter name in the layer's parameter order.
 */
public abstract class FirstOrderTerms {

    private Map<String, INDArray> individualGradients;
    private Map<String, INDArray> squaredNorms;
    private Map<String, INDArray> secondMoment;
    private Map<String, INDArray> dots;

    /** @return {@code g_n} per parameter, shape {@code [N, *p]} */
    public final Map<String, INDArray> individualGradients() {
        if (individualGradients == null) {
            try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                individualGradients = Collections.unmodifiableMap(computeIndividualGradients());
            }
        }
        return individualGradients;
    }

    /** @return {@code ‖g_n‖²} per parameter, shape {@code [N]} */
    public final Map<String, INDArray> individualGradientSquaredNorms() {
        if (squaredNorms == null) {
            squaredNorms = Collections.unmodifiableMap(computeSquaredNorms());
        }
        return squaredNorms;
    }

    /** @return {@code Σ_n g_n ⊙ g_n} per parameter, parameter shape */
    public final Map<String, INDArray> sumGradSquared() {
        if (secondMoment == null) {
            secondMoment = Collections.unmodifiableMap(computeSumGradSquared());
        }
        return secondMoment;
    }

    /** @return {@code ⟨g_n, g_m⟩} per parameter, shape {@code [N, N]} */
    public final Map<String, INDArray> individualGradientDots() {
        if (dots == null) {
            dots = Collections.unmodifiableMap(computeDots());
        }
        return dots;
    }

    /** @return the individual gradients if some extension already asked for them, else null */
    protected final Map<String, INDArray> individualGradientsIfComputed() {
        return individualGradients;
    }

    /** @return {@code g_n} per parameter */
    protected abstract Map<String, INDArray> computeIndividualGradients();

    /** @return {@code ‖g_n‖²} per parameter */
    protected abstract Map<String, INDArray> computeSquaredNorms();

    /** @return {@code Σ_n g_n ⊙ g_n} per parameter */
    protected abstract Map<String, INDArray> computeSumGradSquared();

    /** @return {@code ⟨g_n, g_m⟩} per parameter */
    protected abstract Map<String, INDArray> computeDots();
}
