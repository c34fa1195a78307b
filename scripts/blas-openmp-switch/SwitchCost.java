// SPDX-License-Identifier: Apache-2.0

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Measures, with plain ND4J 1.0.0-M2.1 (no DL4J, no BackPACK), what it costs to alternate between ND4J's own
 * multithreaded operations and BLAS products (docs/benchmarks.md, "Why Variance and BatchDotGrad are slower at two
 * threads"). For the per-example products of 3C3D's three convolutions in the chunks the library forms them
 * ({@code [c, O, P] × [c, K, P]ᵀ}, a batched {@code matmul} that ND4J runs as one OpenBLAS product per example), it
 * times:
 * <ul>
 *   <li>the product repeated on its own, and squaring the products (an element-wise operation) on its own;</li>
 *   <li>the same two in the pattern of a loop step of {@code SumGradSquared}: an element-wise copy the size of the
 *   chunk's unfolded input (standing for the unfolding), the product, the squaring.</li>
 * </ul>
 * Each figure is the best of 6 rounds of 10 repetitions, in ms per repetition. Run it at one and two threads, and with
 * {@code OMP_WAIT_POLICY=PASSIVE}:
 *
 * <pre>
 * mvn -q -pl samples dependency:build-classpath -Dmdep.outputFile=/tmp/cp.txt
 * OMP_NUM_THREADS=2 java -cp "$(cat /tmp/cp.txt)" scripts/blas-openmp-switch/SwitchCost.java
 * </pre>
 */
public class SwitchCost {

    private static final int ROUNDS = 6;
    private static final int REPETITIONS = 10;

    public static void main(String[] args) {
        // chunk of examples, O (output channels), K (input channels × kernel), P (output positions)
        int[][] shapes = {{35, 64, 75, 784}, {22, 96, 576, 144}, {26, 128, 864, 36}};
        System.out.printf("OMP_NUM_THREADS=%s OMP_WAIT_POLICY=%s, BLAS threads %d%n", System.getenv("OMP_NUM_THREADS"),
                System.getenv("OMP_WAIT_POLICY"), Nd4j.factory().blas().getMaxThreads());
        System.out.println("| chunk × O × K × P | product alone | product in the step "
                + "| squaring alone | squaring in the step |");
        System.out.println("|---|---:|---:|---:|---:|");
        for (int[] s : shapes) {
            int c = s[0];
            int o = s[1];
            int k = s[2];
            int p = s[3];
            INDArray delta = Nd4j.rand(DataType.FLOAT, c, o, p);
            INDArray unfolded = Nd4j.rand(DataType.FLOAT, c, k, p);
            INDArray copy = Nd4j.create(DataType.FLOAT, c, k, p);
            INDArray products = Nd4j.create(DataType.FLOAT, c, o, k);
            double[] best = {Double.MAX_VALUE, Double.MAX_VALUE, Double.MAX_VALUE, Double.MAX_VALUE};
            for (int round = 0; round < ROUNDS; round++) {
                long[] spent = new long[4];
                for (int i = 0; i < REPETITIONS; i++) {
                    long t0 = System.nanoTime();
                    Nd4j.matmul(delta, unfolded, products, false, true, false);
                    spent[0] += System.nanoTime() - t0;
                }
                for (int i = 0; i < REPETITIONS; i++) {
                    long t0 = System.nanoTime();
                    products.muli(products);
                    spent[2] += System.nanoTime() - t0;
                }
                for (int i = 0; i < REPETITIONS; i++) {
                    // the pattern of a loop step: unfold (element-wise), product (BLAS), square (element-wise)
                    copy.assign(unfolded);
                    long t0 = System.nanoTime();
                    Nd4j.matmul(delta, unfolded, products, false, true, false);
                    long t1 = System.nanoTime();
                    products.muli(products);
                    spent[1] += t1 - t0;
                    spent[3] += System.nanoTime() - t1;
                }
                for (int j = 0; j < 4; j++) {
                    best[j] = Math.min(best[j], spent[j] / 1e6 / REPETITIONS);
                }
            }
            System.out.printf("| %d × %d × %d × %d | %.2f | %.2f | %.2f | %.2f |%n", c, o, k, p,
                    best[0], best[1], best[2], best[3]);
        }
    }
}
