// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.conf.BackpropType;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.graph.rnn.LastTimeStepVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * An extended recurrent network keeps working exactly as before: step-by-step inference
 * ({@code rnnTimeStep}) with its stored state, clearing that state, and training with truncated
 * backpropagation through time (which carries the state between segments) give bit-identical outputs,
 * parameters and scores, in both workspace modes, for a MultiLayerNetwork and a ComputationGraph.
 */
class RecurrentTransparencyTest {

    private static MultiLayerNetwork network(WorkspaceMode mode, BackpropType backprop) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7)
                .dataType(DataType.DOUBLE).updater(new Adam(1e-2)).trainingWorkspaceMode(mode)
                .inferenceWorkspaceMode(mode)
                .list(new LSTM.Builder().nOut(5).activation(Activation.TANH).build(),
                        new SimpleRnn.Builder().nOut(4).activation(Activation.TANH).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(2).build())
                .backpropType(backprop).tBPTTLength(3)
                .setInputType(InputType.recurrent(3)).build());
        net.init();
        return net;
    }

    private static DataSet batch() {
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 4, 3, 7);
        INDArray y = Nd4j.zeros(DataType.DOUBLE, 4, 2, 7);
        for (int i = 0; i < 4; i++) {
            for (int t = 0; t < 7; t++) {
                y.putScalar(new long[] {i, (i * t) % 2, t}, 1.0);
            }
        }
        INDArray mask = Nd4j.ones(DataType.DOUBLE, 4, 7);
        mask.putScalar(1, 6, 0.0);
        mask.putScalar(1, 5, 0.0);
        return new DataSet(x, y, mask, mask);
    }

    @ParameterizedTest
    @EnumSource(WorkspaceMode.class)
    void stepByStepInferenceIsBitIdentical(WorkspaceMode mode) {
        MultiLayerNetwork plain = network(mode, BackpropType.Standard);
        MultiLayerNetwork extended = plain.clone();
        BackPackNetwork.extend(extended);
        INDArray x = batch().getFeatures();
        for (int t = 0; t < 7; t++) {
            INDArray step = x.get(org.nd4j.linalg.indexing.NDArrayIndex.all(), org.nd4j.linalg.indexing.NDArrayIndex.all(),
                    org.nd4j.linalg.indexing.NDArrayIndex.interval(t, t + 1)).dup();
            assertEquals(plain.rnnTimeStep(step), extended.rnnTimeStep(step), "step " + t);
        }
        assertEquals(plain.rnnGetPreviousState(0), extended.rnnGetPreviousState(0), "stored state");
        plain.rnnClearPreviousState();
        extended.rnnClearPreviousState();
        assertEquals(plain.rnnTimeStep(x), extended.rnnTimeStep(x), "after clearing the state");
    }

    /**
     * A pass with first-order extensions leaves DL4J's gradient and score bit-identical (the library hands an LSTM
     * DL4J's own forward pass for its backward step, computed once): LSTM and SimpleRnn, and an LSTM read at its
     * last step.
     */
    @ParameterizedTest
    @EnumSource(WorkspaceMode.class)
    void gradientOfAPassWithFirstOrderExtensionsIsBitIdentical(WorkspaceMode mode) {
        MultiLayerNetwork lastStep = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7)
                .dataType(DataType.DOUBLE).trainingWorkspaceMode(mode).inferenceWorkspaceMode(mode)
                .list(new LSTM.Builder().nOut(5).activation(Activation.TANH).build(),
                        new org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep(new LSTM.Builder().nOut(4)
                                .activation(Activation.TANH).gateActivationFunction(Activation.HARDSIGMOID).build()),
                        new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(2).build())
                .setInputType(InputType.recurrent(3)).build());
        lastStep.init();
        DataSet batch = batch();
        DataSet perSequence = new DataSet(batch.getFeatures(), batch.getLabels().get(
                org.nd4j.linalg.indexing.NDArrayIndex.all(), org.nd4j.linalg.indexing.NDArrayIndex.all(),
                org.nd4j.linalg.indexing.NDArrayIndex.point(0)).dup(), batch.getFeaturesMaskArray(), null);
        for (MultiLayerNetwork plain : new MultiLayerNetwork[] {network(mode, BackpropType.Standard), lastStep}) {
            DataSet data = plain == lastStep ? perSequence : batch;
            MultiLayerNetwork extended = plain.clone();
            BackPackNetwork bp = BackPackNetwork.extend(extended);
            for (int pass = 0; pass < 2; pass++) {
                plain.setInput(data.getFeatures());
                plain.setLabels(data.getLabels());
                plain.setLayerMaskArrays(data.getFeaturesMaskArray(), data.getLabelsMaskArray());
                plain.computeGradientAndScore();
                plain.clearLayerMaskArrays();
                bp.backward(data, new io.github.dl4jbackpack.extensions.BatchL2Grad(),
                        new io.github.dl4jbackpack.extensions.Variance());
                assertEquals(plain.score(), extended.score(), 0.0, "score, pass " + pass);
                assertEquals(plain.gradient().gradient(), extended.gradient().gradient(), "gradient, pass " + pass);
            }
        }
    }

    /** After a pass with extensions (the library's layers then stand in the network), stored state still works. */
    @ParameterizedTest
    @EnumSource(WorkspaceMode.class)
    void stepByStepInferenceAfterAPassWithExtensionsIsBitIdentical(WorkspaceMode mode) {
        MultiLayerNetwork plain = network(mode, BackpropType.Standard);
        MultiLayerNetwork extended = plain.clone();
        BackPackNetwork bp = BackPackNetwork.extend(extended);
        bp.backward(batch(), new io.github.dl4jbackpack.extensions.BatchL2Grad());
        INDArray x = batch().getFeatures();
        for (int t = 0; t < 7; t++) {
            INDArray step = x.get(org.nd4j.linalg.indexing.NDArrayIndex.all(), org.nd4j.linalg.indexing.NDArrayIndex.all(),
                    org.nd4j.linalg.indexing.NDArrayIndex.interval(t, t + 1)).dup();
            assertEquals(plain.rnnTimeStep(step), extended.rnnTimeStep(step), "step " + t);
        }
        assertEquals(plain.rnnGetPreviousState(0), extended.rnnGetPreviousState(0), "stored state");
    }

    /** Wrapped recurrent layers (DL4J reaches through its wrappers to the recurrent layer's stored state). */
    @ParameterizedTest
    @EnumSource(WorkspaceMode.class)
    void stepByStepInferenceThroughRecurrentWrappersIsBitIdentical(WorkspaceMode mode) {
        MultiLayerNetwork plain = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7)
                .dataType(DataType.DOUBLE).trainingWorkspaceMode(mode).inferenceWorkspaceMode(mode)
                .list(new org.deeplearning4j.nn.conf.layers.util.MaskZeroLayer(new LSTM.Builder().nOut(5)
                                .activation(Activation.TANH).build(), 0.0),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(2).build())
                .setInputType(InputType.recurrent(3)).build());
        plain.init();
        MultiLayerNetwork extended = plain.clone();
        BackPackNetwork.extend(extended).backward(batch(), new io.github.dl4jbackpack.extensions.BatchL2Grad());
        INDArray x = batch().getFeatures();
        for (int t = 0; t < 7; t++) {
            INDArray step = x.get(org.nd4j.linalg.indexing.NDArrayIndex.all(), org.nd4j.linalg.indexing.NDArrayIndex.all(),
                    org.nd4j.linalg.indexing.NDArrayIndex.interval(t, t + 1)).dup();
            assertEquals(plain.rnnTimeStep(step), extended.rnnTimeStep(step), "step " + t);
        }
    }

    @ParameterizedTest
    @EnumSource(WorkspaceMode.class)
    void truncatedBpttTrainingIsBitIdentical(WorkspaceMode mode) {
        MultiLayerNetwork plain = network(mode, BackpropType.TruncatedBPTT);
        MultiLayerNetwork extended = plain.clone();
        BackPackNetwork.extend(extended);
        DataSet batch = batch();
        for (int i = 0; i < 3; i++) {
            plain.fit(batch);
            extended.fit(batch);
            assertEquals(plain.score(), extended.score(), 0.0, "score " + i);
            assertEquals(plain.params(), extended.params(), "parameters after fit " + i);
        }
    }

    /** A graph trained with truncated BPTT (DL4J's graph calls the recurrent layers' truncated backward step). */
    @ParameterizedTest
    @EnumSource(WorkspaceMode.class)
    void graphTruncatedBpttTrainingIsBitIdentical(WorkspaceMode mode) {
        ComputationGraph plain = new ComputationGraph(new NeuralNetConfiguration.Builder().seed(7)
                .dataType(DataType.DOUBLE).updater(new Adam(1e-2)).trainingWorkspaceMode(mode)
                .inferenceWorkspaceMode(mode).graphBuilder()
                .addInputs("in")
                .addLayer("lstm", new LSTM.Builder().nOut(5).activation(Activation.TANH).build(), "in")
                .addLayer("rnn", new SimpleRnn.Builder().nOut(4).activation(Activation.TANH).build(), "lstm")
                .addLayer("out", new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(2)
                        .build(), "rnn")
                .setOutputs("out").setInputTypes(InputType.recurrent(3))
                .backpropType(BackpropType.TruncatedBPTT).tBPTTForwardLength(3).tBPTTBackwardLength(2).build());
        plain.init();
        ComputationGraph extended = plain.clone();
        BackPackNetwork.extend(extended);
        DataSet batch = batch();
        for (int i = 0; i < 3; i++) {
            plain.fit(batch);
            extended.fit(batch);
            assertEquals(plain.score(), extended.score(), 0.0, "score " + i);
            assertEquals(plain.params(), extended.params(), "parameters after fit " + i);
        }
    }

    @ParameterizedTest
    @EnumSource(WorkspaceMode.class)
    void graphStepByStepInferenceIsBitIdentical(WorkspaceMode mode) {
        ComputationGraph plain = new ComputationGraph(new NeuralNetConfiguration.Builder().seed(7)
                .dataType(DataType.DOUBLE).trainingWorkspaceMode(mode).inferenceWorkspaceMode(mode).graphBuilder()
                .addInputs("in")
                .addLayer("lstm", new LSTM.Builder().nOut(5).activation(Activation.TANH).build(), "in")
                .addVertex("last", new LastTimeStepVertex("in"), "lstm")
                .addLayer("out", new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nOut(2)
                        .build(), "last")
                .setOutputs("out").setInputTypes(InputType.recurrent(3)).build());
        plain.init();
        ComputationGraph extended = plain.clone();
        BackPackNetwork.extend(extended);
        INDArray x = batch().getFeatures();
        for (int t = 0; t < 7; t++) {
            INDArray step = x.get(org.nd4j.linalg.indexing.NDArrayIndex.all(), org.nd4j.linalg.indexing.NDArrayIndex.all(),
                    org.nd4j.linalg.indexing.NDArrayIndex.interval(t, t + 1)).dup();
            assertEquals(plain.rnnTimeStep(step)[0], extended.rnnTimeStep(step)[0], "step " + t);
        }
        assertEquals(plain.rnnGetPreviousState("lstm"), extended.rnnGetPreviousState("lstm"), "stored state");
    }
}
