// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.normalization.LocalResponseNormalization;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

/**
 * DL4J's {@code LocalResponseNormalization} over channels of NCHW input:
 * {@code a = x · u^{−β}}, {@code u = k + α Σ_{window} x²} (window of n channels). Its Jacobian
 * transpose is the exact derivative of that forward step,
 * {@code Jᵀs = s u^{−β} − 2αβ x Σ_{window}(s x u^{−β−1})}, applied to every factor column with the
 * example's {@code x}. DL4J's own backward step differs: it computes
 * {@code ε u^{−β} − 2αβ (x / u) Σ_{window}(ε a)}, dividing by the element's own {@code u} instead of
 * each window position's, so the gradient DL4J trains with (and the first-order quantities, which
 * sum to it) is not exactly the derivative of the layer's output; the two agree when {@code u} is the
 * same across a window (small {@code α}, as in AlexNet's {@code 1e−4}). The curvature extensions use
 * the exact Jacobian (docs/math.md#local-response-normalisation).
 *
 * <p>Its Hessian residual {@code R = Σ_c ε_c ∇²_x a_c} lives within one pixel of one example
 * (docs/math.md#local-response-normalisation). With {@code M} the window matrix
 * ({@code M_jl = 1} for {@code |j − l| ≤ n/2}), {@code m_c} its column, {@code p = ε u^{−β−1}}:
 * {@code R = −2αβ [diag(p) M diag(x) + diag(x) M diag(p)] − 2αβ diag(M (ε x u^{−β−1}))
 * + 4α²β(β+1) Σ_c ε_c x_c u_c^{−β−2} (x⊙m_c)(x⊙m_c)ᵀ}. The first term is
 * {@code Σ_c (a_c b_cᵀ + b_c a_cᵀ)} with {@code a_c = p_c e_c}, {@code b_c = x⊙m_c}, written as
 * {@code ½[(a'+b')(a'+b')ᵀ − (a'−b')(a'−b')ᵀ]} after rescaling {@code a' = t a}, {@code b' = b/t}
 * to equal norms (which keeps the difference of squares accurate). So each example has, per sign, one
 * unit column per input element (the diagonal) and two columns per channel and pixel.
 */
public final class LrnDerivatives implements LayerDerivatives {

    @Override
    public String kindName() {
        return "LocalResponseNormalization";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == LocalResponseNormalization.class;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    private static org.deeplearning4j.nn.conf.layers.LocalResponseNormalization conf(Layer layer) {
        return (org.deeplearning4j.nn.conf.layers.LocalResponseNormalization) layer.conf().getLayer();
    }

    @Override
    public boolean backwardIsDerivative(Layer layer) {
        return false;
    }

    @Override
    public boolean hasInputResidual(Layer layer) {
        return true;
    }

    @Override
    public java.util.List<VertexDerivatives.ResidualPart> inputResidual(RecordedLayer record) {
        org.deeplearning4j.nn.conf.layers.LocalResponseNormalization c = conf(record.layer());
        double alpha = c.getAlpha();
        double beta = c.getBeta();
        int half = (int) c.getN() / 2;
        INDArray epsilon = record.outputGradient();
        INDArray x = record.input().castTo(epsilon.dataType());
        INDArray windowSquares = windowSum(x.mul(x), half);
        INDArray u = windowSquares.mul(alpha).addi(c.getK());
        INDArray p = epsilon.mul(Transforms.pow(u, -beta - 1, true));
        INDArray diagonal = windowSum(p.mul(x), half).muli(-2 * alpha * beta);
        INDArray cubic = epsilon.mul(x).muli(Transforms.pow(u, -beta - 2, true)).muli(4 * alpha * alpha * beta * (beta + 1));
        // a' = sign(p) √(|p| ‖b‖) e_c and b' = √(|p| / ‖b‖) b, zero where ‖b‖ = 0
        INDArray norm = Transforms.sqrt(windowSquares, true);
        INDArray present = norm.gt(0.0).castTo(x.dataType());
        INDArray absP = Transforms.abs(p, true);
        INDArray unitScale = Transforms.sqrt(absP.mul(norm), true).muli(Transforms.sign(p, true)).muli(present)
                .muli(Math.sqrt(alpha * beta));
        INDArray windowScale = Transforms.sqrt(absP.div(Transforms.max(norm, Double.MIN_NORMAL, true)), true)
                .muli(present).muli(Math.sqrt(alpha * beta));
        java.util.List<VertexDerivatives.ResidualPart> parts = new java.util.ArrayList<>();
        for (double sign : new double[] {1.0, -1.0}) {
            parts.add(VertexDerivatives.diagonal(sign,
                    new INDArray[] {Transforms.sqrt(Transforms.relu(diagonal.mul(sign), false), false)}));
            // sign +: a' − b'; sign −: a' + b'; the cubic term by its sign
            INDArray[] unit = {unitScale, null};
            INDArray[] window = {windowScale.mul(-sign), Transforms.sqrt(Transforms.relu(cubic.mul(sign), false), false)};
            parts.add(new WindowColumns(sign, x, half, unit, window));
        }
        return parts;
    }

    /**
     * Residual columns of one channel c and pixel each: {@code D_c e_c + E_c (x⊙m_c)} at that pixel, for
     * several (D, E) pairs (D may be null: zero); column {@code (t, c, pixel)} in that order.
     */
    private static final class WindowColumns implements VertexDerivatives.ResidualPart {
        private final double sign;
        private final INDArray x;
        private final int half;
        private final INDArray[] unit;
        private final INDArray[] window;

        WindowColumns(double sign, INDArray x, int half, INDArray[] unit, INDArray[] window) {
            this.sign = sign;
            this.x = x;
            this.half = half;
            this.unit = unit;
            this.window = window;
        }

        @Override
        public double sign() {
            return sign;
        }

        @Override
        public long columns() {
            return unit.length * Columns.features(x.shape());
        }

        @Override
        public INDArray[] columns(long from, long to) {
            long n = x.size(0);
            long channels = x.size(1);
            long pixels = x.size(2) * x.size(3);
            long perTerm = channels * pixels;
            INDArray out = org.nd4j.linalg.factory.Nd4j.zeros(x.dataType(), n, to - from, channels, pixels);
            INDArray xFlat = x.dup('c').reshape('c', n, channels, pixels);
            for (long start = from - from % pixels; start < to; start += pixels) {
                int t = (int) (start / perTerm);
                long ch = (start % perTerm) / pixels;
                long p0 = Math.max(from, start) - start;
                long p1 = Math.min(to, start + pixels) - start;
                org.nd4j.linalg.indexing.INDArrayIndex range = NDArrayIndex.interval(start + p0 - from, start + p1 - from);
                for (long other = Math.max(0, ch - half); other <= Math.min(channels - 1, ch + half); other++) {
                    INDArray values = xFlat.get(NDArrayIndex.all(), NDArrayIndex.point(other), NDArrayIndex.all())
                            .mul(plane(window[t], ch));
                    if (other == ch && unit[t] != null) {
                        values.addi(plane(unit[t], ch));
                    }
                    out.get(NDArrayIndex.all(), range, NDArrayIndex.point(other), NDArrayIndex.all())
                            .assign(Columns.unitColumns(values, p0, p1));
                }
            }
            return new INDArray[] {out.reshape('c', n * (to - from), channels, x.size(2), x.size(3))};
        }

        private static INDArray plane(INDArray values, long channel) {
            long n = values.size(0);
            return values.get(NDArrayIndex.all(), NDArrayIndex.point(channel), NDArrayIndex.all(), NDArrayIndex.all())
                    .dup('c').reshape('c', n, values.size(2) * values.size(3));
        }
    }


    @Override
    public boolean jacobianVariesByExample(Layer layer) {
        return true;
    }

    /** @return {@code Σ_{|c' − c| ≤ half} arr[:, c']} along the channel axis, clipped at the edges */
    private static INDArray windowSum(INDArray arr, int half) {
        long channels = arr.size(1);
        INDArray out = arr.dup('c');
        for (int i = 1; i <= half && i < channels; i++) {
            out.get(NDArrayIndex.all(), NDArrayIndex.interval(i, channels), NDArrayIndex.all(), NDArrayIndex.all())
                    .addi(arr.get(NDArrayIndex.all(), NDArrayIndex.interval(0, channels - i), NDArrayIndex.all(),
                            NDArrayIndex.all()));
            out.get(NDArrayIndex.all(), NDArrayIndex.interval(0, channels - i), NDArrayIndex.all(), NDArrayIndex.all())
                    .addi(arr.get(NDArrayIndex.all(), NDArrayIndex.interval(i, channels), NDArrayIndex.all(),
                            NDArrayIndex.all()));
        }
        return out;
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        org.deeplearning4j.nn.conf.layers.LocalResponseNormalization c = conf(record.layer());
        double alpha = c.getAlpha();
        double beta = c.getBeta();
        int half = (int) c.getN() / 2;
        INDArray x = record.input().castTo(factor.dataType());
        INDArray u = windowSum(x.mul(x), half).muli(alpha).addi(c.getK());
        INDArray scale = Transforms.pow(u, -beta, true);
        INDArray xOverU = x.mul(scale).divi(u);
        INDArray sums = windowSum(Columns.timesPerExample(factor, xOverU), half);
        return Columns.timesPerExample(factor, scale).subi(Columns.timesPerExample(sums, x.mul(2 * alpha * beta)));
    }
}
