// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.updater.BaseMultiLayerUpdater;
import org.deeplearning4j.nn.updater.UpdaterBlock;
import org.deeplearning4j.util.ModelSerializer;

import java.io.File;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

/**
 * Saves and restores what the curvature-preconditioned updaters carry between iterations (the moving averages of
 * {@link PreconditionedUpdater#withCurvatureDecay}, the curvature and inverses reused between refreshes, the damping
 * as {@link PreconditionedUpdater#withAdaptiveDamping} adapted it), with a
 * model file of DL4J's {@code ModelSerializer}. DL4J's own updater state cannot hold it (DL4J sizes that state
 * from the number of parameters alone), so a checkpoint of a network trained with intervals or averaging is the
 * model file plus this state:
 *
 * <pre>{@code
 * ModelSerializer.writeModel(net, file, true);
 * CurvatureUpdaterState.save(net, file);
 * ...
 * MultiLayerNetwork restored = ModelSerializer.restoreMultiLayerNetwork(file, true);
 * CurvatureUpdaterState.restore(restored, file);
 * BackPackNetwork.extend(restored);   // then restored.fit(...) continues as the original would have
 * }</pre>
 *
 * With the default settings (curvature every iteration, no averaging) nothing carries over and the model file
 * alone resumes training exactly.
 */
public final class CurvatureUpdaterState {

    /** The key of the state among the model file's extra objects ({@code ModelSerializer.listObjectsInFile}). */
    public static final String KEY = "dl4j-backpack-curvature-updater-state";

    private CurvatureUpdaterState() {
    }

    /**
     * Adds the state of the network's curvature updaters to a model file written by
     * {@code ModelSerializer.writeModel}.
     *
     * @param net the network, a {@code MultiLayerNetwork} or {@code ComputationGraph}
     * @param modelFile its model file
     */
    public static void save(Model net, File modelFile) {
        List<List<ParameterCurvature.Saved>> blocks = new ArrayList<>();
        List<Double> dampings = new ArrayList<>();
        for (UpdaterBlock block : blocks(net)) {
            boolean curvature = block.getGradientUpdater() instanceof PreconditionedStep;
            blocks.add(curvature ? ((PreconditionedStep) block.getGradientUpdater()).save() : List.of());
            dampings.add(curvature ? ((PreconditionedStep) block.getGradientUpdater()).damping() : null);
        }
        ModelSerializer.addObjectToFile(modelFile, KEY, new Snapshot(blocks, dampings));
    }

    /**
     * Restores the state {@link #save} added to a model file into a network restored from that file (or built
     * with the same configuration), before training resumes.
     *
     * @param net the restored network
     * @param modelFile the model file
     * @return false if the file has no such state (the updaters then start without one)
     * @throws IllegalArgumentException if the state does not fit the network's updater blocks
     */
    public static boolean restore(Model net, File modelFile) {
        if (!ModelSerializer.listObjectsInFile(modelFile).contains(KEY)) {
            return false;
        }
        Snapshot snapshot = ModelSerializer.getObjectFromFile(modelFile, KEY);
        List<UpdaterBlock> blocks = blocks(net);
        if (blocks.size() != snapshot.blocks().size()) {
            throw new IllegalArgumentException("the saved curvature updater state has " + snapshot.blocks().size()
                    + " updater blocks, the network " + blocks.size() + ": it was saved from another configuration");
        }
        for (int i = 0; i < blocks.size(); i++) {
            UpdaterBlock block = blocks.get(i);
            List<ParameterCurvature.Saved> saved = snapshot.blocks().get(i);
            long length = saved.stream().mapToLong(ParameterCurvature.Saved::length).sum();
            long blockLength = block.getParamOffsetEnd() - block.getParamOffsetStart();
            if (block.getGradientUpdater() instanceof PreconditionedStep step) {
                if (!saved.isEmpty() && length != blockLength) {
                    throw new IllegalArgumentException("the saved curvature updater state of updater block " + i
                            + " covers " + length + " parameters, the network's block " + blockLength
                            + ": it was saved from another configuration");
                }
                step.restore(saved);
                if (snapshot.dampings() != null && snapshot.dampings().get(i) != null) {
                    step.restoreDamping(snapshot.dampings().get(i));
                }
            } else if (!saved.isEmpty()) {
                throw new IllegalArgumentException("updater block " + i + " of the network has no curvature "
                        + "updater, but the saved state has one: it was saved from another configuration");
            }
        }
        return true;
    }

    /**
     * @param net a MultiLayerNetwork or ComputationGraph
     * @return its DL4J updater blocks (empty before DL4J created its updater)
     */
    static List<UpdaterBlock> blocks(Model net) {
        Object updater;
        if (net instanceof MultiLayerNetwork mln) {
            updater = mln.getUpdater();
        } else if (net instanceof ComputationGraph graph) {
            updater = graph.getUpdater();
        } else {
            throw new IllegalArgumentException("expected a MultiLayerNetwork or ComputationGraph, got "
                    + (net == null ? null : net.getClass().getName()));
        }
        return updater instanceof BaseMultiLayerUpdater<?> base ? base.getUpdaterBlocks() : List.of();
    }

    /**
     * The saved state: per DL4J updater block, in the network's order, the state of each of its parameters.
     *
     * @param blocks the blocks' states
     * @param dampings per block, λ as adapted so far (null for a block without a curvature updater; the whole list
     *     null in a state saved before adaptive damping existed)
     */
    record Snapshot(List<List<ParameterCurvature.Saved>> blocks, List<Double> dampings) implements Serializable {
    }
}
