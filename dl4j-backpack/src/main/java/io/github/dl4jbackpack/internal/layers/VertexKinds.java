// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.deeplearning4j.nn.graph.vertex.impl.ScaleVertex;
import org.deeplearning4j.nn.graph.vertex.impl.ShiftVertex;

import java.util.List;
import java.util.Optional;
import java.util.stream.Collectors;

/** The supported ComputationGraph vertex kinds without parameters, and the lookup of a vertex's kind. */
public final class VertexKinds {

    private static final List<VertexDerivatives> KINDS = List.of(
            new ElementWiseDerivatives(),
            new MergeDerivatives(),
            new SubsetDerivatives(),
            new ScaleShiftDerivatives(ScaleVertex.class),
            new ScaleShiftDerivatives(ShiftVertex.class),
            new ReshapeDerivatives(),
            new L2NormalizeDerivatives(),
            new L2VertexDerivatives(),
            new PoolHelperDerivatives(),
            new StackDerivatives(),
            new UnstackDerivatives(),
            new LastTimeStepVertexDerivatives(),
            new DuplicateToTimeSeriesDerivatives(),
            new ReverseTimeSeriesDerivatives());

    private VertexKinds() {
    }

    /**
     * @param vertex a DL4J vertex that is not a layer
     * @return its kind, if supported
     */
    public static Optional<VertexDerivatives> of(GraphVertex vertex) {
        return KINDS.stream().filter(k -> k.matches(vertex)).findFirst();
    }

    /** @return the names of all supported kinds, for messages */
    public static String supportedNames() {
        return KINDS.stream().map(VertexDerivatives::kindName).collect(Collectors.joining(", "));
    }
}
