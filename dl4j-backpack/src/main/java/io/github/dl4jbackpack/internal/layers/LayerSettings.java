// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;

import java.lang.reflect.Field;

/**
 * Reads a field of a DL4J layer implementation that DL4J 1.0.0-M2.1 keeps private without accessor (the
 * forward and backward layers of a {@code BidirectionalLayer}, the time-series layout of a
 * {@code TimeDistributedLayer}, whose {@code conf()} is the wrapped layer's), and sets the one field DL4J reads
 * back itself (an LSTM's forward pass kept for its backward step). A renamed field fails with a message naming
 * it.
 */
final class LayerSettings {

    private LayerSettings() {
    }

    /**
     * @param type the layer class declaring the field
     * @param layer a layer of that class
     * @param name the field name
     * @param <T> the field's type
     * @return the field's value
     */
    @SuppressWarnings("unchecked")
    static <T> T read(Class<? extends Layer> type, Layer layer, String name) {
        try {
            Field f = type.getDeclaredField(name);
            f.setAccessible(true);
            return (T) f.get(layer);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot read field '" + name + "' of DL4J's " + type.getSimpleName()
                    + " (DL4J version other than 1.0.0-M2.1?)", e);
        }
    }

    /**
     * Sets a field DL4J's layer reads back itself (the forward pass an LSTM keeps for its backward step).
     *
     * @param type the layer class declaring the field
     * @param layer a layer of that class
     * @param name the field name
     * @param value the value
     */
    static void write(Class<? extends Layer> type, Layer layer, String name, Object value) {
        try {
            Field f = type.getDeclaredField(name);
            f.setAccessible(true);
            f.set(layer, value);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot set field '" + name + "' of DL4J's " + type.getSimpleName()
                    + " (DL4J version other than 1.0.0-M2.1?)", e);
        }
    }
}
