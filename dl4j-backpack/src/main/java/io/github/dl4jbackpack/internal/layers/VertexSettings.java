// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;

import java.lang.reflect.Field;

/**
 * Reads a setting of a DL4J graph vertex implementation that DL4J 1.0.0-M2.1 keeps in a private
 * field without accessor (the operation of an {@code ElementWiseVertex}, the range of a
 * {@code SubsetVertex}, ...). Only reads; a renamed field fails with a message naming it.
 */
public final class VertexSettings {

    private VertexSettings() {
    }

    /**
     * @param type the vertex class declaring the field
     * @param vertex a vertex of that class
     * @param name the field name
     * @param <T> the field's type (boxed for primitives)
     * @return the field's value
     */
    @SuppressWarnings("unchecked")
    public static <T> T read(Class<? extends GraphVertex> type, GraphVertex vertex, String name) {
        try {
            Field f = type.getDeclaredField(name);
            f.setAccessible(true);
            return (T) f.get(vertex);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot read setting '" + name + "' of " + type.getSimpleName() + " \""
                    + vertex.getVertexName() + "\" (DL4J version other than 1.0.0-M2.1?)", e);
        }
    }
}
