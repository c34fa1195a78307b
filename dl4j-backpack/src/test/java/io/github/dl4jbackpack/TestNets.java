// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.preprocessor.Cnn3DToFeedForwardPreProcessor;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Random;

/** Builders for test networks and matching random data. */
final class TestNets {

    private TestNets() {
    }

    /**
     * @param dataType parameter type
     * @param input the input type (sets preprocessors and nIn)
     * @param workspaces workspace mode for training and inference
     * @param seed seed for weights (which are then re-drawn by {@link #randomiseParameters})
     * @param layers the layers
     * @return an initialised network with random parameters
     */
    static MultiLayerNetwork build(DataType dataType, InputType input, WorkspaceMode workspaces, long seed,
                                   Layer... layers) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(dataType)
                .weightInit(WeightInit.XAVIER)
                .updater(new Sgd(0.1))
                .trainingWorkspaceMode(workspaces)
                .inferenceWorkspaceMode(workspaces)
                .list(layers)
                .setInputType(input)
                .build();
        relabelVolumeFlattening(conf, input);
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        randomiseParameters(net, seed);
        return net;
    }

    /**
     * DL4J 1.0.0-M2.1's shape inference labels the output of 3D layers NDHWC whatever their format, so
     * the flattening it inserts in front of a dense layer expects channels last and fails on (or, when
     * sizes coincide, mis-shapes the gradient of) NCDHW activations: for an NCDHW input, the flattenings
     * are labelled NCDHW, as a user configuring such a network has to.
     */
    private static void relabelVolumeFlattening(MultiLayerConfiguration conf, InputType input) {
        if (!(input instanceof InputType.InputTypeConvolutional3D)
                || ((InputType.InputTypeConvolutional3D) input).getDataFormat()
                != org.deeplearning4j.nn.conf.layers.Convolution3D.DataFormat.NCDHW) {
            return;
        }
        conf.getInputPreProcessors().replaceAll((layer, pre) -> {
            if (!(pre instanceof Cnn3DToFeedForwardPreProcessor)) {
                return pre;
            }
            Cnn3DToFeedForwardPreProcessor p = (Cnn3DToFeedForwardPreProcessor) pre;
            return new Cnn3DToFeedForwardPreProcessor(p.getInputDepth(), p.getInputHeight(), p.getInputWidth(),
                    p.getNumChannels(), true);
        });
    }

    static MultiLayerNetwork build(DataType dataType, InputType input, Layer... layers) {
        return build(dataType, input, WorkspaceMode.ENABLED, 12345, layers);
    }

    /**
     * Seeds ND4J's generator reproducibly: in ND4J 1.0.0-M2.1 {@code setSeed(0)} does not reproduce
     * its draws (any other seed does), so test seeds are shifted away from 0.
     */
    static void seed(long seed) {
        Nd4j.getRandom().setSeed(seed + 1_000_003L);
    }

    /** Draws every parameter (biases too) from N(0, 0.5²), so no gradient is trivially zero. */
    static void randomiseParameters(MultiLayerNetwork net, long seed) {
        INDArray params = net.params();
        seed(seed);
        params.assign(Nd4j.randn(params.dataType(), params.shape()).muli(0.5));
    }

    /** @return features of the given shape, N(0,1) entries */
    static INDArray features(DataType dataType, long seed, long... shape) {
        seed(seed);
        return Nd4j.randn(dataType, shape);
    }

    /** @return labels suitable for the loss: one-hot, binary, ±1, distributions or reals */
    static INDArray labels(DataType dataType, LossFunction loss, long seed, long n, long nOut) {
        Random r = new Random(seed);
        INDArray y = Nd4j.zeros(dataType, n, nOut);
        for (int i = 0; i < n; i++) {
            switch (loss) {
                case MCXENT:
                case NEGATIVELOGLIKELIHOOD:
                    y.putScalar(i, r.nextInt((int) nOut), 1.0);
                    break;
                case XENT:
                    for (int j = 0; j < nOut; j++) {
                        y.putScalar(i, j, r.nextBoolean() ? 1.0 : 0.0);
                    }
                    break;
                case HINGE:
                case SQUARED_HINGE:
                    for (int j = 0; j < nOut; j++) {
                        y.putScalar(i, j, r.nextBoolean() ? 1.0 : -1.0);
                    }
                    break;
                case KL_DIVERGENCE:
                    double sum = 0;
                    double[] p = new double[(int) nOut];
                    for (int j = 0; j < nOut; j++) {
                        p[j] = 0.1 + r.nextDouble();
                        sum += p[j];
                    }
                    for (int j = 0; j < nOut; j++) {
                        y.putScalar(i, j, p[j] / sum);
                    }
                    break;
                case POISSON:
                    for (int j = 0; j < nOut; j++) {
                        y.putScalar(i, j, r.nextInt(4));
                    }
                    break;
                default:
                    for (int j = 0; j < nOut; j++) {
                        y.putScalar(i, j, r.nextGaussian());
                    }
            }
        }
        return y;
    }
}
