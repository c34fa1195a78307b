// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.CurvatureConsumer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.memory.conf.WorkspaceConfiguration;
import org.nd4j.linalg.api.memory.enums.AllocationPolicy;
import org.nd4j.linalg.api.memory.enums.LearningPolicy;
import org.nd4j.linalg.api.memory.enums.ResetPolicy;
import org.nd4j.linalg.api.memory.enums.SpillPolicy;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.GradientUpdater;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The {@code GradientUpdater} of a {@link PreconditionedUpdater}: replaces the gradient of every parameter in its
 * DL4J updater block by {@code α (G + (λ+η) I)⁻¹ (∇L + η θ)}. In a curvature iteration of the rule
 * ({@link PreconditionedUpdater#withCurvatureInterval}) it averages the curvature the extended network handed over
 * into its state; in every iteration it applies the averaged curvature (through cached inverses for a Kronecker
 * rule, recomputed every {@code inverseInterval} iterations). Its state is not in DL4J's updater state (whose size
 * DL4J derives from the number of parameters alone): {@link CurvatureUpdaterState} saves it with a model file.
 * With the defaults (interval 1, decay 0, fixed λ) nothing carries over between iterations. The step's temporaries live in
 * a per-thread ND4J workspace ({@value #WORKSPACE_ID}) as large as the largest step needed, which
 * {@code Nd4j.getWorkspaceManager().destroyAllWorkspacesForCurrentThread()} returns.
 */
final class PreconditionedStep implements GradientUpdater<PreconditionedUpdater>, CurvatureConsumer {

    /** The workspace of the steps' temporaries, per thread, sized by the largest step so far. */
    static final String WORKSPACE_ID = "dl4j-backpack-optim-step";
    private static final WorkspaceConfiguration WORKSPACE = WorkspaceConfiguration.builder()
            .policyAllocation(AllocationPolicy.OVERALLOCATE)
            .overallocationLimit(0.2)
            .policyLearning(LearningPolicy.FIRST_LOOP)
            .policyReset(ResetPolicy.BLOCK_LEFT)
            .policySpill(SpillPolicy.REALLOCATE)
            .build();

    private final PreconditionedUpdater config;
    private final Preconditioner preconditioner;
    private BlockCurvature curvature;
    /** Per parameter of the block, by {@link BlockCurvature.Segment#key()}, in the block's order. */
    private final Map<String, ParameterCurvature> state = new LinkedHashMap<>();
    /** λ as of now: the rule's, or as adapted ({@link PreconditionedUpdater#withAdaptiveDamping}). */
    private double damping;
    /** The iteration whose losses a {@link DampingAdaptation} listener measures (-1: none). */
    private int measuredIteration = -1;
    /** The change of the loss the quadratic model predicts for this block's step in that iteration. */
    private double predictedChange = Double.NaN;

    PreconditionedStep(PreconditionedUpdater config) {
        this.config = config;
        this.preconditioner = config.preconditioner();
        this.damping = config.getDamping();
    }

    @Override
    public PreconditionedUpdater getConfig() {
        return config;
    }

    @Override
    public void acceptCurvature(BlockCurvature curvature) {
        this.curvature = curvature;
    }

    @Override
    public boolean needsCurvature(int iteration) {
        return state.isEmpty() || config.curvatureIteration(iteration);
    }

    @Override
    public void setState(Map<String, INDArray> stateMap, boolean initialize) {
        // the state is not DL4J's: see CurvatureUpdaterState
    }

    @Override
    public Map<String, INDArray> getState() {
        return Map.of();
    }

    @Override
    public void setStateViewArray(INDArray viewArray, long[] gradientShape, char gradientOrder, boolean initialize) {
        // the state is not DL4J's: see CurvatureUpdaterState
    }

    @Override
    public void applyUpdater(INDArray gradient, int iteration, int epoch) {
        // the step's temporaries in a workspace of its own (outside one, ND4J would free them only at a garbage
        // collection, which a training loop rarely triggers); the state is kept outside it
        try (MemoryWorkspace ignored = Nd4j.getWorkspaceManager().getAndActivateWorkspace(WORKSPACE, WORKSPACE_ID)) {
            step(gradient, iteration, epoch);
        }
    }

    private void step(INDArray gradient, int iteration, int epoch) {
        BlockCurvature c = curvature;
        curvature = null;
        boolean fresh = needsCurvature(iteration);
        if (fresh) {
            if (c == null || c.iteration() != iteration) {
                throw new IllegalStateException(config + " needs the curvature of iteration " + iteration + ", which "
                        + "the extended backward pass computes: call BackPackNetwork.extend(net) on the network (after "
                        + "net.init(), and again after restoring it) before training it");
            }
            for (BlockCurvature.Segment s : c.segments()) {
                ParameterCurvature p = state.computeIfAbsent(s.key(), k -> new ParameterCurvature());
                p.segment = s;
                p.average(preconditioner.read(s, c.quantities(), p), config.getCurvatureDecay());
            }
        }
        boolean refresh = iteration % config.inverseInterval() == 0;
        boolean adapting = config.dampingIteration(iteration);
        if (adapting && measuredIteration != iteration) {
            throw new IllegalStateException(config + " adapts its damping in iteration " + iteration + ", which "
                    + "needs the losses before and after the step: add the listener with net.addListeners(new "
                    + "DampingAdaptation()) before training");
        }
        double learningRate = config.getLearningRate(iteration, epoch);
        double predicted = 0;
        for (ParameterCurvature p : state.values()) {
            BlockCurvature.Segment s = p.segment;
            INDArray flat = gradient.get(NDArrayIndex.interval(s.offset(), s.offset() + s.length()));
            // curvature and inverses are float64; they are applied in float32 to the gradient of a float32 network
            DataType type = flat.dataType() == DataType.DOUBLE ? DataType.DOUBLE : DataType.FLOAT;
            INDArray g = flat.dup().reshape(s.order(), s.shape()).castTo(type);
            INDArray step = preconditioner.precondition(g, p, damping, refresh);
            if (adapting) {
                predicted += modelChange(g.castTo(DataType.DOUBLE), step.castTo(DataType.DOUBLE).mul(-learningRate),
                        p);
            }
            flat.assign(Nd4j.toFlattened(s.order(), step).reshape(s.length()).muli(learningRate)
                    .castTo(flat.dataType()));
        }
        predictedChange = adapting ? predicted : Double.NaN;
    }

    /**
     * @param gradient {@code ∇L + ηθ} of one parameter, float64
     * @param delta the parameter's step δ, float64
     * @param p the parameter's state
     * @return {@code (∇L + ηθ)ᵀδ + ½ δᵀ(G + ηI)δ}
     */
    private double modelChange(INDArray gradient, INDArray delta, ParameterCurvature p) {
        double linear = gradient.mul(delta).sumNumber().doubleValue();
        double squared = delta.mul(delta).sumNumber().doubleValue();
        return linear + 0.5 * (preconditioner.curvatureQuadratic(delta, p) + p.segment.l2() * squared);
    }

    /** @return λ as of now */
    double damping() {
        return damping;
    }

    /**
     * Called by {@link DampingAdaptation} before the updater runs: the listener measures this iteration's losses.
     *
     * @param iteration DL4J's iteration count
     * @return whether the rule adapts its damping after this iteration's step
     */
    boolean measure(int iteration) {
        if (!config.dampingIteration(iteration)) {
            return false;
        }
        if (measuredIteration == iteration) {
            throw new IllegalStateException("two DampingAdaptation listeners measure iteration " + iteration + " of "
                    + config + ": λ would be adapted twice; add one listener per network");
        }
        measuredIteration = iteration;
        predictedChange = Double.NaN;
        return true;
    }

    /** @return the change of the loss the quadratic model predicted for this block's last adapting step, or NaN */
    double predictedChange() {
        return predictedChange;
    }

    /**
     * Adapts λ by the reduction ratio of the last adapting step (Levenberg–Marquardt).
     *
     * @param ratio ρ, the actual over the predicted change of the loss; NaN when the loss after the step is not
     *     finite (λ grows)
     */
    void adaptDamping(double ratio) {
        double factor = config.getDampingFactor();
        if (Double.isNaN(ratio) || ratio < 0.25) {
            damping = Math.min(damping / factor, DampingAdaptation.MAX_DAMPING);
        } else if (ratio > 0.75) {
            damping = Math.max(damping * factor, DampingAdaptation.MIN_DAMPING);
        }
        predictedChange = Double.NaN;
    }

    /** @param damping λ from a checkpoint */
    void restoreDamping(double damping) {
        this.damping = damping;
    }

    /** @return the state of every parameter of the block, for a checkpoint (empty before the first step) */
    List<ParameterCurvature.Saved> save() {
        List<ParameterCurvature.Saved> out = new ArrayList<>();
        for (ParameterCurvature p : state.values()) {
            out.add(p.save());
        }
        return out;
    }

    /** @param saved the state {@link #save} returned, replacing this updater's */
    void restore(List<ParameterCurvature.Saved> saved) {
        state.clear();
        for (ParameterCurvature.Saved s : saved) {
            ParameterCurvature p = ParameterCurvature.restore(s);
            state.put(p.segment.key(), p);
        }
    }
}
