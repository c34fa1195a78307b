// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.BruteForce.HessianDiagonals;
import io.github.dl4jbackpack.BruteForce.Loss;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.graph.GraphVertex;
import org.deeplearning4j.nn.conf.graph.LayerVertex;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
import org.deeplearning4j.nn.conf.layers.BaseOutputLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.iter.NdIndexIterator;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.ILossFunction;
import org.nd4j.linalg.lossfunctions.impl.LossL2;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Brute-force curvature references for {@link ComputationGraph}s, built only from DL4J's own forward and
 * backward passes on plain (never extended) graphs, plus the loss Hessians of {@link BruteForce.Loss}
 * written out from their formulas. The graph generalisation of {@link BruteForce}:
 * <ul>
 *   <li>per-example Jacobians {@code J_{n,k} = ∂z_{n,k}/∂θ} of the pre-activation {@code z} of every
 *       output layer k (DL4J fuses the output activation into the loss) w.r.t. every parameter, one DL4J
 *       backward pass per (example, output, output unit), on a float64 copy of the graph in which every
 *       output layer has identity activation and L2 loss ({@link #jacobianGraph}). For row c of output k
 *       the labels are {@code z_k − e_c/2} for output k (so {@code ∂ℓ_k/∂z_k = 2(z_k − y_k) = e_c}) and
 *       {@code z_j} for every other output j (so {@code ∂ℓ_j/∂z_j = 0}): the gradient is exactly
 *       {@code ∂z_{k,c}/∂θ}. Per example, a pass with all labels equal to z checks that this zero
 *       gradient really is zero, i.e. that the other outputs contribute nothing;</li>
 *   <li>the exact GGN {@code G = Σ_k (1/N) Σ_n J_{n,k}ᵀ H_{n,k} J_{n,k}}, {@code H_{n,k} = ∇²_z ℓ_n^k}:
 *       its diagonal per example and summed, and the full block of one parameter;</li>
 *   <li>the Hessian diagonal of {@code L} (whole batch, and per example {@code ∇²(ℓ_n/N)} with
 *       {@code ℓ_n = Σ_k ℓ_n^k}) by central finite differences of DL4J's graph gradient, float64.</li>
 * </ul>
 * Keys are DL4J's graph keys {@code "<vertexName>_<param>"}, values in the parameter's
 * {@code paramTable()} shape; per-example values have the batch axis first.
 */
final class GraphBruteForce {

    private GraphBruteForce() {
    }

    /** @return the parameter keys of a graph, in {@code paramTable()} order */
    static List<String> keys(ComputationGraph graph) {
        return new ArrayList<>(graph.paramTable().keySet());
    }

    /** @return the names of the output layers, in label order */
    static List<String> outputs(ComputationGraph graph) {
        return new ArrayList<>(graph.getConfiguration().getNetworkOutputs());
    }

    /** @return the layer configuration of an output vertex */
    static Layer outputLayer(ComputationGraphConfiguration conf, String output) {
        GraphVertex v = conf.getVertices().get(output);
        if (!(v instanceof LayerVertex)) {
            throw new IllegalArgumentException("output " + output + " is not a layer");
        }
        Layer layer = ((LayerVertex) v).getLayerConf().getLayer();
        if (!(layer instanceof BaseOutputLayer) && !(layer instanceof LossLayer)) {
            throw new IllegalArgumentException("output " + output + " is not an output or loss layer: " + layer);
        }
        return layer;
    }

    static ILossFunction lossFunction(Layer outputLayer) {
        return outputLayer instanceof BaseOutputLayer ? ((BaseOutputLayer) outputLayer).getLossFn()
                : ((LossLayer) outputLayer).getLossFn();
    }

    /**
     * @return the {@link Loss} (loss function and output activation, compared by exact class) of one output
     *     layer; an exception for pairs whose Hessian is not written out
     */
    static Loss loss(ComputationGraph graph, String output) {
        Layer layer = outputLayer(graph.getConfiguration(), output);
        ILossFunction fn = lossFunction(layer);
        IActivation activation = ((BaseLayer) layer).getActivationFn();
        for (Loss loss : Loss.values()) {
            if (fn.getClass() == loss.function.getILossFunction().getClass()
                    && activation.getClass() == loss.activation.getActivationFunction().getClass()) {
                return loss;
            }
        }
        throw new IllegalArgumentException("output " + output + ": no loss Hessian for " + fn + " with " + activation);
    }

    /** @return the losses of all outputs, in output order */
    static List<Loss> losses(ComputationGraph graph) {
        List<Loss> out = new ArrayList<>();
        for (String output : outputs(graph)) {
            out.add(loss(graph, output));
        }
        return out;
    }

    /** @return a float64 clone of {@code graph} (same parameters) */
    static ComputationGraph float64(ComputationGraph graph) {
        ComputationGraph d = graph.getConfiguration().getDataType() == DataType.DOUBLE ? graph
                : graph.convertDataType(DataType.DOUBLE);
        return d.clone();
    }

    static INDArray[] float64(INDArray[] arrays) {
        INDArray[] out = new INDArray[arrays.length];
        for (int i = 0; i < arrays.length; i++) {
            out[i] = arrays[i].castTo(DataType.DOUBLE).dup('c');
        }
        return out;
    }

    /**
     * @return a plain float64 graph with the same configuration and parameters as {@code graph} except that
     *     every output layer has identity activation and L2 loss: its outputs are the pre-activations z of
     *     {@code graph}'s output layers
     */
    static ComputationGraph jacobianGraph(ComputationGraph graph) {
        ComputationGraph source = float64(graph);
        ComputationGraphConfiguration conf = source.getConfiguration().clone();
        conf.setDataType(DataType.DOUBLE);
        for (String output : conf.getNetworkOutputs()) {
            Layer layer = outputLayer(conf, output);
            ((BaseLayer) layer).setActivationFn(new ActivationIdentity());
            if (layer instanceof BaseOutputLayer) {
                ((BaseOutputLayer) layer).setLossFn(new LossL2());
            } else {
                ((LossLayer) layer).setLossFn(new LossL2());
            }
        }
        ComputationGraph ref = new ComputationGraph(conf);
        ref.init();
        if (ref.numParams() != source.numParams() || !ref.paramTable().keySet().equals(source.paramTable().keySet())) {
            throw new IllegalStateException("the Jacobian copy does not have the graph's parameters");
        }
        ref.setParams(source.params());
        return ref;
    }

    /** @return DL4J's summed gradient {@code Σ_k Σ_n ∇ℓ_n^k} per key, copied, float64, parameter shape */
    static Map<String, INDArray> gradientSum(ComputationGraph plain, INDArray[] x, INDArray[] y) {
        plain.setInputs(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (String key : keys(plain)) {
            out.put(key, plain.gradient().getGradientFor(key).castTo(DataType.DOUBLE).dup('c'));
        }
        return out;
    }

    /** Per-example output pre-activations and Jacobians, for every output layer. */
    static final class Jacobians {
        /** output layer names, in label order */
        final List<String> outputs;
        /** the loss of each output */
        final List<Loss> losses;
        /** z, {@code [K][N][C_k]} */
        final double[][][] z;
        /** {@code j.get(k).get(n)}: key → {@code J_{n,k}} as {@code [C_k, numel(param)]}, c-order flattening */
        final List<List<Map<String, INDArray>>> j;
        /** key → parameter shape */
        final Map<String, long[]> shapes;

        Jacobians(List<String> outputs, List<Loss> losses, double[][][] z, List<List<Map<String, INDArray>>> j,
                  Map<String, long[]> shapes) {
            this.outputs = outputs;
            this.losses = losses;
            this.z = z;
            this.j = j;
            this.shapes = shapes;
        }

        int n() {
            return z[0].length;
        }

        int outputCount() {
            return outputs.size();
        }

        /** @return index of an output layer by name */
        int output(String name) {
            int k = outputs.indexOf(name);
            if (k < 0) {
                throw new IllegalArgumentException("no output " + name + " in " + outputs);
            }
            return k;
        }
    }

    /**
     * @param graph the graph under test (any data type; it is not modified); its output layers' losses
     *     must be {@link Loss}es
     * @param x features (one array per input)
     * @return per-example z and ∂z/∂θ for every output, each row from one DL4J backward pass on
     *     {@link #jacobianGraph}
     */
    static Jacobians jacobians(ComputationGraph graph, INDArray[] x) {
        List<Loss> losses = losses(graph);
        ComputationGraph ref = jacobianGraph(graph);
        INDArray[] xd = float64(x);
        int n = (int) xd[0].size(0);
        List<String> outputs = outputs(ref);
        int outs = outputs.size();
        List<String> keys = keys(ref);
        Map<String, long[]> shapes = new LinkedHashMap<>();
        for (String key : keys) {
            shapes.put(key, ref.getParam(key).shape());
        }
        double[][][] zs = new double[outs][n][];
        List<List<Map<String, INDArray>>> js = new ArrayList<>();
        for (int k = 0; k < outs; k++) {
            js.add(new ArrayList<>());
        }
        for (int i = 0; i < n; i++) {
            INDArray[] xi = GraphReference.examples(xd, i);
            INDArray[] out = ref.output(false, xi);
            INDArray[] z = new INDArray[outs];
            for (int k = 0; k < outs; k++) {
                if (out[k].rank() != 2) {
                    throw new IllegalArgumentException("output " + outputs.get(k) + " has rank " + out[k].rank());
                }
                z[k] = out[k].castTo(DataType.DOUBLE).dup('c');
                zs[k][i] = z[k].reshape(z[k].length()).toDoubleVector();
            }
            // isolation check: labels equal to z give ∂ℓ_k/∂z_k = 0 for every output, so a zero gradient
            Map<String, INDArray> zero = gradientSum(ref, xi, copies(z));
            for (Map.Entry<String, INDArray> e : zero.entrySet()) {
                double max = e.getValue().amaxNumber().doubleValue();
                if (max != 0.0) {
                    throw new IllegalStateException("labels = z do not give a zero gradient (" + e.getKey() + ": "
                            + max + "): the outputs are not isolated");
                }
            }
            for (int k = 0; k < outs; k++) {
                int c = (int) z[k].size(1);
                Map<String, List<INDArray>> rows = new LinkedHashMap<>();
                for (int unit = 0; unit < c; unit++) {
                    INDArray[] labels = copies(z);
                    labels[k].putScalar(0, unit, z[k].getDouble(0, unit) - 0.5);
                    // ℓ_k = Σ_c (z_c − y_c)², ∂ℓ_k/∂z_k = e_unit; ∂ℓ_j/∂z_j = 0 for j ≠ k
                    Map<String, INDArray> g = gradientSum(ref, xi, labels);
                    for (String key : keys) {
                        INDArray gk = g.get(key);
                        rows.computeIfAbsent(key, kk -> new ArrayList<>()).add(gk.reshape('c', 1, gk.length()));
                    }
                }
                Map<String, INDArray> jn = new LinkedHashMap<>();
                rows.forEach((key, list) -> jn.put(key, Nd4j.concat(0, list.toArray(new INDArray[0]))));
                js.get(k).add(jn);
            }
        }
        return new Jacobians(outputs, losses, zs, js, shapes);
    }

    private static INDArray[] copies(INDArray[] arrays) {
        INDArray[] out = new INDArray[arrays.length];
        for (int i = 0; i < arrays.length; i++) {
            out[i] = arrays[i].dup();
        }
        return out;
    }

    /**
     * @return key → {@code Σ_k Σ_n J_{n,k}ᵀ ∇_z ℓ_n^k}, parameter shape (must equal DL4J's summed gradient
     *     on the original graph)
     */
    static Map<String, INDArray> chainRuleGradient(Jacobians jac, INDArray[] labels) {
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (int k = 0; k < jac.outputCount(); k++) {
            INDArray yk = labels[k].castTo(DataType.DOUBLE);
            for (int i = 0; i < jac.n(); i++) {
                double[] y = yk.getRow(i).dup().toDoubleVector();
                double[] z = jac.z[k][i];
                INDArray g = Nd4j.createFromArray(jac.losses.get(k).gradient(z, y)).reshape(1, z.length);
                for (Map.Entry<String, INDArray> e : jac.j.get(k).get(i).entrySet()) {
                    out.merge(e.getKey(), g.mmul(e.getValue()), INDArray::add);
                }
            }
        }
        Map<String, INDArray> shaped = new LinkedHashMap<>();
        out.forEach((key, v) -> shaped.put(key, v.reshape('c', jac.shapes.get(key))));
        return shaped;
    }

    /** @return {@code H_{n,k} = ∇²_z ℓ_n^k}, {@code [C_k, C_k]} */
    static INDArray lossHessian(Jacobians jac, int k, int n) {
        return Nd4j.createFromArray(jac.losses.get(k).hessian(jac.z[k][n]));
    }

    /**
     * @return key → per-example GGN diagonal terms {@code diag((1/N) Σ_k J_{n,k}ᵀ H_{n,k} J_{n,k})}, shape
     *     {@code [N, *p]}
     */
    static Map<String, INDArray> batchDiagGgn(Jacobians jac) {
        Map<String, INDArray> out = null;
        for (int k = 0; k < jac.outputCount(); k++) {
            Map<String, INDArray> term = batchDiagGgn(jac, k);
            if (out == null) {
                out = term;
            } else {
                for (Map.Entry<String, INDArray> e : term.entrySet()) {
                    out.get(e.getKey()).addi(e.getValue());
                }
            }
        }
        return out;
    }

    /**
     * @return key → the contribution of output k alone, {@code diag((1/N) J_{n,k}ᵀ H_{n,k} J_{n,k})},
     *     {@code [N, *p]}
     */
    static Map<String, INDArray> batchDiagGgn(Jacobians jac, int k) {
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
                INDArray j = jac.j.get(k).get(i).get(key);
                INDArray h = lossHessian(jac, k, i);
                // diag(Jᵀ H J)_p = Σ_{c,c'} J[c,p] H[c,c'] J[c',p]
                all.getRow(i).assign(j.mul(h.mmul(j)).sum(0).divi(n));
            }
            out.put(key, all.reshape('c', BruteForce.withBatch(n, shape)));
        }
        return out;
    }

    /** @return key → {@code diag G}, parameter shape (the sum over the batch of {@link #batchDiagGgn}) */
    static Map<String, INDArray> diagGgn(Jacobians jac) {
        return BruteForce.sumOverBatch(batchDiagGgn(jac));
    }

    /**
     * @return the exact GGN block of one parameter, {@code Σ_k (1/N) Σ_n J_{n,k}ᵀ H_{n,k} J_{n,k}} restricted to
     *     {@code key}, {@code [numel, numel]} in c-order flattening of the parameter (for a bias this is the
     *     KFLR factor B of its layer)
     */
    static INDArray ggnBlock(Jacobians jac, String key) {
        INDArray sum = null;
        for (int k = 0; k < jac.outputCount(); k++) {
            for (int i = 0; i < jac.n(); i++) {
                INDArray j = jac.j.get(k).get(i).get(key);
                INDArray term = j.transpose().mmul(lossHessian(jac, k, i)).mmul(j).divi(jac.n());
                sum = sum == null ? term : sum.addi(term);
            }
        }
        return sum;
    }

    /**
     * Central differences of DL4J's own graph gradient, one parameter at a time, on a float64 clone of
     * {@code graph}: {@code H_pp ≈ (g_p(θ + h e_p) − g_p(θ − h e_p)) / 2h} with {@code g = ∇L = (summed
     * gradient)/N} for the batch, and {@code g = ∇(ℓ_n/N)} from single-example passes for the per-example
     * terms.
     */
    static HessianDiagonals finiteDifferenceHessian(ComputationGraph graph, INDArray[] x, INDArray[] y, double h) {
        ComputationGraph plain = float64(graph);
        INDArray[] xd = float64(x);
        INDArray[] yd = float64(y);
        int n = (int) GraphReference.batchSize(xd, yd);
        Map<String, INDArray> batch = new LinkedHashMap<>();
        Map<String, INDArray> perExample = new LinkedHashMap<>();
        for (String key : keys(plain)) {
            long[] shape = plain.getParam(key).shape();
            batch.put(key, Nd4j.create(DataType.DOUBLE, shape));
            perExample.put(key, Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(n, shape)));
        }
        // one data set at a time (the whole batch, then each example), so that consecutive passes have the
        // same shapes
        for (int d = -1; d < n; d++) {
            INDArray[] xs = d < 0 ? xd : GraphReference.examples(xd, d);
            INDArray[] ys = d < 0 ? yd : GraphReference.examples(yd, d);
            for (String key : keys(plain)) {
                INDArray param = plain.getParam(key);
                NdIndexIterator it = new NdIndexIterator('c', param.shape());
                while (it.hasNext()) {
                    long[] idx = it.next();
                    double original = param.getDouble(idx);
                    param.putScalar(idx, original + h);
                    if (plain.getParam(key).getDouble(idx) == original
                            || plain.paramTable().get(key).getDouble(idx) == original) {
                        throw new IllegalStateException("perturbing " + key + " did not reach the graph");
                    }
                    double plus = gradientElement(plain, xs, ys, key, idx);
                    param.putScalar(idx, original - h);
                    double minus = gradientElement(plain, xs, ys, key, idx);
                    param.putScalar(idx, original);
                    double hpp = (plus - minus) / (2 * h) / n;
                    if (d < 0) {
                        batch.get(key).putScalar(idx, hpp);
                    } else {
                        long[] batchIdx = new long[idx.length + 1];
                        batchIdx[0] = d;
                        System.arraycopy(idx, 0, batchIdx, 1, idx.length);
                        perExample.get(key).putScalar(batchIdx, hpp);
                    }
                }
            }
        }
        return new HessianDiagonals(batch, perExample);
    }

    private static double gradientElement(ComputationGraph plain, INDArray[] x, INDArray[] y, String key, long[] idx) {
        plain.setInputs(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        return plain.gradient().getGradientFor(key).getDouble(idx);
    }
}
