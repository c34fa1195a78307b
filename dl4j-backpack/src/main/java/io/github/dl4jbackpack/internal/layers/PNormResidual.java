// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;

/**
 * The Hessian residual of p-norm pooling, for the pooling kinds that offer it. For one window
 * {@code y = (Σ_i |x_i|^p)^{1/p}} with gradient {@code g_i = x_i |x_i|^{p−2} / y^{p−1}}, the Hessian is
 * {@code ∇²y = ((p−1)/y) [diag(|x|^{p−2} y^{2−p}) − g gᵀ]} (docs/math.md#p-norm-pooling). Summed with
 * the output gradients {@code ε_w} over all windows, the diagonal parts add up elementwise,
 * {@code d_i = (p−1) |x_i|^{p−2} Σ_{w∋i} ε_w / y_w^{p−1}}, and each window keeps one rank-one term
 * {@code −(p−1) ε_w / y_w · g_w g_wᵀ}, whose column {@code g_w} is the pooling's own Jacobian transpose of
 * the unit vector at that output. Windows with {@code y = 0} (where the map is not differentiable)
 * contribute nothing. For {@code p = 1} the map is piecewise linear: no residual.
 */
final class PNormResidual {

    private PNormResidual() {
    }

    /**
     * @param p the order of the norm, at least 2
     * @param x the pooling input {@code [N, *inShape]}
     * @param y the pooled output {@code [N, *outShape]}
     * @param epsilon {@code ∂L/∂y} of the mean loss, shaped like {@code y}
     * @param windowSum sums output-shaped values over the windows that contain each input element
     *     ({@code [N, *outShape] → [N, *inShape]})
     * @param jacobianTranspose the pooling's Jacobian-transpose product of folded columns
     *     ({@code [N·K, *outShape] → [N·K, *inShape]})
     * @return the signed parts: per sign, the diagonal (one unit column per input element) and one column
     *     per output element
     */
    static List<VertexDerivatives.ResidualPart> parts(int p, INDArray x, INDArray y, INDArray epsilon,
                                                      UnaryOperator<INDArray> windowSum,
                                                      UnaryOperator<INDArray> jacobianTranspose) {
        INDArray positive = y.gt(0.0).castTo(y.dataType());
        INDArray safeY = Transforms.max(y, Double.MIN_NORMAL, true);
        INDArray perWindow = epsilon.div(Transforms.pow(safeY, p - 1, true)).muli(positive);
        INDArray diagonal = windowSum.apply(perWindow).muli(Transforms.pow(Transforms.abs(x, true), p - 2, false))
                .muli(p - 1);
        INDArray rankOne = epsilon.div(safeY).muli(positive).muli(-(p - 1));
        long n = x.size(0);
        long outFeatures = Columns.features(y.shape());
        List<VertexDerivatives.ResidualPart> parts = new ArrayList<>();
        for (double sign : new double[] {1.0, -1.0}) {
            parts.add(VertexDerivatives.diagonal(sign,
                    new INDArray[] {Transforms.sqrt(Transforms.relu(diagonal.mul(sign), false), false)}));
            INDArray scale = Transforms.sqrt(Transforms.relu(rankOne.mul(sign), false), false).reshape('c', n,
                    outFeatures);
            parts.add(new VertexDerivatives.ResidualPart() {
                @Override
                public double sign() {
                    return sign;
                }

                @Override
                public long columns() {
                    return outFeatures;
                }

                @Override
                public INDArray[] columns(long from, long to) {
                    INDArray atOutput = Columns.unitColumns(scale, from, to)
                            .reshape('c', Columns.withRows(n * (to - from), y.shape()));
                    return new INDArray[] {jacobianTranspose.apply(atOutput)};
                }
            });
        }
        return parts;
    }
}
