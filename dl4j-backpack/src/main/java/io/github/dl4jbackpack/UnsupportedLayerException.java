// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import java.util.List;
import java.util.stream.Collectors;

/**
 * Thrown when extensions are requested for a network with layers, vertices, configurations or
 * inputs they do not support. It names every unsupported part at once (layer or vertex, its DL4J
 * type, the extension, why, and what is supported instead), and is thrown before anything is
 * computed: the network is left exactly as it was and stays usable.
 */
public final class UnsupportedLayerException extends IllegalArgumentException {

    private static final long serialVersionUID = 1L;

    /**
     * One unsupported part of a network.
     *
     * @param layer the layer's or vertex's name ({@code "3"} in a MultiLayerNetwork, the vertex name in a
     *     graph), or {@code "network"} for a setting of the whole network
     * @param type the DL4J class of the layer or vertex, or of the network
     * @param extension the extension that cannot handle it
     * @param reason why
     * @param supported what is supported instead
     */
    public record Part(String layer, String type, String extension, String reason, String supported) {

        @Override
        public String toString() {
            String where = "network".equals(layer) ? type : "\"" + layer + "\" (" + type + ")";
            return where + " for " + extension + ": " + reason + ". Supported: " + supported + ".";
        }
    }

    private final transient List<Part> parts;

    /**
     * @param parts every unsupported part, at least one
     */
    public UnsupportedLayerException(List<Part> parts) {
        super(message(parts));
        this.parts = List.copyOf(parts);
    }

    private static String message(List<Part> parts) {
        if (parts.isEmpty()) {
            throw new IllegalArgumentException("no unsupported part");
        }
        if (parts.size() == 1) {
            return "dl4j-backpack cannot compute this on the network: " + parts.get(0);
        }
        return "dl4j-backpack cannot compute this on the network; " + parts.size() + " unsupported parts:\n"
                + parts.stream().map(p -> "  - " + p).collect(Collectors.joining("\n"));
    }

    /** @return every unsupported part */
    public List<Part> parts() {
        return parts;
    }

    /** @return the name of the first unsupported layer or vertex */
    public String layerName() {
        return parts.get(0).layer();
    }

    /** @return the DL4J class name of the first unsupported layer or vertex */
    public String layerType() {
        return parts.get(0).type();
    }

    /** @return the extension that cannot handle the first unsupported part */
    public String extension() {
        return parts.get(0).extension();
    }
}
