package io.github.dl4jbackpack;

/**
 * Thrown when an extension is requested for a network that has a layer, layer configuration or
 * input the extension does not support. Thrown before anything is computed: the network is left
 * exactly as it was and stays usable.
 */
public final class UnsupportedLayerException extends IllegalArgumentException {

    private static final long serialVersionUID = 1L;

    private final int layerIndex;
    private final String layerType;
    private final String extension;

    /**
     * @param layerIndex the index of the offending layer in {@code net.getLayers()}
     * @param layerType the simple class name of the DL4J layer
     * @param extension the name of the extension that cannot handle it
     * @param reason what is wrong
     * @param supported what is supported instead
     */
    public UnsupportedLayerException(int layerIndex, String layerType, String extension, String reason,
                                     String supported) {
        super("Layer " + layerIndex + " (" + layerType + ") is not supported by extension " + extension + ": "
                + reason + ". Supported: " + supported + ".");
        this.layerIndex = layerIndex;
        this.layerType = layerType;
        this.extension = extension;
    }

    /** @return the index of the offending layer */
    public int layerIndex() {
        return layerIndex;
    }

    /** @return the simple class name of the offending DL4J layer */
    public String layerType() {
        return layerType;
    }

    /** @return the name of the extension that cannot handle the layer */
    public String extension() {
        return extension;
    }
}
