// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.samples.data.DataSource;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.DropoutLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Locale;

/**
 * The DeepOBS test problems of the paper (Table 2) as DL4J networks with the exact parameter
 * counts: {@code logreg} (MNIST shape, 7,850), {@code mlp} (DeepOBS's {@code mnist_mlp}, 1,336,610; not one of the
 * paper's problems), {@code 2c2d} (Fashion-MNIST shape, 3,274,634),
 * {@code 3c3d} (CIFAR-10 shape, 895,210) and {@code allcnnc} (CIFAR-100 shape, 1,387,108). All-CNN-C's
 * global average pooling is an average {@code SubsamplingLayer} over the whole 6×6 map. Each problem
 * also carries DeepOBS's training set-up: data set, batch size, epochs and L2 regularisation.
 */
public enum DeepObsNetworks {

    /** Logistic regression, 784 → 10 ({@code mnist_logreg}). */
    LOGREG(7_850, 1, 28, 28, 10, "mnist_logreg", DataSource.MNIST, 128, 50, 0),
    /** Multilayer perceptron, 784 → 1000 → 500 → 100 → 10 with ReLU ({@code mnist_mlp}; not in the paper). */
    MLP(1_336_610, 1, 28, 28, 10, "mnist_mlp", DataSource.MNIST, 128, 100, 0),
    /** Two convolutions, two dense layers ({@code fmnist_2c2d}). */
    C2D2(3_274_634, 1, 28, 28, 10, "fmnist_2c2d", DataSource.FASHION_MNIST, 128, 100, 0),
    /** Three convolutions, three dense layers ({@code cifar10_3c3d}, L2 0.002). */
    C3D3(895_210, 3, 32, 32, 10, "cifar10_3c3d", DataSource.CIFAR10, 128, 100, 0.002),
    /** All-CNN-C ({@code cifar100_allcnnc}, L2 0.0005). */
    ALLCNNC(1_387_108, 3, 32, 32, 100, "cifar100_allcnnc", DataSource.CIFAR100, 256, 350, 0.0005);

    private final long parameters;
    private final int channels;
    private final int height;
    private final int width;
    private final int classes;
    private final String deepObsName;
    private final DataSource dataSource;
    private final int batchSize;
    private final int epochs;
    private final double l2;

    DeepObsNetworks(long parameters, int channels, int height, int width, int classes, String deepObsName,
                    DataSource dataSource, int batchSize, int epochs, double l2) {
        this.parameters = parameters;
        this.channels = channels;
        this.height = height;
        this.width = width;
        this.classes = classes;
        this.deepObsName = deepObsName;
        this.dataSource = dataSource;
        this.batchSize = batchSize;
        this.epochs = epochs;
        this.l2 = l2;
    }

    /**
     * @param name {@code logreg}, {@code mlp}, {@code 2c2d}, {@code 3c3d} or {@code allcnnc}
     * @return the problem
     */
    public static DeepObsNetworks of(String name) {
        switch (name.toLowerCase(Locale.ROOT)) {
            case "logreg":
            case "mnist_logreg":
                return LOGREG;
            case "mlp":
            case "mnist_mlp":
                return MLP;
            case "2c2d":
            case "fmnist_2c2d":
                return C2D2;
            case "3c3d":
            case "cifar10_3c3d":
                return C3D3;
            case "allcnnc":
            case "cifar100_allcnnc":
                return ALLCNNC;
            default:
                throw new IllegalArgumentException("unknown problem " + name + " (logreg, mlp, 2c2d, 3c3d, allcnnc)");
        }
    }

    /** @return the short name used on the command line and in CSV files */
    public String shortName() {
        switch (this) {
            case LOGREG:
                return "logreg";
            case MLP:
                return "mlp";
            case C2D2:
                return "2c2d";
            case C3D3:
                return "3c3d";
            default:
                return "allcnnc";
        }
    }

    /** @return the DeepOBS test problem name, e.g. {@code fmnist_2c2d} */
    public String deepObsName() {
        return deepObsName;
    }

    /** @return the data set DeepOBS trains this network on */
    public DataSource dataSource() {
        return dataSource;
    }

    /** @return DeepOBS's batch size (the paper's App. C.2: 128, 256 for All-CNN-C) */
    public int batchSize() {
        return batchSize;
    }

    /** @return DeepOBS's number of training epochs */
    public int epochs() {
        return epochs;
    }

    /** @return DeepOBS's L2 regularisation strength η of the weights (0 for logreg and 2c2d) */
    public double l2() {
        return l2;
    }

    /** @return whether inputs are flat vectors ({@code [N, 784]}) rather than NCHW images */
    public boolean flatInput() {
        return this == LOGREG || this == MLP;
    }

    /** @return the parameter count of the paper's Table 2 */
    public long parameters() {
        return parameters;
    }

    /** @return the number of classes */
    public int classes() {
        return classes;
    }

    /** @return the shape of a batch of inputs ({@code [N, 784]} for logreg, NCHW otherwise) */
    public long[] inputShape(long batch) {
        return flatInput() ? new long[] {batch, (long) height * width} : new long[] {batch, channels, height, width};
    }

    /**
     * @param dataType parameter type
     * @param updater the updater of every layer
     * @param seed weight initialisation seed
     * @return the initialised network
     */
    public MultiLayerNetwork build(DataType dataType, IUpdater updater, long seed) {
        return build(dataType, updater, seed, 0);
    }

    /**
     * @param dataType parameter type
     * @param updater the updater of every layer
     * @param seed weight initialisation seed
     * @param l2 L2 regularisation strength of the weights (not the biases); {@link #l2()} is DeepOBS's
     * @return the initialised network
     */
    public MultiLayerNetwork build(DataType dataType, IUpdater updater, long seed, double l2) {
        NeuralNetConfiguration.Builder builder = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(dataType)
                .weightInit(WeightInit.XAVIER)
                .updater(updater == null ? new Sgd(0.01) : updater);
        if (l2 > 0) {
            builder.l2(l2);
        }
        NeuralNetConfiguration.ListBuilder list = builder.list(layers());
        MultiLayerConfiguration conf = list
                .setInputType(flatInput() ? InputType.feedForward((long) height * width)
                        : InputType.convolutional(height, width, channels))
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        if (net.numParams() != parameters) {
            throw new IllegalStateException(this + " has " + net.numParams() + " parameters, expected " + parameters);
        }
        return net;
    }

    private Layer[] layers() {
        switch (this) {
            case LOGREG:
                return new Layer[] {softmax(classes)};
            case MLP:
                return new Layer[] {dense(1000), dense(500), dense(100), softmax(classes)};
            case C2D2:
                return new Layer[] {conv(5, 1, 32, ConvolutionMode.Same), pool(2, 2), conv(5, 1, 64, ConvolutionMode.Same),
                        pool(2, 2), dense(1024), softmax(classes)};
            case C3D3:
                return new Layer[] {conv(5, 1, 64, ConvolutionMode.Truncate), pool(3, 2),
                        conv(3, 1, 96, ConvolutionMode.Truncate), pool(3, 2), conv(3, 1, 128, ConvolutionMode.Same),
                        pool(3, 2), dense(512), dense(256), softmax(classes)};
            default:
                return new Layer[] {new DropoutLayer.Builder(0.8).build(),
                        conv(3, 1, 96, ConvolutionMode.Same), conv(3, 1, 96, ConvolutionMode.Same),
                        conv(3, 2, 96, ConvolutionMode.Same), new DropoutLayer.Builder(0.5).build(),
                        conv(3, 1, 192, ConvolutionMode.Same), conv(3, 1, 192, ConvolutionMode.Same),
                        conv(3, 2, 192, ConvolutionMode.Same), new DropoutLayer.Builder(0.5).build(),
                        conv(3, 1, 192, ConvolutionMode.Truncate), conv(1, 1, 192, ConvolutionMode.Truncate),
                        conv(1, 1, classes, ConvolutionMode.Truncate),
                        new SubsamplingLayer.Builder(PoolingType.AVG).kernelSize(6, 6).stride(1, 1).build(),
                        new LossLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).build()};
        }
    }

    private static Layer conv(int kernel, int stride, int filters, ConvolutionMode mode) {
        return new ConvolutionLayer.Builder(kernel, kernel).stride(stride, stride).nOut(filters).convolutionMode(mode)
                .activation(Activation.RELU).build();
    }

    private static Layer pool(int kernel, int stride) {
        return new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(kernel, kernel).stride(stride, stride)
                .convolutionMode(ConvolutionMode.Same).build();
    }

    private static Layer dense(int units) {
        return new DenseLayer.Builder().nOut(units).activation(Activation.RELU).build();
    }

    private static Layer softmax(int classes) {
        return new OutputLayer.Builder(LossFunction.MCXENT).nOut(classes).activation(Activation.SOFTMAX).build();
    }
}
