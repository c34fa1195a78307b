// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

import java.util.Arrays;
import java.util.List;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The RDP accountant and the RDP → (ε, δ) conversion against the values in Opacus' and Google's dp_accounting tests
 * and Opacus' documentation, and its bookkeeping.
 */
class RdpAccountantTest {

    private static final double INF = Double.POSITIVE_INFINITY;

    private static double[] range(int fromInclusive, int toExclusive) {
        double[] orders = new double[toExclusive - fromInclusive];
        for (int k = 0; k < orders.length; k++) {
            orders[k] = fromInclusive + k;
        }
        return orders;
    }

    @Test
    void matchesOpacusOnADpSgdRun() {
        // pytorch/opacus, opacus/tests/accountants_test.py, test_rdp_accountant: 2250 (= int(90 / 0.04)) steps of
        // σ = 1.5, q = 0.04, one call per step, default alphas; assertAlmostEqual(get_epsilon(1e-5), 7.32911117143).
        RdpAccountant accountant = new RdpAccountant();
        for (int step = 0; step < 2250; step++) {
            accountant.step(1.5, 0.04);
        }
        assertEquals(7.32911117143, accountant.epsilon(1e-5), 5e-8);
        assertEquals(List.of(new SampledGaussianSteps(1.5, 0.04, 2250)), accountant.history());
        assertEquals(2250, accountant.totalSteps());
        // The optimum is inside the grid (an order at the edge would hint at a grid too narrow).
        double order = accountant.epsilonAndOrder(1e-5).order();
        assertTrue(order > 1.1 && order < 63, "order " + order);
    }

    @Test
    void matchesOpacusDocumentedHeterogeneousComposition() {
        // pytorch/opacus, opacus/accountants/analysis/rdp.py, module docstring: parameters
        // [(q, σ, steps)] = [(1e-5, 1.0, 10), (1e-4, 3.0, 4)], orders range(2, 33), delta 1e-5 →
        // "(0.336, 23)  # doctest: +NUMBER", i.e. ε = 0.336 to the three printed decimals at order 23.
        RdpAccountant accountant = new RdpAccountant(range(2, 33));
        accountant.step(1.0, 1e-5, 10);
        accountant.step(3.0, 1e-4, 4);
        EpsilonAndOrder spent = accountant.epsilonAndOrder(1e-5);
        assertEquals(0.336, spent.epsilon(), 5e-4);
        assertEquals(23.0, spent.order(), 0.0);
        // Composition is the sum of the parts.
        double[] first = SampledGaussianRdp.rdp(1.0, 1e-5, range(2, 33));
        double[] second = SampledGaussianRdp.rdp(3.0, 1e-4, range(2, 33));
        double[] total = accountant.rdp();
        for (int k = 0; k < total.length; k++) {
            assertEquals(10 * first[k] + 4 * second[k], total[k], 1e-15 * total[k]);
        }
    }

    @Test
    void conversionMatchesDpAccountingOnPureDp() {
        // google/differential-privacy, python/dp_accounting/rdp/rdp_privacy_accountant_test.py,
        // test_compute_epsilon_delta_pure_dp: orders range(2, 33), rdp 1.1 at each, delta 1e-5 →
        // assertAlmostEqual(epsilon, 1.32783806176), optimal order 32 (the same case as TensorFlow Privacy's
        // test_get_privacy_spent_check_target_delta).
        double[] orders = range(2, 33);
        double[] rdp = new double[orders.length];
        Arrays.fill(rdp, 1.1);
        EpsilonAndOrder spent = RdpAccountant.epsilonFromRdp(orders, rdp, 1e-5);
        assertEquals(1.32783806176, spent.epsilon(), 5e-8);
        assertEquals(32.0, spent.order(), 0.0);
    }

    @Test
    void conversionMatchesDpAccountingOnTheGaussianMechanism() {
        // dp_accounting rdp_privacy_accountant_test.py, test_compute_epsilon_delta_gaussian: orders 0.001·i for
        // i in range(1000, 100000), q = 1, σ = 4.530877117 "chosen to obtain exactly (1,1e-6)-DP" →
        // assertAlmostEqual(eps, 1). Order 1.0 is left out here (orders must exceed 1; it never gives the minimum).
        double[] orders = new double[100000 - 1001];
        for (int k = 0; k < orders.length; k++) {
            orders[k] = 0.001 * (1001 + k);
        }
        double[] rdp = SampledGaussianRdp.rdp(4.530877117, 1, orders);
        assertEquals(1.0, RdpAccountant.epsilonFromRdp(orders, rdp, 1e-6).epsilon(), 5e-8);
    }

    @Test
    void conversionFollowsBalleEtAlAndItsEdges() {
        // ε(α) = ρ + log((α−1)/α) − (log δ + log α)/(α − 1), written out by hand at α = 2.5, ρ = 0.8, δ = 1e-6.
        double expected = 0.8 + Math.log(1.5 / 2.5) - (Math.log(1e-6) + Math.log(2.5)) / 1.5;
        EpsilonAndOrder spent = RdpAccountant.epsilonFromRdp(new double[] {2.5}, new double[] {0.8}, 1e-6);
        assertEquals(expected, spent.epsilon(), 1e-14);
        assertEquals(2.5, spent.order(), 0.0);
        // The smallest ε over the grid wins; ties go to the first order.
        spent = RdpAccountant.epsilonFromRdp(new double[] {2, 3, 4}, new double[] {5, 0.1, 50}, 1e-5);
        assertEquals(3.0, spent.order(), 0.0);
        // α = ∞: the limit of the formula is ρ itself (pure DP).
        spent = RdpAccountant.epsilonFromRdp(new double[] {2, INF}, new double[] {30, 0.7}, 1e-5);
        assertEquals(0.7, spent.epsilon(), 0.0);
        assertEquals(INF, spent.order());
        // ρ = ∞ at one order is skipped in favour of the others; at every order, ε = ∞.
        spent = RdpAccountant.epsilonFromRdp(new double[] {2, 3}, new double[] {INF, 0.5}, 1e-5);
        assertEquals(3.0, spent.order(), 0.0);
        assertEquals(INF, RdpAccountant.epsilonFromRdp(new double[] {2, 3}, new double[] {INF, INF}, 1e-5)
                .epsilon());
        // A negative value of the formula (large δ, small ρ) is raised to 0; ρ = 0 gives 0.
        assertEquals(0.0, RdpAccountant.epsilonFromRdp(new double[] {63}, new double[] {1e-3}, 0.5).epsilon(), 0.0);
        assertEquals(0.0, RdpAccountant.epsilonFromRdp(new double[] {1.5}, new double[] {0}, 1e-9).epsilon(), 0.0);
    }

    @Test
    void conversionRefusesInvalidArguments() {
        double[] orders = {2, 3};
        assertThrows(IllegalArgumentException.class,
                () -> RdpAccountant.epsilonFromRdp(orders, new double[] {1}, 1e-5));
        assertThrows(IllegalArgumentException.class,
                () -> RdpAccountant.epsilonFromRdp(orders, new double[] {1, Double.NaN}, 1e-5));
        assertThrows(IllegalArgumentException.class,
                () -> RdpAccountant.epsilonFromRdp(orders, new double[] {1, -0.1}, 1e-5));
        assertThrows(IllegalArgumentException.class,
                () -> RdpAccountant.epsilonFromRdp(new double[] {1, 2}, new double[] {1, 1}, 1e-5));
        assertThrows(IllegalArgumentException.class,
                () -> RdpAccountant.epsilonFromRdp(new double[0], new double[0], 1e-5));
        assertThrows(NullPointerException.class, () -> RdpAccountant.epsilonFromRdp(orders, null, 1e-5));
        for (double delta : new double[] {0, 1, -1e-5, 1.5, Double.NaN}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> RdpAccountant.epsilonFromRdp(orders, new double[] {1, 1}, delta));
            assertTrue(e.getMessage().contains("delta") && e.getMessage().contains(String.valueOf(delta)),
                    e.getMessage());
        }
    }

    @Test
    void edgeCasesOfTheAccountant() {
        // Nothing recorded: ε = 0.
        RdpAccountant empty = new RdpAccountant();
        assertEquals(0.0, empty.epsilon(1e-5), 0.0);
        assertEquals(List.of(), empty.history());
        assertEquals(0, empty.totalSteps());
        // dp_accounting rdp_privacy_accountant_test.py, test_zero_poisson_sample: q = 0 with σ = 1 at order
        // 3.14159 → get_epsilon(1e-10) == 0.
        RdpAccountant unsampled = new RdpAccountant(3.14159);
        unsampled.step(1.0, 0.0);
        assertEquals(0.0, unsampled.epsilon(1e-10), 0.0);
        // dp_accounting test_epsilon_non_private_gaussian: GaussianDpEvent(0) at order 3.14159 → ε(0.1) = inf.
        RdpAccountant noiseless = new RdpAccountant(3.14159);
        noiseless.step(0.0, 1.0);
        assertEquals(INF, noiseless.epsilon(0.1));
        // σ = 0 once spoils any amount of noise later.
        RdpAccountant spoiled = new RdpAccountant();
        spoiled.step(0.0, 0.01);
        spoiled.step(5.0, 0.01, 1000);
        assertEquals(INF, spoiled.epsilon(1e-5));
        // Bad δ.
        assertThrows(IllegalArgumentException.class, () -> empty.epsilon(0));
        assertThrows(IllegalArgumentException.class, () -> empty.epsilon(1));
        assertThrows(IllegalArgumentException.class, () -> empty.epsilon(Double.NaN));
    }

    @Test
    void historyMergesOnlyConsecutiveIdenticalSteps() {
        RdpAccountant accountant = new RdpAccountant();
        accountant.step(1.0, 0.01);
        accountant.step(1.0, 0.01, 9);
        accountant.step(2.0, 0.01, 5);
        accountant.step(1.0, 0.01);
        assertEquals(List.of(new SampledGaussianSteps(1.0, 0.01, 10), new SampledGaussianSteps(2.0, 0.01, 5),
                new SampledGaussianSteps(1.0, 0.01, 1)), accountant.history());
        assertEquals(16, accountant.totalSteps());
        assertThrows(UnsupportedOperationException.class, () -> accountant.history().clear());
        // Splitting a run into several calls changes nothing.
        RdpAccountant single = new RdpAccountant();
        single.step(1.0, 0.01, 11);
        single.step(2.0, 0.01, 5);
        double[] expected = single.rdp();
        double[] actual = accountant.rdp();
        for (int k = 0; k < expected.length; k++) {
            assertEquals(expected[k], actual[k], 1e-14 * expected[k]);
        }
        assertEquals(single.epsilon(1e-5), accountant.epsilon(1e-5), 1e-14);
        assertEquals("rdp", accountant.mechanism());
    }

    @Test
    void refusesInvalidStepsAndOrders() {
        RdpAccountant accountant = new RdpAccountant();
        assertThrows(IllegalArgumentException.class, () -> accountant.step(-1, 0.1));
        assertThrows(IllegalArgumentException.class, () -> accountant.step(Double.NaN, 0.1));
        assertThrows(IllegalArgumentException.class, () -> accountant.step(1, 1.1));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> accountant.step(1, 0.1, 0));
        assertTrue(e.getMessage().contains("steps") && e.getMessage().contains("0"), e.getMessage());
        assertEquals(List.of(), accountant.history());
        assertThrows(IllegalArgumentException.class, () -> new RdpAccountant(new double[0]));
        assertThrows(IllegalArgumentException.class, () -> new RdpAccountant(2, 1));
        assertThrows(IllegalArgumentException.class, () -> new RdpAccountant(Double.NaN));
        assertThrows(NullPointerException.class, () -> new RdpAccountant((double[]) null));
    }

    @Test
    void defaultOrdersAreOpacusDefaultAlphas() {
        // pytorch/opacus, opacus/accountants/rdp.py: DEFAULT_ALPHAS = [1 + x / 10.0 for x in range(1, 100)]
        // + list(range(12, 64)).
        double[] orders = RdpAccountant.defaultOrders();
        assertEquals(99 + 52, orders.length);
        assertEquals(1.1, orders[0], 0.0);
        assertEquals(10.9, orders[98], 0.0);
        assertEquals(12.0, orders[99], 0.0);
        assertEquals(63.0, orders[orders.length - 1], 0.0);
        assertArrayEquals(orders, new RdpAccountant().orders(), 0.0);
        orders[0] = 100;
        assertEquals(1.1, RdpAccountant.defaultOrders()[0], 0.0);
    }
}
