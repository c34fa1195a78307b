// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.conf.BackpropType;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.updater.UpdaterBlock;
import org.deeplearning4j.optimize.api.BaseTrainingListener;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.MultiDataSet;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.List;

/**
 * The training listener that measures what {@link PreconditionedUpdater#withAdaptiveDamping} needs: in an iteration
 * in which a curvature rule of the network adapts its damping, DL4J's score of the iteration's batch in inference
 * mode before the step (in {@code onGradientCalculation}, after DL4J's backward pass and before its updater) and
 * after it (in {@code iterationDone}), and from them and the rules' predicted changes the reduction ratio
 * {@code ρ = (L(θ+δ) − L(θ)) / Σ M(δ)} that sets each rule's λ (docs/math.md#adaptive-damping). The sum runs over
 * the network's curvature rules that adapt in that iteration; parameters with another updater change the loss too
 * but are not in the model, so the ratio is meant for a network whose parameters one rule updates.
 *
 * <pre>{@code
 * .updater(KroneckerUpdater.kfac(0.01, 1e-2, 1).withAdaptiveDamping(5))
 * ...
 * BackPackNetwork.extend(net);
 * net.addListeners(new DampingAdaptation());
 * }</pre>
 *
 * In the other iterations it does nothing. The two extra forward passes run without dropout and change neither the
 * parameters nor any random state, so the trajectory differs from training with a fixed λ only through λ. Truncated
 * backpropagation through time is refused (the score of a whole sequence is not the loss of a segment's step).
 * One listener serves one network; it is not thread-safe.
 */
public final class DampingAdaptation extends BaseTrainingListener {

    /** The smallest λ the adaptation reaches. */
    public static final double MIN_DAMPING = 1e-8;
    /** The largest λ the adaptation reaches. */
    public static final double MAX_DAMPING = 1e8;

    private static final Logger log = LoggerFactory.getLogger(DampingAdaptation.class);

    /** The rules' steps adapting in the current iteration, with the batch and the loss before the step. */
    private List<PreconditionedStep> adapting = List.of();
    private DataSet batch;
    private MultiDataSet graphBatch;
    private double lossBefore;
    private double lastRatio = Double.NaN;
    private double damping = Double.NaN;

    /** A listener for one network. */
    public DampingAdaptation() {
        // no settings: the rules carry them
    }

    @Override
    public void onGradientCalculation(Model model) {
        List<PreconditionedStep> steps = new ArrayList<>();
        int iteration = iterationOf(model);
        for (UpdaterBlock block : CurvatureUpdaterState.blocks(model)) {
            if (block.getGradientUpdater() instanceof PreconditionedStep step && step.measure(iteration)) {
                steps.add(step);
            }
        }
        adapting = steps;
        if (steps.isEmpty()) {
            return;
        }
        if (model instanceof MultiLayerNetwork net) {
            if (net.getLayerWiseConfigurations().getBackpropType() == BackpropType.TruncatedBPTT) {
                throw new IllegalStateException("adaptive damping does not support truncated backpropagation through "
                        + "time: the score of a whole sequence is not the loss of one segment's step; use a fixed λ");
            }
            INDArray labelMask = net.getOutputLayer().getMaskArray();
            batch = new DataSet(net.getInput(), net.getLabels(), net.getMaskArray(), labelMask);
        } else {
            ComputationGraph graph = (ComputationGraph) model;
            if (graph.getConfiguration().getBackpropType() == BackpropType.TruncatedBPTT) {
                throw new IllegalStateException("adaptive damping does not support truncated backpropagation through "
                        + "time: the score of a whole sequence is not the loss of one segment's step; use a fixed λ");
            }
            INDArray[] labels = labelsOf(graph);
            graphBatch = new MultiDataSet(graph.getInputs(), labels, graph.getInputMaskArrays(),
                    graph.getLabelMaskArrays());
        }
        lossBefore = score(model);
    }

    @Override
    public void iterationDone(Model model, int iteration, int epoch) {
        if (adapting.isEmpty()) {
            return;
        }
        double lossAfter = score(model);
        double predicted = 0;
        for (PreconditionedStep step : adapting) {
            predicted += step.predictedChange();
        }
        double actual = lossAfter - lossBefore;
        if (!Double.isFinite(lossAfter)) {
            lastRatio = Double.NaN;
            adapting.forEach(s -> s.adaptDamping(Double.NaN));
        } else if (predicted < 0) {
            lastRatio = actual / predicted;
            adapting.forEach(s -> s.adaptDamping(lastRatio));
        } else if (predicted > 0) {
            // the step overshoots even the model's own minimum: shorter steps are needed
            lastRatio = Double.NaN;
            adapting.forEach(s -> s.adaptDamping(Double.NaN));
        } else {
            // a zero step: nothing to compare
            lastRatio = Double.NaN;
        }
        damping = adapting.get(0).damping();
        log.debug("Iteration {}: loss {} -> {}, predicted change {}, ratio {}, damping now {}", iteration, lossBefore,
                lossAfter, predicted, lastRatio, damping);
        adapting = List.of();
        batch = null;
        graphBatch = null;
    }

    /** DL4J 1.0.0-M2.1 has no getter for a graph's labels, and its output layers no longer hold them here. */
    private static final Field GRAPH_LABELS = graphLabelsField();

    private static Field graphLabelsField() {
        try {
            Field f = ComputationGraph.class.getDeclaredField("labels");
            f.setAccessible(true);
            return f;
        } catch (NoSuchFieldException | RuntimeException e) {
            return null;
        }
    }

    private static INDArray[] labelsOf(ComputationGraph graph) {
        try {
            INDArray[] labels = GRAPH_LABELS == null ? null : (INDArray[]) GRAPH_LABELS.get(graph);
            if (labels != null) {
                return labels;
            }
        } catch (IllegalAccessException e) {
            // reported below
        }
        throw new IllegalStateException("adaptive damping could not read the labels of the graph's training batch "
                + "(ComputationGraph.labels, DL4J 1.0.0-M2.1): this DL4J version is not supported; use a fixed λ");
    }

    private double score(Model model) {
        return model instanceof MultiLayerNetwork net ? net.score(batch, false)
                : ((ComputationGraph) model).score(graphBatch, false);
    }

    private static int iterationOf(Model model) {
        return model instanceof MultiLayerNetwork net ? net.getIterationCount()
                : ((ComputationGraph) model).getIterationCount();
    }

    /**
     * @return ρ of the last adaptation: the loss's change over the change the rules' quadratic model predicted; NaN
     *     before the first, when the loss after the step was not finite or the model itself predicted an increase
     *     (λ then grew), or when the step was zero (λ then stayed)
     */
    public double lastReductionRatio() {
        return lastRatio;
    }

    /** @return λ after the last adaptation, of the first adapting updater block; NaN before the first */
    public double damping() {
        return damping;
    }
}
