// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One extended network used from two threads at once: DL4J networks are not thread-safe, and the
 * library refuses the second caller with a message saying so, instead of failing somewhere inside;
 * the network is intact afterwards.
 */
class ConcurrentUseTest {

    @Test
    void aSecondThreadIsRefusedClearlyAndTheNetworkStaysIntact() throws Exception {
        MultiLayerNetwork net = TestNets.build(DataType.DOUBLE, InputType.feedForward(20),
                new DenseLayer.Builder().nOut(64).activation(Activation.TANH).build(),
                new DenseLayer.Builder().nOut(64).activation(Activation.TANH).build(),
                new OutputLayer.Builder(LossFunction.MCXENT).nOut(10).activation(Activation.SOFTMAX).build());
        MultiLayerNetwork plain = net.clone();
        BackPackNetwork bp = BackPackNetwork.extend(net);
        INDArray x = TestNets.features(DataType.DOUBLE, 1, 32, 20);
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 2, 32, 10);
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        AtomicInteger succeeded = new AtomicInteger();
        CountDownLatch start = new CountDownLatch(1);
        List<Thread> threads = List.of(new Thread(() -> run(bp, x, y, start, failures, succeeded), "first"),
                new Thread(() -> run(bp, x, y, start, failures, succeeded), "second"));
        threads.forEach(Thread::start);
        start.countDown();
        for (Thread t : threads) {
            t.join();
        }
        assertTrue(succeeded.get() >= 30, "at least one thread's calls all ran: " + succeeded.get());
        for (Throwable t : failures) {
            assertTrue(t instanceof IllegalStateException && t.getMessage().contains("not thread-safe"),
                    "an unclear failure: " + t);
        }
        Quantities q = bp.backward(x, y, new Variance());
        plain.setInput(x);
        plain.setLabels(y);
        plain.computeGradientAndScore();
        assertArrayEquals(plain.gradient().gradient().dup().data().asDouble(),
                net.gradient().gradient().dup().data().asDouble(), 0.0, "gradient after concurrent use");
        assertEquals(plain.score(), q.score(), 0.0);
    }

    private static void run(BackPackNetwork bp, INDArray x, INDArray y, CountDownLatch start,
                            ConcurrentLinkedQueue<Throwable> failures, AtomicInteger succeeded) {
        try {
            start.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
        }
        for (int i = 0; i < 30; i++) {
            try {
                bp.backward(x, y, new Variance(), new DiagGGNExact());
                succeeded.incrementAndGet();
            } catch (Throwable t) {
                failures.add(t);
            }
        }
    }
}
