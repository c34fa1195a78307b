// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.feedforward.PReLU;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Broadcast;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.Map;

/**
 * Derivatives of DL4J's {@code PReLULayer}: {@code y = x} where {@code x ≥ 0}, {@code y = α ⊙ x} where
 * {@code x < 0} (libnd4j's {@code prelu}), with {@code α} ({@code W}) shaped like one example's input and of
 * size 1 along the shared axes, over which it is broadcast. No activation follows (DL4J ignores the
 * configured one), so {@code z = y}.
 *
 * <p>With {@code x⁻ = min(x, 0)} and {@code R} the sum over the shared axes: {@code g_n(α) = R(δ_n ⊙ x⁻_n)},
 * {@code J_αᵀ s = R(s ⊙ x⁻_n)} (squared after the sum), {@code J_xᵀ s = s ⊙ (1 where x ≥ 0, α where x < 0)}
 * (DL4J's slope at 0 is 1). The function is linear in α and piecewise linear in x, so {@code ∂²y/∂α² = 0}
 * and {@code ∂²y/∂x² = 0} almost everywhere: no Hessian residual reaches the diagonals (the mixed term
 * {@code ∂²y/∂x∂α} is off the diagonal). α is not a weight matrix: no Kronecker factorisation.
 */
public final class PReluDerivatives implements LayerDerivatives {

    static final String W = "W";

    @Override
    public String kindName() {
        return "PReLULayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == PReLU.class;
    }

    @Override
    public boolean hasParameters() {
        return true;
    }

    @Override
    public boolean supportsSharedColumns(Layer layer) {
        return true;
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return "its slopes are an elementwise parameter, not a weight matrix";
    }

    @Override
    public boolean jacobianVariesByExample(Layer layer) {
        return true;
    }

    /** @return the axes of an array {@code [lead axes…, *xShape]} along which α is shared (size 1, summed) */
    private static int[] sharedAxes(long[] alphaShape, int lead) {
        return java.util.stream.IntStream.range(0, alphaShape.length).filter(a -> alphaShape[a] == 1)
                .map(a -> a + lead).toArray();
    }

    /** @return {@code R(values)}: the sum over the shared axes, keeping them, of {@code [lead axes…, *xShape]} */
    private static INDArray reduce(INDArray values, long[] alphaShape, int lead) {
        int[] axes = sharedAxes(alphaShape, lead);
        return axes.length == 0 ? values : values.sum(true, axes);
    }

    private static INDArray negativePart(RecordedLayer record, INDArray like) {
        return record.cached("negativeInput", () -> Transforms.min(record.input().castTo(like.dataType()), 0.0, true));
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        INDArray slope = record.cached("slope", () -> {
            INDArray x = record.input().castTo(factor.dataType());
            INDArray alpha = record.layer().getParam(W).castTo(factor.dataType());
            INDArray negative = x.lt(0.0).castTo(factor.dataType());
            INDArray alphaMinusOne = alpha.sub(1.0).reshape('c', ConvolutionDerivatives.withBatchAxis(1, alpha.shape()))
                    .broadcast(x.shape());
            return negative.muli(alphaMinusOne).addi(1.0);
        });
        return Columns.timesPerExample(factor, slope);
    }

    /** @return {@code R(s ⊙ x⁻_n)} of every column, {@code [rows, V, *αShape]}, for columns {@code [rows, V, *xShape]} */
    private static INDArray parameterProducts(RecordedLayer record, INDArray factor) {
        INDArray negative = negativePart(record, factor);
        long rows = factor.size(0);
        long features = negative.length() / rows;
        INDArray products = factor.dup('c').reshape('c', rows, factor.size(1), features);
        Broadcast.mul(products, negative.dup('c').reshape('c', rows, features), products, 0, 2);
        return reduce(products.reshape('c', factor.shape()), record.layer().getParam(W).shape(), 2);
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray products = parameterProducts(record, factor);
        ElementWiseMultiplicationDerivatives.add(record, W, products.muli(products).sum(1).muli(sign), sink);
    }

    @Override
    public void accumulateSharedCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        INDArray summed = parameterProducts(record, factor).sum(0);         // [C, *α]: Σ_m R(s_mc ⊙ x⁻_m)
        sink.add(W, summed.muli(summed).sum(0).muli(sign).reshape('c', record.layer().getParam(W).shape()));
    }

    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        INDArray negative = Transforms.min(input.castTo(outputGradient.dataType()), 0.0, true);
        INDArray gradients = reduce(outputGradient.mul(negative), layer.getParam(W).shape(), 1);
        return FirstOrderTerms.ofIndividualGradients(Map.of(W, gradients));
    }
}
