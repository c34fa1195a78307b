// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagGGNMC;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.dropout.GaussianDropout;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.DropoutLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.activations.impl.ActivationGELU;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.LongStream;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The second-order pass as a whole: Monte Carlo statistics, dropout masks, chunking under the memory
 * budget, workspaces, mixing with first-order extensions, identities on random architectures, and
 * what is rejected.
 */
class SecondOrderTest {

    static MultiLayerNetwork smoothMlp(DataType dataType) {
        return TestNets.build(dataType, InputType.feedForward(5),
                new DenseLayer.Builder().nOut(6).activation(Activation.SIGMOID).build(),
                new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(4).activation(Activation.SOFTMAX).build());
    }

    static INDArray flatten(Quantities q, Class<? extends io.github.dl4jbackpack.extensions.Extension<INDArray>> e) {
        List<INDArray> parts = new ArrayList<>();
        for (int layer : q.layers(e)) {
            for (String p : q.params(e, layer)) {
                INDArray v = q.get(e, layer, p);
                parts.add(v.reshape(v.length()));
            }
        }
        return Nd4j.concat(0, parts.toArray(new INDArray[0]));
    }

    @Test
    void monteCarloEstimateConvergesLikeOneOverSqrtM() {
        MultiLayerNetwork net = smoothMlp(DataType.DOUBLE);
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 6, 5);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 6, 4);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray exact = flatten(bp.backward(x, y, new DiagGGNExact()), DiagGGNExact.class);
        int[] samples = {4, 64, 1024};
        double[] error = new double[samples.length];
        int seeds = 12;
        for (int i = 0; i < samples.length; i++) {
            for (int seed = 0; seed < seeds; seed++) {
                Nd4j.getRandom().setSeed(1000 + seed);
                INDArray mc = flatten(bp.backward(x, y, new DiagGGNMC(samples[i])), DiagGGNMC.class);
                error[i] += mc.sub(exact).norm2Number().doubleValue() / exact.norm2Number().doubleValue() / seeds;
            }
        }
        // 16× more samples: error 4× smaller, up to the noise of 12 seeds
        assertTrue(error[0] / error[1] > 2.5 && error[0] / error[1] < 6.5, "4→64: " + error[0] + " / " + error[1]);
        assertTrue(error[1] / error[2] > 2.5 && error[1] / error[2] < 6.5, "64→1024: " + error[1] + " / " + error[2]);
        assertTrue(error[2] < 0.05, "relative error with 1024 samples: " + error[2]);
    }

    @Test
    void monteCarloEstimateIsUnbiasedAndSeeded() {
        MultiLayerNetwork net = smoothMlp(DataType.DOUBLE);
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 5, 5);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 4, 5, 4);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray exact = flatten(bp.backward(x, y, new DiagGGNExact()), DiagGGNExact.class);
        int runs = 400;
        INDArray mean = exact.ulike().assign(0);
        for (int run = 0; run < runs; run++) {
            mean.addi(flatten(bp.backward(x, y, new DiagGGNMC()), DiagGGNMC.class).div(runs));
        }
        // mean of 400 single-sample estimates: relative error ~ (single-sample error) / 20
        double relative = mean.sub(exact).norm2Number().doubleValue() / exact.norm2Number().doubleValue();
        assertTrue(relative < 0.1, "mean of single-sample estimates vs exact: " + relative);

        Nd4j.getRandom().setSeed(7);
        Quantities a = bp.backward(x, y, new DiagGGNMC(3), new BatchDiagGGNMC(3));
        Nd4j.getRandom().setSeed(7);
        Quantities b = bp.backward(x, y, new DiagGGNMC(3), new BatchDiagGGNMC(3));
        assertClose(flatten(a, DiagGGNMC.class), flatten(b, DiagGGNMC.class), 0, 0, "same seed, same estimate");
        for (int layer : a.layers(DiagGGNMC.class)) {
            for (String p : a.params(DiagGGNMC.class, layer)) {
                assertClose(a.get(DiagGGNMC.class, layer, p), a.get(BatchDiagGGNMC.class, layer, p).sum(0), 1e-12,
                        1e-14, "Σ_n BatchDiagGGNMC = DiagGGNMC with the same samples");
            }
        }
    }

    /**
     * With one output and the L2 loss, {@code J_n = N g_n / (2 r_n)} and the per-example GGN diagonal
     * is {@code 2 g_n² / (N g_n(b_out)²)}: an identity between first- and second-order quantities of
     * the same pass, which therefore must hold with the dropout masks of that pass.
     */
    @Test
    void dropoutMasksOfThePassAreUsed() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.convolutional(7, 7, 2),
                new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.TANH).dropOut(0.7).build(),
                new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(1, 1).build(),
                new DenseLayer.Builder().nOut(6).activation(Activation.SIGMOID).dropOut(0.6).build(),
                new DropoutLayer.Builder(0.8).build(),
                new DenseLayer.Builder().nOut(5).activation(Activation.ELU).build(),
                new OutputLayer.Builder(LossFunction.L2).nOut(1).activation(Activation.IDENTITY).dropOut(0.75).build());
        long n = 5;
        INDArray x = TestNets.features(DataType.DOUBLE, 1, n, 2, 7, 7);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.L2, 2, n, 1);
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new BatchGrad(), new BatchDiagGGNExact());
        INDArray outBias = q.get(BatchGrad.class, 5, "b").reshape(n);
        int checked = 0;
        for (int layer : q.layers(BatchGrad.class)) {
            for (String p : q.params(BatchGrad.class, layer)) {
                INDArray g = q.get(BatchGrad.class, layer, p);
                INDArray scale = outBias.mul(outBias).muli(n).rdivi(2.0);
                INDArray expected = g.mul(g);
                org.nd4j.linalg.factory.Broadcast.mul(expected, scale, expected, 0);
                assertClose(expected, q.get(BatchDiagGGNExact.class, layer, p), 1e-9, 1e-12,
                        "layer " + layer + " " + p);
                checked++;
            }
        }
        assertEquals(8, checked);
    }

    /** A user's own input noise: multiplies by 2 (deterministic), which the library cannot know. */
    static final class CustomNoise implements org.deeplearning4j.nn.conf.dropout.IDropout {
        @Override
        public INDArray applyDropout(INDArray in, INDArray out, int iteration, int epoch,
                                     org.deeplearning4j.nn.workspace.LayerWorkspaceMgr mgr) {
            return out.assign(in.mul(2.0));
        }

        @Override
        public INDArray backprop(INDArray gradAtOutput, INDArray gradAtInput, int iteration, int epoch) {
            return gradAtInput.assign(gradAtOutput.mul(2.0));
        }

        @Override
        public void clear() {
        }

        @Override
        public org.deeplearning4j.nn.conf.dropout.IDropout clone() {
            return new CustomNoise();
        }
    }

    static Stream<org.deeplearning4j.nn.conf.dropout.IDropout> inputNoise() {
        return Stream.of(new GaussianDropout(0.3), new org.deeplearning4j.nn.conf.dropout.AlphaDropout(0.7),
                new org.deeplearning4j.nn.conf.dropout.SpatialDropout(0.6),
                new org.deeplearning4j.nn.conf.dropout.GaussianNoise(0.5));
    }

    /**
     * The identity of {@link #dropoutMasksOfThePassAreUsed} with the other kinds of input noise, on a
     * convolution and a dense layer (spatial dropout: the convolution only): the second-order pass
     * uses the Jacobian of the very noise the pass drew.
     */
    @ParameterizedTest
    @MethodSource("inputNoise")
    void inputNoiseOfThePassIsUsed(org.deeplearning4j.nn.conf.dropout.IDropout noise) {
        boolean spatial = noise instanceof org.deeplearning4j.nn.conf.dropout.SpatialDropout;
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.convolutional(6, 6, 2),
                new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.TANH).dropOut(noise.clone()).build(),
                new ConvolutionLayer.Builder(2, 2).nOut(2).activation(Activation.SIGMOID).dropOut(noise.clone())
                        .build(),
                new DenseLayer.Builder().nOut(4).activation(Activation.ELU).dropOut(spatial ? null : noise.clone())
                        .build(),
                new OutputLayer.Builder(LossFunction.L2).nOut(1).activation(Activation.IDENTITY).build());
        long n = 4;
        INDArray x = TestNets.features(DataType.DOUBLE, 1, n, 2, 6, 6);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.L2, 2, n, 1);
        Quantities q = BackPackNetwork.extend(net).backward(x, y, new BatchGrad(), new BatchDiagGGNExact());
        INDArray outBias = q.get(BatchGrad.class, 3, "b").reshape(n);
        for (int layer : q.layers(BatchGrad.class)) {
            for (String p : q.params(BatchGrad.class, layer)) {
                INDArray g = q.get(BatchGrad.class, layer, p);
                INDArray scale = outBias.mul(outBias).muli(n).rdivi(2.0);
                INDArray expected = g.mul(g);
                org.nd4j.linalg.factory.Broadcast.mul(expected, scale, expected, 0);
                assertClose(expected, q.get(BatchDiagGGNExact.class, layer, p), 1e-9, 1e-12,
                        noise.getClass().getSimpleName() + " layer " + layer + " " + p);
            }
        }
    }

    @Test
    void chunkingUnderATinyMemoryBudgetGivesTheSameValues() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.convolutional(6, 6, 2),
                new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.SOFTPLUS).build(),
                new SubsamplingLayer.Builder(PoolingType.AVG).kernelSize(2, 2).stride(1, 1).build(),
                new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(4).activation(Activation.SOFTMAX).build());
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 4, 2, 6, 6);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 4, 4);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities whole = bp.backward(x, y, new DiagGGNExact(), new BatchDiagHessian());
        // the smallest budget: a few columns per chunk for this network and batch
        bp.setCurvatureMemoryBudget(64 * 1024);
        assertEquals(64 * 1024, bp.curvatureMemoryBudget());
        Quantities chunked = bp.backward(x, y, new DiagGGNExact(), new BatchDiagHessian());
        assertClose(flatten(whole, DiagGGNExact.class), flatten(chunked, DiagGGNExact.class), 1e-12, 1e-14, "GGN");
        assertClose(flatten(whole, BatchDiagHessian.class), flatten(chunked, BatchDiagHessian.class), 1e-12, 1e-14,
                "Hessian");
        assertThrows(IllegalArgumentException.class, () -> bp.setCurvatureMemoryBudget(0));
        assertThrows(IllegalArgumentException.class, () -> bp.setCurvatureMemoryBudget(1));
    }

    @Test
    void hundredClassesRunInChunksUnderASmallBudget() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.convolutional(5, 5, 2),
                new ConvolutionLayer.Builder(3, 3).nOut(4).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(12).activation(Activation.SIGMOID).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(100).activation(Activation.SOFTMAX).build());
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 6, 2, 5, 5);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 6, 100);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities whole = bp.backward(x, y, new DiagGGNExact(), new DiagHessian());
        // one column of 6 examples costs ~50 kB of scratch here: the 100 exact columns go one at a time
        bp.setCurvatureMemoryBudget(64 * 1024);
        Quantities chunked = bp.backward(x, y, new DiagGGNExact(), new DiagHessian());
        assertClose(flatten(whole, DiagGGNExact.class), flatten(chunked, DiagGGNExact.class), 1e-12, 1e-14, "GGN");
        assertClose(flatten(whole, DiagHessian.class), flatten(chunked, DiagHessian.class), 1e-12, 1e-14, "Hessian");
    }

    @Test
    void trainingWithCurvatureEnabledKeepsTheTrajectory() {
        MultiLayerNetwork plain = TestNets.build(DataType.DOUBLE, InputType.convolutional(6, 6, 2),
                new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.TANH).build(),
                new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build());
        MultiLayerNetwork extended = plain.clone();
        BackPackNetwork bp = BackPackNetwork.extend(extended);
        bp.enable(new DiagGGNExact(), new BatchDiagHessian(), new Variance());
        List<Quantities> seen = new ArrayList<>();
        bp.addQuantitiesListener(seen::add);
        for (int step = 0; step < 4; step++) {
            INDArray x = TestNets.features(DataType.DOUBLE, step, 4, 2, 6, 6);
            INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, step, 4, 3);
            plain.fit(x, y);
            extended.fit(x, y);
            assertClose(plain.params(), extended.params(), 0, 0, "parameters after step " + step);
        }
        assertEquals(4, seen.size());
        assertTrue(seen.get(3).contains(DiagGGNExact.class) && seen.get(3).contains(BatchDiagHessian.class));
    }

    @Test
    void workspaceModesAndMixedPassesAgree() {
        List<Quantities> results = new ArrayList<>();
        for (WorkspaceMode mode : new WorkspaceMode[] {WorkspaceMode.ENABLED, WorkspaceMode.NONE}) {
            MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.convolutional(6, 6, 2), mode, 5,
                    new ConvolutionLayer.Builder(3, 3).nOut(3).activation(Activation.TANH).build(),
                    new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                    new ActivationLayer.Builder().activation(Activation.SWISH).build(),
                    new OutputLayer.Builder(LossFunction.XENT).nOut(2).activation(Activation.SIGMOID).build());
            INDArray x = TestNets.features(DataType.DOUBLE, 1, 4, 2, 6, 6);
            INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.XENT, 2, 4, 2);
            BackPackNetwork bp = BackPackNetwork.extend(net);
            Quantities mixed = bp.backward(x, y, new Variance(), new DiagHessian(), new BatchGrad(),
                    new BatchDiagGGNExact(), new DiagGGNExact());
            Quantities alone = bp.backward(x, y, new DiagHessian());
            Quantities first = bp.backward(x, y, new Variance());
            assertClose(flatten(alone, DiagHessian.class), flatten(mixed, DiagHessian.class), 1e-12, 1e-14, "alone");
            assertClose(flatten(first, Variance.class), flatten(mixed, Variance.class), 1e-12, 1e-14, "first order");
            for (int layer : mixed.layers(DiagGGNExact.class)) {
                for (String p : mixed.params(DiagGGNExact.class, layer)) {
                    assertClose(mixed.get(DiagGGNExact.class, layer, p),
                            mixed.get(BatchDiagGGNExact.class, layer, p).sum(0), 1e-12, 1e-14, "Σ_n batch = full");
                }
            }
            results.add(mixed);
        }
        assertClose(flatten(results.get(0), DiagHessian.class), flatten(results.get(1), DiagHessian.class), 1e-12,
                1e-14, "workspaces on and off");
    }

    static Stream<Long> seeds() {
        return LongStream.range(200, 220).boxed();
    }

    @ParameterizedTest(name = "seed {0}")
    @MethodSource("seeds")
    void identitiesOnRandomArchitectures(long seed) {
        RandomArchitectures.Sample s = RandomArchitectures.sample(seed, true, true, DataType.DOUBLE,
                seed % 2 == 0 ? WorkspaceMode.ENABLED : WorkspaceMode.NONE);
        Quantities q = BackPackNetwork.extend(s.net()).backward(s.features(), s.labels(), new DiagGGNExact(),
                new BatchDiagGGNExact(), new DiagHessian(), new BatchDiagHessian());
        boolean piecewiseLinear = !s.description().matches(".*(TANH|SIGMOID|ELU|SELU|SOFTPLUS|SWISH).*");
        for (int layer : q.layers(DiagGGNExact.class)) {
            for (String p : q.params(DiagGGNExact.class, layer)) {
                INDArray ggn = q.get(DiagGGNExact.class, layer, p);
                String what = s.description() + ": layer " + layer + " " + p;
                assertTrue(ggn.minNumber().doubleValue() >= -1e-15, what + ": GGN diagonal is non-negative");
                assertClose(ggn, q.get(BatchDiagGGNExact.class, layer, p).sum(0), 1e-10, 1e-13, what + " Σ_n GGN");
                INDArray hessian = q.get(DiagHessian.class, layer, p);
                assertClose(hessian, q.get(BatchDiagHessian.class, layer, p).sum(0), 1e-10, 1e-13, what + " Σ_n H");
                if (piecewiseLinear) {
                    assertClose(ggn, hessian, 1e-12, 1e-14, what + ": piecewise-linear network, H = GGN");
                }
            }
        }
    }

    @Test
    void unsupportedSecondOrderCombinationsAreRejectedWithTheirReason() {
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 3, 4);
        MultiLayerNetwork hinge = TestNets.build(DataType.DOUBLE, InputType.feedForward(4),
                new OutputLayer.Builder(LossFunction.HINGE).nOut(3).activation(Activation.IDENTITY).build());
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.HINGE, 1, 3, 3);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(hinge).backward(x, y, new DiagGGNExact()));
        BadInputTest.assertNames(e, 0, "OutputLayer", "DiagGGNExact");
        assertTrue(e.getMessage().contains("softmax with MCXENT"), e.getMessage());
        BackPackNetwork.extend(hinge).backward(x, y, new Variance());

        INDArray yc = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 1, 3, 3);
        MultiLayerNetwork hiddenSoftmax = TestNets.build(DataType.DOUBLE, InputType.feedForward(4),
                new DenseLayer.Builder().nOut(5).activation(Activation.SOFTMAX).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build());
        e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(hiddenSoftmax).backward(x, yc, new DiagGGNMC(2)));
        BadInputTest.assertNames(e, 0, "DenseLayer", "DiagGGNMC(2)");
        assertTrue(e.getMessage().contains("softmax"), e.getMessage());

        MultiLayerNetwork preciseGelu = TestNets.build(DataType.DOUBLE, InputType.feedForward(4),
                new DenseLayer.Builder().nOut(5).activation(new ActivationGELU(true)).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build());
        BackPackNetwork.extend(preciseGelu).backward(x, yc, new DiagGGNExact());
        e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(preciseGelu).backward(x, yc, new DiagHessian()));
        assertTrue(e.getMessage().contains("precise GELU"), e.getMessage());

        // input noise of a kind the pass cannot see into (a user's own IDropout) is refused by name
        MultiLayerNetwork custom = TestNets.build(DataType.DOUBLE, InputType.feedForward(4),
                new DenseLayer.Builder().nOut(5).activation(Activation.TANH).dropOut(new CustomNoise()).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build());
        BackPackNetwork.extend(custom).backward(x, yc, new BatchGrad());
        e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(custom).backward(x, yc, new DiagGGNExact()));
        assertTrue(e.getMessage().contains("CustomNoise"), e.getMessage());

        assertThrows(IllegalArgumentException.class, () -> new DiagGGNMC(0));
        assertEquals(1, new DiagGGNMC().mcSamples());
        assertEquals(1, new BatchDiagGGNMC().mcSamples());
    }
}
