// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.internal.graph.Topology;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import io.github.dl4jbackpack.internal.layers.RecordedLayer;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.Cnn3DLossLayer;
import org.deeplearning4j.nn.conf.layers.Convolution3D;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.Deconvolution2D;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.Subsampling3DLayer;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.conf.layers.Upsampling2D;
import org.deeplearning4j.nn.conf.layers.Upsampling3D;
import org.deeplearning4j.nn.conf.layers.ZeroPadding3DLayer;
import org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer;
import org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D;
import org.deeplearning4j.nn.conf.layers.convolutional.Cropping3D;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import java.util.stream.Stream;

import static io.github.dl4jbackpack.Reference.assertClose;

/**
 * The contract of every layer kind's input Jacobian (the parameter-free kinds and batch normalisation
 * with the batch's statistics), one entry per kind and setting: its input
 * Jacobian-transpose product of several factor columns at once equals DL4J's own backward step of
 * the layer applied to each column separately (the layer's {@code backpropGradient} with that column
 * as the gradient at its output), in float64 and float32. Adding a kind adds an entry here.
 */
class LayerKindContractTest {

    record Entry(String name, Supplier<Layer> layer, InputType input) {
        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Entry> entries() {
        InputType cnn = InputType.convolutional(6, 5, 2);
        InputType cnn3d = InputType.convolutional3D(Convolution3D.DataFormat.NCDHW, 4, 5, 4, 2);
        return Stream.of(
                new Entry("max pooling 2x2", () -> new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2)
                        .stride(2, 2).build(), cnn),
                new Entry("average pooling 3x3 stride 1 same", () -> new SubsamplingLayer.Builder(PoolingType.AVG)
                        .kernelSize(3, 3).stride(1, 1).convolutionMode(ConvolutionMode.Same).build(), cnn),
                new Entry("p-norm pooling", () -> new SubsamplingLayer.Builder(PoolingType.PNORM).pnorm(2)
                        .kernelSize(2, 2).stride(1, 1).build(), cnn),
                new Entry("global max pooling", () -> new GlobalPoolingLayer.Builder(PoolingType.MAX).build(), cnn),
                new Entry("global average pooling", () -> new GlobalPoolingLayer.Builder(PoolingType.AVG).build(), cnn),
                new Entry("global sum pooling, not collapsed", () -> new GlobalPoolingLayer.Builder(PoolingType.SUM)
                        .collapseDimensions(false).build(), cnn),
                new Entry("zero padding", () -> new ZeroPaddingLayer.Builder(1, 2, 0, 1).build(), cnn),
                new Entry("cropping", () -> new Cropping2D.Builder(1, 0, 2, 1).build(), cnn),
                new Entry("local response normalisation", () -> new org.deeplearning4j.nn.conf.layers
                        .LocalResponseNormalization.Builder().k(1.5).n(3).alpha(0.3).beta(0.75).build(), cnn),
                new Entry("upsampling 2x3", () -> new Upsampling2D.Builder().size(new int[] {2, 3}).build(), cnn),
                // a layer with parameters and the identity activation: its product is at the pre-activation
                new Entry("deconvolution 3x3 stride 2 same", () -> new Deconvolution2D.Builder(3, 3).nOut(3)
                        .stride(2, 2).convolutionMode(ConvolutionMode.Same).activation(Activation.IDENTITY).build(), cnn),
                new Entry("deconvolution 2x3 stride 2x1 padding 1x0 dilation 1x2, no bias", () -> new Deconvolution2D
                        .Builder(2, 3).nOut(3).stride(2, 1).padding(1, 0).dilation(1, 2).hasBias(false)
                        .activation(Activation.IDENTITY).build(), cnn),
                // with the batch's statistics, each column spans the batch: DL4J's backward step of one
                // whole-batch gradient is the product of one column
                new Entry("batch normalisation, batch statistics", () -> new org.deeplearning4j.nn.conf.layers
                        .BatchNormalization.Builder().build(), cnn),
                new Entry("batch normalisation, locked gamma and beta, log std", () -> new org.deeplearning4j.nn
                        .conf.layers.BatchNormalization.Builder().lockGammaBeta(true).gamma(0.7).beta(-0.3)
                        .useLogStd(true).build(), cnn),
                new Entry("3D max pooling 2x2x2", () -> new Subsampling3DLayer.Builder(PoolingType.MAX).kernelSize(2, 2, 2)
                        .stride(2, 2, 2).build(), cnn3d),
                new Entry("3D max pooling 2x3x2 stride 1x2x1 same", () -> new Subsampling3DLayer.Builder(
                        PoolingType.MAX).kernelSize(2, 3, 2).stride(1, 2, 1).padding(0, 0, 0).convolutionMode(ConvolutionMode.Same)
                        .build(), cnn3d),
                new Entry("3D average pooling 2x2x3 stride 1 padding 1x0x1", () -> new Subsampling3DLayer.Builder(
                        PoolingType.AVG).kernelSize(2, 2, 3).stride(1, 1, 1).padding(1, 0, 1)
                        .convolutionMode(ConvolutionMode.Truncate).build(), cnn3d),
                new Entry("3D upsampling 2x1x3", () -> new Upsampling3D.Builder().size(new int[] {2, 1, 3}).build(),
                        cnn3d),
                new Entry("3D zero padding", () -> new ZeroPadding3DLayer.Builder(1, 0, 2, 1, 0, 2).build(), cnn3d),
                new Entry("3D cropping", () -> new Cropping3D.Builder(1, 0, 0, 2, 1, 1).build(), cnn3d),
                // 3D convolutions with the identity activation: the product is at the pre-activation
                new Entry("3D convolution 2x3x2 stride 2x1x2 padding 1x0x1 dilation 1x2x1", () -> new Convolution3D
                        .Builder(2, 3, 2).nOut(3).stride(2, 1, 2).padding(1, 0, 1).dilation(1, 2, 1)
                        .activation(Activation.IDENTITY).build(), cnn3d),
                new Entry("3D convolution 3x2x3 stride 2 same, no bias", () -> new Convolution3D.Builder(3, 2, 3)
                        .nOut(3).stride(2, 2, 2).convolutionMode(ConvolutionMode.Same).hasBias(false)
                        .activation(Activation.IDENTITY).build(), cnn3d));
    }

    /** @return the shape of the features of {@code n} examples of the input type */
    private static long[] featureShape(InputType input, long n) {
        if (input instanceof InputType.InputTypeConvolutional3D) {
            InputType.InputTypeConvolutional3D c = (InputType.InputTypeConvolutional3D) input;
            return new long[] {n, c.getChannels(), c.getDepth(), c.getHeight(), c.getWidth()};
        }
        InputType.InputTypeConvolutional c = (InputType.InputTypeConvolutional) input;
        return new long[] {n, c.getChannels(), c.getHeight(), c.getWidth()};
    }

    /** A network of the layer under test (after a 1x1 or 1x1x1 convolution that makes its input) and an L2 loss. */
    private static MultiLayerNetwork network(Entry e, DataType type) {
        if (e.input() instanceof InputType.InputTypeConvolutional3D) {
            // a per-position loss: no flattening (DL4J's shape inference mislabels some 3D outputs)
            return TestNets.build(type, e.input(), new Convolution3D.Builder(1, 1, 1).nOut(5)
                    .activation(Activation.IDENTITY).build(), e.layer().get(), new Cnn3DLossLayer.Builder(
                    Convolution3D.DataFormat.NCDHW).lossFunction(LossFunction.L2).activation(Activation.IDENTITY).build());
        }
        MultiLayerNetwork net = TestNets.build(type, e.input(),
                new ConvolutionLayer.Builder(1, 1).nOut(5).activation(Activation.IDENTITY).build(), e.layer().get(),
                new LossLayer.Builder(LossFunction.L2).activation(Activation.IDENTITY).build());
        return net;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("entries")
    void inputJacobianTransposeOfManyColumnsIsDl4jsBackwardOfEach(Entry e) {
        for (DataType type : new DataType[] {DataType.DOUBLE, DataType.FLOAT}) {
            MultiLayerNetwork net = network(e, type);
            long n = 3;
            INDArray x = TestNets.features(type, 7, featureShape(e.input(), n));
            List<INDArray> activations = net.feedForward(x, true);
            INDArray input = activations.get(1);
            INDArray output = activations.get(2);
            int columns = 4;
            List<INDArray> perColumn = new ArrayList<>();
            List<INDArray> dl4j = new ArrayList<>();
            for (int v = 0; v < columns; v++) {
                INDArray s = Nd4j.randn(type, output.shape());
                perColumn.add(s);
                INDArray atInput = inputGradient(net, x, s);
                dl4j.add(atInput);
            }
            // the kind's product of all columns at once, folded example-major [N·V, ...]
            long[] withColumns = output.shape().clone();
            INDArray stacked = Nd4j.stack(1, perColumn.toArray(new INDArray[0]));
            long[] folded = new long[withColumns.length];
            folded[0] = n * columns;
            System.arraycopy(withColumns, 1, folded, 1, withColumns.length - 1);
            org.deeplearning4j.nn.api.Layer layer = net.getLayer(1);
            Topology topology = Topology.of(net, new Topology.LayerResolver() {
                @Override
                public org.deeplearning4j.nn.api.Layer plain(org.deeplearning4j.nn.api.Layer l) {
                    return l;
                }

                @Override
                public NeuralNetConfiguration conf(org.deeplearning4j.nn.api.Layer l) {
                    return l.conf();
                }
            });
            Node node = topology.node(1);
            LayerDerivatives kind = LayerKinds.of(layer).orElseThrow();
            RecordedLayer record = new RecordedLayer(node, layer, kind, input, null, null, null, output.shape());
            INDArray product = kind.inputJacobianTranspose(record, stacked.dup('c').reshape('c', folded));
            INDArray unfolded = product.reshape('c', withColumn(n, columns, product.shape()));
            for (int v = 0; v < columns; v++) {
                assertClose(dl4j.get(v), unfolded.get(NDArrayIndex.all(), NDArrayIndex.point(v)).dup(),
                        type == DataType.DOUBLE ? 1e-10 : 1e-4, type == DataType.DOUBLE ? 1e-12 : 1e-5,
                        e + " " + type + " column " + v);
            }
        }
    }

    /** @return DL4J's own backward step of the tested layer for the output gradient {@code s} */
    private static INDArray inputGradient(MultiLayerNetwork net, INDArray x, INDArray s) {
        MultiLayerNetwork copy = new MultiLayerNetwork(net.getLayerWiseConfigurations().clone());
        copy.init(net.params().dup(), true);
        copy.initGradientsView();   // layers with parameters write their gradients there
        List<INDArray> acts = copy.feedForward(x, true);
        org.deeplearning4j.nn.workspace.LayerWorkspaceMgr mgr = org.deeplearning4j.nn.workspace.LayerWorkspaceMgr
                .noWorkspaces();
        org.deeplearning4j.nn.api.Layer layer = copy.getLayer(1);
        layer.setInput(acts.get(1), mgr);
        layer.activate(true, mgr);
        return layer.backpropGradient(s.dup(), mgr).getSecond().dup();
    }

    private static long[] withColumn(long n, long v, long[] shape) {
        long[] out = new long[shape.length + 1];
        out[0] = n;
        out[1] = v;
        System.arraycopy(shape, 1, out, 2, shape.length - 1);
        return out;
    }
}
