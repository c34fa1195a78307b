// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.graph.ElementWiseVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.weights.WeightInit;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

/**
 * A small residual network with batch normalisation for CIFAR-10-shaped input ({@code 3×32×32}, 10
 * classes), shaped like ResNet's basic blocks: a 3×3 stem of 16 channels, then three stages of one
 * block each (16, 32, 64 channels; the last two halve the resolution, their shortcut a strided 1×1
 * convolution), each block conv–BN–ReLU–conv–BN plus the shortcut, then ReLU; global average pooling
 * and a softmax output. About 0.07M parameters.
 */
final class ResidualNetwork {

    static final int HEIGHT = 32;
    static final int WIDTH = 32;
    static final int CHANNELS = 3;
    static final int CLASSES = 10;

    private ResidualNetwork() {
    }

    /**
     * @param dataType parameter type
     * @param seed weight seed
     * @return the initialised graph
     */
    static ComputationGraph build(DataType dataType, long seed) {
        ComputationGraphConfiguration.GraphBuilder b = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(dataType)
                .weightInit(WeightInit.RELU)
                .updater(new Sgd(0.05))
                .convolutionMode(ConvolutionMode.Same)
                .graphBuilder()
                .addInputs("in")
                .addLayer("stem", conv(3, 1, 16), "in")
                .addLayer("stem_bn", new BatchNormalization.Builder().build(), "stem")
                .addLayer("stem_relu", relu(), "stem_bn");
        String last = "stem_relu";
        int[] widths = {16, 32, 64};
        int channels = 16;
        for (int stage = 0; stage < widths.length; stage++) {
            int stride = stage == 0 ? 1 : 2;
            String p = "s" + stage;
            b.addLayer(p + "_c1", conv(3, stride, widths[stage]), last)
                    .addLayer(p + "_bn1", new BatchNormalization.Builder().build(), p + "_c1")
                    .addLayer(p + "_r1", relu(), p + "_bn1")
                    .addLayer(p + "_c2", conv(3, 1, widths[stage]), p + "_r1")
                    .addLayer(p + "_bn2", new BatchNormalization.Builder().build(), p + "_c2");
            String shortcut = last;
            if (stride != 1 || channels != widths[stage]) {
                b.addLayer(p + "_proj", conv(1, stride, widths[stage]), last)
                        .addLayer(p + "_proj_bn", new BatchNormalization.Builder().build(), p + "_proj");
                shortcut = p + "_proj_bn";
            }
            b.addVertex(p + "_add", new ElementWiseVertex(ElementWiseVertex.Op.Add), p + "_bn2", shortcut)
                    .addLayer(p + "_out", relu(), p + "_add");
            last = p + "_out";
            channels = widths[stage];
        }
        b.addLayer("pool", new GlobalPoolingLayer.Builder(PoolingType.AVG).build(), last)
                .addLayer("output", new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX)
                        .nOut(CLASSES).build(), "pool")
                .setOutputs("output")
                .setInputTypes(InputType.convolutional(HEIGHT, WIDTH, CHANNELS));
        ComputationGraph graph = new ComputationGraph(b.build());
        graph.init();
        return graph;
    }

    private static ConvolutionLayer conv(int kernel, int stride, int filters) {
        return new ConvolutionLayer.Builder(kernel, kernel).stride(stride, stride).nOut(filters)
                .activation(Activation.IDENTITY).build();
    }

    private static ActivationLayer relu() {
        return new ActivationLayer.Builder().activation(Activation.RELU).build();
    }
}
