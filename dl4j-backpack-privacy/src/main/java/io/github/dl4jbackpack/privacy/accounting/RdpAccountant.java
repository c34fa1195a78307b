// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * Privacy accounting with Rényi differential privacy: the default accountant, and the one to report guarantees with.
 *
 * <p>Each recorded step is a Poisson-subsampled Gaussian mechanism whose RDP at every order α of a fixed grid is
 * computed exactly ({@link SampledGaussianRdp}); composition adds the RDP of the steps order by order (Mironov 2017,
 * "Rényi Differential Privacy", Proposition 1); the total is converted to (ε, δ)-DP at every order and the smallest ε
 * is reported ({@link #epsilonFromRdp}). This is what Opacus' {@code RDPAccountant} does, with the same default grid
 * {@code 1 + x/10} for x = 1…99 and the integers 12…63.
 *
 * <p>Instances are mutable and not thread-safe. Consecutive steps with the same σ and q are merged into one
 * {@link SampledGaussianSteps} entry of the history, so recording one step per training iteration is cheap; the RDP
 * is computed when ε is asked for.
 */
public final class RdpAccountant implements PrivacyAccountant {

    private static final double[] DEFAULT_ORDERS = defaultGrid();

    private final double[] orders;
    private final List<SampledGaussianSteps> history = new ArrayList<>();

    /** An empty accountant on the default grid of orders ({@link #defaultOrders()}). */
    public RdpAccountant() {
        this.orders = DEFAULT_ORDERS.clone();
    }

    /**
     * An empty accountant on a grid of orders of one's own.
     *
     * @param orders the orders α, at least one, each {@code > 1}: at most 10⁶, or +Infinity (copied)
     * @throws IllegalArgumentException if there is no order or an order is out of range
     * @throws NullPointerException if {@code orders} is null
     */
    public RdpAccountant(double... orders) {
        this.orders = checkOrders(orders).clone();
    }

    /**
     * The default grid of orders, Opacus' {@code RDPAccountant.DEFAULT_ALPHAS}.
     *
     * @return {@code 1 + x/10} for x = 1…99, then 12, 13, …, 63 (151 orders), in a new array
     */
    public static double[] defaultOrders() {
        return DEFAULT_ORDERS.clone();
    }

    /**
     * Converts RDP to (ε, δ)-DP at every order and keeps the smallest ε: at each order α with RDP ρ,
     * <pre>ε(α) = ρ + log((α − 1)/α) − (log δ + log α) / (α − 1)</pre>
     * (Balle, Barthe, Gaboardi, Hsu and Sato 2020, "Hypothesis Testing Interpretations and Rényi Differential
     * Privacy", AISTATS, Theorem 21), the formula of Opacus' {@code get_privacy_spent} and of Google's dp_accounting.
     * Where ρ = 0 the outputs do not depend on the example and ε(α) = 0; where ρ = +Infinity, ε(α) = +Infinity; at
     * α = +Infinity, ε(α) = ρ (the limit of the formula); a negative ε(α) is raised to 0, since (ε, δ)-DP implies
     * (ε', δ)-DP for any ε' &gt; ε. Unlike dp_accounting, ε(α) is not set to 0 when {@code δ ≥ √(1 − e^{−ρ})} (a
     * bound through the KL divergence that only matters for ρ below about δ²), which keeps ε continuous for ρ &gt; 0
     * and so in σ, as {@link NoiseCalibration} needs.
     *
     * @param orders the orders α, at least one, each {@code > 1}: at most 10⁶, or +Infinity
     * @param rdp the RDP at each order, {@code >= 0} or +Infinity, as many as orders
     * @param delta δ in (0, 1)
     * @return the smallest ε and the first order attaining it
     * @throws IllegalArgumentException if an argument is out of range or the lengths differ
     * @throws NullPointerException if an array is null
     */
    public static EpsilonAndOrder epsilonFromRdp(double[] orders, double[] rdp, double delta) {
        checkOrders(orders);
        Objects.requireNonNull(rdp, "rdp");
        if (rdp.length != orders.length) {
            throw new IllegalArgumentException("rdp must have one value per order: " + orders.length
                    + " orders, got " + rdp.length + " values");
        }
        Checks.delta(delta);
        double logDelta = Math.log(delta);
        double bestEpsilon = Double.POSITIVE_INFINITY;
        double bestOrder = orders[0];
        for (int k = 0; k < orders.length; k++) {
            double alpha = orders[k];
            double rho = rdp[k];
            if (!(rho >= 0)) {
                throw new IllegalArgumentException("rdp[" + k + "] must be >= 0 or +Infinity, got " + rho);
            }
            double epsilon;
            if (rho == Double.POSITIVE_INFINITY) {
                epsilon = Double.POSITIVE_INFINITY;
            } else if (rho == 0) {
                epsilon = 0;
            } else if (alpha == Double.POSITIVE_INFINITY) {
                epsilon = rho;
            } else {
                epsilon = Math.max(0, rho + Math.log1p(-1 / alpha) - (logDelta + Math.log(alpha)) / (alpha - 1));
            }
            if (epsilon < bestEpsilon) {
                bestEpsilon = epsilon;
                bestOrder = alpha;
            }
        }
        return new EpsilonAndOrder(bestEpsilon, bestOrder);
    }

    /**
     * {@inheritDoc}
     *
     * <p>Merged into the last entry of the history when σ and q equal its own.
     */
    @Override
    public void step(double noiseMultiplier, double sampleRate, long steps) {
        SampledGaussianSteps entry = new SampledGaussianSteps(noiseMultiplier, sampleRate, steps);
        if (!history.isEmpty()) {
            SampledGaussianSteps last = history.get(history.size() - 1);
            if (last.noiseMultiplier() == noiseMultiplier && last.sampleRate() == sampleRate) {
                history.set(history.size() - 1, new SampledGaussianSteps(noiseMultiplier, sampleRate,
                        Math.addExact(last.steps(), steps)));
                return;
            }
        }
        history.add(entry);
    }

    /**
     * {@inheritDoc}
     *
     * <p>An upper bound: the steps are (ε, δ)-DP for the returned ε.
     */
    @Override
    public double epsilon(double delta) {
        return epsilonAndOrder(delta).epsilon();
    }

    /**
     * The privacy spent so far with the order that gives it (Opacus' {@code get_privacy_spent}).
     *
     * @param delta δ in (0, 1)
     * @return {@link #epsilonFromRdp} of {@link #rdp()}; ε is 0 when nothing was recorded
     * @throws IllegalArgumentException if δ is not in (0, 1)
     */
    public EpsilonAndOrder epsilonAndOrder(double delta) {
        return epsilonFromRdp(orders, rdp(), delta);
    }

    /**
     * The RDP of all steps recorded so far at each order.
     *
     * @return the sum over the history of {@code steps · SampledGaussianRdp.rdp(σ, q, α)}, in the order of
     *     {@link #orders()}, in a new array (all 0 when nothing was recorded)
     */
    public double[] rdp() {
        double[] total = new double[orders.length];
        for (SampledGaussianSteps entry : history) {
            for (int k = 0; k < orders.length; k++) {
                total[k] += entry.steps()
                        * SampledGaussianRdp.rdp(entry.noiseMultiplier(), entry.sampleRate(), orders[k]);
            }
        }
        return total;
    }

    /**
     * The grid of orders.
     *
     * @return the orders given at construction, in a new array
     */
    public double[] orders() {
        return orders.clone();
    }

    @Override
    public List<SampledGaussianSteps> history() {
        return Collections.unmodifiableList(new ArrayList<>(history));
    }

    /** @return {@code "rdp"} */
    @Override
    public String mechanism() {
        return "rdp";
    }

    private static double[] checkOrders(double[] orders) {
        Objects.requireNonNull(orders, "orders");
        if (orders.length == 0) {
            throw new IllegalArgumentException("orders must hold at least one order, got none");
        }
        for (double order : orders) {
            Checks.order(order);
        }
        return orders;
    }

    private static double[] defaultGrid() {
        double[] grid = new double[99 + 52];
        int k = 0;
        for (int x = 1; x <= 99; x++) {
            grid[k++] = 1 + x / 10.0;
        }
        for (int order = 12; order <= 63; order++) {
            grid[k++] = order;
        }
        return grid;
    }
}
