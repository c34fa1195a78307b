// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.optim;

import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.CurvatureConsumer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.GradientUpdater;

import java.util.Map;

/**
 * The {@code GradientUpdater} of a {@link PreconditionedUpdater}: replaces the gradient of every
 * parameter in its DL4J updater block by {@code α (G + (λ+η) I)⁻¹ (∇L + η θ)} using the curvature
 * the extended network handed over for the current iteration. Stateless: nothing carries over
 * between iterations, so checkpoints resume exactly (Monte Carlo rules: given the same state of ND4J's
 * random generator).
 */
final class PreconditionedStep implements GradientUpdater<PreconditionedUpdater>, CurvatureConsumer {

    private final PreconditionedUpdater config;
    private BlockCurvature curvature;

    PreconditionedStep(PreconditionedUpdater config) {
        this.config = config;
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
    public void setState(Map<String, INDArray> stateMap, boolean initialize) {
        // stateless
    }

    @Override
    public Map<String, INDArray> getState() {
        return Map.of();
    }

    @Override
    public void setStateViewArray(INDArray viewArray, long[] gradientShape, char gradientOrder, boolean initialize) {
        // stateless
    }

    @Override
    public void applyUpdater(INDArray gradient, int iteration, int epoch) {
        BlockCurvature c = curvature;
        curvature = null;
        if (c == null || c.iteration() != iteration) {
            throw new IllegalStateException(config + " needs the curvature of each training iteration, which the "
                    + "extended backward pass computes: call BackPackNetwork.extend(net) on the network (after "
                    + "net.init(), and again after restoring it) before training it");
        }
        double learningRate = config.getLearningRate(iteration, epoch);
        for (BlockCurvature.Segment s : c.segments()) {
            INDArray flat = gradient.get(NDArrayIndex.interval(s.offset(), s.offset() + s.length()));
            INDArray g = flat.dup().reshape(s.order(), s.shape()).castTo(DataType.DOUBLE);
            INDArray step = config.preconditioner().precondition(g, s, c.quantities(), config.getDamping());
            flat.assign(Nd4j.toFlattened(s.order(), step).reshape(s.length()).muli(learningRate)
                    .castTo(flat.dataType()));
        }
    }
}
