// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.workspace.ArrayType;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A 2D vision layer in channels-last layout ({@code CNN2DFormat.NHWC}), as the kind that knows its
 * derivatives in channels-first layout (NCHW) computes them. DL4J's NHWC layers compute the same
 * function as their NCHW twins, up to the permutation {@code P: [N, H, W, C] → [N, C, H, W]} of their
 * input and output activations, and their parameters are laid out as the NCHW twins' are. So with
 * {@code f_NHWC = P⁻¹ ∘ f_NCHW ∘ P}: the recorded arrays and every column at the layer output go
 * through {@code P} (folded {@code [N·V, H, W, C]} and stacked {@code [N, V, H, W, C]} alike), columns
 * at the layer input come back through {@code P⁻¹}, and parameter-shaped results are the NCHW kind's.
 * Arrays that are not channels-last images (the {@code [N, C]} output of global pooling, the
 * feed-forward input of a batch normalisation) pass unchanged.
 */
public final class ChannelsLastKind implements LayerDerivatives {

    /** Spatial and channel axes after the leading (batch, column) axes. */
    private static final int IMAGE_AXES = 3;

    private final LayerDerivatives channelsFirst;

    /** @param channelsFirst the kind of the layer in NCHW layout */
    ChannelsLastKind(LayerDerivatives channelsFirst) {
        this.channelsFirst = channelsFirst;
    }

    /**
     * @param c a DL4J layer configuration
     * @return whether it sets the channels-last layout for 2D images
     */
    public static boolean isChannelsLast(org.deeplearning4j.nn.conf.layers.Layer c) {
        Object format = null;
        if (c instanceof org.deeplearning4j.nn.conf.layers.ConvolutionLayer) {
            format = ((org.deeplearning4j.nn.conf.layers.ConvolutionLayer) c).getCnn2dDataFormat();
        } else if (c instanceof org.deeplearning4j.nn.conf.layers.SubsamplingLayer) {
            format = ((org.deeplearning4j.nn.conf.layers.SubsamplingLayer) c).getCnn2dDataFormat();
        } else if (c instanceof org.deeplearning4j.nn.conf.layers.BatchNormalization) {
            format = ((org.deeplearning4j.nn.conf.layers.BatchNormalization) c).getCnn2DFormat();
        } else if (c instanceof org.deeplearning4j.nn.conf.layers.LocalResponseNormalization) {
            format = ((org.deeplearning4j.nn.conf.layers.LocalResponseNormalization) c).getDataFormat();
        } else if (c instanceof org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer) {
            format = ((org.deeplearning4j.nn.conf.layers.ZeroPaddingLayer) c).getDataFormat();
        } else if (c instanceof org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D) {
            format = ((org.deeplearning4j.nn.conf.layers.convolutional.Cropping2D) c).getDataFormat();
        } else if (c instanceof org.deeplearning4j.nn.conf.layers.Upsampling2D) {
            format = ((org.deeplearning4j.nn.conf.layers.Upsampling2D) c).getFormat();
        } else if (c instanceof org.deeplearning4j.nn.conf.layers.SpaceToDepthLayer) {
            format = ((org.deeplearning4j.nn.conf.layers.SpaceToDepthLayer) c).getDataFormat();
        } else if (c instanceof org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer) {
            // DL4J's setInputType pools NHWC images over dimensions 1, 2 (NCHW ones over 2, 3)
            int[] dims = ((org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer) c).getPoolingDimensions();
            return dims != null && dims.length == 2 && dims[0] == 1 && dims[1] == 2;
        }
        return format == CNN2DFormat.NHWC;
    }

    /**
     * @param kind a layer kind
     * @return the kind that computes its derivatives in channels-first layout (the kind itself
     *     unless it is a channels-last adapter)
     */
    public static LayerDerivatives channelsFirst(LayerDerivatives kind) {
        return kind instanceof ChannelsLastKind ? ((ChannelsLastKind) kind).channelsFirst : kind;
    }

    /**
     * @param a an array whose first {@code lead} axes are batch or column axes
     * @param lead the number of those axes
     * @return {@code a} in channels-first layout, where it is a channels-last image, else {@code a}
     */
    private static INDArray toChannelsFirst(INDArray a, int lead) {
        if (a.rank() != lead + IMAGE_AXES) {
            return a;
        }
        int[] axes = new int[a.rank()];
        for (int i = 0; i < lead; i++) {
            axes[i] = i;
        }
        axes[lead] = lead + 2;
        axes[lead + 1] = lead;
        axes[lead + 2] = lead + 1;
        return a.permute(axes).dup('c');
    }

    /** The inverse of {@link #toChannelsFirst}. */
    private static INDArray toChannelsLast(INDArray a, int lead) {
        if (a.rank() != lead + IMAGE_AXES) {
            return a;
        }
        int[] axes = new int[a.rank()];
        for (int i = 0; i < lead; i++) {
            axes[i] = i;
        }
        axes[lead] = lead + 1;
        axes[lead + 1] = lead + 2;
        axes[lead + 2] = lead;
        return a.permute(axes).dup('c');
    }

    private static INDArray toChannelsFirst(INDArray a) {
        return toChannelsFirst(a, 1);
    }

    private static long[] toChannelsFirst(long[] shape) {
        return shape.length != 1 + IMAGE_AXES ? shape : new long[] {shape[0], shape[3], shape[1], shape[2]};
    }

    /** @return the record as the channels-first kind sees it */
    private RecordedLayer view(RecordedLayer record) {
        return record.view(channelsFirst, ChannelsLastKind::toChannelsFirst, ChannelsLastKind::toChannelsFirst);
    }

    @Override
    public String kindName() {
        return channelsFirst.kindName() + " (NHWC)";
    }

    @Override
    public boolean matches(Layer layer) {
        return channelsFirst.matches(layer) && isChannelsLast(layer.conf().getLayer());
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        return channelsFirst.unsupportedConfiguration(layer);
    }

    @Override
    public boolean hasParameters() {
        return channelsFirst.hasParameters();
    }

    @Override
    public Set<String> trainableParameters(Layer layer) {
        return channelsFirst.trainableParameters(layer);
    }

    @Override
    public boolean normalisesOverBatch(Layer layer) {
        return channelsFirst.normalisesOverBatch(layer);
    }

    /**
     * @return whether DL4J's backward step hands the activation {@code z} and {@code ∂L/∂z} in
     *     channels-first layout: its {@code ConvolutionLayer} permutes the output gradient to NCHW first
     *     (its depthwise, separable and transposed convolutions apply the activation channels last)
     */
    private static boolean activatesChannelsFirst(Layer layer) {
        return layer.getClass() == org.deeplearning4j.nn.layers.convolution.ConvolutionLayer.class;
    }

    /** @return {@code ∂L/∂z} as DL4J's backward step recorded it, in channels-first layout */
    private static INDArray gradientChannelsFirst(Layer layer, INDArray outputGradient) {
        return activatesChannelsFirst(layer) ? outputGradient : toChannelsFirst(outputGradient);
    }

    @Override
    public INDArray preActivationInOutputLayout(Layer layer, INDArray recorded) {
        return activatesChannelsFirst(layer) ? toChannelsLast(recorded, 1) : recorded;
    }

    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        return channelsFirst.firstOrder(layer, toChannelsFirst(input), gradientChannelsFirst(layer, outputGradient));
    }

    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient,
                                      boolean runningStatistics) {
        return channelsFirst.firstOrder(layer, toChannelsFirst(input), gradientChannelsFirst(layer, outputGradient),
                runningStatistics);
    }

    /**
     * {@inheritDoc} Here the channels-first kind's step, which reads the layer's input from the layer,
     * sees it permuted for the duration of the step.
     */
    @Override
    public Pair<Gradient, INDArray> runningStatisticsBackward(Layer layer, INDArray epsilon,
                                                              LayerWorkspaceMgr workspaceMgr) {
        INDArray input = layer.input();
        layer.setInput(toChannelsFirst(input), LayerWorkspaceMgr.noWorkspaces());
        try {
            Pair<Gradient, INDArray> step = channelsFirst.runningStatisticsBackward(layer, toChannelsFirst(epsilon),
                    workspaceMgr);
            return new Pair<>(step.getFirst(), workspaceMgr.leverageTo(ArrayType.ACTIVATION_GRAD,
                    toChannelsLast(step.getSecond(), 1)));
        } finally {
            layer.setInput(input, LayerWorkspaceMgr.noWorkspaces());
        }
    }

    @Override
    public INDArray constantStatisticsInputGradient(Layer layer, INDArray input, INDArray epsilon) {
        return toChannelsLast(channelsFirst.constantStatisticsInputGradient(layer, toChannelsFirst(input),
                toChannelsFirst(epsilon)), 1);
    }

    @Override
    public boolean backwardIsDerivative(Layer layer) {
        return channelsFirst.backwardIsDerivative(layer);
    }

    @Override
    public boolean hasInputResidual(Layer layer) {
        return channelsFirst.hasInputResidual(layer);
    }

    @Override
    public List<VertexDerivatives.ResidualPart> inputResidual(RecordedLayer record) {
        return channelsFirst.inputResidual(view(record)).stream().map(ChannelsLastKind::channelsLast).toList();
    }

    /** @return the part with its columns at the layer input in channels-last layout */
    private static VertexDerivatives.ResidualPart channelsLast(VertexDerivatives.ResidualPart part) {
        return new VertexDerivatives.ResidualPart() {
            @Override
            public double sign() {
                return part.sign();
            }

            @Override
            public long columns() {
                return part.columns();
            }

            @Override
            public boolean spansBatch() {
                return part.spansBatch();
            }

            @Override
            public INDArray[] columns(long from, long to) {
                INDArray[] columns = part.columns(from, to);
                for (int i = 0; i < columns.length; i++) {
                    columns[i] = toChannelsLast(columns[i], 1);
                }
                return columns;
            }
        };
    }

    @Override
    public IActivation activation(Layer layer) {
        return channelsFirst.activation(layer);
    }

    @Override
    public String secondOrderUnsupported(Layer layer, boolean hessian) {
        return channelsFirst.secondOrderUnsupported(layer, hessian);
    }

    @Override
    public INDArray inputJacobianTranspose(RecordedLayer record, INDArray factor) {
        return toChannelsLast(channelsFirst.inputJacobianTranspose(view(record), toChannelsFirst(factor)), 1);
    }

    @Override
    public long scratchFeatures(RecordedLayer record) {
        // and the permuted copies of the columns at both sides
        return channelsFirst.scratchFeatures(view(record)) + record.inputFeatures() + record.outputFeatures();
    }

    @Override
    public void accumulateCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        channelsFirst.accumulateCurvature(view(record), toChannelsFirst(factor, 2), sign, sink);
    }

    @Override
    public void accumulateSharedCurvature(RecordedLayer record, INDArray factor, double sign, CurvatureSink sink) {
        channelsFirst.accumulateSharedCurvature(view(record), toChannelsFirst(factor, 2), sign, sink);
    }

    @Override
    public boolean supportsSharedColumns(Layer layer) {
        return channelsFirst.supportsSharedColumns(layer);
    }

    @Override
    public void accumulateSharedOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        channelsFirst.accumulateSharedOutputFactor(view(record), toChannelsFirst(factor, 2), sink);
    }

    @Override
    public void accumulateReducedOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        channelsFirst.accumulateReducedOutputFactor(view(record), toChannelsFirst(factor, 2), sink);
    }

    @Override
    public void accumulateResidual(RecordedLayer record, INDArray residual, CurvatureSink sink) {
        channelsFirst.accumulateResidual(view(record), toChannelsFirst(residual), sink);
    }

    @Override
    public boolean jacobianVariesByExample(Layer layer) {
        return channelsFirst.jacobianVariesByExample(layer);
    }

    @Override
    public String noKroneckerFactors(Layer layer) {
        return channelsFirst.noKroneckerFactors(layer);
    }

    @Override
    public void accumulateOutputFactor(RecordedLayer record, INDArray factor, CurvatureSink sink) {
        channelsFirst.accumulateOutputFactor(view(record), toChannelsFirst(factor, 2), sink);
    }

    /**
     * {@inheritDoc} Here the matrix's rows and columns, both over {@code (h, w, c)}, are reordered to
     * {@code (c, h, w)} first.
     */
    @Override
    public INDArray outputFactorOfAveraged(RecordedLayer record, INDArray averaged) {
        long[] z = record.outputShape();
        if (z.length == 1 + IMAGE_AXES) {
            long h = Columns.features(z);
            averaged = averaged.dup('c').reshape('c', z[1], z[2], z[3], z[1], z[2], z[3])
                    .permute(2, 0, 1, 5, 3, 4).dup('c').reshape('c', h, h);
        }
        return channelsFirst.outputFactorOfAveraged(view(record), averaged);
    }

    @Override
    public Map<String, KroneckerFactors> kroneckerFactors(RecordedLayer record, INDArray outputFactor) {
        return channelsFirst.kroneckerFactors(view(record), outputFactor);
    }
}
