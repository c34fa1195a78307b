// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;


import static io.github.dl4jbackpack.Reference.assertClose;

/** Second-order extensions against the paper's reference implementation on the six golden cases. */
class GoldenSecondOrderTest {

    @ParameterizedTest(name = "{0}")
    @MethodSource("io.github.dl4jbackpack.GoldenCase#names")
    void float64MatchesReferenceImplementation(String name) {
        GoldenCase golden = GoldenCase.load(name);
        MultiLayerNetwork net = golden.network(DataType.DOUBLE);
        Quantities q = BackPackNetwork.extend(net).backward(golden.features(), golden.labels(), new DiagGGNExact(),
                new BatchDiagGGNExact(), new DiagHessian(), new BatchDiagHessian());
        for (int layer : golden.parametricLayers()) {
            for (String p : new String[] {"W", "b"}) {
                String key = layer + "_" + p;
                assertClose(golden.array("diag_ggn_exact_" + key), q.get(DiagGGNExact.class, layer, p), 1e-9, 1e-12,
                        name + " diag_ggn_exact_" + key);
                assertClose(golden.array("batch_diag_ggn_exact_" + key), q.get(BatchDiagGGNExact.class, layer, p),
                        1e-9, 1e-12, name + " batch_diag_ggn_exact_" + key);
                assertClose(golden.array("diag_h_" + key), q.get(DiagHessian.class, layer, p), 1e-9, 1e-12,
                        name + " diag_h_" + key);
                INDArray batchH = q.get(BatchDiagHessian.class, layer, p);
                assertClose(golden.array("diag_h_" + key), batchH.sum(0), 1e-9, 1e-12,
                        name + " Σ_n batch diag_h_" + key);
            }
        }
    }
}
