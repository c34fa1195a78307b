// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.internal.layers.ElementwiseActivations;
import io.github.dl4jbackpack.internal.losses.LossCurvature;
import io.github.dl4jbackpack.internal.losses.LossCurvatures;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationELU;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.activations.impl.ActivationSigmoid;
import org.nd4j.linalg.activations.impl.ActivationSoftmax;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.ILossFunction;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;
import org.nd4j.linalg.lossfunctions.impl.LossBinaryXENT;
import org.nd4j.linalg.lossfunctions.impl.LossHinge;
import org.nd4j.linalg.lossfunctions.impl.LossL2;
import org.nd4j.linalg.lossfunctions.impl.LossMCXENT;
import org.nd4j.linalg.lossfunctions.impl.LossMSE;
import org.nd4j.linalg.lossfunctions.impl.LossNegativeLogLikelihood;

import java.util.List;
import java.util.Set;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The building blocks of the second-order pass, each against an independent reference: activation
 * second derivatives against finite differences of DL4J's own first derivative, loss Hessians
 * against finite differences of DL4J's own loss gradient, and the exact and sampled factors against
 * the Hessian they factor.
 */
class CurvatureComponentsTest {

    static final Set<Activation> SUPPORTED = Set.of(Activation.IDENTITY, Activation.RELU, Activation.RELU6,
            Activation.LEAKYRELU, Activation.THRESHOLDEDRELU, Activation.HARDTANH, Activation.HARDSIGMOID,
            Activation.SIGMOID, Activation.TANH, Activation.SOFTPLUS, Activation.SOFTSIGN, Activation.ELU,
            Activation.SELU, Activation.SWISH, Activation.GELU, Activation.CUBE, Activation.RATIONALTANH,
            Activation.RECTIFIEDTANH);

    /** Points away from the kinks of piecewise-defined activations (0, ±1, ±2.5, 6, 1 for thresholded relu). */
    static INDArray points() {
        double[] v = {-4.3, -2.7, -1.7, -0.8, -0.35, -0.07, 0.11, 0.42, 0.77, 1.3, 1.9, 3.1, 4.6, 6.8};
        return Nd4j.createFromArray(v).castTo(DataType.DOUBLE);
    }

    @ParameterizedTest
    @EnumSource(Activation.class)
    void secondDerivativeMatchesFiniteDifferencesOfDl4jsFirstDerivative(Activation a) {
        IActivation activation = a.getActivationFunction();
        String reason = ElementwiseActivations.unsupported(activation, true);
        if (!SUPPORTED.contains(a)) {
            assertNotNull(reason, a + " must be rejected for second order");
            return;
        }
        assertNull(reason, a + " is supported");
        INDArray z = points();
        double h = 1e-6;
        INDArray plus = ElementwiseActivations.firstDerivative(activation, z.add(h));
        INDArray minus = ElementwiseActivations.firstDerivative(activation, z.sub(h));
        INDArray finiteDifference = plus.sub(minus).divi(2 * h);
        INDArray analytic = ElementwiseActivations.secondDerivative(activation, z);
        assertClose(finiteDifference, analytic, 1e-6, 1e-8, a + ": φ''");
        if (ElementwiseActivations.isPiecewiseLinear(activation)) {
            assertEquals(0.0, analytic.amaxNumber().doubleValue(), 0.0, a + " is piecewise linear");
        } else {
            assertTrue(analytic.amaxNumber().doubleValue() > 0, a + " has curvature");
        }
    }

    @Test
    void firstDerivativeIsDl4jsAndLeavesTheInputAlone() {
        INDArray z = points();
        INDArray copy = z.dup();
        INDArray d = ElementwiseActivations.firstDerivative(new ActivationELU(0.7), z);
        assertClose(copy, z, 0, 0, "input untouched");
        INDArray expected = new ActivationELU(0.7).backprop(z.dup(), z.ulike().assign(1.0)).getFirst();
        assertClose(expected, d, 0, 0, "DL4J's own derivative");
        assertNotNull(ElementwiseActivations.unsupported(new ActivationSoftmax(), false), "softmax is not elementwise");
    }

    record Pair(String name, ILossFunction loss, IActivation activation, LossFunction labels) {
        @Override
        public String toString() {
            return name;
        }
    }

    static List<Pair> lossPairs() {
        return List.of(new Pair("softmax-mcxent", new LossMCXENT(), new ActivationSoftmax(), LossFunction.MCXENT),
                new Pair("softmax-nll", new LossNegativeLogLikelihood(), new ActivationSoftmax(),
                        LossFunction.NEGATIVELOGLIKELIHOOD),
                new Pair("identity-mse", new LossMSE(), new ActivationIdentity(), LossFunction.MSE),
                new Pair("identity-l2", new LossL2(), new ActivationIdentity(), LossFunction.L2),
                new Pair("sigmoid-xent", new LossBinaryXENT(), new ActivationSigmoid(), LossFunction.XENT));
    }

    @Test
    void lossHessiansMatchFiniteDifferencesOfDl4jsLossGradient() {
        long n = 3;
        int c = 4;
        for (Pair pair : lossPairs()) {
            LossCurvature curvature = LossCurvatures.of(pair.loss(), pair.activation()).orElseThrow();
            INDArray z = TestNets.features(DataType.DOUBLE, 5, n, c);
            INDArray y = TestNets.labels(DataType.DOUBLE, pair.labels(), 6, n, c);
            INDArray hessian = curvature.hessian(z);
            double h = 1e-6;
            for (int j = 0; j < c; j++) {
                INDArray zp = z.dup();
                INDArray zm = z.dup();
                zp.getColumn(j).addi(h);
                zm.getColumn(j).subi(h);
                INDArray gp = pair.loss().computeGradient(y, zp, pair.activation(), null);
                INDArray gm = pair.loss().computeGradient(y, zm, pair.activation(), null);
                INDArray column = gp.sub(gm).divi(2 * h);
                INDArray expected = hessian.get(org.nd4j.linalg.indexing.NDArrayIndex.all(),
                        org.nd4j.linalg.indexing.NDArrayIndex.all(), org.nd4j.linalg.indexing.NDArrayIndex.point(j));
                assertClose(column, expected, 1e-6, 1e-8, pair + " Hessian column " + j);
            }
        }
    }

    @Test
    void exactFactorReproducesTheHessianOverN() {
        long n = 4;
        int c = 5;
        for (Pair pair : lossPairs()) {
            LossCurvature curvature = LossCurvatures.of(pair.loss(), pair.activation()).orElseThrow();
            INDArray z = TestNets.features(DataType.DOUBLE, 9, n, c);
            INDArray s = curvature.sqrtHessian(z, n);                // [N, V, C]
            INDArray outer = Nd4j.matmul(s, s, true, false, false);  // Σ_v s_v s_vᵀ = S Sᵀ
            assertClose(curvature.hessian(z).div(n), outer, 1e-12, 1e-14, pair + ": S Sᵀ = H/N");
        }
    }

    @Test
    void sampledFactorIsUnbiasedAndSeeded() {
        long n = 3;
        int c = 4;
        int samples = 200_000;
        for (Pair pair : lossPairs()) {
            LossCurvature curvature = LossCurvatures.of(pair.loss(), pair.activation()).orElseThrow();
            INDArray z = TestNets.features(DataType.DOUBLE, 11, n, c);
            Nd4j.getRandom().setSeed(42);
            INDArray s = curvature.sampledSqrtHessian(z, n, samples);
            Nd4j.getRandom().setSeed(42);
            assertClose(s, curvature.sampledSqrtHessian(z, n, samples), 0, 0, pair + ": seeded");
            INDArray estimate = Nd4j.matmul(s, s, true, false, false);
            INDArray exact = curvature.hessian(z).div(n);
            // entries of a mean of 2·10⁵ samples: standard error well below 1% of the largest entry
            assertClose(exact, estimate, 0, 0.02, pair + ": E[S Sᵀ] = H/N");
        }
    }

    @Test
    void unsupportedLossesHaveNoCurvature() {
        assertTrue(LossCurvatures.of(new LossHinge(), new ActivationIdentity()).isEmpty());
        assertTrue(LossCurvatures.of(new LossMCXENT(), new ActivationSigmoid()).isEmpty());
        assertTrue(LossCurvatures.of(new LossMSE(), new ActivationSigmoid()).isEmpty());
        assertTrue(LossCurvatures.of(new LossMCXENT(Nd4j.createFromArray(1.0, 2.0)), new ActivationSoftmax()).isEmpty(),
                "weighted losses are not supported");
    }
}
