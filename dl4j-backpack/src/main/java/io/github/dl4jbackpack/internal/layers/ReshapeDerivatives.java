// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.conf.preprocessor.Cnn3DToFeedForwardPreProcessor;
import org.deeplearning4j.nn.conf.preprocessor.CnnToFeedForwardPreProcessor;
import org.deeplearning4j.nn.conf.preprocessor.FeedForwardToCnnPreProcessor;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.PreprocessorVertex;
import org.deeplearning4j.nn.graph.vertex.impl.ReshapeVertex;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;

/**
 * Vertices that only reshape each example: {@code ReshapeVertex} (in its own order) and a
 * {@code PreprocessorVertex} holding a reshaping preprocessor. The Jacobian transpose reshapes
 * the columns back. The same reshaping preprocessors are supported in front of layers.
 */
public final class ReshapeDerivatives implements VertexDerivatives {

    /** The preprocessors that only reshape examples, in row-major order. */
    public static final List<Class<? extends InputPreProcessor>> RESHAPING_PREPROCESSORS =
            List.of(CnnToFeedForwardPreProcessor.class, FeedForwardToCnnPreProcessor.class,
                    Cnn3DToFeedForwardPreProcessor.class);

    /**
     * @param pre a preprocessor
     * @return why it is not a supported reshape, or null
     */
    public static String unsupportedPreprocessor(InputPreProcessor pre) {
        if (pre instanceof org.deeplearning4j.nn.conf.preprocessor.RnnToFeedForwardPreProcessor
                || pre instanceof org.deeplearning4j.nn.conf.preprocessor.FeedForwardToRnnPreProcessor) {
            // the identity on rows (after global pooling or the last time step), or the flattening of a series'
            // steps into rows and back, which the batch check allows around layers that map every row alone
            return null;
        }
        if (!RESHAPING_PREPROCESSORS.contains(pre.getClass())) {
            return "input preprocessor " + pre.getClass().getSimpleName() + " is not supported (supported: "
                    + "CnnToFeedForwardPreProcessor, FeedForwardToCnnPreProcessor, Cnn3DToFeedForwardPreProcessor)";
        }
        if (pre instanceof Cnn3DToFeedForwardPreProcessor && !((Cnn3DToFeedForwardPreProcessor) pre).isNCDHW()) {
            // DL4J's setInputType labels NCDHW activations NDHWC here; its own backward step then mis-shapes them
            return "Cnn3DToFeedForwardPreProcessor labelled NDHWC is not supported (set one labelled NCDHW, "
                    + "isNCDHW = true, in front of the layer; DL4J's setInputType labels NCDHW activations NDHWC)";
        }
        return null;
    }

    @Override
    public String kindName() {
        return "ReshapeVertex/PreprocessorVertex";
    }

    @Override
    public boolean matches(GraphVertex vertex) {
        return vertex.getClass() == ReshapeVertex.class || vertex.getClass() == PreprocessorVertex.class;
    }

    @Override
    public String secondOrderUnsupported(GraphVertex vertex, boolean hessian) {
        if (vertex instanceof PreprocessorVertex) {
            return unsupportedPreprocessor(((PreprocessorVertex) vertex).getPreProcessor());
        }
        return null;
    }

    @Override
    public INDArray[] inputJacobianTranspose(VertexRecord record, INDArray columns) {
        char order = 'c';
        if (record.vertex() instanceof ReshapeVertex) {
            order = VertexSettings.<Character>read(ReshapeVertex.class, record.vertex(), "order");
        }
        long[] shape = Columns.withRows(columns.size(0), record.inputShape(0));
        return new INDArray[] {columns.dup(order).reshape(order, shape)};
    }
}
