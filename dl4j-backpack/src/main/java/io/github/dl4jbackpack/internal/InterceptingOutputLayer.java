package io.github.dl4jbackpack.internal;

import org.deeplearning4j.nn.api.Layer;
import io.github.dl4jbackpack.internal.losses.LossCurvatures;
import org.deeplearning4j.nn.api.layers.IOutputLayer;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.conf.layers.BaseLayer;
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
    private final int layerCount;

    /**
     * @param underlying the DL4J output layer
     * @param index its index in the network
     * @param interceptor the network's shared state
     */
    public InterceptingOutputLayer(Layer underlying, int index, InputPreProcessor preProcessor,
                                   Interceptor interceptor) {
        super(underlying, index, preProcessor, interceptor);
        this.output = (IOutputLayer) underlying;
        this.layerCount = index + 1;
    }

    @Override
    public Pair<Gradient, INDArray> backpropGradient(INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        INDArray labels = output.getLabels();
        interceptor().beginPass(labels == null ? 0 : labels.size(0), layerCount);
        return super.backpropGradient(epsilon, workspaceMgr);
    }

    @Override
    protected Step delegate(BackwardPass pass, INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        org.deeplearning4j.nn.conf.layers.Layer conf = underlying.conf().getLayer();
        boolean curvature = pass.needsCurvature();
        boolean firstOrder = kind().hasParameters();
        if (!curvature && !firstOrder) {
            return new Step(underlying.backpropGradient(epsilon, workspaceMgr), null, null);
        }
        ILossFunction loss = lossFunction(conf);
        if (curvature) {
            pass.setLoss(LossCurvatures.of(loss, ((BaseLayer) conf).getActivationFn())
                    .orElseThrow(() -> new IllegalStateException("unsupported loss for second order")));
        }
        // an output layer applies its input dropout inside its backward step, before the loss gradient
        RecordingLoss recorder = new RecordingLoss(loss, curvature ? this::liveDropoutMask : null);
        setLossFunction(conf, recorder);
        Pair<Gradient, INDArray> result;
        try {
            result = underlying.backpropGradient(epsilon, workspaceMgr);
        } finally {
            setLossFunction(conf, loss);
        }
        if (firstOrder) {
            computeExtensions(pass, recorder.preActivationGradient(), result.getFirst());
        }
        return new Step(result, recorder.preActivation(), recorder.dropoutMask());
    }

    private static void setLossFunction(org.deeplearning4j.nn.conf.layers.Layer conf, ILossFunction loss) {
        if (conf instanceof BaseOutputLayer) {
            ((BaseOutputLayer) conf).setLossFn(loss);
        } else {
            ((org.deeplearning4j.nn.conf.layers.LossLayer) conf).setLossFn(loss);
        }
    }

    /**
     * @param conf an output or loss layer configuration
     * @return its loss function
     */
    static ILossFunction lossFunction(org.deeplearning4j.nn.conf.layers.Layer conf) {
        if (conf instanceof BaseOutputLayer) {
            return ((BaseOutputLayer) conf).getLossFn();
        }
        if (conf instanceof org.deeplearning4j.nn.conf.layers.LossLayer) {
            return ((org.deeplearning4j.nn.conf.layers.LossLayer) conf).getLossFn();
        }
        throw new IllegalArgumentException("not an output layer: " + conf.getClass().getSimpleName());
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
