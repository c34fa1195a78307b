// SPDX-License-Identifier: Apache-2.0

import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Reproduces ND4J 1.0.0-M2.1's native crash with networks trained on several threads of one JVM
 * (docs/experiments.md, "Why processes"): each thread trains a logistic regression of its own with plain DL4J
 * (Adam, no BackPACK) in a loop, and the step count is printed every 10 s until the time is up or the JVM dies.
 * The crash is a race: on a 2-core machine it came after 71 s and 83 s (workspaces off) in two runs, and a third run
 * of 150 s, with another process busy, ended without one. Frequent collections make it come sooner:
 *
 * <pre>
 * mvn -q -pl samples dependency:build-classpath -Dmdep.outputFile=/tmp/cp.txt
 * OMP_NUM_THREADS=1 java -Xmn2m -cp "$(cat /tmp/cp.txt)" scripts/nd4j-thread-crash/ConcurrentTraining.java 180 2 on
 * </pre>
 *
 * Arguments: seconds, threads, workspaces ({@code on} or {@code off}).
 */
public class ConcurrentTraining {

    public static void main(String[] args) throws InterruptedException {
        long seconds = Long.parseLong(args[0]);
        int threads = Integer.parseInt(args[1]);
        WorkspaceMode workspaces = args[2].equals("on") ? WorkspaceMode.ENABLED : WorkspaceMode.NONE;
        AtomicLong steps = new AtomicLong();
        long end = System.nanoTime() + seconds * 1_000_000_000L;
        Thread[] training = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            int seed = t;
            training[t] = new Thread(() -> {
                MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder().seed(seed)
                        .dataType(DataType.FLOAT).updater(new Adam(1e-3)).weightInit(WeightInit.XAVIER)
                        .trainingWorkspaceMode(workspaces).inferenceWorkspaceMode(workspaces).list()
                        .layer(new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nIn(784).nOut(10)
                                .activation(Activation.SOFTMAX).build())
                        .build();
                MultiLayerNetwork net = new MultiLayerNetwork(conf);
                net.init();
                INDArray x = Nd4j.rand(DataType.FLOAT, 128, 784);
                INDArray y = Nd4j.zeros(DataType.FLOAT, 128, 10);
                for (int i = 0; i < 128; i++) {
                    y.putScalar(i, i % 10, 1);
                }
                while (System.nanoTime() < end) {
                    net.fit(x, y);
                    steps.incrementAndGet();
                }
            });
            training[t].start();
        }
        long start = System.nanoTime();
        while (System.nanoTime() < end) {
            Thread.sleep(10_000);
            System.out.printf("%.0f s: %d steps%n", (System.nanoTime() - start) / 1e9, steps.get());
        }
        for (Thread t : training) {
            t.join();
        }
        System.out.println("no crash in " + steps.get() + " steps");
    }
}
