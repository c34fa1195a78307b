// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.iter.NdIndexIterator;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Brute-force curvature references, built only from DL4J's own forward and backward passes on
 * plain (never extended) networks, plus the loss Hessians written out from their formulas:
 * <ul>
 *   <li>per-example Jacobians of the output pre-activation {@code z_n} w.r.t. every parameter, one
 *       DL4J backward pass per (example, output unit), on a copy of the network whose output layer is
 *       identity + L2 and whose labels are {@code z_n − e_c/2} (so that {@code ∂ℓ/∂z = e_c});</li>
 *   <li>the exact GGN diagonal {@code (1/N) Σ_n diag(J_nᵀ H_n J_n)} from them;</li>
 *   <li>the Hessian diagonal (whole batch and per example) by central finite differences of DL4J's
 *       gradient.</li>
 * </ul>
 * Everything is float64 and works on parameter keys {@code "<layer>_<param>"} and values in the
 * parameter's {@code paramTable()} shape.
 */
final class BruteForce {

    private BruteForce() {
    }

    /** The supported (loss, output activation) pairs, with ∇_z ℓ and ∇²_z ℓ written out. */
    enum Loss {
        MCXENT(LossFunction.MCXENT, Activation.SOFTMAX),
        NLL(LossFunction.NEGATIVELOGLIKELIHOOD, Activation.SOFTMAX),
        MSE(LossFunction.MSE, Activation.IDENTITY),
        L2(LossFunction.L2, Activation.IDENTITY),
        XENT(LossFunction.XENT, Activation.SIGMOID);

        final LossFunction function;
        final Activation activation;

        Loss(LossFunction function, Activation activation) {
            this.function = function;
            this.activation = activation;
        }

        /** @return ∇_z ℓ(z, y) for one example */
        double[] gradient(double[] z, double[] y) {
            int c = z.length;
            double[] g = new double[c];
            switch (this) {
                case MCXENT:
                case NLL: {
                    double[] p = softmax(z);
                    for (int i = 0; i < c; i++) {
                        g[i] = p[i] - y[i];
                    }
                    break;
                }
                case MSE:
                    for (int i = 0; i < c; i++) {
                        g[i] = 2.0 * (z[i] - y[i]) / c;
                    }
                    break;
                case L2:
                    for (int i = 0; i < c; i++) {
                        g[i] = 2.0 * (z[i] - y[i]);
                    }
                    break;
                case XENT:
                    for (int i = 0; i < c; i++) {
                        g[i] = sigmoid(z[i]) - y[i];
                    }
                    break;
                default:
                    throw new IllegalStateException();
            }
            return g;
        }

        /** @return ∇²_z ℓ(z, ·) for one example, {@code [C, C]} */
        double[][] hessian(double[] z) {
            int c = z.length;
            double[][] h = new double[c][c];
            switch (this) {
                case MCXENT:
                case NLL: {
                    double[] p = softmax(z);
                    for (int i = 0; i < c; i++) {
                        for (int j = 0; j < c; j++) {
                            h[i][j] = (i == j ? p[i] : 0.0) - p[i] * p[j];
                        }
                    }
                    break;
                }
                case MSE:
                    for (int i = 0; i < c; i++) {
                        h[i][i] = 2.0 / c;
                    }
                    break;
                case L2:
                    for (int i = 0; i < c; i++) {
                        h[i][i] = 2.0;
                    }
                    break;
                case XENT:
                    for (int i = 0; i < c; i++) {
                        double s = sigmoid(z[i]);
                        h[i][i] = s * (1.0 - s);
                    }
                    break;
                default:
                    throw new IllegalStateException();
            }
            return h;
        }

        @Override
        public String toString() {
            return activation.name().toLowerCase() + "-" + function.name().toLowerCase();
        }
    }

    static double sigmoid(double z) {
        return 1.0 / (1.0 + Math.exp(-z));
    }

    static double[] softmax(double[] z) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : z) {
            max = Math.max(max, v);
        }
        double sum = 0;
        double[] p = new double[z.length];
        for (int i = 0; i < z.length; i++) {
            p[i] = Math.exp(z[i] - max);
            sum += p[i];
        }
        for (int i = 0; i < z.length; i++) {
            p[i] /= sum;
        }
        return p;
    }

    /** @return the parameter keys of a network ("0_W", "0_b", ...), in parameter order */
    static List<String> keys(MultiLayerNetwork net) {
        return new ArrayList<>(net.paramTable().keySet());
    }

    static int layerOf(String key) {
        return Integer.parseInt(key.substring(0, key.indexOf('_')));
    }

    static String paramOf(String key) {
        return key.substring(key.indexOf('_') + 1);
    }

    /** @return DL4J's summed gradient {@code Σ_n ∇ℓ_n} per key, copied, in parameter shape */
    static Map<String, INDArray> gradientSum(MultiLayerNetwork plain, INDArray x, INDArray y) {
        plain.setInput(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (String key : keys(plain)) {
            out.put(key, plain.gradient().getGradientFor(key).castTo(DataType.DOUBLE).dup('c'));
        }
        return out;
    }

    /** Per-example output pre-activations and Jacobians. */
    static final class Jacobians {
        /** z_n, [N][C] */
        final double[][] z;
        /** per example: key → J_n as {@code [C, numel(param)]} (row c = ∂z_c/∂θ, c-order flattening) */
        final List<Map<String, INDArray>> j;
        /** key → parameter shape */
        final Map<String, long[]> shapes;

        Jacobians(double[][] z, List<Map<String, INDArray>> j, Map<String, long[]> shapes) {
            this.z = z;
            this.j = j;
            this.shapes = shapes;
        }

        int n() {
            return z.length;
        }
    }

    /**
     * @param ref a plain network whose last layer has identity activation and L2 loss (its output
     *     is the pre-activation z of the network under test) and the same parameters
     * @param x features
     * @return per-example z and ∂z/∂θ, each row from one DL4J backward pass
     */
    static Jacobians jacobians(MultiLayerNetwork ref, INDArray x) {
        int n = (int) x.size(0);
        List<String> keys = keys(ref);
        Map<String, long[]> shapes = new LinkedHashMap<>();
        for (String key : keys) {
            shapes.put(key, ref.getParam(key).shape());
        }
        double[][] zs = new double[n][];
        List<Map<String, INDArray>> js = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            INDArray xi = Reference.example(x, i);
            INDArray zi = ref.output(xi, false).castTo(DataType.DOUBLE).dup();
            int c = (int) zi.size(1);
            zs[i] = zi.reshape(c).toDoubleVector();
            Map<String, List<INDArray>> rows = new LinkedHashMap<>();
            for (int k = 0; k < c; k++) {
                INDArray yk = zi.dup();
                yk.putScalar(0, k, zi.getDouble(0, k) - 0.5);
                // ℓ = Σ_c (z_c − y_c)², ∂ℓ/∂z = 2(z − y) = e_k, so ∇_θ ℓ = ∂z_k/∂θ
                Map<String, INDArray> g = gradientSum(ref, xi, yk);
                for (String key : keys) {
                    INDArray gk = g.get(key);
                    rows.computeIfAbsent(key, kk -> new ArrayList<>()).add(gk.reshape('c', 1, gk.length()));
                }
            }
            Map<String, INDArray> jn = new LinkedHashMap<>();
            rows.forEach((key, list) -> jn.put(key, Nd4j.concat(0, list.toArray(new INDArray[0]))));
            js.add(jn);
        }
        return new Jacobians(zs, js, shapes);
    }

    /** @return key → {@code Σ_n J_nᵀ ∇_z ℓ_n}, in parameter shape (must equal DL4J's summed gradient) */
    static Map<String, INDArray> chainRuleGradient(Jacobians jac, Loss loss, INDArray labels) {
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (int i = 0; i < jac.n(); i++) {
            double[] y = labels.getRow(i).castTo(DataType.DOUBLE).toDoubleVector();
            INDArray g = Nd4j.createFromArray(loss.gradient(jac.z[i], y)).reshape(1, jac.z[i].length);
            for (Map.Entry<String, INDArray> e : jac.j.get(i).entrySet()) {
                INDArray term = g.mmul(e.getValue());
                out.merge(e.getKey(), term, INDArray::add);
            }
        }
        Map<String, INDArray> shaped = new LinkedHashMap<>();
        out.forEach((key, v) -> shaped.put(key, v.reshape('c', jac.shapes.get(key))));
        return shaped;
    }

    /**
     * @return key → per-example GGN diagonal terms {@code diag((1/N) J_nᵀ H_n J_n)}, shape {@code [N, *p]}
     */
    static Map<String, INDArray> batchDiagGgn(Jacobians jac, Loss loss) {
        int n = jac.n();
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (String key : jac.shapes.keySet()) {
            long[] shape = jac.shapes.get(key);
            long numel = 1;
            for (long s : shape) {
                numel *= s;
            }
            INDArray all = Nd4j.create(DataType.DOUBLE, n, numel);
            for (int i = 0; i < n; i++) {
                INDArray j = jac.j.get(i).get(key);
                INDArray h = Nd4j.createFromArray(loss.hessian(jac.z[i]));
                // diag(Jᵀ H J)_k = Σ_{c,c'} J[c,k] H[c,c'] J[c',k]
                INDArray diag = j.mul(h.mmul(j)).sum(0).divi(n);
                all.getRow(i).assign(diag);
            }
            out.put(key, all.reshape('c', withBatch(n, shape)));
        }
        return out;
    }

    /** @return the sum over the batch axis */
    static Map<String, INDArray> sumOverBatch(Map<String, INDArray> batched) {
        Map<String, INDArray> out = new LinkedHashMap<>();
        batched.forEach((key, v) -> out.put(key, v.sum(0)));
        return out;
    }

    /** Finite-difference Hessian diagonals. */
    static final class HessianDiagonals {
        /** key → diag ∇²L, parameter shape */
        final Map<String, INDArray> batch;
        /** key → diag ∇²(ℓ_n/N), [N, *p] */
        final Map<String, INDArray> perExample;

        HessianDiagonals(Map<String, INDArray> batch, Map<String, INDArray> perExample) {
            this.batch = batch;
            this.perExample = perExample;
        }
    }

    /**
     * Central differences of DL4J's own gradient, one parameter at a time:
     * {@code H_kk ≈ (g_k(θ + h e_k) − g_k(θ − h e_k)) / 2h} with {@code g = ∇L = (summed gradient)/N} for
     * the batch, and {@code g = ∇(ℓ_n/N)} from single-example passes for the per-example terms.
     *
     * @param plain a plain float64 network (its parameters are perturbed and restored exactly)
     */
    static HessianDiagonals finiteDifferenceHessian(MultiLayerNetwork plain, INDArray x, INDArray y, double h) {
        int n = (int) x.size(0);
        Map<String, INDArray> batch = new LinkedHashMap<>();
        Map<String, INDArray> perExample = new LinkedHashMap<>();
        for (String key : keys(plain)) {
            long[] shape = plain.getParam(key).shape();
            batch.put(key, Nd4j.create(DataType.DOUBLE, shape));
            perExample.put(key, Nd4j.create(DataType.DOUBLE, withBatch(n, shape)));
        }
        // one data set at a time (the whole batch, then each example), so that consecutive passes
        // have the same shapes
        for (int d = -1; d < n; d++) {
            INDArray xd = d < 0 ? x : Reference.example(x, d);
            INDArray yd = d < 0 ? y : Reference.example(y, d);
            for (String key : keys(plain)) {
                INDArray param = plain.getParam(key);
                NdIndexIterator it = new NdIndexIterator('c', param.shape());
                while (it.hasNext()) {
                    long[] idx = it.next();
                    double original = param.getDouble(idx);
                    param.putScalar(idx, original + h);
                    if (plain.getParam(key).getDouble(idx) == original) {
                        throw new IllegalStateException("perturbing " + key + " did not reach the network");
                    }
                    double plus = gradientElement(plain, xd, yd, key, idx);
                    param.putScalar(idx, original - h);
                    double minus = gradientElement(plain, xd, yd, key, idx);
                    param.putScalar(idx, original);
                    // g = ∇L = (summed gradient)/N for the batch; g = ∇(ℓ_n/N) for example n
                    double hkk = (plus - minus) / (2 * h) / n;
                    if (d < 0) {
                        batch.get(key).putScalar(idx, hkk);
                    } else {
                        long[] batchIdx = new long[idx.length + 1];
                        batchIdx[0] = d;
                        System.arraycopy(idx, 0, batchIdx, 1, idx.length);
                        perExample.get(key).putScalar(batchIdx, hkk);
                    }
                }
            }
        }
        return new HessianDiagonals(batch, perExample);
    }

    private static double gradientElement(MultiLayerNetwork plain, INDArray x, INDArray y, String key, long[] idx) {
        plain.setInput(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        return plain.gradient().getGradientFor(key).getDouble(idx);
    }

    static long[] withBatch(long n, long[] shape) {
        long[] out = new long[shape.length + 1];
        out[0] = n;
        System.arraycopy(shape, 0, out, 1, shape.length);
        return out;
    }
}
