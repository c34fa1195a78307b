// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.internal.graph.Topology;
import io.github.dl4jbackpack.internal.layers.LayerDerivatives;
import io.github.dl4jbackpack.internal.layers.LayerKinds;
import io.github.dl4jbackpack.internal.layers.RecordedLayer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.Cnn3DLossLayer;
import org.deeplearning4j.nn.conf.layers.Convolution3D;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.Deconvolution2D;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.conf.layers.PReLULayer;
import org.deeplearning4j.nn.conf.layers.SpaceToDepthLayer;
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
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The contract of every layer kind's input derivatives, one entry per kind and setting (the
 * parameter-free kinds, batch normalisation with the batch's statistics, and the kinds with parameters
 * at their pre-activation): its input Jacobian-transpose product of several factor columns at once
 * equals DL4J's own backward step of the layer applied to each column separately (the layer's
 * {@code backpropGradient} with that column as the gradient at its output), in float64 and float32
 * (central differences of DL4J's forward step where DL4J's backward step is not its derivative); and
 * for kinds with a Hessian residual at their input, the factored residual equals the derivative of
 * that backward step. Adding a kind adds an entry here.
 */
class LayerKindContractTest {

    /**
     * @param exactBackward whether DL4J's backward step of the layer is the derivative of its forward step
     *     (then it is the reference; otherwise central differences of the forward step are)
     */
    record Entry(String name, Supplier<Layer> layer, InputType input, boolean exactBackward) {
        Entry(String name, Supplier<Layer> layer, InputType input) {
            this(name, layer, input, true);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Entry> entries() {
        InputType cnn = InputType.convolutional(6, 5, 2);
        InputType cnn3d = InputType.convolutional3D(Convolution3D.DataFormat.NCDHW, 4, 5, 4, 2);
        InputType nhwc = InputType.convolutional(6, 5, 2, CNN2DFormat.NHWC);
        CNN2DFormat last = CNN2DFormat.NHWC;
        InputType series = InputType.recurrent(2, 6);
        InputType nwcSeries = InputType.recurrent(2, 6, RNNFormat.NWC);
        return Stream.of(
                // channels last: the NCHW kinds seen through ChannelsLastKind
                new Entry("NHWC convolution 3x3 stride 2 same", () -> new ConvolutionLayer.Builder(3, 3).nOut(3)
                        .stride(2, 2).convolutionMode(ConvolutionMode.Same).dataFormat(last)
                        .activation(Activation.IDENTITY).build(), nhwc),
                new Entry("NHWC deconvolution 3x3 stride 2 same", () -> new Deconvolution2D.Builder(3, 3).nOut(3)
                        .stride(2, 2).convolutionMode(ConvolutionMode.Same).dataFormat(last)
                        .activation(Activation.IDENTITY).build(), nhwc),
                new Entry("NHWC depthwise 3x2 multiplier 2", () -> new org.deeplearning4j.nn.conf.layers
                        .DepthwiseConvolution2D.Builder(3, 2).depthMultiplier(2).dataFormat(last)
                        .activation(Activation.IDENTITY).build(), nhwc),
                new Entry("NHWC separable 2x2 same", () -> new org.deeplearning4j.nn.conf.layers
                        .SeparableConvolution2D.Builder(2, 2).nOut(3).convolutionMode(ConvolutionMode.Same)
                        .dataFormat(last).activation(Activation.IDENTITY).build(), nhwc),
                new Entry("NHWC max pooling 2x2 stride 1 same", () -> new SubsamplingLayer.Builder(PoolingType.MAX)
                        .kernelSize(2, 2).stride(1, 1).convolutionMode(ConvolutionMode.Same).dataFormat(last).build(),
                        nhwc),
                new Entry("NHWC p-norm pooling", () -> new SubsamplingLayer.Builder(PoolingType.PNORM).pnorm(2)
                        .kernelSize(2, 2).stride(2, 2).dataFormat(last).build(), nhwc),
                new Entry("NHWC global p-norm pooling p=3", () -> new GlobalPoolingLayer.Builder(PoolingType.PNORM)
                        .pnorm(3).build(), nhwc),
                // (DL4J's own forward step of NHWC global pooling without collapsing mis-shapes its output)
                new Entry("NHWC global max pooling", () -> new GlobalPoolingLayer.Builder(PoolingType.MAX).build(),
                        nhwc),
                new Entry("NHWC zero padding", () -> new ZeroPaddingLayer.Builder(1, 2, 0, 1).dataFormat(last).build(),
                        nhwc),
                new Entry("NHWC cropping", () -> new Cropping2D.Builder(1, 0, 2, 1).dataFormat(last).build(), nhwc),
                new Entry("NHWC upsampling 2x3", () -> new Upsampling2D.Builder().size(new int[] {2, 3})
                        .dataFormat(last).build(), nhwc),
                new Entry("NHWC local response normalisation", () -> new org.deeplearning4j.nn.conf.layers
                        .LocalResponseNormalization.Builder().k(1.5).n(3).alpha(0.3).beta(0.75).dataFormat(last)
                        .build(), nhwc, false),
                new Entry("NHWC batch normalisation", () -> new org.deeplearning4j.nn.conf.layers.BatchNormalization
                        .Builder().dataFormat(last).build(), nhwc),
                new Entry("NHWC space to depth 2x2", () -> new SpaceToDepthLayer.Builder(2, last).build(),
                        InputType.convolutional(6, 4, 2, last)),
                new Entry("max pooling 2x2", () -> new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2)
                        .stride(2, 2).build(), cnn),
                new Entry("average pooling 3x3 stride 1 same", () -> new SubsamplingLayer.Builder(PoolingType.AVG)
                        .kernelSize(3, 3).stride(1, 1).convolutionMode(ConvolutionMode.Same).build(), cnn),
                new Entry("p-norm pooling", () -> new SubsamplingLayer.Builder(PoolingType.PNORM).pnorm(2)
                        .kernelSize(2, 2).stride(1, 1).build(), cnn),
                new Entry("global max pooling", () -> new GlobalPoolingLayer.Builder(PoolingType.MAX).build(), cnn),
                new Entry("global p-norm pooling p=3", () -> new GlobalPoolingLayer.Builder(PoolingType.PNORM).pnorm(3)
                        .build(), cnn),
                new Entry("p-norm pooling p=3, same mode", () -> new SubsamplingLayer.Builder(PoolingType.PNORM).pnorm(3)
                        .kernelSize(3, 2).stride(2, 1).convolutionMode(ConvolutionMode.Same).build(), cnn),
                new Entry("global average pooling", () -> new GlobalPoolingLayer.Builder(PoolingType.AVG).build(), cnn),
                new Entry("global sum pooling, not collapsed", () -> new GlobalPoolingLayer.Builder(PoolingType.SUM)
                        .collapseDimensions(false).build(), cnn),
                new Entry("zero padding", () -> new ZeroPaddingLayer.Builder(1, 2, 0, 1).build(), cnn),
                new Entry("cropping", () -> new Cropping2D.Builder(1, 0, 2, 1).build(), cnn),
                // DL4J's backward step of LRN is not the derivative of its forward step (see
                // dl4jsLocalResponseNormalisationBackwardIsNotTheDerivativeOfItsForwardStep)
                new Entry("local response normalisation", () -> new org.deeplearning4j.nn.conf.layers
                        .LocalResponseNormalization.Builder().k(1.5).n(3).alpha(0.3).beta(0.75).build(), cnn, false),
                new Entry("local response normalisation, wide window", () -> new org.deeplearning4j.nn.conf.layers
                        .LocalResponseNormalization.Builder().k(1.0).n(5).alpha(1.5).beta(1.3).build(), cnn, false),
                new Entry("upsampling 2x3", () -> new Upsampling2D.Builder().size(new int[] {2, 3}).build(), cnn),
                // layers with parameters and the identity activation: the product is at the pre-activation
                new Entry("convolution 3x2 stride 2 same", () -> new ConvolutionLayer.Builder(3, 2).nOut(3)
                        .stride(2, 2).convolutionMode(ConvolutionMode.Same).activation(Activation.IDENTITY).build(), cnn),
                new Entry("convolution 2x2 padding 1 dilation 2", () -> new ConvolutionLayer.Builder(2, 2).nOut(3)
                        .padding(1, 1).dilation(2, 2).activation(Activation.IDENTITY).build(), cnn),
                new Entry("depthwise convolution x2", () -> new org.deeplearning4j.nn.conf.layers.DepthwiseConvolution2D
                        .Builder(2, 2).depthMultiplier(2).nOut(10).activation(Activation.IDENTITY).build(), cnn),
                new Entry("separable convolution same stride 2", () -> new org.deeplearning4j.nn.conf.layers
                        .SeparableConvolution2D.Builder(3, 3).depthMultiplier(1).nOut(4).stride(2, 2)
                        .convolutionMode(ConvolutionMode.Same).activation(Activation.IDENTITY).build(), cnn),
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
                // space to depth needs a height and width divisible by the block size
                new Entry("space to depth 2x2", () -> new SpaceToDepthLayer.Builder(2, CNN2DFormat.NCHW).build(),
                        InputType.convolutional(6, 4, 2)),
                new Entry("space to depth 3x3", () -> new SpaceToDepthLayer.Builder(3, CNN2DFormat.NCHW).build(),
                        InputType.convolutional(6, 3, 2)),
                // DL4J's PReLU takes its input shape from the builder only (the convolution's output [5, 6, 5])
                new Entry("PReLU", () -> new PReLULayer.Builder().inputShape(5, 6, 5).build(), cnn),
                // libnd4j's prelu_bp fails when the input has more than 64 elements per alpha, so with N = 3 it
                // cannot share alpha over height and width of this input
                new Entry("PReLU shared over width", () -> new PReLULayer.Builder().inputShape(5, 6, 5)
                        .sharedAxes(3).build(), cnn),
                new Entry("PReLU shared over channels", () -> new PReLULayer.Builder().inputShape(5, 6, 5)
                        .sharedAxes(1).build(), cnn),
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
                        .activation(Activation.IDENTITY).build(), cnn3d),
                // time series [N, 5, T] (after an LSTM that makes the input): recurrent layers back-propagate the
                // columns through time; without a mask DL4J's backward step is their derivative
                new Entry("LSTM", () -> new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(3)
                        .activation(Activation.TANH).build(), series),
                new Entry("LSTM NWC, softsign and hard sigmoid gates", () -> new org.deeplearning4j.nn.conf.layers.LSTM
                        .Builder().nOut(3).activation(Activation.SOFTSIGN).gateActivationFunction(Activation.HARDSIGMOID)
                        .dataFormat(RNNFormat.NWC).build(), nwcSeries),
                new Entry("GravesLSTM (peepholes)", () -> new org.deeplearning4j.nn.conf.layers.GravesLSTM.Builder()
                        .nOut(3).activation(Activation.TANH).build(), series),
                new Entry("SimpleRnn", () -> new org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn.Builder()
                        .nOut(3).activation(Activation.TANH).build(), series),
                new Entry("Bidirectional CONCAT around LSTM", () -> new org.deeplearning4j.nn.conf.layers.recurrent
                        .Bidirectional(org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional.Mode.CONCAT,
                        new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(3).activation(Activation.TANH)
                                .build()), series),
                new Entry("Bidirectional MUL around SimpleRnn", () -> new org.deeplearning4j.nn.conf.layers.recurrent
                        .Bidirectional(org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional.Mode.MUL,
                        new org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn.Builder().nOut(3)
                                .activation(Activation.TANH).build()), series),
                new Entry("Bidirectional AVERAGE around LSTM NWC", () -> new org.deeplearning4j.nn.conf.layers
                        .recurrent.Bidirectional(org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional.Mode.AVERAGE,
                        new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(3).activation(Activation.TANH)
                                .dataFormat(RNNFormat.NWC).build()), nwcSeries),
                new Entry("MaskZeroLayer around LSTM", () -> new org.deeplearning4j.nn.conf.layers.util.MaskZeroLayer(
                        new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(3).activation(Activation.TANH)
                                .build(), 0.0), series),
                new Entry("TimeDistributed dense (sigmoid)", () -> new org.deeplearning4j.nn.conf.layers.recurrent
                        .TimeDistributed(new org.deeplearning4j.nn.conf.layers.DenseLayer.Builder().nOut(3)
                        .activation(Activation.SIGMOID).build(), RNNFormat.NCW), series),
                new Entry("LastTimeStep around LSTM", () -> new org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep(
                        new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(3).activation(Activation.TANH)
                                .build()), series),
                new Entry("global average pooling over time", () -> new GlobalPoolingLayer.Builder(PoolingType.AVG)
                        .build(), series),
                new Entry("global max pooling over time", () -> new GlobalPoolingLayer.Builder(PoolingType.MAX)
                        .build(), series),
                new Entry("global sum pooling over time", () -> new GlobalPoolingLayer.Builder(PoolingType.SUM)
                        .build(), series),
                new Entry("1D convolution k=3 stride 2 padding 1", () -> new org.deeplearning4j.nn.conf.layers
                        .Convolution1DLayer.Builder(3).nOut(3).stride(2).padding(1).activation(Activation.IDENTITY)
                        .build(), series),
                new Entry("1D convolution k=2 dilation 2 causal", () -> new org.deeplearning4j.nn.conf.layers
                        .Convolution1DLayer.Builder(2).nOut(2).dilation(2).convolutionMode(ConvolutionMode.Causal)
                        .activation(Activation.IDENTITY).build(), series),
                new Entry("1D convolution k=3 same, no bias", () -> new org.deeplearning4j.nn.conf.layers
                        .Convolution1DLayer.Builder(3).nOut(2).convolutionMode(ConvolutionMode.Same).hasBias(false)
                        .activation(Activation.IDENTITY).build(), series),
                new Entry("1D zero padding 1, 2", () -> new org.deeplearning4j.nn.conf.layers.ZeroPadding1DLayer
                        .Builder(1, 2).build(), series),
                new Entry("1D cropping 2, 1", () -> new org.deeplearning4j.nn.conf.layers.convolutional.Cropping1D
                        .Builder(2, 1).build(), series),
                new Entry("1D upsampling 3", () -> new org.deeplearning4j.nn.conf.layers.Upsampling1D.Builder(3)
                        .build(), series),
                new Entry("1D max pooling k=2 same", () -> new org.deeplearning4j.nn.conf.layers.Subsampling1DLayer
                        .Builder(SubsamplingLayer.PoolingType.MAX, 2, 1).convolutionMode(ConvolutionMode.Same).build(),
                        series),
                // (DL4J's own forward step of a padded 1D pooling layer pads the unit axis too and fails)
                new Entry("1D average pooling k=3 stride 2", () -> new org.deeplearning4j.nn.conf.layers
                        .Subsampling1DLayer.Builder(SubsamplingLayer.PoolingType.AVG, 3, 2).build(), series),
                new Entry("1D p-norm pooling p=2 k=2 stride 2", () -> new org.deeplearning4j.nn.conf.layers
                        .Subsampling1DLayer.Builder(SubsamplingLayer.PoolingType.PNORM, 2, 2).pnorm(2).build(),
                        series));
    }

    /** @return the shape of the features of {@code n} examples of the input type */
    private static long[] featureShape(InputType input, long n) {
        if (input instanceof InputType.InputTypeRecurrent) {
            InputType.InputTypeRecurrent r = (InputType.InputTypeRecurrent) input;
            return r.getFormat() == RNNFormat.NWC ? new long[] {n, r.getTimeSeriesLength(), r.getSize()}
                    : new long[] {n, r.getSize(), r.getTimeSeriesLength()};
        }
        if (input instanceof InputType.InputTypeConvolutional3D) {
            InputType.InputTypeConvolutional3D c = (InputType.InputTypeConvolutional3D) input;
            return new long[] {n, c.getChannels(), c.getDepth(), c.getHeight(), c.getWidth()};
        }
        InputType.InputTypeConvolutional c = (InputType.InputTypeConvolutional) input;
        return c.getFormat() == CNN2DFormat.NHWC ? new long[] {n, c.getHeight(), c.getWidth(), c.getChannels()}
                : new long[] {n, c.getChannels(), c.getHeight(), c.getWidth()};
    }

    /** @return the topology of a plain (not extended) network */
    private static Topology topology(MultiLayerNetwork net) {
        return Topology.of(net, new Topology.LayerResolver() {
            @Override
            public org.deeplearning4j.nn.api.Layer plain(org.deeplearning4j.nn.api.Layer l) {
                return l;
            }

            @Override
            public NeuralNetConfiguration conf(org.deeplearning4j.nn.api.Layer l) {
                return l.conf();
            }
        });
    }

    /** @return the entries whose kind has a Hessian residual at its input */
    static Stream<Entry> residualEntries() {
        return entries().filter(e -> {
            org.deeplearning4j.nn.api.Layer layer = network(e, DataType.DOUBLE).getLayer(1);
            return LayerKinds.of(layer).map(k -> k.hasInputResidual(layer)).orElse(false);
        });
    }

    /** A network of the layer under test (after a 1x1 or 1x1x1 convolution that makes its input) and an L2 loss. */
    private static MultiLayerNetwork network(Entry e, DataType type) {
        if (e.input() instanceof InputType.InputTypeConvolutional3D) {
            // a per-position loss: no flattening (DL4J's shape inference mislabels some 3D outputs)
            return TestNets.build(type, e.input(), new Convolution3D.Builder(1, 1, 1).nOut(5)
                    .activation(Activation.IDENTITY).build(), e.layer().get(), new Cnn3DLossLayer.Builder(
                    Convolution3D.DataFormat.NCDHW).lossFunction(LossFunction.L2).activation(Activation.IDENTITY).build());
        }
        if (e.input() instanceof InputType.InputTypeRecurrent) {
            RNNFormat format = ((InputType.InputTypeRecurrent) e.input()).getFormat();
            org.deeplearning4j.nn.conf.layers.Layer layer = e.layer().get();
            boolean series = !(layer instanceof GlobalPoolingLayer)
                    && !(layer instanceof org.deeplearning4j.nn.conf.layers.recurrent.LastTimeStep);
            return TestNets.build(type, e.input(), new org.deeplearning4j.nn.conf.layers.LSTM.Builder().nOut(5)
                    .activation(Activation.TANH).dataFormat(format).build(), layer, series
                    ? new org.deeplearning4j.nn.conf.layers.RnnLossLayer.Builder(LossFunction.L2)
                    .activation(Activation.IDENTITY).dataFormat(format).build()
                    : new LossLayer.Builder(LossFunction.L2).activation(Activation.IDENTITY).build());
        }
        MultiLayerNetwork net = TestNets.build(type, e.input(),
                new ConvolutionLayer.Builder(1, 1).nOut(5).activation(Activation.IDENTITY)
                        .dataFormat(((InputType.InputTypeConvolutional) e.input()).getFormat()).build(), e.layer().get(),
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
            MultiLayerNetwork reference = network(e, DataType.DOUBLE);
            reference.setParams(net.params().castTo(DataType.DOUBLE));
            INDArray input64 = reference.feedForward(x.castTo(DataType.DOUBLE), true).get(1);
            int columns = 4;
            List<INDArray> perColumn = new ArrayList<>();
            List<INDArray> dl4j = new ArrayList<>();
            for (int v = 0; v < columns; v++) {
                INDArray s = Nd4j.randn(type, output.shape());
                perColumn.add(s);
                dl4j.add(e.exactBackward() ? inputGradient(net, x, s)
                        : forwardDerivative(reference, input64, s.castTo(DataType.DOUBLE)).castTo(type));
            }
            // the kind's product of all columns at once, folded example-major [N·V, ...]
            long[] withColumns = output.shape().clone();
            INDArray stacked = Nd4j.stack(1, perColumn.toArray(new INDArray[0]));
            long[] folded = new long[withColumns.length];
            folded[0] = n * columns;
            System.arraycopy(withColumns, 1, folded, 1, withColumns.length - 1);
            org.deeplearning4j.nn.api.Layer layer = net.getLayer(1);
            if (layer instanceof org.deeplearning4j.nn.layers.recurrent.BidirectionalLayer) {
                // the network's feedForward clears the outputs a MUL wrapper keeps for its backward step
                org.deeplearning4j.nn.workspace.LayerWorkspaceMgr mgr = org.deeplearning4j.nn.workspace
                        .LayerWorkspaceMgr.noWorkspaces();
                layer.setInput(input, mgr);
                layer.activate(true, mgr);
            }
            Node node = topology(net).node(1);
            LayerDerivatives kind = LayerKinds.of(layer).orElseThrow();
            RecordedLayer record = new RecordedLayer(node, layer, kind, input, null, null, null, output.shape());
            INDArray product = kind.inputJacobianTranspose(record, stacked.dup('c').reshape('c', folded));
            INDArray unfolded = product.reshape('c', withColumn(n, columns, product.shape()));
            for (int v = 0; v < columns; v++) {
                assertClose(dl4j.get(v), unfolded.get(NDArrayIndex.all(), NDArrayIndex.point(v)).dup(),
                        type == DataType.FLOAT ? 1e-4 : e.exactBackward() ? 1e-10 : 1e-8,
                        type == DataType.FLOAT ? 1e-5 : e.exactBackward() ? 1e-12 : 1e-9, e + " " + type + " column " + v);
            }
        }
    }

    /**
     * Kinds with a Hessian residual at their input: the factored residual of each example,
     * {@code Σ_parts sign · Σ_v c_v c_vᵀ}, equals the central-difference derivative of DL4J's own backward
     * step {@code Jᵀ(x) ε} with respect to the layer input x (float64).
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("residualEntries")
    void inputResidualIsTheDerivativeOfDl4jsBackwardStep(Entry e) {
        MultiLayerNetwork net = network(e, DataType.DOUBLE);
        org.deeplearning4j.nn.api.Layer layer = net.getLayer(1);
        LayerDerivatives kind = LayerKinds.of(layer).orElseThrow();
        long n = 2;
        INDArray x = TestNets.features(DataType.DOUBLE, 7, featureShape(e.input(), n)).muli(2.0);
        List<INDArray> activations = net.feedForward(x, true);
        INDArray input = activations.get(1);
        INDArray epsilon = Nd4j.randn(DataType.DOUBLE, activations.get(2).shape());
        RecordedLayer record = new RecordedLayer(topology(net).node(1), layer, kind, input, null, null, epsilon,
                activations.get(2).shape());
        long features = input.length() / n;
        INDArray factored = Nd4j.zeros(DataType.DOUBLE, n, features, features);
        for (io.github.dl4jbackpack.internal.layers.VertexDerivatives.ResidualPart part : kind.inputResidual(record)) {
            assertEquals(false, part.spansBatch(), e + ": columns of one example each");
            INDArray c = part.columns(0, part.columns())[0].reshape('c', n, part.columns(), features);
            factored.addi(Nd4j.matmul(c, c, true, false, false).muli(part.sign()));
        }
        double h = 1e-5;
        INDArray flatInput = input.dup('c').reshape('c', new long[] {input.length()});
        INDArray differences = Nd4j.zeros(DataType.DOUBLE, n, features, features);
        for (int m = 0; m < n; m++) {
            for (int f = 0; f < features; f++) {
                long flat = m * features + f;
                INDArray plus = flatInput.dup();
                plus.putScalar(flat, flatInput.getDouble(flat) + h);
                INDArray minus = flatInput.dup();
                minus.putScalar(flat, flatInput.getDouble(flat) - h);
                plus = plus.reshape('c', input.shape());
                minus = minus.reshape('c', input.shape());
                INDArray derivative = (e.exactBackward()
                        ? backward(net, plus, epsilon).sub(backward(net, minus, epsilon))
                        : kindBackward(record, plus, epsilon).sub(kindBackward(record, minus, epsilon)))
                        .divi(2 * h).reshape('c', n, features);
                differences.get(NDArrayIndex.point(m), NDArrayIndex.all(), NDArrayIndex.point(f))
                        .assign(derivative.getRow(m));
            }
        }
        assertClose(differences, factored, 1e-6, 1e-8, e + " residual");
    }

    /**
     * @return {@code Jᵀs} of the tested layer by central differences of DL4J's forward step: per input
     *     element, {@code s_n · (a_n(x + h e_f) − a_n(x − h e_f)) / 2h}, the element perturbed in every
     *     example at once (the layers tested this way act on each example separately)
     */
    private static INDArray forwardDerivative(MultiLayerNetwork net, INDArray input, INDArray s) {
        org.deeplearning4j.nn.workspace.LayerWorkspaceMgr mgr = org.deeplearning4j.nn.workspace.LayerWorkspaceMgr
                .noWorkspaces();
        org.deeplearning4j.nn.api.Layer layer = net.getLayer(1);
        long n = input.size(0);
        long features = input.length() / n;
        INDArray flat = input.dup('c').reshape('c', n, features);
        INDArray out = Nd4j.create(DataType.DOUBLE, n, features);
        INDArray sFlat = s.dup('c').reshape('c', n, s.length() / n);
        double h = 1e-6;
        for (int f = 0; f < features; f++) {
            INDArray[] outputs = new INDArray[2];
            for (int k = 0; k < 2; k++) {
                INDArray moved = flat.dup();
                moved.getColumn(f).addi(k == 0 ? h : -h);
                layer.setInput(moved.reshape('c', input.shape()), mgr);
                outputs[k] = layer.activate(false, mgr).dup('c').reshape('c', n, s.length() / n);
            }
            out.getColumn(f).assign(outputs[0].subi(outputs[1]).muli(sFlat).sum(1).divi(2 * h));
        }
        return out.reshape('c', input.shape());
    }

    /** @return the kind's own {@code Jᵀε} at the given input (checked against the forward step above) */
    private static INDArray kindBackward(RecordedLayer like, INDArray input, INDArray epsilon) {
        RecordedLayer record = new RecordedLayer(like.node(), like.layer(), like.kind(), input, null, null, null,
                like.outputShape());
        return like.kind().inputJacobianTranspose(record, epsilon);
    }

    /** @return DL4J's own backward step of the tested layer at the given input, for the output gradient ε */
    private static INDArray backward(MultiLayerNetwork net, INDArray input, INDArray epsilon) {
        org.deeplearning4j.nn.workspace.LayerWorkspaceMgr mgr = org.deeplearning4j.nn.workspace.LayerWorkspaceMgr
                .noWorkspaces();
        org.deeplearning4j.nn.api.Layer layer = net.getLayer(1);
        layer.setInput(input, mgr);
        layer.activate(true, mgr);
        return layer.backpropGradient(epsilon.dup(), mgr).getSecond().dup();
    }

    /**
     * Why local response normalisation is checked against its forward step: DL4J's backward step is not
     * its derivative (it divides the window sum by the element's own normaliser). Should DL4J fix it,
     * this test fails and the entries can use DL4J's backward step again.
     */
    @org.junit.jupiter.api.Test
    void dl4jsLocalResponseNormalisationBackwardIsNotTheDerivativeOfItsForwardStep() {
        Entry e = entries().filter(entry -> !entry.exactBackward() && !entry.name().startsWith("NHWC")).findFirst()
                .orElseThrow();
        MultiLayerNetwork net = network(e, DataType.DOUBLE);
        INDArray x = TestNets.features(DataType.DOUBLE, 7, 2, 2, 6, 5);
        List<INDArray> activations = net.feedForward(x, true);
        INDArray s = Nd4j.randn(DataType.DOUBLE, activations.get(2).shape());
        INDArray fromForward = forwardDerivative(net, activations.get(1), s);
        INDArray dl4j = backward(net, activations.get(1), s);
        double gap = dl4j.sub(fromForward).amaxNumber().doubleValue() / fromForward.amaxNumber().doubleValue();
        org.junit.jupiter.api.Assertions.assertTrue(gap > 1e-3, "relative gap " + gap);
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
