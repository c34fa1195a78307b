package io.github.dl4jbackpack.samples;

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
 * counts: {@code logreg} (MNIST shape, 7,850), {@code 2c2d} (Fashion-MNIST shape, 3,274,634),
 * {@code 3c3d} (CIFAR-10 shape, 895,210) and {@code allcnnc} (CIFAR-100 shape, 1,387,108). All-CNN-C's
 * global average pooling is an average {@code SubsamplingLayer} over the whole 6×6 map.
 */
public enum DeepObsNetworks {

    /** Logistic regression, 784 → 10. */
    LOGREG(7_850, 1, 28, 28, 10),
    /** Two convolutions, two dense layers (Fashion-MNIST). */
    C2D2(3_274_634, 1, 28, 28, 10),
    /** Three convolutions, three dense layers (CIFAR-10). */
    C3D3(895_210, 3, 32, 32, 10),
    /** All-CNN-C (CIFAR-100). */
    ALLCNNC(1_387_108, 3, 32, 32, 100);

    private final long parameters;
    private final int channels;
    private final int height;
    private final int width;
    private final int classes;

    DeepObsNetworks(long parameters, int channels, int height, int width, int classes) {
        this.parameters = parameters;
        this.channels = channels;
        this.height = height;
        this.width = width;
        this.classes = classes;
    }

    /**
     * @param name {@code logreg}, {@code 2c2d}, {@code 3c3d} or {@code allcnnc}
     * @return the problem
     */
    public static DeepObsNetworks of(String name) {
        switch (name.toLowerCase(Locale.ROOT)) {
            case "logreg":
            case "mnist_logreg":
                return LOGREG;
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
                throw new IllegalArgumentException("unknown problem " + name + " (logreg, 2c2d, 3c3d, allcnnc)");
        }
    }

    /** @return the short name used on the command line and in CSV files */
    public String shortName() {
        switch (this) {
            case LOGREG:
                return "logreg";
            case C2D2:
                return "2c2d";
            case C3D3:
                return "3c3d";
            default:
                return "allcnnc";
        }
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
        return this == LOGREG ? new long[] {batch, (long) height * width} : new long[] {batch, channels, height, width};
    }

    /**
     * @param dataType parameter type
     * @param updater the updater of every layer
     * @param seed weight initialisation seed
     * @return the initialised network
     */
    public MultiLayerNetwork build(DataType dataType, IUpdater updater, long seed) {
        NeuralNetConfiguration.ListBuilder list = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .dataType(dataType)
                .weightInit(WeightInit.XAVIER)
                .updater(updater == null ? new Sgd(0.01) : updater)
                .list(layers());
        MultiLayerConfiguration conf = list
                .setInputType(this == LOGREG ? InputType.feedForward((long) height * width)
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
