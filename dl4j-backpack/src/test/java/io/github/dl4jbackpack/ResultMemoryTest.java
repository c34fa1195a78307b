// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.internal.memory.ResultMemory;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Individual gradients computed into the memory of closed results ({@link ResultMemory}): a closed result's memory
 * holds the next pass's result of the same size (no fresh pages), whose values are those computed in fresh memory;
 * a closed result refuses to be read even once its memory holds another; a result never closed is never
 * overwritten; memory not reused by the next pass is freed at its end, or at once by
 * {@link BackPackNetwork#releaseThreadMemory()}.
 */
class ResultMemoryTest {

    private static final int N = 32;
    private static final String DENSE_W = "0_W";
    private static final String CONV_W = "0_W";

    @AfterEach
    void releaseMemory() {
        BackPackNetwork.releaseThreadMemory();
    }

    /** Dense weights of 64 × 256 per example: 2 MB (float) of individual gradients per pass. */
    private static MultiLayerNetwork dense(DataType type) {
        return TestNets.build(type, InputType.feedForward(64),
                new DenseLayer.Builder().nOut(256).activation(Activation.TANH).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(10).activation(Activation.SOFTMAX).build());
    }

    private static INDArray x(DataType type, long seed) {
        return TestNets.features(type, seed, N, 64);
    }

    private static INDArray y(DataType type, long seed) {
        return TestNets.labels(type, LossFunction.MCXENT, seed, N, 10);
    }

    private static long bytes(DataType type) {
        return (long) N * 64 * 256 * type.width();
    }

    @ParameterizedTest
    @EnumSource(value = DataType.class, names = {"FLOAT", "DOUBLE"})
    void aClosedResultsMemoryHoldsTheNextResultWithTheValuesOfFreshMemory(DataType type) {
        MultiLayerNetwork net = dense(type);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        bp.backward(x(type, 1), y(type, 2), new BatchGrad()).close();
        assertTrue(ResultMemory.heldBytes() >= bytes(type), "kept for the next pass");
        long reused = ResultMemory.reusedBytes();
        Quantities second = bp.backward(x(type, 3), y(type, 4), new BatchGrad());
        assertTrue(ResultMemory.reusedBytes() - reused >= bytes(type), "the closed result's memory holds the next");
        assertEquals(0, ResultMemory.heldBytes(), "taken");
        // the same pass while that memory is held by an open result: computed into fresh memory
        long before = ResultMemory.reusedBytes();
        Quantities fresh = BackPackNetwork.extend(net.clone()).backward(x(type, 3), y(type, 4), new BatchGrad());
        assertEquals(before, ResultMemory.reusedBytes(), "nothing to reuse");
        INDArray reusedValues = second.byKey(BatchGrad.class, DENSE_W);
        assertEquals(fresh.byKey(BatchGrad.class, DENSE_W), reusedValues, "values computed into reused memory");
        Reference.assertClose(Reference.individualGradients(net.clone(), x(type, 3), y(type, 4)).get(DENSE_W),
                reusedValues, type == DataType.DOUBLE ? 1e-10 : 1e-4, type == DataType.DOUBLE ? 1e-12 : 1e-6,
                "against single-example passes");
    }

    @Test
    void valuesReadBeforeClosingStayValidAndTheClosedQuantitiesRefuse() {
        BackPackNetwork bp = BackPackNetwork.extend(dense(DataType.FLOAT));
        Quantities first = bp.backward(x(DataType.FLOAT, 1), y(DataType.FLOAT, 2), new BatchGrad());
        INDArray read = first.byKey(BatchGrad.class, DENSE_W);
        INDArray copy = read.dup();
        first.close();
        long reused = ResultMemory.reusedBytes();
        Quantities second = bp.backward(x(DataType.FLOAT, 3), y(DataType.FLOAT, 4), new BatchGrad());
        assertTrue(ResultMemory.reusedBytes() > reused);
        assertEquals(copy, read, "a value read before closing is the reader's own");
        assertNotEquals(copy, second.byKey(BatchGrad.class, DENSE_W));
        assertThrows(IllegalStateException.class, () -> first.byKey(BatchGrad.class, DENSE_W));
        first.close();
        assertTrue(Double.isFinite(second.byKey(BatchGrad.class, DENSE_W).sumNumber().doubleValue()));
    }

    @Test
    void aResultNeverClosedIsNeverOverwritten() {
        BackPackNetwork bp = BackPackNetwork.extend(dense(DataType.FLOAT));
        Quantities first = bp.backward(x(DataType.FLOAT, 1), y(DataType.FLOAT, 2), new BatchGrad());
        INDArray copy = first.byKey(BatchGrad.class, DENSE_W);
        assertEquals(0, ResultMemory.heldBytes());
        long reused = ResultMemory.reusedBytes();
        for (int pass = 0; pass < 3; pass++) {
            bp.backward(x(DataType.FLOAT, 10 + pass), y(DataType.FLOAT, 20 + pass), new BatchGrad()).close();
        }
        // the first of these passes had nothing to reuse, the two after it each other's memory
        assertEquals(2 * bytes(DataType.FLOAT), ResultMemory.reusedBytes() - reused);
        assertEquals(copy, first.byKey(BatchGrad.class, DENSE_W));
    }

    @Test
    void memoryTheNextPassDoesNotReuseIsFreedAtItsEnd() {
        BackPackNetwork bp = BackPackNetwork.extend(dense(DataType.FLOAT));
        bp.backward(x(DataType.FLOAT, 1), y(DataType.FLOAT, 2), new BatchGrad()).close();
        assertTrue(ResultMemory.heldBytes() > 0);
        bp.backward(x(DataType.FLOAT, 1), y(DataType.FLOAT, 2), new BatchL2Grad()).close();
        assertEquals(0, ResultMemory.heldBytes(), "a pass without individual gradients frees what it did not reuse");
        bp.backward(x(DataType.FLOAT, 1), y(DataType.FLOAT, 2), new BatchGrad()).close();
        assertTrue(ResultMemory.heldBytes() > 0);
        BackPackNetwork.releaseThreadMemory();
        assertEquals(0, ResultMemory.heldBytes(), "released at once");
    }

    /** A result closed on another thread goes back to the memory of the thread that computed it. */
    @Test
    void aResultClosedOnAnotherThreadReturnsToItsThread() throws Exception {
        BackPackNetwork bp = BackPackNetwork.extend(dense(DataType.FLOAT));
        Quantities first = bp.backward(x(DataType.FLOAT, 1), y(DataType.FLOAT, 2), new BatchGrad());
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread closer = new Thread(() -> {
            try {
                first.close();
                assertEquals(0, ResultMemory.heldBytes(), "nothing held by the closing thread");
            } catch (Throwable t) {
                failure.set(t);
            }
        });
        closer.start();
        closer.join();
        if (failure.get() != null) {
            throw new AssertionError(failure.get());
        }
        assertTrue(ResultMemory.heldBytes() >= bytes(DataType.FLOAT));
        long reused = ResultMemory.reusedBytes();
        bp.backward(x(DataType.FLOAT, 3), y(DataType.FLOAT, 4), new BatchGrad()).close();
        assertTrue(ResultMemory.reusedBytes() - reused >= bytes(DataType.FLOAT));
    }

    /** Per-example curvature diagonals go to the memory of closed results too, with the values of fresh memory. */
    @Test
    void perExampleDiagonalsAreComputedIntoReusedMemory() {
        MultiLayerNetwork net = dense(DataType.DOUBLE);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        bp.backward(x(DataType.DOUBLE, 1), y(DataType.DOUBLE, 2), new BatchDiagGGNExact()).close();
        long reused = ResultMemory.reusedBytes();
        Quantities second = bp.backward(x(DataType.DOUBLE, 3), y(DataType.DOUBLE, 4), new BatchDiagGGNExact());
        assertTrue(ResultMemory.reusedBytes() - reused >= bytes(DataType.DOUBLE));
        Quantities fresh = BackPackNetwork.extend(net.clone()).backward(x(DataType.DOUBLE, 3), y(DataType.DOUBLE, 4),
                new BatchDiagGGNExact());
        for (String key : net.paramTable().keySet()) {
            assertEquals(fresh.byKey(BatchDiagGGNExact.class, key), second.byKey(BatchDiagGGNExact.class, key), key);
        }
    }

    /** A convolution whose input is unfolded by chunks forms its individual gradients chunk by chunk into the memory. */
    @Test
    void aConvolutionsChunksAreFormedIntoReusedMemory() {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.convolutional(12, 12, 16),
                new ConvolutionLayer.Builder(3, 3).nOut(64).activation(Activation.RELU).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(5).activation(Activation.SOFTMAX).build());
        INDArray x = TestNets.features(DataType.DOUBLE, 5, 16, 16, 12, 12);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 6, 16, 5);
        INDArray x2 = TestNets.features(DataType.DOUBLE, 7, 16, 16, 12, 12);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Map<String, INDArray> loop = Reference.individualGradients(net.clone(), x2, y);
        bp.backward(x, y, new BatchGrad()).close();
        long reused = ResultMemory.reusedBytes();
        Quantities second = bp.backward(x2, y, new BatchGrad());
        // both weights' individual gradients: the convolution's, formed chunk by chunk, and the dense layer's
        assertEquals(16L * 64 * 16 * 9 * 8 + 16L * 10 * 10 * 64 * 5 * 8, ResultMemory.reusedBytes() - reused);
        for (String key : new String[] {CONV_W, "1_W"}) {
            Reference.assertClose(loop.get(key), second.byKey(BatchGrad.class, key), 1e-10, 1e-12, key);
        }
    }
}
