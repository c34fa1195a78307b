// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;
import org.nd4j.shade.jackson.databind.JsonNode;
import org.nd4j.shade.jackson.databind.ObjectMapper;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

/**
 * One case of the golden reference data (test resources {@code golden/<name>/}, copied from the
 * project's shared golden data): the network spec, its parameters, batch and reference values
 * computed by the paper's reference implementation.
 */
final class GoldenCase {

    static final List<String> NAMES = List.of("logreg_ce", "mlp_relu_mse", "mlp_sigmoid_tanh_ce", "mlp_tanh_bce",
            "cnn_relu_sigmoid_ce", "cnn_stride_avgpool_mse");

    /** @return the case names, as a JUnit parameter source */
    static java.util.stream.Stream<String> names() {
        return NAMES.stream();
    }

    final String name;
    final JsonNode spec;
    private final Path dir;

    private GoldenCase(String name) {
        this.name = name;
        URL url = GoldenCase.class.getResource("/golden/" + name + "/spec.json");
        if (url == null) {
            throw new IllegalStateException("golden case " + name + " missing from test resources");
        }
        try {
            this.dir = Paths.get(url.toURI()).getParent();
            try (InputStream in = url.openStream()) {
                this.spec = new ObjectMapper().readTree(in);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static GoldenCase load(String name) {
        return new GoldenCase(name);
    }

    /** @return whether a reference file exists */
    boolean has(String file) {
        return Files.exists(dir.resolve(file + ".npy"));
    }

    /** @return a reference array */
    INDArray array(String file) {
        File f = dir.resolve(file + ".npy").toFile();
        if (!f.exists()) {
            throw new IllegalArgumentException("no golden file " + f);
        }
        return Nd4j.createFromNpyFile(f);
    }

    INDArray features() {
        return array("x");
    }

    INDArray labels() {
        return array("y");
    }

    double score() {
        return array("score").getDouble(0);
    }

    int layerCount() {
        return spec.get("layers").size();
    }

    /** @return indices of layers with parameters */
    List<Integer> parametricLayers() {
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < layerCount(); i++) {
            String type = spec.get("layers").get(i).get("type").asText();
            if (!type.endsWith("pool")) {
                out.add(i);
            }
        }
        return out;
    }

    /** @return the DL4J network of the spec, with the golden parameters set */
    MultiLayerNetwork network(DataType dataType) {
        List<Layer> layers = new ArrayList<>();
        for (JsonNode l : spec.get("layers")) {
            layers.add(layer(l));
        }
        JsonNode input = spec.get("input");
        InputType inputType = input.get("kind").asText().equals("feedforward")
                ? InputType.feedForward(input.get("size").asInt())
                : InputType.convolutional(input.get("height").asInt(), input.get("width").asInt(),
                input.get("channels").asInt());
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .dataType(dataType)
                .updater(new Sgd(0.1))
                .list(layers.toArray(new Layer[0]))
                .setInputType(inputType)
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        for (int i : parametricLayers()) {
            net.setParam(i + "_W", array("p_" + i + "_W").castTo(dataType));
            net.setParam(i + "_b", array("p_" + i + "_b").castTo(dataType));
        }
        return net;
    }

    private static Layer layer(JsonNode l) {
        String type = l.get("type").asText();
        switch (type) {
            case "dense":
                return new DenseLayer.Builder().nOut(l.get("nOut").asInt()).activation(activation(l)).build();
            case "output":
                return new OutputLayer.Builder(loss(l.get("loss").asText())).nOut(l.get("nOut").asInt())
                        .activation(activation(l)).build();
            case "conv2d":
                return new ConvolutionLayer.Builder(ints(l.get("kernel"))).stride(ints(l.get("stride")))
                        .padding(ints(l.get("padding"))).nOut(l.get("nOut").asInt()).activation(activation(l))
                        .convolutionMode(ConvolutionMode.Truncate).build();
            case "maxpool":
            case "avgpool":
                return new SubsamplingLayer.Builder(type.equals("maxpool") ? PoolingType.MAX : PoolingType.AVG)
                        .kernelSize(ints(l.get("kernel"))).stride(ints(l.get("stride")))
                        .convolutionMode(ConvolutionMode.Truncate).build();
            default:
                throw new IllegalArgumentException("unknown layer type " + type);
        }
    }

    private static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).asInt();
        }
        return out;
    }

    private static Activation activation(JsonNode l) {
        switch (l.get("activation").asText()) {
            case "relu": return Activation.RELU;
            case "sigmoid": return Activation.SIGMOID;
            case "tanh": return Activation.TANH;
            case "elu": return Activation.ELU;
            case "selu": return Activation.SELU;
            case "leakyrelu": return Activation.LEAKYRELU;
            case "identity": return Activation.IDENTITY;
            case "softmax": return Activation.SOFTMAX;
            default: throw new IllegalArgumentException("unknown activation " + l.get("activation"));
        }
    }

    private static LossFunction loss(String name) {
        switch (name) {
            case "mcxent": return LossFunction.MCXENT;
            case "mse": return LossFunction.MSE;
            case "xent": return LossFunction.XENT;
            default: throw new IllegalArgumentException("unknown loss " + name);
        }
    }

    @Override
    public String toString() {
        return name;
    }
}
