// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The RDP of the Poisson-subsampled Gaussian mechanism: against values published in other libraries' tests,
 * against an independent numerical integration of both Rényi divergences, against closed forms, and at the edges.
 */
class SampledGaussianRdpTest {

    private static final double INF = Double.POSITIVE_INFINITY;

    private static void assertRelative(double expected, double actual, double tolerance, String what) {
        assertTrue(Math.abs(actual - expected) <= tolerance * Math.abs(expected),
                what + ": expected " + expected + ", got " + actual + " (relative error "
                        + Math.abs(actual - expected) / Math.abs(expected) + ")");
    }

    /** RDP of {@code steps} identical steps, as TensorFlow Privacy's {@code compute_rdp(q, σ, steps, orders)}. */
    private static double[] composed(double q, double sigma, long steps, double[] orders) {
        double[] rdp = SampledGaussianRdp.rdp(sigma, q, orders);
        for (int k = 0; k < rdp.length; k++) {
            rdp[k] *= steps;
        }
        return rdp;
    }

    @Test
    void matchesTensorFlowPrivacysSequenceAtIntegerAndFractionalOrders() {
        // tensorflow/privacy, tensorflow_privacy/privacy/analysis/rdp_accountant_test.py,
        // test_compute_rdp_sequence: compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100, np.inf]),
        // assertSequenceAlmostEqual(..., delta=1e-5).
        double[] orders = {1.5, 2.5, 5, 50, 100, INF};
        double[] tfp = {0.00065, 0.001085, 0.00218075, 0.023846, 167.416307, INF};
        assertArrayEquals(tfp, composed(0.01, 2.5, 50, orders), 1e-5);
        // google/differential-privacy, python/dp_accounting/rdp/rdp_privacy_accountant_test.py,
        // test_compute_rdp_poisson_sampled_gaussian: the same event, np.allclose(..., rtol=1e-4).
        double[] dpAccounting = {6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02, 1.6742e+02, INF};
        double[] rdp = composed(0.01, 2.5, 50, orders);
        for (int k = 0; k < orders.length - 1; k++) {
            assertRelative(dpAccounting[k], rdp[k], 1e-4, "order " + orders[k]);
        }
        assertEquals(INF, rdp[orders.length - 1]);
    }

    @Test
    void matchesTensorFlowPrivacysScalarAndSpecialCases() {
        // tensorflow/privacy rdp_accountant_test.py, test_compute_rdp_scalar: compute_rdp(0.1, 2, 10, 5) = 0.07737
        // to 5 places.
        assertEquals(0.07737, 10 * SampledGaussianRdp.rdp(2, 0.1, 5), 5e-6);
        // test_compute_rdp_no_data: compute_rdp(0, 10, 1, 20) == 0.
        assertEquals(0.0, SampledGaussianRdp.rdp(10, 0, 20), 0.0);
        // test_compute_rdp_no_sampling: compute_rdp(1, 10, 1, 20) == 0.1 (α / (2σ²)).
        assertEquals(0.1, SampledGaussianRdp.rdp(10, 1, 20), 1e-17);
        // google/differential-privacy dp_accounting rdp_privacy_accountant_test.py, test_compute_rdp_gaussian:
        // α = 3.14159, σ = 2.71828 without sampling gives α / (2σ²).
        assertEquals(3.14159 / (2 * 2.71828 * 2.71828), SampledGaussianRdp.rdp(2.71828, 1, 3.14159), 1e-16);
    }

    @Test
    void agreesWithNumericalIntegrationOfBothDivergences() {
        // {q, σ, α}: fractional and integer orders, small and large q and σ; several are the parameters of
        // TensorFlow Privacy's test_compute_log_a_equals_mp (checked there against mpmath quadrature).
        double[][] cases = {
            {0.01, 2.5, 1.5}, {0.01, 2.5, 2.5}, {0.1, 2.0, 5}, {0.04, 1.5, 3.9}, {0.5, 0.8, 7.3},
            {1e-3, 1.0, 2}, {1e-4, 1.0, 1.5}, {0.1, 100, 20.5}, {0.01, 10, 20}, {1e-6, 1.0, 27},
            {0.3, 0.8, 1.01}, {0.9, 1.0, 2.5},
        };
        for (double[] c : cases) {
            double q = c[0];
            double sigma = c[1];
            double alpha = c[2];
            String what = "q=" + q + " σ=" + sigma + " α=" + alpha;
            double forward = Math.log1p(RenyiQuadrature.excess(q, sigma, alpha)) / (alpha - 1);
            double backward = Math.log1p(RenyiQuadrature.excess(q, sigma, 1 - alpha)) / (alpha - 1);
            assertTrue(forward >= backward, what + ": D(mixture‖N0) = " + forward + " < D(N0‖mixture) = "
                    + backward);
            assertRelative(Math.max(forward, backward), SampledGaussianRdp.rdp(sigma, q, alpha), 1e-8, what);
        }
    }

    @Test
    void integerOrdersMatchTheirClosedForms() {
        // A₂ − 1 = q² (e^{1/σ²} − 1); A₃ − 1 = 3q²(1−q)(e^{1/σ²} − 1) + q³(e^{3/σ²} − 1).
        for (double sigma : new double[] {0.3, 1, 7, 1e6}) {
            for (double q : new double[] {1e-6, 0.01, 0.5, 0.99}) {
                double e1 = Math.expm1(1 / (sigma * sigma));
                double e3 = Math.expm1(3 / (sigma * sigma));
                double order2 = Math.log1p(q * q * e1);
                double order3 = Math.log1p(3 * q * q * (1 - q) * e1 + q * q * q * e3) / 2;
                assertRelative(order2, SampledGaussianRdp.rdp(sigma, q, 2), 1e-13, "α=2 σ=" + sigma + " q=" + q);
                assertRelative(order3, SampledGaussianRdp.rdp(sigma, q, 3), 1e-13, "α=3 σ=" + sigma + " q=" + q);
            }
        }
    }

    @Test
    void fractionalAndIntegerComputationsMeetAtIntegerOrders() {
        for (double[] c : new double[][] {{0.01, 1.0}, {0.2, 0.7}, {0.6, 3.0}}) {
            for (double order : new double[] {2, 3, 10}) {
                double integer = SampledGaussianRdp.rdp(c[1], c[0], order);
                assertRelative(integer, SampledGaussianRdp.rdp(c[1], c[0], order + 1e-9), 1e-6,
                        "q=" + c[0] + " σ=" + c[1] + " α=" + order + "+1e-9");
                assertRelative(integer, SampledGaussianRdp.rdp(c[1], c[0], order - 1e-9), 1e-6,
                        "q=" + c[0] + " σ=" + c[1] + " α=" + order + "-1e-9");
            }
        }
    }

    @Test
    void isNondecreasingInTheOrder() {
        double[] orders = RdpAccountant.defaultOrders();
        for (double[] c : new double[][] {{0.01, 1.1}, {0.25, 0.6}, {1e-4, 4}}) {
            double[] rdp = SampledGaussianRdp.rdp(c[1], c[0], orders);
            for (int k = 1; k < orders.length; k++) {
                assertTrue(rdp[k] >= rdp[k - 1] * (1 - 1e-12), "q=" + c[0] + " σ=" + c[1] + " at α=" + orders[k]
                        + ": " + rdp[k] + " < " + rdp[k - 1]);
            }
        }
    }

    @Test
    void edgeCases() {
        // q = 0: no privacy spent, whatever σ and α.
        assertEquals(0.0, SampledGaussianRdp.rdp(0, 0, INF), 0.0);
        assertEquals(0.0, SampledGaussianRdp.rdp(1, 0, 2.5), 0.0);
        // σ = 0 with q > 0: no privacy.
        assertEquals(INF, SampledGaussianRdp.rdp(0, 0.01, 1.5));
        assertEquals(INF, SampledGaussianRdp.rdp(0, 1, 2));
        // α = ∞ with q > 0 and σ > 0.
        assertEquals(INF, SampledGaussianRdp.rdp(5, 0.01, INF));
        assertEquals(INF, SampledGaussianRdp.rdp(5, 1, INF));
        // q = 1: the Gaussian mechanism.
        assertEquals(7.5 / (2 * 1.3 * 1.3), SampledGaussianRdp.rdp(1.3, 1, 7.5), 1e-15);
        // Huge σ: A_α − 1 = C(α,2) q² (e^{1/σ²} − 1) (1 + O(q/σ² + 1/σ²)), so RDP ≈ α q² / (2σ²).
        for (double order : new double[] {1.5, 2.5, 40.7}) {
            double sigma = 1e3;
            double q = 0.01;
            assertRelative(order * q * q / (2 * sigma * sigma), SampledGaussianRdp.rdp(sigma, q, order), 1e-5,
                    "σ=1e3 α=" + order);
        }
        // Tiny σ: the divergence is enormous but finite, and grows as σ shrinks.
        double tiny = SampledGaussianRdp.rdp(0.05, 0.01, 4.5);
        assertTrue(tiny > 100 && Double.isFinite(tiny), "σ=0.05: " + tiny);
        assertTrue(SampledGaussianRdp.rdp(0.02, 0.01, 4.5) > tiny);
        assertEquals(INF, SampledGaussianRdp.rdp(1e-200, 0.01, 4.5));
    }

    @Test
    void refusesInvalidArguments() {
        double[][] invalid = {
            {-1, 0.1, 2}, {Double.NaN, 0.1, 2}, {INF, 0.1, 2},
            {1, -0.1, 2}, {1, 1.5, 2}, {1, Double.NaN, 2},
            {1, 0.1, 1}, {1, 0.1, 0.5}, {1, 0.1, Double.NaN}, {1, 0.1, -INF}, {1, 0.1, 2e6},
        };
        for (double[] args : invalid) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> SampledGaussianRdp.rdp(args[0], args[1], args[2]));
            assertTrue(e.getMessage().contains("must be"), e.getMessage());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> SampledGaussianRdp.rdp(1, 1.5, 2));
        assertTrue(e.getMessage().contains("sampleRate") && e.getMessage().contains("1.5"), e.getMessage());
        assertThrows(NullPointerException.class, () -> SampledGaussianRdp.rdp(1, 0.1, (double[]) null));
    }
}
