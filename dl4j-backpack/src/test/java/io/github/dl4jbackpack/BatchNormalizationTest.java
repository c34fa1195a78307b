// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.params.BatchNormalizationParamInitializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.iter.NdIndexIterator;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * BatchNormalization, float64, against references built only from DL4J's forward passes and central
 * differences (no backward pass of the library or of DL4J):
 * <ul>
 *   <li>batch statistics (DL4J's training mode): the batch-level GGN diagonal and the exact blocks of
 *       γ and β against the Jacobians of the whole batch's outputs {@code ∂z_n/∂θ} through the batch
 *       statistics ({@code output(X, true)} differentiated numerically), coupling included; every
 *       per-example request refused with the alternatives, except for layers with no normalisation
 *       above their parameters;</li>
 *   <li>running statistics ({@link BatchNormStatistics#RUNNING}): every quantity against the network
 *       in inference mode ({@code output(X, false)}), example by example.</li>
 * </ul>
 */
class BatchNormalizationTest {

    private static final int N = 5;

    record Case(String name, InputType input, long[] features, Supplier<Layer[]> hidden, BruteForce.Loss loss,
                int nOut) {
        @Override
        public String toString() {
            return name;
        }

        MultiLayerNetwork build(LossFunction function, Activation activation) {
            List<Layer> layers = new ArrayList<>(Arrays.asList(hidden.get()));
            layers.add(new OutputLayer.Builder(function).activation(activation).nOut(nOut).build());
            MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, input, layers.toArray(new Layer[0]));
            positiveVariances(net);
            return net;
        }

        INDArray x() {
            long[] shape = features.clone();
            shape[0] = N;
            return TestNets.features(DataType.DOUBLE, 7, shape).muli(1.5).addi(0.3);
        }

        INDArray y() {
            return TestNets.labels(DataType.DOUBLE, loss.function, 8, N, nOut);
        }
    }

    /** Running variances drawn positive (the random parameters of the test networks may be negative). */
    static void positiveVariances(MultiLayerNetwork net) {
        for (String key : net.paramTable().keySet()) {
            if (key.endsWith("_" + BatchNormalizationParamInitializer.GLOBAL_VAR)) {
                INDArray v = net.getParam(key);
                v.assign(Nd4j.rand(DataType.DOUBLE, v.shape()).addi(0.5));
            }
        }
    }

    static Stream<Case> cases() {
        return Stream.of(
                new Case("dense-bn-dense", InputType.feedForward(4), new long[] {N, 4}, () -> new Layer[] {
                    new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                    new BatchNormalization.Builder().build(),
                    new DenseLayer.Builder().nOut(4).activation(Activation.SIGMOID).build()},
                        BruteForce.Loss.MCXENT, 3),
                new Case("conv-bn-relu-conv", InputType.convolutional(5, 5, 2), new long[] {N, 2, 5, 5},
                        () -> new Layer[] {
                            new ConvolutionLayer.Builder(2, 2).nOut(3).activation(Activation.ELU).build(),
                            new BatchNormalization.Builder().build(),
                            new ActivationLayer.Builder().activation(Activation.RELU).build(),
                            new ConvolutionLayer.Builder(2, 2).nOut(2).activation(Activation.TANH).build(),
                            new GlobalPoolingLayer.Builder(PoolingType.AVG).build()},
                        BruteForce.Loss.MSE, 2),
                new Case("conv-bn-locked-logstd-dense", InputType.convolutional(4, 4, 2), new long[] {N, 2, 4, 4},
                        () -> new Layer[] {
                            new ConvolutionLayer.Builder(2, 2).nOut(2).activation(Activation.SOFTPLUS).build(),
                            new BatchNormalization.Builder().lockGammaBeta(true).gamma(1.5).beta(0.2)
                                    .useLogStd(true).build(),
                            new DenseLayer.Builder().nOut(3).activation(Activation.TANH).build(),
                            new BatchNormalization.Builder().build()},
                        BruteForce.Loss.XENT, 2));
    }

    // ---------------------------------------------------------------- references

    /**
     * @param ref the network under test with an identity output (its output is the pre-activation z)
     * @param training whether DL4J's forward pass normalises with the batch's statistics
     * @return {@code z_n} and {@code ∂z_n/∂θ} for every example, by central differences of
     *     {@code ref.output(X, training)} over every trainable parameter
     */
    static BruteForce.Jacobians jacobians(MultiLayerNetwork ref, INDArray x, boolean training) {
        return jacobians(ref, () -> ref.output(x, training));
    }

    /**
     * @param ref a network (its parameters are perturbed and restored exactly)
     * @param output computes the pre-activation z of the network under test, {@code [N, C]}
     * @return {@code z_n} and {@code ∂z_n/∂θ} for every example, by central differences
     */
    static BruteForce.Jacobians jacobians(org.deeplearning4j.nn.api.Model ref, Supplier<INDArray> output) {
        double h = 1e-6;
        INDArray z = output.get().dup();
        int n = (int) z.size(0);
        int c = (int) z.size(1);
        Map<String, long[]> shapes = new LinkedHashMap<>();
        List<Map<String, INDArray>> js = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            js.add(new LinkedHashMap<>());
        }
        for (String key : trainableKeys(ref)) {
            INDArray param = ref.getParam(key);
            shapes.put(key, param.shape());
            INDArray[] rows = new INDArray[n];
            for (int i = 0; i < n; i++) {
                rows[i] = Nd4j.create(DataType.DOUBLE, c, param.length());
            }
            NdIndexIterator it = new NdIndexIterator('c', param.shape());
            long flat = 0;
            while (it.hasNext()) {
                long[] idx = it.next();
                double original = param.getDouble(idx);
                param.putScalar(idx, original + h);
                INDArray plus = output.get().dup();
                param.putScalar(idx, original - h);
                INDArray minus = output.get().dup();
                param.putScalar(idx, original);
                INDArray d = plus.subi(minus).divi(2 * h);
                for (int i = 0; i < n; i++) {
                    rows[i].getColumn(flat).assign(d.getRow(i));
                }
                flat++;
            }
            for (int i = 0; i < n; i++) {
                js.get(i).put(key, rows[i]);
            }
        }
        double[][] zs = new double[n][];
        for (int i = 0; i < n; i++) {
            zs[i] = z.getRow(i).toDoubleVector();
        }
        return new BruteForce.Jacobians(zs, js, shapes);
    }

    /** @return the keys DL4J trains by gradient (not the running statistics) */
    static List<String> trainableKeys(org.deeplearning4j.nn.api.Model net) {
        List<String> keys = new ArrayList<>();
        for (String key : net.paramTable().keySet()) {
            String p = BruteForce.paramOf(key);
            if (!p.equals(BatchNormalizationParamInitializer.GLOBAL_MEAN)
                    && !p.equals(BatchNormalizationParamInitializer.GLOBAL_VAR)
                    && !p.equals(BatchNormalizationParamInitializer.GLOBAL_LOG_STD)) {
                keys.add(key);
            }
        }
        return keys;
    }

    /** @return per-example losses {@code ℓ_n} of the network (DL4J's loss on the identity network's z) */
    static double[] losses(Case c, MultiLayerNetwork ref, INDArray x, INDArray y, boolean training) {
        INDArray z = ref.output(x, training);
        return c.loss().function.getILossFunction().computeScoreArray(y, z, c.loss().activation.getActivationFunction(),
                null).toDoubleVector();
    }

    /** @return the exact GGN block {@code (1/N) Σ_n J_nᵀ H_n J_n} of one parameter */
    static INDArray ggnBlock(BruteForce.Jacobians jac, BruteForce.Loss loss, String key) {
        INDArray sum = null;
        for (int i = 0; i < jac.n(); i++) {
            INDArray j = jac.j.get(i).get(key);
            INDArray h = Nd4j.createFromArray(loss.hessian(jac.z[i]));
            INDArray term = j.transpose().mmul(h).mmul(j);
            sum = sum == null ? term : sum.addi(term);
        }
        return sum.divi(jac.n());
    }

    // ---------------------------------------------------------------- batch statistics

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void batchStatisticsGgnAndHessianIncludeTheCouplingOfTheWholeBatch(Case c) {
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        MultiLayerNetwork ref = c.build(LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        INDArray x = c.x();
        BruteForce.Jacobians jac = jacobians(ref, x, true);
        Map<String, INDArray> ggn = BruteForce.sumOverBatch(BruteForce.batchDiagGgn(jac, c.loss()));
        Map<String, INDArray> hessian = hessianDiagonal(c, ref, x, c.y(), true);

        Quantities q = BackPackNetwork.extend(net).backward(x, c.y(), new DiagGGNExact(), new DiagHessian(),
                new KFLR());
        for (String key : ggn.keySet()) {
            int layer = BruteForce.layerOf(key);
            String param = BruteForce.paramOf(key);
            assertClose(ggn.get(key), q.get(DiagGGNExact.class, layer, param), 1e-6, 1e-9, c + " GGN " + key);
            assertClose(hessian.get(key), q.get(DiagHessian.class, layer, param), 1e-4, 1e-6, c + " Hessian " + key);
            if (param.equals("gamma") || param.equals("beta")) {
                KroneckerFactors f = q.get(KFLR.class, layer, param);
                assertClose(ggnBlock(jac, c.loss(), key), f.factors().get(0), 1e-6, 1e-9, c + " block " + key);
            }
        }
    }

    @Test
    void theCouplingMatters() {
        // the same network with the batch statistics treated as constants would differ: guard that the
        // reference sees the coupling at all (the whole-batch Jacobian is not block-diagonal)
        Case c = cases().findFirst().orElseThrow();
        MultiLayerNetwork ref = c.build(LossFunction.L2, Activation.IDENTITY);
        BruteForce.Jacobians jac = jacobians(ref, c.x(), true);
        INDArray dense0 = jac.j.get(0).get("0_W");
        double crossTalk = 0;
        // ∂z_0/∂θ depends on the other examples' inputs: perturbing x_1 changes it
        INDArray x2 = c.x();
        x2.getRow(1).addi(1.0);
        BruteForce.Jacobians moved = jacobians(ref, x2, true);
        crossTalk = moved.j.get(0).get("0_W").sub(dense0).norm2Number().doubleValue();
        assertTrue(crossTalk > 1e-3, "example 0's Jacobian must depend on example 1 through the batch statistics");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void batchStatisticsMonteCarloGgnConvergesToTheExactOne(Case c) {
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities exact = bp.backward(c.x(), c.y(), new DiagGGNExact());
        Nd4j.getRandom().setSeed(99);
        Quantities mc = bp.backward(c.x(), c.y(), new DiagGGNMC(4000));
        for (String layer : exact.layerNames(DiagGGNExact.class)) {
            for (String param : exact.params(DiagGGNExact.class, layer)) {
                INDArray e = exact.get(DiagGGNExact.class, layer, param);
                INDArray m = mc.get(DiagGGNMC.class, layer, param);
                double scale = e.norm2Number().doubleValue();
                double error = m.sub(e).norm2Number().doubleValue();
                assertTrue(error <= 0.15 * scale + 1e-9, c + " MC GGN " + layer + "_" + param + ": " + error + " vs "
                        + scale);
            }
        }
    }

    @Test
    void batchStatisticsRefusePerExampleQuantitiesAndKfraNamingTheAlternatives() {
        Case c = cases().findFirst().orElseThrow();
        BackPackNetwork bp = BackPackNetwork.extend(c.build(c.loss().function, c.loss().activation));
        for (io.github.dl4jbackpack.extensions.Extension<?> e : List.of(new BatchGrad(), new Variance(),
                new BatchDiagGGNExact(), new BatchDiagHessian(), new KFRA())) {
            UnsupportedLayerException thrown = assertThrows(UnsupportedLayerException.class,
                    () -> bp.backward(c.x(), c.y(), e), e.name());
            assertTrue(thrown.getMessage().contains("BatchNormStatistics.RUNNING"), thrown.getMessage());
            assertTrue(thrown.parts().stream().anyMatch(p -> p.layer().equals("1")), thrown.getMessage());
        }
    }

    @Test
    void aNormalisationWithNoParametersBelowItLeavesPerExampleQuantitiesDefined() {
        // input → BN → dense → output: the batch statistics depend on the data only, so ℓ_n depends on
        // the parameters through example n alone; its gradient is checked against central differences
        // of ℓ_n through DL4J's training-mode forward pass of the whole batch
        Case c = new Case("bn-dense", InputType.feedForward(4), new long[] {N, 4}, () -> new Layer[] {
            new BatchNormalization.Builder().build(),
            new DenseLayer.Builder().nOut(3).activation(Activation.TANH).build()}, BruteForce.Loss.MCXENT, 3);
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        MultiLayerNetwork ref = c.build(c.loss().function, c.loss().activation);
        ref.setParams(net.params());
        INDArray x = c.x();
        INDArray y = c.y();
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new BatchGrad(), new BatchL2Grad());
        double h = 1e-6;
        for (String key : trainableKeys(ref)) {
            INDArray param = ref.getParam(key);
            INDArray expected = Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(N, param.shape()));
            NdIndexIterator it = new NdIndexIterator('c', param.shape());
            while (it.hasNext()) {
                long[] idx = it.next();
                double original = param.getDouble(idx);
                param.putScalar(idx, original + h);
                double[] plus = outputLosses(c, ref, x, y);
                param.putScalar(idx, original - h);
                double[] minus = outputLosses(c, ref, x, y);
                param.putScalar(idx, original);
                for (int n = 0; n < N; n++) {
                    long[] at = new long[idx.length + 1];
                    at[0] = n;
                    System.arraycopy(idx, 0, at, 1, idx.length);
                    expected.putScalar(at, (plus[n] - minus[n]) / (2 * h) / N);
                }
            }
            assertClose(expected, q.get(BatchGrad.class, BruteForce.layerOf(key), BruteForce.paramOf(key)), 1e-6,
                    1e-9, "individual gradient " + key);
        }
    }

    /** @return ℓ_n from the network's own training-mode output (probabilities) */
    private static double[] outputLosses(Case c, MultiLayerNetwork net, INDArray x, INDArray y) {
        INDArray p = net.output(x, true);
        double[] out = new double[N];
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < c.nOut(); k++) {
                out[n] -= y.getDouble(n, k) * Math.log(p.getDouble(n, k));
            }
        }
        return out;
    }

    @Test
    void batchStatisticsLeaveGradientsAndRunningStatisticsAsDl4jMakesThem() {
        Case c = cases().skip(1).findFirst().orElseThrow();
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        MultiLayerNetwork plain = net.clone();
        BackPackNetwork.extend(net).enable(new DiagGGNExact(), new KFLR());
        for (int step = 0; step < 3; step++) {
            net.fit(c.x(), c.y());
            plain.fit(c.x(), c.y());
        }
        assertEquals(plain.params(), net.params(), "parameters and running statistics after three steps");
    }

    // ---------------------------------------------------------------- running statistics

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void runningStatisticsGiveEveryQuantityOfTheInferenceModeNetwork(Case c) {
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        MultiLayerNetwork ref = c.build(LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        INDArray x = c.x();
        INDArray y = c.y();
        BruteForce.Jacobians jac = jacobians(ref, x, false);
        Map<String, INDArray> batchGgn = BruteForce.batchDiagGgn(jac, c.loss());
        Map<String, INDArray> grads = new LinkedHashMap<>();
        for (int n = 0; n < N; n++) {
            double[] y0 = y.getRow(n).toDoubleVector();
            INDArray g = Nd4j.createFromArray(c.loss().gradient(jac.z[n], y0)).reshape(1, jac.z[n].length);
            for (String key : jac.shapes.keySet()) {
                INDArray row = g.mmul(jac.j.get(n).get(key)).divi(N);
                grads.computeIfAbsent(key, k -> Nd4j.create(DataType.DOUBLE,
                        BruteForce.withBatch(N, jac.shapes.get(k))));
                grads.get(key).get(org.nd4j.linalg.indexing.NDArrayIndex.point(n)).assign(row.reshape('c',
                        jac.shapes.get(key)));
            }
        }
        Map<String, INDArray> hessian = hessianDiagonal(c, ref, x, y, false);

        INDArray statistics = runningStatistics(net);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        bp.setBatchNormStatistics(BatchNormStatistics.RUNNING);
        Quantities q = bp.backward(x, y, new BatchGrad(), new Variance(), new DiagGGNExact(),
                new BatchDiagGGNExact(), new DiagHessian(), new KFLR());
        for (String key : jac.shapes.keySet()) {
            int layer = BruteForce.layerOf(key);
            String param = BruteForce.paramOf(key);
            assertClose(grads.get(key), q.get(BatchGrad.class, layer, param), 1e-6, 1e-6, c + " gradient " + key);
            assertClose(batchGgn.get(key), q.get(BatchDiagGGNExact.class, layer, param), 1e-6, 1e-10,
                    c + " per-example GGN " + key);
            assertClose(batchGgn.get(key).sum(0), q.get(DiagGGNExact.class, layer, param), 1e-6, 1e-10,
                    c + " GGN " + key);
            assertClose(hessian.get(key), q.get(DiagHessian.class, layer, param), 1e-4, 1e-6, c + " Hessian " + key);
            if (param.equals("gamma") || param.equals("beta")) {
                KroneckerFactors f = q.get(KFLR.class, layer, param);
                assertClose(ggnBlock(jac, c.loss(), key), f.factors().get(0), 1e-6, 1e-10, c + " block " + key);
            }
        }
        // the pass's gradient is the inference-mode network's, and the running statistics stay
        for (String key : jac.shapes.keySet()) {
            assertClose(grads.get(key).sum(0), net.gradient().getGradientFor(key).div(N), 1e-6, 1e-6,
                    c + " DL4J gradient " + key);
        }
        assertEquals(statistics, runningStatistics(net), "running statistics after the pass");
    }

    /**
     * @return the Hessian diagonal of {@code L = (1/N) Σ ℓ_n} in inference mode, by the five-point second
     *     difference (error O(h⁴), rounding ≈ 1e-9 at this h, small enough not to cross ReLU kinks here)
     */
    private static Map<String, INDArray> hessianDiagonal(Case c, MultiLayerNetwork ref, INDArray x, INDArray y,
                                                        boolean training) {
        return hessianDiagonal(ref, () -> mean(losses(c, ref, x, y, training)));
    }

    /** @return the Hessian diagonal of a loss by the five-point second difference, per trainable key */
    static Map<String, INDArray> hessianDiagonal(org.deeplearning4j.nn.api.Model ref,
                                                java.util.function.DoubleSupplier loss) {
        double h = 5e-4;
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (String key : trainableKeys(ref)) {
            INDArray param = ref.getParam(key);
            INDArray d = Nd4j.create(DataType.DOUBLE, param.shape());
            NdIndexIterator it = new NdIndexIterator('c', param.shape());
            double centre = loss.getAsDouble();
            while (it.hasNext()) {
                long[] idx = it.next();
                double original = param.getDouble(idx);
                double[] f = new double[5];
                for (int k = -2; k <= 2; k++) {
                    param.putScalar(idx, original + k * h);
                    f[k + 2] = k == 0 ? centre : loss.getAsDouble();
                }
                param.putScalar(idx, original);
                d.putScalar(idx, (-f[0] + 16 * f[1] - 30 * f[2] + 16 * f[3] - f[4]) / (12 * h * h));
            }
            out.put(key, d);
        }
        return out;
    }

    private static double mean(double[] v) {
        return Arrays.stream(v).average().orElseThrow();
    }

    private static INDArray runningStatistics(MultiLayerNetwork net) {
        List<INDArray> parts = new ArrayList<>();
        for (String key : net.paramTable().keySet()) {
            if (!trainableKeys(net).contains(key)) {
                parts.add(net.getParam(key).dup().reshape(-1));
            }
        }
        return Nd4j.concat(0, parts.toArray(new INDArray[0]));
    }

    @Test
    void runningStatisticsStayUnchangedByTrainingPassesWithExtensions() {
        Case c = cases().findFirst().orElseThrow();
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        INDArray before = runningStatistics(net);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        bp.setBatchNormStatistics(BatchNormStatistics.RUNNING);
        bp.enable(new BatchL2Grad());
        net.fit(c.x(), c.y());
        assertEquals(before, runningStatistics(net));
        assertArrayEquals(new long[] {N}, bp.latest().orElseThrow().get(BatchL2Grad.class, 1, "gamma").shape());
        bp.disable();
        net.fit(c.x(), c.y());
        assertTrue(runningStatistics(net).sub(before).norm2Number().doubleValue() > 0,
                "a step without extensions is DL4J's own, which moves the running statistics");
    }

    /**
     * {@link BatchNormStatistics#BATCH_AS_CONSTANTS}: every quantity equals that of the same network in
     * inference mode whose running statistics are set to this batch's (computed here from DL4J's own
     * training-mode activations), with {@link BatchNormStatistics#RUNNING} (itself checked against
     * inference-mode references above); the score is DL4J's training-mode score; the pass's gradient of
     * the layers below a normalisation is not DL4J's (the approximation drops the terms through the
     * statistics); a training step with extensions moves the running statistics as DL4J's step does.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void batchStatisticsAsConstantsEqualTheFrozenNetwork(Case c) {
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        INDArray x = c.x();
        INDArray y = c.y();
        MultiLayerNetwork frozen = net.clone();
        List<INDArray> activations = net.feedForward(x, true);
        for (int i = 0; i < net.getnLayers(); i++) {
            if (net.getLayer(i) instanceof org.deeplearning4j.nn.layers.normalization.BatchNormalization) {
                INDArray in = activations.get(i);
                int[] axes = in.rank() == 4 ? new int[] {0, 2, 3} : new int[] {0};
                INDArray variance = in.var(false, axes);
                org.deeplearning4j.nn.conf.layers.BatchNormalization conf =
                        (org.deeplearning4j.nn.conf.layers.BatchNormalization) net.getLayer(i).conf().getLayer();
                frozen.getLayer(i).getParam(BatchNormalizationParamInitializer.GLOBAL_MEAN).assign(in.mean(axes)
                        .reshape(frozen.getLayer(i).getParam(BatchNormalizationParamInitializer.GLOBAL_MEAN).shape()));
                if (conf.isUseLogStd()) {
                    // DL4J's inference with log10(std) normalises by sqrt(std² + eps)
                    INDArray param = frozen.getLayer(i).getParam(BatchNormalizationParamInitializer.GLOBAL_LOG_STD);
                    param.assign(org.nd4j.linalg.ops.transforms.Transforms.log(
                            org.nd4j.linalg.ops.transforms.Transforms.sqrt(variance, true), 10.0, false)
                            .reshape(param.shape()));
                } else {
                    INDArray param = frozen.getLayer(i).getParam(BatchNormalizationParamInitializer.GLOBAL_VAR);
                    param.assign(variance.reshape(param.shape()));
                }
            }
        }
        io.github.dl4jbackpack.extensions.Extension<?>[] extensions = {new BatchGrad(), new BatchL2Grad(),
            new Variance(), new DiagGGNExact(), new BatchDiagGGNExact(), new DiagHessian(), new BatchDiagHessian(),
            new KFLR()};
        BackPackNetwork constants = BackPackNetwork.extend(net);
        constants.setBatchNormStatistics(BatchNormStatistics.BATCH_AS_CONSTANTS);
        assertEquals(BatchNormStatistics.BATCH_AS_CONSTANTS, constants.batchNormStatistics());
        Quantities q = constants.backward(x, y, extensions);
        BackPackNetwork running = BackPackNetwork.extend(frozen);
        running.setBatchNormStatistics(BatchNormStatistics.RUNNING);
        Quantities r = running.backward(x, y, extensions);
        for (io.github.dl4jbackpack.extensions.Extension<?> e : extensions) {
            Class cls = e.getClass();
            for (Object name : r.keys(cls)) {
                String key = (String) name;
                Object expected = r.byKey(cls, key);
                Object actual = q.byKey(cls, key);
                if (expected instanceof KroneckerFactors) {
                    for (int f = 0; f < ((KroneckerFactors) expected).factors().size(); f++) {
                        assertClose(((KroneckerFactors) expected).factors().get(f),
                                ((KroneckerFactors) actual).factors().get(f), 1e-9, 1e-12, c + " KFLR " + key);
                    }
                } else {
                    assertClose((INDArray) expected, (INDArray) actual, 1e-9, 1e-12, c + " " + e.name() + " " + key);
                }
            }
        }
        MultiLayerNetwork plain = net.clone();
        plain.setInput(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        assertEquals(plain.score(), q.score(), 1e-12 * Math.abs(plain.score()));
        INDArray dl4j = plain.gradient().getGradientFor("0_W").div(N);
        assertTrue(dl4j.sub(q.byKey(BatchGrad.class, "0_W").sum(0)).amaxNumber().doubleValue()
                > 1e-6 * dl4j.amaxNumber().doubleValue(), c + ": below a normalisation the gradient is the approximation's");
        // a training step with extensions moves the running statistics as DL4J's own step does
        MultiLayerNetwork reference = net.clone();
        constants.enable(new BatchL2Grad());
        net.fit(x, y);
        reference.fit(x, y);
        assertClose(runningStatistics(reference), runningStatistics(net), 1e-12, 1e-14, c + " running statistics");
    }

    // ---------------------------------------------------------------- graphs and refusals

    /**
     * {@code in → d1 → {bn → d2, d3} → add → out}: the columns reaching d1 from the normalised branch
     * span the batch, those from the other branch do not yet, and they are summed at d1's fan-out.
     */
    static ComputationGraph residualGraph() {
        ComputationGraph g = GraphNets.init(GraphNets.builder(DataType.DOUBLE, org.deeplearning4j.nn.conf.WorkspaceMode.ENABLED,
                GraphNets.DEFAULT_SEED)
                .addInputs("in")
                .addLayer("d1", GraphNets.dense(5, Activation.TANH), "in")
                .addLayer("bn", new BatchNormalization.Builder().build(), "d1")
                .addLayer("d2", GraphNets.dense(4, Activation.SIGMOID), "bn")
                .addLayer("d3", GraphNets.dense(4, Activation.TANH), "d1")
                .addVertex("add", new org.deeplearning4j.nn.conf.graph.ElementWiseVertex(
                        org.deeplearning4j.nn.conf.graph.ElementWiseVertex.Op.Add), "d2", "d3")
                .addLayer("out", new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(3)
                        .build(), "add")
                .setOutputs("out")
                .setInputTypes(InputType.feedForward(4)), GraphNets.DEFAULT_SEED);
        for (String key : g.paramTable().keySet()) {
            if (key.endsWith("_var")) {
                g.getParam(key).assign(Nd4j.rand(DataType.DOUBLE, g.getParam(key).shape()).addi(0.5));
            }
        }
        return g;
    }

    @Test
    void graphsWithANormalisedAndAPlainBranchMergeTheirColumns() {
        ComputationGraph g = residualGraph();
        ComputationGraph ref = GraphBruteForce.jacobianGraph(g);
        INDArray x = TestNets.features(DataType.DOUBLE, 7, N, 4).muli(1.5);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 8, N, 3);
        BackPackNetwork bp = BackPackNetwork.extend(g);
        for (boolean running : new boolean[] {false, true}) {
            BruteForce.Jacobians jac = jacobians(ref, () -> ref.output(!running, x)[0]);
            Map<String, INDArray> batchGgn = BruteForce.batchDiagGgn(jac, BruteForce.Loss.MCXENT);
            Map<String, INDArray> hessian = hessianDiagonal(ref, () -> LossFunction.MCXENT.getILossFunction()
                    .computeScore(y, ref.output(!running, x)[0], Activation.SOFTMAX.getActivationFunction(), null,
                            true));
            bp.setBatchNormStatistics(running ? BatchNormStatistics.RUNNING : BatchNormStatistics.BATCH);
            Quantities q = running ? bp.backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact(), new DiagHessian(),
                    new KFLR()) : bp.backward(x, y, new DiagGGNExact(), new DiagHessian(), new KFLR());
            String mode = running ? "running" : "batch";
            for (String key : jac.shapes.keySet()) {
                assertClose(batchGgn.get(key).sum(0), q.byKey(DiagGGNExact.class, key), 1e-6, 1e-9,
                        mode + " GGN " + key);
                assertClose(hessian.get(key), q.byKey(DiagHessian.class, key), 1e-4, 1e-6, mode + " Hessian " + key);
                if (running) {
                    assertClose(batchGgn.get(key), q.byKey(BatchDiagGGNExact.class, key), 1e-6, 1e-9,
                            mode + " per-example GGN " + key);
                }
                if (key.startsWith("bn_")) {
                    KroneckerFactors f = q.byKey(KFLR.class, key);
                    assertClose(ggnBlock(jac, BruteForce.Loss.MCXENT, key), f.factors().get(0), 1e-6, 1e-9,
                            mode + " block " + key);
                }
            }
        }
    }

    @Test
    void configurationsDl4jItselfComputesInconsistentlyAreRefused() {
        // lockGammaBeta with gamma ≠ 1 and beta = 0: DL4J's forward pass leaves gamma out, its backward applies it
        MultiLayerNetwork locked = TestNets.build(DataType.DOUBLE, InputType.feedForward(4),
                new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                new BatchNormalization.Builder().lockGammaBeta(true).gamma(2.0).beta(0.0).build(),
                new OutputLayer.Builder(LossFunction.MSE).activation(Activation.IDENTITY).nOut(2).build());
        INDArray x = TestNets.features(DataType.DOUBLE, 3, N, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MSE, 4, N, 2);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(locked).backward(x, y, new DiagGGNExact()));
        assertEquals("1", e.layerName(), e.getMessage());
        assertTrue(e.getMessage().contains("gamma=2.0"), e.getMessage());

        // a FrozenLayerWithBackprop normalisation above a trainable layer
        MultiLayerNetwork frozen = TestNets.build(DataType.DOUBLE, InputType.feedForward(4),
                new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                new org.deeplearning4j.nn.conf.layers.misc.FrozenLayerWithBackprop(
                        new BatchNormalization.Builder().build()),
                new OutputLayer.Builder(LossFunction.MSE).activation(Activation.IDENTITY).nOut(2).build());
        positiveVariances(frozen);
        BackPackNetwork bp = BackPackNetwork.extend(frozen);
        bp.setBatchNormStatistics(BatchNormStatistics.RUNNING);
        e = assertThrows(UnsupportedLayerException.class, () -> bp.backward(x, y, new BatchGrad()));
        assertEquals("1", e.layerName(), e.getMessage());
        assertTrue(e.getMessage().contains("FrozenLayerWithBackprop"), e.getMessage());

    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void float32AgreesWithFloat64InBothModes(Case c) {
        MultiLayerNetwork doubles = c.build(c.loss().function, c.loss().activation);
        MultiLayerNetwork floats = doubles.convertDataType(DataType.FLOAT);
        INDArray x = c.x();
        INDArray y = c.y();
        for (BatchNormStatistics statistics : BatchNormStatistics.values()) {
            BackPackNetwork bp64 = BackPackNetwork.extend(doubles.clone());
            BackPackNetwork bp32 = BackPackNetwork.extend(floats.clone());
            bp64.setBatchNormStatistics(statistics);
            bp32.setBatchNormStatistics(statistics);
            boolean running = statistics == BatchNormStatistics.RUNNING;
            io.github.dl4jbackpack.extensions.Extension<?>[] extensions = running
                    ? new io.github.dl4jbackpack.extensions.Extension<?>[] {new DiagGGNExact(), new DiagHessian(),
                        new BatchGrad(), new Variance()}
                    : new io.github.dl4jbackpack.extensions.Extension<?>[] {new DiagGGNExact(), new DiagHessian()};
            Quantities q64 = bp64.backward(x, y, extensions);
            Quantities q32 = bp32.backward(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT), extensions);
            for (io.github.dl4jbackpack.extensions.Extension<?> e : extensions) {
                @SuppressWarnings("unchecked")
                Class<? extends io.github.dl4jbackpack.extensions.Extension<INDArray>> cls =
                        (Class<? extends io.github.dl4jbackpack.extensions.Extension<INDArray>>) e.getClass();
                for (String key : q64.keys(cls)) {
                    INDArray v32 = q32.byKey(cls, key);
                    assertEquals(DataType.FLOAT, v32.dataType(), key);
                    assertClose(q64.byKey(cls, key), v32, 2e-3, 2e-3, c + " " + statistics + " " + e.name() + " " + key);
                }
            }
        }
    }

    /**
     * Below a normalisation with batch statistics each curvature column spans the batch, N times the
     * memory of a column of one example: under a budget too small for one column of every example at
     * once, the pass takes the examples in groups (of 1, 2 and 3 of N = 5 here, the last group shorter)
     * and gives the same GGN diagonal, Hessian diagonal and Kronecker factors.
     */
    @Test
    void underASmallBudgetTheExamplesAreTakenInGroups() {
        Case c = cases().filter(k -> k.name().startsWith("conv")).findFirst().orElseThrow();
        MultiLayerNetwork net = c.build(c.loss().function, c.loss().activation);
        INDArray x = c.x();
        INDArray y = c.y();
        io.github.dl4jbackpack.extensions.Extension<?>[] extensions = {new DiagGGNExact(), new DiagHessian(),
            new KFLR()};
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities reference = bp.backward(x, y, extensions);
        long high = smallestBudget(bp, x, y);
        for (long budget : new long[] {high, 2 * high, 3 * high}) {
            bp.setCurvatureMemoryBudget(budget);
            Quantities q = bp.backward(x, y, extensions);
            for (String key : reference.keys(DiagGGNExact.class)) {
                assertClose(reference.byKey(DiagGGNExact.class, key), q.byKey(DiagGGNExact.class, key), 1e-10, 1e-13,
                        "GGN " + key + " budget " + budget);
                assertClose(reference.byKey(DiagHessian.class, key), q.byKey(DiagHessian.class, key), 1e-10, 1e-13,
                        "Hessian " + key + " budget " + budget);
            }
            for (String key : reference.keys(KFLR.class)) {
                KroneckerFactors r = reference.byKey(KFLR.class, key);
                KroneckerFactors k = q.byKey(KFLR.class, key);
                for (int f = 0; f < r.factors().size(); f++) {
                    assertClose(r.factors().get(f), k.factors().get(f), 1e-10, 1e-13, "KFLR " + key + " budget " + budget);
                }
            }
        }
        // with the running statistics no column spans the batch: the smallest budget is that of one column of
        // every example; with the batch's statistics, columns of all examples at once would need about N
        // times more below the normalisation, one example's at a time about as much
        BackPackNetwork running = BackPackNetwork.extend(c.build(c.loss().function, c.loss().activation));
        running.setBatchNormStatistics(BatchNormStatistics.RUNNING);
        long runningHigh = smallestBudget(running, x, y);
        assertTrue(high < 1.5 * runningHigh, "smallest budget " + high + " vs " + runningHigh + " with running statistics");
    }

    /** @return the smallest curvature memory budget (within 1%) that DiagGGNExact accepts, by bisection */
    private static long smallestBudget(BackPackNetwork bp, INDArray x, INDArray y) {
        long low = 1 << 16;   // the least budget BackPackNetwork accepts
        long high = 1L << 31;
        while (high - low > high / 100) {
            long mid = low + (high - low) / 2;
            bp.setCurvatureMemoryBudget(mid);
            try {
                bp.backward(x, y, new DiagGGNExact());
                high = mid;
            } catch (IllegalStateException e) {
                assertTrue(e.getMessage().contains("memory budget"), e.getMessage());
                low = mid;
            }
        }
        return high;
    }
}
