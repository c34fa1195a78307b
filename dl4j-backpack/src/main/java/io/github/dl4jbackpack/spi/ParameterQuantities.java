// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spi;

import io.github.dl4jbackpack.extensions.Extension;

/**
 * Read access to the quantities of one extended backward pass, per layer and parameter, as
 * applications of the SPI see them (the library's {@code Quantities} implements it).
 */
public interface ParameterQuantities {

    /** @return the number of examples N in the batch */
    long batchSize();

    /**
     * @param extension the extension's class
     * @param layer the layer name (index in a MultiLayerNetwork, vertex name in a graph)
     * @param param the DL4J parameter name
     * @param <T> the extension's value type
     * @return the value (arrays as a fresh copy)
     * @throws IllegalArgumentException if there is no such value
     */
    <T> T get(Class<? extends Extension<T>> extension, String layer, String param);
}
