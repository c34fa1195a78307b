// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.LayerSignals;
import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link WeightedGradientSum#replacingGradient()}: DL4J's product for the weight gradient of plain dense layers
 * is skipped (that gradient is zero), and nothing else changes: the other gradients, the gradients handed down to
 * the layers below (seen in their biases), the score and the weighted sums are DL4J's and the ordinary pass's, bit
 * for bit; dense layers with dropout and output layers keep DL4J's own step.
 */
class ReplacedGradientTest {

    /** Dense tanh with bias, dense ReLU without bias, dense with input dropout (DL4J's own step), softmax. */
    static MultiLayerNetwork mlp(DataType dataType, WorkspaceMode mode) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(3).dataType(dataType)
                .updater(new Sgd(0.1)).trainingWorkspaceMode(mode).inferenceWorkspaceMode(mode)
                .list(new DenseLayer.Builder().nOut(7).activation(Activation.TANH).build(),
                        new DenseLayer.Builder().nOut(6).activation(Activation.RELU).hasBias(false).build(),
                        new DenseLayer.Builder().nOut(5).activation(Activation.SIGMOID).dropOut(0.9).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.feedForward(4)).build());
        net.init();
        // biases away from DL4J's zero initialisation
        Nd4j.getRandom().setSeed(11);
        net.setParams(Nd4j.rand(dataType, net.params().shape()).subi(0.5));
        return net;
    }

    static Stream<Arguments> settings() {
        return Stream.of(Arguments.of(DataType.DOUBLE, WorkspaceMode.ENABLED),
                Arguments.of(DataType.DOUBLE, WorkspaceMode.NONE),
                Arguments.of(DataType.FLOAT, WorkspaceMode.ENABLED));
    }

    static double[] bits(INDArray a) {
        return a.dup().data().asDouble();
    }

    @ParameterizedTest(name = "{0}, workspaces {1}")
    @MethodSource("settings")
    void onlyThePlainDenseWeightGradientsAreSkipped(DataType dataType, WorkspaceMode mode) {
        MultiLayerNetwork plain = mlp(dataType, mode);
        MultiLayerNetwork replacing = plain.clone();
        MultiLayerNetwork ordinary = plain.clone();
        INDArray x = TestNets.features(dataType, 1, 9, 4);
        INDArray y = TestNets.labels(dataType, LossFunction.MCXENT, 2, 9, 3);
        // the same dropout mask in both passes
        Nd4j.getRandom().setSeed(5);
        Quantities withSums = BackPackNetwork.extend(ordinary).backward(x, y, new WeightedGradientSum(),
                new BatchL2Grad());
        Nd4j.getRandom().setSeed(5);
        BackPackNetwork extended = BackPackNetwork.extend(replacing);
        Quantities replaced = extended.backward(x, y, WeightedGradientSum.replacingGradient(), new BatchL2Grad());
        Nd4j.getRandom().setSeed(5);
        plain.setInput(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();

        Set<String> skipped = Set.of("0_W", "1_W");
        Map<String, INDArray> expected = plain.gradient().gradientForVariable();
        Map<String, INDArray> actual = replacing.gradient().gradientForVariable();
        assertEquals(expected.keySet(), actual.keySet());
        expected.forEach((key, g) -> {
            if (skipped.contains(key)) {
                assertEquals(0.0, actual.get(key).amaxNumber().doubleValue(), 0.0, key + " is left at zero");
                assertTrue(g.amaxNumber().doubleValue() > 0, key + " is not zero in DL4J's gradient");
            } else {
                assertArrayEquals(bits(g), bits(actual.get(key)), 0.0, key + " is DL4J's");
            }
        });
        assertArrayEquals(bits(ordinary.gradient().gradient()), bits(plain.gradient().gradient()), 0.0,
                "the ordinary extended pass keeps DL4J's gradient");
        assertEquals(plain.score(), replaced.score(), 0.0, "score");

        INDArray weights = Nd4j.linspace(dataType, 0.5, 0.25, 9);
        for (String layer : new String[] {"0", "1", "2", "3"}) {
            for (String param : withSums.params(WeightedGradientSum.class, layer)) {
                assertArrayEquals(bits(withSums.get(WeightedGradientSum.class, layer, param).of(weights)),
                        bits(replaced.get(WeightedGradientSum.class, layer, param).of(weights)), 0.0,
                        layer + "_" + param + " weighted sum");
                assertArrayEquals(bits(withSums.get(BatchL2Grad.class, layer, param)),
                        bits(replaced.get(BatchL2Grad.class, layer, param)), 0.0, layer + "_" + param + " norms");
            }
        }

        // the setting holds for its passes only
        extended.backward(x, y, new WeightedGradientSum());
        assertTrue(replacing.gradient().getGradientFor("0_W").amaxNumber().doubleValue() > 0,
                "an ordinary pass after a replacing one computes DL4J's weight gradient");
    }

    @Test
    void aComputationGraphSkipsItsDenseWeightGradientsToo() {
        ComputationGraphConfiguration conf = new NeuralNetConfiguration.Builder().seed(4).dataType(DataType.DOUBLE)
                .updater(new Sgd(0.1)).graphBuilder().addInputs("in")
                .addLayer("hidden", new DenseLayer.Builder().nIn(4).nOut(6).activation(Activation.TANH).build(), "in")
                .addLayer("out", new OutputLayer.Builder(LossFunction.MCXENT).nIn(6).nOut(3)
                        .activation(Activation.SOFTMAX).build(), "hidden")
                .setOutputs("out").build();
        ComputationGraph plain = new ComputationGraph(conf);
        plain.init();
        ComputationGraph replacing = plain.clone();
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 5, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 5, 3);
        BackPackNetwork.extend(replacing).backward(x, y, WeightedGradientSum.replacingGradient());
        plain.setInputs(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        assertEquals(0.0, replacing.gradient().getGradientFor("hidden_W").amaxNumber().doubleValue(), 0.0);
        for (String key : new String[] {"hidden_b", "out_W", "out_b"}) {
            assertArrayEquals(bits(plain.gradient().getGradientFor(key)),
                    bits(replacing.gradient().getGradientFor(key)), 0.0, key);
        }
    }

    /** A user's extension reading the layer's gradient of W. */
    static final class GradientReader implements Extension<INDArray> {
        @Override
        public Map<String, INDArray> compute(LayerSignals layer) {
            return layer.parameterNames().contains("W") ? Map.of("W", layer.gradient("W")) : Map.of();
        }
    }

    @Test
    void anExtensionReadingTheSkippedGradientIsToldWhy() {
        MultiLayerNetwork net = mlp(DataType.DOUBLE, WorkspaceMode.ENABLED);
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 4, 4);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 4, 3);
        GradientReader gradientReader = new GradientReader();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> bp.backward(x, y, WeightedGradientSum.replacingGradient(), gradientReader));
        assertTrue(e.getMessage().contains("replacingGradient()") && e.getMessage().contains("layer 1"),
                e.getMessage());
        // (the first dense layer reached backwards, layer 1, fails); without the setting, the extension reads DL4J's gradient over N
        Quantities q = bp.backward(x, y, new WeightedGradientSum(), gradientReader);
        assertArrayEquals(bits(net.gradient().getGradientFor("0_W").div(4)),
                bits(q.get(GradientReader.class, "0", "W")), 1e-15);
        assertEquals("WeightedGradientSum(replacing the gradient)", WeightedGradientSum.replacingGradient().name());
    }
}
