// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.factory.Nd4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** The DeepOBS networks have the paper's parameter counts and produce class probabilities. */
class DeepObsNetworksTest {

    @ParameterizedTest
    @EnumSource(DeepObsNetworks.class)
    void parameterCountsMatchThePaper(DeepObsNetworks problem) {
        MultiLayerNetwork net = problem.build(DataType.FLOAT, null, 1);
        assertEquals(problem.parameters(), net.numParams());
        long[] outShape = net.output(Nd4j.rand(DataType.FLOAT, problem.inputShape(2))).shape();
        assertArrayEquals(new long[] {2, problem.classes()}, outShape);
        assertEquals(problem, DeepObsNetworks.of(problem.shortName()));
    }
}
