// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spi;

import java.util.List;

/**
 * The parameters of one DL4J updater block (a contiguous range of the network's flattened
 * parameters that share one {@code GradientUpdater}, possibly across layers) together with the
 * quantities of one training iteration.
 *
 * @param segments the parameters in the block, in the block's order
 * @param quantities the quantities of the iteration
 * @param iteration DL4J's iteration count
 * @param epoch DL4J's epoch count
 */
public record BlockCurvature(List<Segment> segments, ParameterQuantities quantities, int iteration, int epoch) {

    /**
     * One parameter inside a block.
     *
     * @param layer the layer name (index in a MultiLayerNetwork, vertex name in a graph)
     * @param param the DL4J parameter name
     * @param offset where the parameter starts in the block's flat view
     * @param length its number of elements
     * @param shape its {@code paramTable()} shape
     * @param order the storage order of that shape in the flat view ({@code 'f'} for dense weights)
     * @param l2 the L2 regularisation strength η of the parameter at this iteration (0 if none);
     *     DL4J has already added {@code η θ} to the gradient the updater sees
     */
    public record Segment(String layer, String param, long offset, long length, long[] shape, char order, double l2) {

        /** @return DL4J's parameter key {@code "<layer>_<param>"} */
        public String key() {
            return layer + "_" + param;
        }
    }
}
