// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.BruteForce.Loss;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.FeedForwardLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static io.github.dl4jbackpack.Reference.assertClose;

/**
 * Brute-force references for Kronecker factors (docs/math.md#kronecker-factors), independent of the
 * library:
 * <ul>
 *   <li>input-side factors {@code A} as direct sums over layer inputs (from a plain DL4J forward pass)
 *       and over convolution patches extracted with explicit loops over output positions;</li>
 *   <li>the network as a chain of modules (linear map, elementwise activation, pooling) with an
 *       explicit per-example Jacobian matrix for each, obtained from DL4J forward maps: linear maps
 *       from unit inputs of a one-layer copy with identity activation, pooling by central finite
 *       differences of a one-layer copy, activations {@code diag(φ'(z))} from DL4J's activation
 *       backprop (cross-checked against finite differences of {@code φ});</li>
 *   <li>output-side factors from that chain: exact per-example propagation of {@code H_n / N} (KFLR)
 *       and the batch-averaged recursion {@code Ḡ ← (1/N) Σ_n J_nᵀ Ḡ J_n} (KFRA), with explicit matrix
 *       products.</li>
 * </ul>
 * All float64. Every step is self-checked against DL4J's own forward pass.
 */
final class BruteForceKronecker {

    /** Finite-difference step for pooling Jacobians and the activation-derivative cross-check. */
    static final double FD_STEP = 1e-6;

    private BruteForceKronecker() {
    }

    enum Kind { LINEAR, ACTIVATION, POOLING }

    /** One module of the network with its Jacobian per example, {@code [dim out, dim in]}. */
    static final class Module {
        final String name;
        final Kind kind;
        final int layer;
        /** LINEAR only: the number of output channels if the layer is a convolution, else 0 */
        final int convChannels;
        final List<INDArray> jacobians;

        Module(String name, Kind kind, int layer, int convChannels, List<INDArray> jacobians) {
            this.name = name;
            this.kind = kind;
            this.layer = layer;
            this.convChannels = convChannels;
            this.jacobians = jacobians;
        }

        @Override
        public String toString() {
            return name + " " + jacobians.get(0).rows() + "×" + jacobians.get(0).columns();
        }
    }

    /** A network as a chain of modules, forward order. */
    static final class Chain {
        final List<Module> modules;
        /** output pre-activation per example, {@code [N][C]} */
        final double[][] output;
        /** layer → its input as the layer sees it (after any preprocessor), whole batch */
        final Map<Integer, INDArray> layerInputs;

        Chain(List<Module> modules, double[][] output, Map<Integer, INDArray> layerInputs) {
            this.modules = modules;
            this.output = output;
            this.layerInputs = layerInputs;
        }

        int n() {
            return output.length;
        }
    }

    // ---------------------------------------------------------------- chain of module Jacobians

    /**
     * @param source a plain (never extended) float64 network; it is cloned, not modified
     * @param x features
     * @return the chain of modules with their per-example Jacobians, self-checked against DL4J's forward pass
     */
    static Chain chain(MultiLayerNetwork source, INDArray x) {
        MultiLayerNetwork plain = source.clone();
        // training mode: in inference DL4J's ActivationLayer overwrites its input (the previous
        // layer's activation in the returned list) in place; no dropout in these networks
        List<INDArray> activations = plain.feedForward(x, true);
        int n = (int) x.size(0);
        int layers = plain.getnLayers();
        List<Module> modules = new ArrayList<>();
        Map<Integer, INDArray> inputs = new TreeMap<>();
        double[][] output = null;
        for (int i = 0; i < layers; i++) {
            Layer conf = plain.getLayerWiseConfigurations().getConf(i).getLayer();
            INDArray in = layerInput(activations.get(i), conf);
            inputs.put(i, in);
            INDArray out = activations.get(i + 1).castTo(DataType.DOUBLE).dup('c');
            String what = "layer " + i + " (" + conf.getClass().getSimpleName() + ")";
            if (conf instanceof DenseLayer || conf instanceof OutputLayer || conf instanceof ConvolutionLayer) {
                BaseLayer identity = (BaseLayer) conf.clone();
                identity.setActivationFn(new ActivationIdentity());
                MultiLayerNetwork linear = single(identity, plain.getLayer(i).params());
                INDArray z = linear.output(in, false).castTo(DataType.DOUBLE).dup('c');
                IActivation phi = ((BaseLayer) conf).getActivationFn();
                // self-check: φ(z) with DL4J's activation is the layer's output in the forward pass
                assertClose(out, phi.getActivation(z.dup(), false), 1e-12, 1e-14,
                        "reference self-check: φ(z) of " + what);
                INDArray jac = unitJacobian(linear, in);
                int channels = conf instanceof ConvolutionLayer ? (int) ((ConvolutionLayer) conf).getNOut() : 0;
                modules.add(new Module("linear " + i, Kind.LINEAR, i, channels, Collections.nCopies(n, jac)));
                if (i == layers - 1) {
                    output = z.reshape(n, z.length() / n).toDoubleMatrix();
                } else {
                    modules.add(new Module("activation " + i, Kind.ACTIVATION, i, 0, activationJacobians(phi, z, what)));
                }
            } else if (conf instanceof ActivationLayer) {
                IActivation phi = ((ActivationLayer) conf).getActivationFn();
                INDArray a = in.castTo(DataType.DOUBLE).dup('c');
                assertClose(out, phi.getActivation(a.dup(), false), 1e-12, 1e-14, "reference self-check: " + what);
                modules.add(new Module("activation layer " + i, Kind.ACTIVATION, i, 0, activationJacobians(phi, a, what)));
            } else if (conf instanceof SubsamplingLayer) {
                MultiLayerNetwork pool = single(conf.clone(), null);
                assertClose(out, pool.output(in, false), 1e-12, 1e-14, "reference self-check: " + what);
                modules.add(new Module("pooling " + i, Kind.POOLING, i, 0, finiteDifferenceJacobians(pool, in)));
            } else {
                throw new IllegalArgumentException("no brute-force module for " + what);
            }
        }
        if (output == null) {
            throw new IllegalArgumentException("the last layer must be an OutputLayer");
        }
        // consecutive modules must fit together (preprocessors are reshapes)
        for (int k = 1; k < modules.size(); k++) {
            if (modules.get(k).jacobians.get(0).columns() != modules.get(k - 1).jacobians.get(0).rows()) {
                throw new IllegalStateException("modules do not chain: " + modules.get(k - 1) + " → " + modules.get(k));
            }
        }
        return new Chain(modules, output, inputs);
    }

    /**
     * @return the input of a layer given the previous layer's output: feed-forward layers after a
     *     CNN layer see it flattened row-major per example (CnnToFeedForwardPreProcessor and, for NCDHW,
     *     Cnn3DToFeedForwardPreProcessor)
     */
    static INDArray layerInput(INDArray previous, Layer conf) {
        INDArray a = previous.castTo(DataType.DOUBLE).dup('c');
        boolean feedForward = conf instanceof DenseLayer || conf instanceof OutputLayer;
        if (feedForward && a.rank() >= 4) {
            return a.reshape('c', a.size(0), a.length() / a.size(0));
        }
        return a;
    }

    /** @return a one-layer float64 network with the given layer configuration and parameters */
    static MultiLayerNetwork single(Layer conf, INDArray params) {
        // an output layer with identity activation keeps its (irrelevant) probabilistic loss
        MultiLayerConfiguration mc = new NeuralNetConfiguration.Builder().dataType(DataType.DOUBLE).list()
                .layer(conf).validateOutputLayerConfig(false).build();
        MultiLayerNetwork net = new MultiLayerNetwork(mc);
        net.init();
        if (params != null && params.length() > 0) {
            if (net.numParams() != params.length()) {
                throw new IllegalStateException("one-layer copy has " + net.numParams() + " parameters, not "
                        + params.length());
            }
            net.setParams(params.castTo(DataType.DOUBLE).dup());
        }
        return net;
    }

    private static long[] batchShape(long n, INDArray batch) {
        long[] s = batch.shape().clone();
        s[0] = n;
        return s;
    }

    /**
     * Jacobian of an affine map from its values on unit inputs: column k is {@code f(e_k) − f(0)}.
     *
     * @return {@code [dim out, dim in]}
     */
    static INDArray unitJacobian(MultiLayerNetwork affine, INDArray batch) {
        long d = batch.length() / batch.size(0);
        INDArray units = Nd4j.concat(0, Nd4j.eye(d).castTo(DataType.DOUBLE), Nd4j.zeros(DataType.DOUBLE, 1, d));
        INDArray out = affine.output(units.reshape('c', batchShape(d + 1, batch)), false).castTo(DataType.DOUBLE)
                .dup('c');
        INDArray flat = out.reshape('c', d + 1, out.length() / (d + 1));
        INDArray zero = flat.getRow(d).dup();
        INDArray columns = flat.get(NDArrayIndex.interval(0, d),
                NDArrayIndex.all()).dup().subiRowVector(zero);
        return columns.transpose().dup('c');
    }

    /**
     * Per-example Jacobians of a forward map by central differences:
     * column k is {@code (f(x_n + h e_k) − f(x_n − h e_k)) / 2h}. The step is refined (÷10) until two
     * successive steps agree: for a piecewise-linear map (max pooling) the difference is exact once h
     * is below half the gap between competing inputs, and near-ties (gaps below 1e-6 occur between
     * saturated tanh units) need a smaller step than the default.
     */
    static List<INDArray> finiteDifferenceJacobians(MultiLayerNetwork map, INDArray batch) {
        int n = (int) batch.size(0);
        long d = batch.length() / n;
        INDArray flatIn = batch.castTo(DataType.DOUBLE).dup('c').reshape('c', n, d);
        List<INDArray> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            INDArray xi = flatIn.getRow(i).dup().reshape(1, d);
            double h = FD_STEP;
            INDArray coarse = centralDifferences(map, batch, xi, h);
            INDArray fine = centralDifferences(map, batch, xi, h / 10);
            while (Transforms.abs(coarse.sub(fine)).maxNumber().doubleValue() > 1e-4) {
                h /= 10;
                if (h < 1e-12) {
                    throw new IllegalStateException("finite differences do not settle for example " + i);
                }
                coarse = fine;
                fine = centralDifferences(map, batch, xi, h / 10);
            }
            out.add(coarse);
        }
        return out;
    }

    /** @return {@code [dim out, dim in]} central differences of {@code map} at one example {@code xi [1, d]} */
    private static INDArray centralDifferences(MultiLayerNetwork map, INDArray batch, INDArray xi, double h) {
        long d = xi.length();
        INDArray step = Nd4j.eye(d).castTo(DataType.DOUBLE).muli(h);
        INDArray perturbed = Nd4j.concat(0, step.addRowVector(xi), step.rsubRowVector(xi));
        INDArray f = map.output(perturbed.reshape('c', batchShape(2 * d, batch)), false).castTo(DataType.DOUBLE)
                .dup('c');
        INDArray flat = f.reshape('c', 2 * d, f.length() / (2 * d));
        INDArray plus = flat.get(NDArrayIndex.interval(0, d), NDArrayIndex.all());
        INDArray minus = flat.get(NDArrayIndex.interval(d, 2 * d), NDArrayIndex.all());
        return plus.sub(minus).divi(2 * h).transpose().dup('c');
    }

    /**
     * @return per example {@code diag(φ'(z_n))} from DL4J's activation backprop, checked against
     *     central differences of DL4J's {@code φ}
     */
    static List<INDArray> activationJacobians(IActivation phi, INDArray z, String what) {
        int n = (int) z.size(0);
        long d = z.length() / n;
        INDArray flat = z.castTo(DataType.DOUBLE).dup('c').reshape('c', n, d);
        INDArray derivative = phi.backprop(flat.dup(), Nd4j.ones(DataType.DOUBLE, n, d)).getFirst().dup();
        INDArray fd = phi.getActivation(flat.add(FD_STEP), false).sub(phi.getActivation(flat.sub(FD_STEP), false))
                .divi(2 * FD_STEP);
        assertClose(fd, derivative, 1e-5, 1e-7, "reference self-check: φ' of " + what + " vs finite differences");
        List<INDArray> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(Nd4j.diag(derivative.getRow(i).dup()));
        }
        return out;
    }

    // ---------------------------------------------------------------- output-side factors

    /** @return per example {@code H_n / N} at the output pre-activation */
    static List<INDArray> scaledLossHessians(Chain chain, Loss loss) {
        List<INDArray> out = new ArrayList<>();
        for (double[] z : chain.output) {
            out.add(Nd4j.createFromArray(loss.hessian(z)).divi(chain.n()));
        }
        return out;
    }

    /**
     * KFLR's {@code B}: per example {@code M_n = H_n / N} pushed back exactly,
     * {@code M_n ← J_nᵀ M_n J_n} through every module; a layer's B is {@code Σ_n M_n} at its
     * pre-activation output (for convolutions summed over output positions).
     *
     * @return layer → B
     */
    static Map<Integer, INDArray> exactOutputFactors(Chain chain, Loss loss) {
        List<INDArray> m = scaledLossHessians(chain, loss);
        Map<Integer, INDArray> b = new TreeMap<>();
        for (int k = chain.modules.size() - 1; k >= 0; k--) {
            Module module = chain.modules.get(k);
            if (module.kind == Kind.LINEAR) {
                INDArray sum = m.get(0).dup();
                for (int i = 1; i < m.size(); i++) {
                    sum.addi(m.get(i));
                }
                b.put(module.layer, sumOverPositions(sum, module.convChannels));
            }
            List<INDArray> next = new ArrayList<>();
            for (int i = 0; i < m.size(); i++) {
                INDArray j = module.jacobians.get(i);
                next.add(j.transpose().mmul(m.get(i)).mmul(j));
            }
            m = next;
        }
        return b;
    }

    /**
     * KFRA's {@code B}: {@code Ḡ = (1/N) Σ_n H_n} at the output, then {@code Ḡ ← (1/N) Σ_n J_nᵀ Ḡ J_n}
     * through every module separately; a layer's B is {@code Ḡ} at its pre-activation output (for
     * convolutions summed over output positions on both sides).
     *
     * @return layer → B
     */
    static Map<Integer, INDArray> averagedOutputFactors(Chain chain, Loss loss) {
        int n = chain.n();
        INDArray g = null;
        for (INDArray h : scaledLossHessians(chain, loss)) {
            g = g == null ? h.dup() : g.addi(h);   // Σ_n H_n / N
        }
        Map<Integer, INDArray> b = new TreeMap<>();
        for (int k = chain.modules.size() - 1; k >= 0; k--) {
            Module module = chain.modules.get(k);
            if (module.kind == Kind.LINEAR) {
                b.put(module.layer, sumOverPositions(g, module.convChannels));
            }
            INDArray next = null;
            for (int i = 0; i < n; i++) {
                INDArray j = module.jacobians.get(i);
                INDArray term = j.transpose().mmul(g).mmul(j);
                next = next == null ? term : next.addi(term);
            }
            g = next.divi(n);
        }
        return b;
    }

    /** @return {@code Tᵀ G T} with T summing the positions of each of {@code channels} channels; G itself if 0 */
    static INDArray sumOverPositions(INDArray g, int channels) {
        if (channels == 0) {
            return g.dup();
        }
        int d = (int) g.rows();
        int p = d / channels;
        double[][] gg = g.toDoubleMatrix();
        double[][] b = new double[channels][channels];
        for (int r = 0; r < d; r++) {
            for (int c = 0; c < d; c++) {
                b[r / p][c / p] += gg[r][c];
            }
        }
        return Nd4j.createFromArray(b);
    }

    // ---------------------------------------------------------------- input-side factors

    /** @return {@code (1/N) Σ_n x_n x_nᵀ} for a dense layer input {@code [N, nIn]}, by explicit loops */
    static INDArray denseInputFactor(INDArray input) {
        double[][] x = input.castTo(DataType.DOUBLE).toDoubleMatrix();
        int n = x.length;
        int d = x[0].length;
        double[][] a = new double[d][d];
        for (double[] xn : x) {
            for (int i = 0; i < d; i++) {
                for (int j = 0; j < d; j++) {
                    a[i][j] += xn[i] * xn[j] / n;
                }
            }
        }
        return Nd4j.createFromArray(a);
    }

    /** @return {@code (1/N) Σ_n Σ_t u_nt u_ntᵀ} over the patches of a convolution input */
    static INDArray convInputFactor(INDArray input, ConvolutionLayer conf) {
        double[][][] u = patches(input, conf);
        int n = u.length;
        int k = u[0][0].length;
        double[][] a = new double[k][k];
        for (double[][] un : u) {
            for (double[] ut : un) {
                for (int i = 0; i < k; i++) {
                    for (int j = 0; j < k; j++) {
                        a[i][j] += ut[i] * ut[j] / n;
                    }
                }
            }
        }
        return Nd4j.createFromArray(a);
    }

    /** Output size and top/left padding of a convolution along one axis. */
    static int[] geometry(int in, int k, int s, int p, int d, ConvolutionMode mode) {
        int effective = (k - 1) * d + 1;
        if (mode == ConvolutionMode.Same) {
            int out = (in + s - 1) / s;
            int total = (out - 1) * s + effective - in;
            return new int[] {out, Math.max(0, total) / 2};
        }
        if (mode == ConvolutionMode.Strict && (in + 2 * p - effective) % s != 0) {
            throw new IllegalArgumentException("Strict mode: stride does not divide");
        }
        if (mode != ConvolutionMode.Truncate && mode != ConvolutionMode.Strict) {
            throw new IllegalArgumentException("unsupported mode " + mode);
        }
        return new int[] {(in + 2 * p - effective) / s + 1, p};
    }

    /**
     * Unfolded input patches by explicit loops over output positions.
     *
     * @param input {@code [N, C, H, W]}
     * @return {@code [N][P][C·kH·kW]}, positions t = oh·oW + ow, patch entries ordered (channel, kh, kw);
     *     zero where the window covers padding
     */
    static double[][][] patches(INDArray input, ConvolutionLayer conf) {
        INDArray x = input.castTo(DataType.DOUBLE).dup('c');
        int n = (int) x.size(0);
        int c = (int) x.size(1);
        int h = (int) x.size(2);
        int w = (int) x.size(3);
        int[] k = conf.getKernelSize();
        int[] s = conf.getStride();
        int[] p = conf.getPadding();
        int[] d = conf.getDilation();
        int[] gh = geometry(h, k[0], s[0], p[0], d[0], conf.getConvolutionMode());
        int[] gw = geometry(w, k[1], s[1], p[1], d[1], conf.getConvolutionMode());
        int outH = gh[0];
        int outW = gw[0];
        double[][][] u = new double[n][outH * outW][c * k[0] * k[1]];
        for (int i = 0; i < n; i++) {
            for (int oh = 0; oh < outH; oh++) {
                for (int ow = 0; ow < outW; ow++) {
                    int t = oh * outW + ow;
                    for (int ch = 0; ch < c; ch++) {
                        for (int kh = 0; kh < k[0]; kh++) {
                            for (int kw = 0; kw < k[1]; kw++) {
                                int ih = oh * s[0] - gh[1] + kh * d[0];
                                int iw = ow * s[1] - gw[1] + kw * d[1];
                                double v = ih >= 0 && ih < h && iw >= 0 && iw < w ? x.getDouble(i, ch, ih, iw) : 0.0;
                                u[i][t][(ch * k[0] + kh) * k[1] + kw] = v;
                            }
                        }
                    }
                }
            }
        }
        return u;
    }

    /**
     * @return the convolution's pre-activation {@code [N, nOut, oH·oW]} computed from the patches,
     *     {@code z[o, t] = Σ_j W[o, j] u_t[j] + b[o]} (self-check of the patches against DL4J)
     */
    static INDArray convolveWithPatches(INDArray input, ConvolutionLayer conf, INDArray weight, INDArray bias) {
        double[][][] u = patches(input, conf);
        int nOut = (int) weight.size(0);
        double[][] wf = weight.castTo(DataType.DOUBLE).dup('c').reshape('c', nOut, weight.length() / nOut)
                .toDoubleMatrix();
        double[] b = bias == null ? new double[nOut] : bias.castTo(DataType.DOUBLE).dup().reshape(nOut).toDoubleVector();
        int n = u.length;
        int positions = u[0].length;
        double[][][] z = new double[n][nOut][positions];
        for (int i = 0; i < n; i++) {
            for (int o = 0; o < nOut; o++) {
                for (int t = 0; t < positions; t++) {
                    double sum = b[o];
                    for (int j = 0; j < wf[o].length; j++) {
                        sum += wf[o][j] * u[i][t][j];
                    }
                    z[i][o][t] = sum;
                }
            }
        }
        return Nd4j.createFromArray(z);
    }

    // ---------------------------------------------------------------- exact GGN blocks

    /** @return {@code (1/N) Σ_n J_nᵀ H_n J_n} for one parameter key (full block, c-order flattening) */
    static INDArray ggnBlock(BruteForce.Jacobians jac, Loss loss, String key) {
        INDArray sum = null;
        for (int i = 0; i < jac.n(); i++) {
            INDArray j = jac.j.get(i).get(key);
            INDArray h = Nd4j.createFromArray(loss.hessian(jac.z[i]));
            INDArray term = j.transpose().mmul(h).mmul(j).divi(jac.n());
            sum = sum == null ? term : sum.addi(term);
        }
        return sum;
    }

    static boolean hasBias(Layer conf) {
        if (conf instanceof ConvolutionLayer) {
            return ((ConvolutionLayer) conf).hasBias();
        }
        if (conf instanceof DenseLayer) {
            return ((DenseLayer) conf).hasBias();
        }
        if (conf instanceof OutputLayer) {
            return ((OutputLayer) conf).hasBias();
        }
        return false;
    }

    static boolean isParametric(Layer conf) {
        return conf instanceof FeedForwardLayer && !(conf instanceof SubsamplingLayer)
                && (conf instanceof DenseLayer || conf instanceof OutputLayer || conf instanceof ConvolutionLayer);
    }
}
