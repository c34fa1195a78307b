// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.internal.graph.Node;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.layers.IOutputLayer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.api.DataSet;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;

import java.util.List;

/**
 * The wrapper of a network output layer: its backward step starts an extended pass (or joins the
 * pass of the other outputs of a graph), and the training score DL4J computes right after
 * backpropagation completes it.
 */
public final class InterceptingOutputLayer extends InterceptingLayer implements IOutputLayer {

    private final transient IOutputLayer output;

    /**
     * @param underlying the DL4J output layer
     * @param node its node
     * @param interceptor the network's shared state
     */
    public InterceptingOutputLayer(Layer underlying, Node node, Interceptor interceptor) {
        super(underlying, node, interceptor);
        this.output = (IOutputLayer) underlying;
    }

    @Override
    public Pair<Gradient, INDArray> backpropGradient(INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        INDArray labels = output.getLabels();
        interceptor().outputBackward(node(), labels == null ? 0 : labels.size(0));
        return super.backpropGradient(epsilon, workspaceMgr);
    }

    @Override
    public double computeScore(double fullNetworkRegScore, boolean training, LayerWorkspaceMgr workspaceMgr) {
        double score = output.computeScore(fullNetworkRegScore, training, workspaceMgr);
        if (training) {
            interceptor().scoreComputed(node(), score);
        }
        return score;
    }

    @Override
    public boolean needsLabels() {
        return output.needsLabels();
    }

    @Override
    public void setLabels(INDArray labels) {
        output.setLabels(labels);
    }

    @Override
    public INDArray getLabels() {
        return output.getLabels();
    }

    @Override
    public INDArray computeScoreForExamples(double fullNetworkRegScore, LayerWorkspaceMgr workspaceMgr) {
        return output.computeScoreForExamples(fullNetworkRegScore, workspaceMgr);
    }

    @Override
    public double f1Score(DataSet data) {
        return output.f1Score(data);
    }

    @Override
    public double f1Score(INDArray examples, INDArray labels) {
        return output.f1Score(examples, labels);
    }

    @Override
    @Deprecated
    public int numLabels() {
        return output.numLabels();
    }

    @Override
    public void fit(DataSetIterator iter) {
        output.fit(iter);
    }

    @Override
    public int[] predict(INDArray examples) {
        return output.predict(examples);
    }

    @Override
    public List<String> predict(DataSet dataSet) {
        return output.predict(dataSet);
    }

    @Override
    public void fit(INDArray examples, INDArray labels) {
        output.fit(examples, labels);
    }

    @Override
    public void fit(DataSet data) {
        output.fit(data);
    }

    @Override
    public void fit(INDArray examples, int[] labels) {
        output.fit(examples, labels);
    }
}
