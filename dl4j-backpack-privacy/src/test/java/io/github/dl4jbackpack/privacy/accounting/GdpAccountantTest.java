// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

import java.util.List;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The GDP accountant: against Opacus' test, against μ and δ(ε) worked out by hand, next to the RDP accountant over
 * long runs, and shown to understate ε for a short run.
 */
class GdpAccountantTest {

    private static final double INF = Double.POSITIVE_INFINITY;

    /** @return the standard normal distribution function, {@code erfc(−x/√2) / 2} */
    private static double phi(double x) {
        return 0.5 * SpecialFunctions.erfc(-x / Math.sqrt(2));
    }

    @Test
    void matchesOpacus() {
        // pytorch/opacus, opacus/tests/accountants_test.py, test_gdp_accountant: σ = 1.5, q = 0.04,
        // steps = int(90 // 0.04) (Python's floor division gives 2249), one call per step, delta 1e-5 →
        // assertLess(6.59, epsilon) and assertLess(epsilon, 6.6).
        GdpAccountant accountant = new GdpAccountant();
        for (int step = 0; step < 2249; step++) {
            accountant.step(1.5, 0.04);
        }
        double epsilon = accountant.epsilon(1e-5);
        assertTrue(6.59 < epsilon && epsilon < 6.6, "ε = " + epsilon);
        assertEquals(List.of(new SampledGaussianSteps(1.5, 0.04, 2249)), accountant.history());
        assertEquals("gdp", accountant.mechanism());
    }

    @Test
    void muAndTheDeltaRelationByHand() {
        // μ = q √(T (e^{1/σ²} − 1)) at σ = 1.5, q = 0.04, T = 2249: mpmath (40 digits) gives 1.4190663105677055452.
        GdpAccountant accountant = new GdpAccountant();
        accountant.step(1.5, 0.04, 2249);
        assertEquals(1.4190663105677055452, accountant.mu(), 1e-15);
        assertEquals(1.4190663105677055452, GdpAccountant.muPoisson(1.5, 0.04, 2249), 1e-15);
        // Back-substitution: δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) at the returned ε gives the δ asked for.
        double mu = accountant.mu();
        for (double delta : new double[] {1e-3, 1e-5, 1e-9}) {
            double epsilon = accountant.epsilon(delta);
            double back = phi(-epsilon / mu + mu / 2)
                    - Math.exp(epsilon) * phi(-epsilon / mu - mu / 2);
            assertEquals(delta, back, 1e-9 * delta, "δ = " + delta + ", ε = " + epsilon);
            assertEquals(back, GdpAccountant.deltaForMu(mu, epsilon), 1e-12 * delta);
        }
        // μ-GDP at ε = 0: δ = Φ(μ/2) − Φ(−μ/2).
        assertEquals(phi(mu / 2) - phi(-mu / 2),
                GdpAccountant.deltaForMu(mu, 0), 1e-15);
    }

    @Test
    void staysNearButBelowRdpOverLongRuns() {
        // Over thousands of steps the CLT estimate comes out below the RDP bound and within 15 % of it in these
        // settings; this is an observation at these points (RDP is an upper bound, GDP an approximation), not a
        // theorem, and says nothing about which one is closer to the truth.
        double[][] settings = {{1.5, 0.04, 2250}, {1.0, 0.01, 10000}, {0.8, 0.004, 100000}, {2.0, 0.1, 1000}};
        for (double[] s : settings) {
            GdpAccountant gdp = new GdpAccountant();
            gdp.step(s[0], s[1], (long) s[2]);
            RdpAccountant rdp = new RdpAccountant();
            rdp.step(s[0], s[1], (long) s[2]);
            double gdpEpsilon = gdp.epsilon(1e-5);
            double rdpEpsilon = rdp.epsilon(1e-5);
            String what = "σ=" + s[0] + " q=" + s[1] + " T=" + (long) s[2] + ": GDP " + gdpEpsilon + ", RDP "
                    + rdpEpsilon;
            assertTrue(gdpEpsilon < rdpEpsilon, what);
            assertTrue(gdpEpsilon > 0.85 * rdpEpsilon, what);
        }
    }

    @Test
    void understatesEpsilonForAShortRun() {
        // One step, q = 0.01, σ = 0.5, δ = 1e-5. Any (ε, δ)-DP mechanism satisfies P(E) <= e^ε Q(E) + δ for every
        // event E, with P = (1−q) N(0, σ²) + q N(1, σ²) (the example present) and Q = N(0, σ²) (absent); so
        // ε >= log((P(z > t) − δ) / Q(z > t)) for every threshold t, a lower bound on the true ε.
        double q = 0.01;
        double sigma = 0.5;
        double delta = 1e-5;
        double lowerBound = 0;
        for (double t = 0; t <= 5; t += 0.01) {
            double absent = phi(-t / sigma);
            double present = (1 - q) * absent + q * phi(-(t - 1) / sigma);
            if (present > delta) {
                lowerBound = Math.max(lowerBound, Math.log((present - delta) / absent));
            }
        }
        assertTrue(lowerBound > 3, "lower bound " + lowerBound);
        GdpAccountant gdp = new GdpAccountant();
        gdp.step(sigma, q);
        RdpAccountant rdp = new RdpAccountant();
        rdp.step(sigma, q);
        assertTrue(gdp.epsilon(delta) < lowerBound / 10, "GDP " + gdp.epsilon(delta) + " vs true ε >= " + lowerBound);
        assertTrue(rdp.epsilon(delta) >= lowerBound, "RDP " + rdp.epsilon(delta) + " vs true ε >= " + lowerBound);
    }

    @Test
    void edgeCases() {
        GdpAccountant empty = new GdpAccountant();
        assertEquals(0.0, empty.epsilon(1e-5), 0.0);
        assertEquals(0.0, empty.mu(), 0.0);
        assertEquals(List.of(), empty.history());
        GdpAccountant unsampled = new GdpAccountant();
        unsampled.step(0.0, 0.0, 100);
        assertEquals(0.0, unsampled.epsilon(1e-5), 0.0);
        GdpAccountant noiseless = new GdpAccountant();
        noiseless.step(0.0, 0.01);
        assertEquals(INF, noiseless.mu());
        assertEquals(INF, noiseless.epsilon(1e-5));
        // Huge σ: μ → 0 and δ(0) = erf(μ / (2√2)) falls below δ, so ε = 0.
        GdpAccountant quiet = new GdpAccountant();
        quiet.step(1e4, 0.01, 100);
        assertEquals(0.0, quiet.epsilon(1e-5), 0.0);
        assertEquals(0.0, GdpAccountant.deltaForMu(0, 1), 0.0);
        assertEquals(1.0, GdpAccountant.deltaForMu(INF, 1), 0.0);
        assertEquals(0.0, GdpAccountant.deltaForMu(1, INF), 0.0);
        assertEquals(INF, GdpAccountant.epsilonForMu(INF, 1e-5));
        assertThrows(IllegalArgumentException.class, () -> empty.epsilon(0));
        assertThrows(IllegalArgumentException.class, () -> empty.epsilon(1));
        assertThrows(IllegalArgumentException.class, () -> GdpAccountant.epsilonForMu(-1, 1e-5));
        assertThrows(IllegalArgumentException.class, () -> GdpAccountant.deltaForMu(Double.NaN, 1));
        assertThrows(IllegalArgumentException.class, () -> GdpAccountant.deltaForMu(1, -1));
    }

    @Test
    void refusesToMixParameters() {
        GdpAccountant accountant = new GdpAccountant();
        accountant.step(1.0, 0.01, 10);
        accountant.step(1.0, 0.01);
        assertEquals(11, accountant.totalSteps());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> accountant.step(1.1, 0.01));
        assertTrue(e.getMessage().contains("RdpAccountant"), e.getMessage());
        assertEquals(List.of(new SampledGaussianSteps(1.0, 0.01, 11)), accountant.history());
        assertThrows(IllegalArgumentException.class, () -> accountant.step(1.0, 0.01, -3));
    }
}
