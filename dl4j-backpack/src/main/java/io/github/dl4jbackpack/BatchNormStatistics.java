// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

/**
 * Which statistics a {@code BatchNormalization} layer normalises with in the training passes that
 * compute extensions (docs/math.md#batch-normalization), set with
 * {@link BackPackNetwork#setBatchNormStatistics}.
 */
public enum BatchNormStatistics {
    /**
     * The batch's mean and variance, as DL4J trains (the default): gradients, score and trajectory
     * are DL4J's own. Every example's loss then depends on the whole batch through the layers below a
     * normalisation, so per-example quantities of those layers are refused; the batch-level GGN
     * (DiagGGNExact, DiagGGNMC, KFLR, KFAC) and the Hessian diagonal (DiagHessian) are exact, coupling
     * included, at a cost that grows with N below the first normalisation (every curvature column spans
     * the batch there); the Hessian also pushes one column per element of every normalisation's input.
     */
    BATCH,
    /**
     * The running mean and variance, as in inference, in every pass that computes extensions (passes
     * without extensions are DL4J's own). Each example is then processed independently and every
     * extension is defined; the pass's gradient is that of the network in inference mode, and the
     * running statistics are left unchanged by it. Use it for per-example gradients (norms, variance,
     * differential privacy) of a network whose running statistics are already meaningful, e.g. a
     * pretrained one.
     */
    RUNNING,
    /**
     * The batch's mean and variance in the forward step, as DL4J trains (the running statistics are
     * updated as DL4J updates them), but differentiated as if they were constants: each normalisation
     * is then the affine map {@code γ (x − μ_B)/σ_B + β} of each example, every extension is defined
     * and cheap, and the pass's gradient is that of this approximation: for the layers below a
     * normalisation it lacks the terms through the statistics, so it is not DL4J's gradient, and
     * training with extensions enabled follows another trajectory. An approximation, for users who
     * ask for it by name (docs/math.md#batch-normalization).
     */
    BATCH_AS_CONSTANTS
}
