// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.internal.graph.Node;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.layers.RecurrentLayer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

/**
 * The wrapper of a recurrent layer: a {@link RecurrentLayer} itself, so that DL4J treats it as it treats the
 * wrapped layer wherever it asks ({@code instanceof RecurrentLayer}): step-by-step inference with the stored
 * state, clearing it (a graph clears only the layers that are {@code RecurrentLayer}s, also between the fits
 * of truncated backpropagation through time), the state carried between segments, and the truncated backward
 * step ({@code tbpttBackpropGradient}), all delegated to the wrapped layer. DL4J 1.0.0-M2.1 takes the truncated
 * step only in a graph's {@code backpropGradient(epsilons)}, which starts no pass with extensions (its training
 * passes take the standard step); if DL4J took it in one, the pass fails rather than produce quantities of
 * another gradient.
 */
public final class InterceptingRecurrentLayer extends InterceptingLayer implements RecurrentLayer {

    private final transient RecurrentLayer recurrent;

    /**
     * @param underlying the DL4J recurrent layer
     * @param node its node
     * @param interceptor the network's shared state
     */
    public InterceptingRecurrentLayer(Layer underlying, Node node, Interceptor interceptor) {
        super(underlying, node, interceptor);
        this.recurrent = (RecurrentLayer) underlying;
    }

    @Override
    public INDArray rnnTimeStep(INDArray input, LayerWorkspaceMgr workspaceMgr) {
        return recurrent.rnnTimeStep(input, workspaceMgr);
    }

    @Override
    public Map<String, INDArray> rnnGetPreviousState() {
        return recurrent.rnnGetPreviousState();
    }

    @Override
    public void rnnSetPreviousState(Map<String, INDArray> stateMap) {
        recurrent.rnnSetPreviousState(stateMap);
    }

    @Override
    public void rnnClearPreviousState() {
        recurrent.rnnClearPreviousState();
    }

    @Override
    public INDArray rnnActivateUsingStoredState(INDArray input, boolean training, boolean storeLastForTBPTT,
                                                LayerWorkspaceMgr workspaceMgr) {
        return recurrent.rnnActivateUsingStoredState(input, training, storeLastForTBPTT, workspaceMgr);
    }

    @Override
    public Map<String, INDArray> rnnGetTBPTTState() {
        return recurrent.rnnGetTBPTTState();
    }

    @Override
    public void rnnSetTBPTTState(Map<String, INDArray> state) {
        recurrent.rnnSetTBPTTState(state);
    }

    @Override
    public Pair<Gradient, INDArray> tbpttBackpropGradient(INDArray epsilon, int tbpttBackLength,
                                                          LayerWorkspaceMgr workspaceMgr) {
        BackwardPass pass = interceptor().current();
        if (pass != null && pass.involves(node())) {
            interceptor().abandonPass();
            throw new IllegalStateException(node().describe() + ": DL4J took a truncated backward step in a pass "
                    + "with extensions, which the library does not support");
        }
        return recurrent.tbpttBackpropGradient(epsilon, tbpttBackLength, workspaceMgr);
    }
}
