// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.Variance;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.memory.abstracts.Nd4jWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The curvature memory budget is an upper bound that holds: the second-order pass's scratch
 * workspace is sized to the work (a 67-parameter network needs kilobytes, not the budget), never
 * above the budget, and never spills (its size estimate bounds what it allocates); a budget too
 * small for one column is refused with the size needed; per-thread memory is released on request.
 */
class MemoryBudgetTest {

    @AfterEach
    void release() {
        BackPackNetwork.releaseThreadMemory();
    }

    static MultiLayerNetwork tiny(DataType type) {
        // 4·6+6 + 6·5+5 + ... = 67 parameters
        return TestNets.build(type, InputType.feedForward(4),
                new DenseLayer.Builder().nOut(6).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(3).activation(Activation.SIGMOID).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(4).activation(Activation.SOFTMAX).build());
    }

    static MultiLayerNetwork cnn() {
        return TestNets.build(DataType.FLOAT, InputType.convolutional(12, 12, 3),
                new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.TANH).build(),
                new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build(),
                new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.RELU).build(),
                new DenseLayer.Builder().nOut(16).activation(Activation.SOFTPLUS).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(10).activation(Activation.SOFTMAX).build());
    }

    private static Nd4jWorkspace curvatureWorkspace() {
        MemoryWorkspace ws = Nd4j.getWorkspaceManager().getWorkspaceForCurrentThread(ScratchWorkspace.CURVATURE);
        return (Nd4jWorkspace) ws;
    }

    private static void assertWithin(long budget, String what) {
        Nd4jWorkspace ws = curvatureWorkspace();
        assertTrue(ws.getCurrentSize() <= Math.max(budget, ScratchWorkspace.MINIMUM_BYTES),
                what + ": workspace of " + ws.getCurrentSize() + " bytes, budget " + budget);
        assertEquals(0, ws.getSpilledSize(), what + ": allocations beyond the estimated size");
    }

    @Test
    void aTinyNetworkUsesLittleScratchMemoryWhateverTheBudget() {
        for (DataType type : new DataType[] {DataType.FLOAT, DataType.DOUBLE}) {
            MultiLayerNetwork net = tiny(type);
            assertEquals(67, net.numParams());
            BackPackNetwork bp = BackPackNetwork.extend(net);
            INDArray x = TestNets.features(type, 1, 32, 4);
            INDArray y = TestNets.labels(type, LossFunction.MCXENT, 2, 32, 4);
            bp.backward(x, y, new DiagGGNExact(), new DiagHessian(), new KFLR());
            assertTrue(ScratchWorkspace.allocatedBytes(ScratchWorkspace.CURVATURE) <= 1L << 20,
                    type + ": " + ScratchWorkspace.allocatedBytes(ScratchWorkspace.CURVATURE) + " bytes");
            assertWithin(bp.curvatureMemoryBudget(), type + " tiny");
            BackPackNetwork.releaseThreadMemory();
        }
    }

    @Test
    void chunksStayWithinTheBudgetAndEstimatesBoundAllocations() {
        MultiLayerNetwork net = cnn();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray x = TestNets.features(DataType.FLOAT, 3, 16, 3, 12, 12);
        INDArray y = TestNets.labels(DataType.FLOAT, LossFunction.MCXENT, 4, 16, 10);
        Quantities reference = bp.backward(x, y, new DiagGGNExact(), new DiagHessian());
        for (long budget : new long[] {8L << 20, 2L << 20, 1L << 20}) {
            bp.setCurvatureMemoryBudget(budget);
            Quantities q = bp.backward(x, y, new DiagGGNExact(), new DiagHessian());
            assertWithin(budget, "budget " + budget);
            for (int layer : q.layers(DiagGGNExact.class)) {
                for (String p : q.params(DiagGGNExact.class, layer)) {
                    Reference.assertClose(reference.get(DiagHessian.class, layer, p), q.get(DiagHessian.class, layer, p),
                            1e-4, 1e-6, "chunked result, budget " + budget);
                }
            }
        }
    }

    /**
     * The Hessian residual inside recurrent layers and wrappers (SimpleRnn, LSTM, Bidirectional MUL's product,
     * TimeDistributed's activation) goes in chunks of columns: the same diagonals, per batch and per sequence, with
     * allocations within the estimate.
     */
    @ParameterizedTest
    @ValueSource(strings = {"SimpleRnn", "LSTM", "Bidirectional MUL", "TimeDistributed"})
    void recurrentResidualsGoInChunksOfColumns(String kind) {
        boolean lstm = kind.equals("LSTM");
        org.deeplearning4j.nn.conf.layers.Layer recurrent;
        switch (kind) {
            case "LSTM":
                recurrent = new LSTM.Builder().nOut(6).activation(Activation.TANH).build();
                break;
            case "Bidirectional MUL":
                recurrent = new org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional(
                        org.deeplearning4j.nn.conf.layers.recurrent.Bidirectional.Mode.MUL,
                        new SimpleRnn.Builder().nOut(8).activation(Activation.TANH).build());
                break;
            case "TimeDistributed":
                recurrent = new org.deeplearning4j.nn.conf.layers.recurrent.TimeDistributed(new DenseLayer.Builder()
                        .nOut(8).activation(Activation.TANH).build());
                break;
            default:
                recurrent = new SimpleRnn.Builder().nOut(8).activation(Activation.TANH).build();
        }
        // TimeDistributed takes a series: below it a SimpleRnn rather than a dense layer over the steps
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.recurrent(3, 10),
                kind.equals("TimeDistributed") ? new SimpleRnn.Builder().nOut(4).activation(Activation.TANH).build()
                        : new DenseLayer.Builder().nOut(4).activation(Activation.TANH).build(), recurrent,
                new RnnOutputLayer.Builder(LossFunction.MSE).nOut(2).activation(Activation.IDENTITY).build());
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray x = TestNets.features(DataType.DOUBLE, 3, 32, 3, 10);
        INDArray y = TestNets.features(DataType.DOUBLE, 4, 32, 2, 10);
        Quantities reference = bp.backward(x, y, new DiagHessian(), new BatchDiagHessian());
        long[] budgets = lstm ? new long[] {16L << 20, 4L << 20, 2L << 20}
                : kind.equals("SimpleRnn") ? new long[] {4L << 20, 1L << 20, 600L << 10}
                : new long[] {4L << 20, 2L << 20, 1200L << 10};
        for (long budget : budgets) {
            bp.setCurvatureMemoryBudget(budget);
            Quantities q = bp.backward(x, y, new DiagHessian(), new BatchDiagHessian());
            assertWithin(budget, "budget " + budget);
            for (int layer : q.layers(DiagHessian.class)) {
                for (String p : q.params(DiagHessian.class, layer)) {
                    Reference.assertClose(reference.get(DiagHessian.class, layer, p), q.get(DiagHessian.class, layer, p),
                            1e-10, 1e-12, "chunked Hessian, budget " + budget);
                    Reference.assertClose(reference.get(BatchDiagHessian.class, layer, p),
                            q.get(BatchDiagHessian.class, layer, p), 1e-10, 1e-12,
                            "chunked per-sequence Hessian, budget " + budget);
                }
            }
        }
    }

    @Test
    void budgetsThatCannotHoldOneColumnAreRefusedSayingWhatIsNeeded() {
        MultiLayerNetwork net = cnn();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        IllegalArgumentException tiny = assertThrows(IllegalArgumentException.class, () -> bp.setCurvatureMemoryBudget(1));
        assertTrue(tiny.getMessage().contains("at least"), tiny.getMessage());
        bp.setCurvatureMemoryBudget(ScratchWorkspace.MINIMUM_BYTES);
        INDArray x = TestNets.features(DataType.FLOAT, 3, 64, 3, 12, 12);
        INDArray y = TestNets.labels(DataType.FLOAT, LossFunction.MCXENT, 4, 64, 10);
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> bp.backward(x, y, new DiagGGNExact()));
        assertTrue(e.getMessage().contains("raise it"), e.getMessage());
        bp.setCurvatureMemoryBudget(1L << 30);
        bp.backward(x, y, new DiagGGNExact());
    }

    @Test
    void firstOrderScratchIsSizedPerNetworkNotByTheLargestNetworkTheThreadEverRan() {
        MultiLayerNetwork big = cnn();
        BackPackNetwork.extend(big).backward(TestNets.features(DataType.FLOAT, 3, 256, 3, 12, 12),
                TestNets.labels(DataType.FLOAT, LossFunction.MCXENT, 4, 256, 10), new Variance(),
                new io.github.dl4jbackpack.extensions.BatchGrad());
        long bigScratch = ScratchWorkspace.allocatedBytes(ScratchWorkspace.FIRST_ORDER);
        BackPackNetwork.releaseThreadMemory();
        MultiLayerNetwork small = tiny(DataType.FLOAT);
        BackPackNetwork.extend(small).backward(TestNets.features(DataType.FLOAT, 1, 8, 4),
                TestNets.labels(DataType.FLOAT, LossFunction.MCXENT, 2, 8, 4), new Variance());
        long smallScratch = ScratchWorkspace.allocatedBytes(ScratchWorkspace.FIRST_ORDER);
        assertTrue(smallScratch < bigScratch / 4, "small network's scratch " + smallScratch + " bytes after the big "
                + "network's " + bigScratch);
    }

    @Test
    void aThreadsScratchMemoryIsReleasedOnRequest() throws Exception {
        MultiLayerNetwork net = cnn();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray x = TestNets.features(DataType.FLOAT, 3, 8, 3, 12, 12);
        INDArray y = TestNets.labels(DataType.FLOAT, LossFunction.MCXENT, 4, 8, 10);
        AtomicLong held = new AtomicLong();
        AtomicLong after = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread worker = new Thread(() -> {
            try {
                bp.backward(x, y, new Variance(), new DiagGGNExact());
                held.set(ScratchWorkspace.allocatedBytes(ScratchWorkspace.CURVATURE)
                        + ScratchWorkspace.allocatedBytes(ScratchWorkspace.FIRST_ORDER));
                BackPackNetwork.releaseThreadMemory();
                after.set(ScratchWorkspace.allocatedBytes(ScratchWorkspace.CURVATURE)
                        + ScratchWorkspace.allocatedBytes(ScratchWorkspace.FIRST_ORDER));
            } catch (Throwable t) {
                failure.set(t);
            }
        });
        worker.start();
        worker.join();
        if (failure.get() != null) {
            throw new AssertionError(failure.get());
        }
        assertTrue(held.get() > 0, "the pass kept scratch memory for reuse");
        assertEquals(0, after.get(), "released");
    }
}
