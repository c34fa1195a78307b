// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.layers.convolution.SpaceToBatch;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * DL4J's {@code SpaceToBatchLayer}, refused by every extension: it moves the b₀·b₁ spatial blocks of each
 * example into the batch axis (libnd4j's {@code space_to_batch}: N·b₀·b₁ output rows), so the rows below it
 * are not the examples of the batch. Per-example
 * quantities of the layers after it would be per block, the loss DL4J averages is over the N·b₀·b₁ rows,
 * and in a {@code MultiLayerNetwork} the labels cannot have the features' N rows.
 */
public final class SpaceToBatchDerivatives implements LayerDerivatives {

    static final String REASON = "it moves spatial blocks of each example into the batch axis, so the rows after it "
            + "are blocks of examples, not examples: per-example quantities and the curvature of the per-example "
            + "losses are not defined there";

    @Override
    public String kindName() {
        return "SpaceToBatchLayer";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer.getClass() == SpaceToBatch.class;
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        return REASON;
    }

    @Override
    public boolean hasParameters() {
        return false;
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        throw new UnsupportedOperationException(kindName() + ": " + REASON);
    }
}
