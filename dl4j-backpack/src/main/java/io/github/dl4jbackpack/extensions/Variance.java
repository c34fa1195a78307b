package io.github.dl4jbackpack.extensions;

import io.github.dl4jbackpack.internal.LayerBackprop;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Gradient variance: the elementwise population variance of the individual gradients
 * {@code g_n = (1/N) ∇θ ℓ_n},
 * {@code (1/N) Σ_n g_n⊙g_n − ((1/N) Σ_n g_n)⊙((1/N) Σ_n g_n) = SGS/N − (∇L/N)²}.
 *
 * <p>Value per parameter: the parameter's shape. Because of the {@code 1/N} inside {@code g_n}
 * this equals {@code Var_n(∇ℓ_n) / N²}: multiply by {@code N²} for the variance of per-example
 * loss gradients, or by {@code N} for the variance of the minibatch-mean gradient as an estimator
 * of the expected gradient (for i.i.d. examples).
 *
 * <p>Memory: that of {@link SumGradSquared} (shared with it when both are requested) plus one
 * array of the parameter's size.
 */
public final class Variance implements Extension<INDArray> {

    /** Creates the extension. */
    public Variance() {
    }

    @Override
    public Map<String, INDArray> compute(LayerBackprop layer) {
        double n = layer.batchSize();
        Map<String, INDArray> sgs = layer.firstOrder().sumGradSquared();
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (Map.Entry<String, INDArray> e : sgs.entrySet()) {
            INDArray meanGrad = layer.gradient(e.getKey()).div(n);
            out.put(e.getKey(), e.getValue().div(n).subi(Transforms.pow(meanGrad, 2, false)));
        }
        return out;
    }
}
