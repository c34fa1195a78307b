// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import io.github.dl4jbackpack.internal.graph.Node;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.HashMap;
import java.util.Map;
import java.util.function.Supplier;
import java.util.function.UnaryOperator;

/**
 * What one layer's step of DL4J's backward pass left for the second-order pass that follows it:
 * the layer, its input, its pre-activation output (where it has an activation or feeds the loss),
 * the dropout mask applied to its input, and the gradient of the mean loss w.r.t. its output
 * activation (only where a Hessian residual needs it). Valid until the end of that training step.
 */
public final class RecordedLayer {

    private final Node node;
    private final Layer layer;
    private final LayerDerivatives kind;
    private final INDArray input;
    private final INDArray preActivation;
    private final INDArray dropoutMask;
    private final INDArray outputGradient;
    private final long[] outputShape;
    private final Map<String, Object> cache = new HashMap<>();
    private Object columnsKey;
    private long columnsOffset;
    private Object columnsValue;
    private INDArray inputGradient;
    private RecordedLayer view;
    private boolean runningStatistics;
    private boolean batchStatisticsAsConstants;
    private long copies = 1;
    private INDArray outputMask;

    /**
     * @param node the layer's node
     * @param layer the DL4J layer
     * @param kind its kind
     * @param input its input (after input dropout), {@code [N, ...]}
     * @param preActivation {@code z}, or null where not recorded
     * @param dropoutMask the mask of input dropout (including the 1/p scaling), or null
     * @param outputGradient {@code ∂L/∂a} of the mean loss at the layer output, or null
     * @param outputShape the shape of the layer output, batch axis first
     */
    public RecordedLayer(Node node, Layer layer, LayerDerivatives kind, INDArray input, INDArray preActivation,
                         INDArray dropoutMask, INDArray outputGradient, long[] outputShape) {
        this.node = node;
        this.layer = layer;
        this.kind = kind;
        this.input = input;
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            // detached, as recorded: a copy in another layout must outlive the layer's workspaces too
            this.preActivation = preActivation == null ? null : kind.preActivationInOutputLayout(layer, preActivation);
        }
        this.dropoutMask = dropoutMask;
        this.outputGradient = outputGradient;
        this.outputShape = outputShape.clone();
    }

    /** @return the shape of the layer output, batch axis first */
    public long[] outputShape() {
        return outputShape.clone();
    }

    /**
     * The same record with its arrays in another layout, for a kind that computes in that layout: the
     * input, pre-activation, dropout mask and output gradient pass through {@code layout}, the output
     * shape through {@code shapeLayout}; built on first use, then kept with this record.
     *
     * @param viewKind the kind the view is for
     * @param layout maps an array of this record (batch axis first) to the other layout
     * @param shapeLayout maps the output shape the same way
     * @return the view
     */
    public RecordedLayer view(LayerDerivatives viewKind, UnaryOperator<INDArray> layout,
                              UnaryOperator<long[]> shapeLayout) {
        if (view == null) {
            // outside workspaces, as cached values: the view outlives the chunk of columns that builds it
            try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                view = new RecordedLayer(node, layer, viewKind, layout.apply(input),
                        preActivation == null ? null : layout.apply(preActivation),
                        dropoutMask == null ? null : layout.apply(dropoutMask),
                        outputGradient == null ? null : layout.apply(outputGradient), shapeLayout.apply(outputShape));
            }
            view.runningStatistics = runningStatistics;
            view.batchStatisticsAsConstants = batchStatisticsAsConstants;
            view.copies = copies;
        }
        return view;
    }

    /** @return the number of output features per example */
    public long outputFeatures() {
        long f = 1;
        for (int i = 1; i < outputShape.length; i++) {
            f *= outputShape[i];
        }
        return f;
    }

    /** @return the number of input features per example */
    public long inputFeatures() {
        return input.length() / input.size(0);
    }

    /** @return the layer's position in topological order */
    public int index() {
        return node.position();
    }

    /** @return the layer's node */
    public Node node() {
        return node;
    }


    /** @return the DL4J layer */
    public Layer layer() {
        return layer;
    }

    /** @return the layer's kind */
    public LayerDerivatives kind() {
        return kind;
    }

    /** @return the layer input as DL4J used it (after the preprocessor and the input dropout) */
    public INDArray input() {
        return input;
    }

    /** @return the batch size N */
    public long batchSize() {
        return input.size(0);
    }

    /** @return {@code z}, or null where not recorded */
    public INDArray preActivation() {
        return preActivation;
    }

    /** @return the input dropout mask, or null */
    public INDArray dropoutMask() {
        return dropoutMask;
    }

    /**
     * @param gradient {@code ∂L/∂x} of the mean loss w.r.t. the node's input (before the
     *     preprocessor), detached, where a vertex's Hessian residual below needs it
     */
    public void setInputGradient(INDArray gradient) {
        this.inputGradient = gradient;
    }

    /**
     * @param running whether the layer, which normalises over the batch in DL4J's training mode,
     *     normalised with its running statistics in this pass
     */
    public void setRunningStatistics(boolean running) {
        this.runningStatistics = running;
    }

    /** @param copies how many rows per example the layer sees (k in a batch stacked by a StackVertex) */
    public void setCopies(long copies) {
        this.copies = copies;
    }

    /**
     * @param mask the mask DL4J multiplies the layer's output by, shaped like the output ({@code [N, ...]}), or
     *     null: the output does not depend on the layer's input or parameters where it is zero
     */
    public void setOutputMask(INDArray mask) {
        this.outputMask = mask;
    }

    /** @return the mask DL4J multiplies the layer's output by, shaped like the output, or null */
    public INDArray outputMask() {
        return outputMask;
    }

    /** @return how many rows per example the layer sees, 1 normally */
    public long copies() {
        return copies;
    }

    /** @return the number of examples N (the rows over {@link #copies()}) */
    public long examples() {
        return input.size(0) / copies;
    }

    /**
     * @param constants whether the layer, which normalises over the batch, is differentiated in this
     *     pass as if the batch's statistics were constants
     */
    public void setBatchStatisticsAsConstants(boolean constants) {
        this.batchStatisticsAsConstants = constants;
    }

    /** @return whether the layer normalised with its running statistics in this pass */
    public boolean runningStatistics() {
        return runningStatistics;
    }

    /**
     * @return whether one example's output of this layer depended on the other examples of the batch
     *     in this pass (batch normalisation with the batch's statistics)
     */
    public boolean couplesExamples() {
        return kind.normalisesOverBatch(layer) && !runningStatistics && !batchStatisticsAsConstants;
    }

    /** @return {@code ∂L/∂x} of the mean loss w.r.t. the node's input, or null where not recorded */
    public INDArray inputGradient() {
        return inputGradient;
    }

    /** @return {@code ∂L/∂a} of the mean loss at the layer output, or null */
    public INDArray outputGradient() {
        return outputGradient;
    }

    /** @return the input preprocessor in front of the layer, or null */
    public InputPreProcessor preProcessor() {
        return node.preProcessor();
    }

    /**
     * A value computed from one chunk of factor columns, for a kind whose curvature accumulation and input
     * Jacobian-transpose product of the same columns share work (a recurrent layer's back-propagation through
     * time): the second call with the same columns (the same data, viewed in any shape) gets the first call's
     * value, which is then forgotten; other columns replace it.
     *
     * @param columns the chunk's columns, in any view of their data
     * @param compute computes the value
     * @param <T> the type of the value
     * @return the value
     */
    @SuppressWarnings("unchecked")
    public <T> T sharedForColumns(INDArray columns, Supplier<T> compute) {
        if (columnsKey == columns.data() && columnsOffset == columns.offset() && columnsValue != null) {
            T value = (T) columnsValue;
            columnsKey = null;
            columnsValue = null;
            return value;
        }
        T value = compute.get();
        columnsKey = columns.data();
        columnsOffset = columns.offset();
        columnsValue = value;
        return value;
    }

    /**
     * @param key what is cached
     * @param compute computes it on first use
     * @return a value computed once per pass for this layer (e.g. the unfolded input)
     */
    public INDArray cached(String key, Supplier<INDArray> compute) {
        return cachedValue(key, compute);
    }

    /**
     * @param key what is cached
     * @param compute computes it on first use, in the pass's cache ({@link ScratchWorkspace#PASS_CACHE}, valid until
     *     the end of the pass) when one is open, else outside workspaces
     * @param <T> the type of the value
     * @return a value computed once per pass for this layer (e.g. a recurrent layer's replayed forward pass)
     */
    @SuppressWarnings("unchecked")
    public <T> T cachedValue(String key, Supplier<T> compute) {
        T value = (T) cache.get(key);
        if (value == null) {
            // not in the current scratch scope: the value outlives the chunk of columns that first asks for it
            if (ScratchWorkspace.isCurrent(ScratchWorkspace.PASS_CACHE)) {
                // asked for while another cached value is computed
                value = compute.get();
            } else {
                try (MemoryWorkspace ignored = ScratchWorkspace.borrow(ScratchWorkspace.PASS_CACHE)) {
                    value = compute.get();
                }
            }
            cache.put(key, value);
        }
        return value;
    }
}
