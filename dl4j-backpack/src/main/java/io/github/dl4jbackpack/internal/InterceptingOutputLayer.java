package io.github.dl4jbackpack.internal;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.layers.IOutputLayer;
import org.deeplearning4j.nn.conf.layers.BaseOutputLayer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.api.DataSet;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;
import org.nd4j.linalg.lossfunctions.ILossFunction;

import java.util.List;

/**
 * The wrapper of a network's output layer: starts a backward pass with the active extensions, takes
 * the per-example loss gradient from the loss function, and publishes the pass's results when DL4J
 * computes the training score right after backpropagation.
 */
public final class InterceptingOutputLayer extends InterceptingLayer implements IOutputLayer {

    private final IOutputLayer output;

    /**
     * @param underlying the DL4J output layer
     * @param index its index in the network
     * @param interceptor the network's shared state
     */
    public InterceptingOutputLayer(Layer underlying, int index, Interceptor interceptor) {
        super(underlying, index, interceptor);
        this.output = (IOutputLayer) underlying;
    }

    @Override
    public Pair<Gradient, INDArray> backpropGradient(INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        INDArray labels = output.getLabels();
        interceptor().beginPass(labels == null ? 0 : labels.size(0));
        return super.backpropGradient(epsilon, workspaceMgr);
    }

    @Override
    protected Pair<Gradient, INDArray> interceptedBackprop(BackwardPass pass, INDArray epsilon,
                                                           LayerWorkspaceMgr workspaceMgr) {
        requireSupportedState();
        if (!kind().hasParameters()) {
            return underlying.backpropGradient(epsilon, workspaceMgr);
        }
        BaseOutputLayer conf = (BaseOutputLayer) underlying.conf().getLayer();
        ILossFunction loss = conf.getLossFn();
        RecordingLoss recorder = new RecordingLoss(loss);
        conf.setLossFn(recorder);
        Pair<Gradient, INDArray> result;
        try {
            result = underlying.backpropGradient(epsilon, workspaceMgr);
        } finally {
            conf.setLossFn(loss);
        }
        computeExtensions(pass, recorder.preActivationGradient(), result.getFirst());
        return result;
    }

    @Override
    public double computeScore(double fullNetworkRegScore, boolean training, LayerWorkspaceMgr workspaceMgr) {
        double score = output.computeScore(fullNetworkRegScore, training, workspaceMgr);
        if (training) {
            interceptor().finishPass(score);
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
