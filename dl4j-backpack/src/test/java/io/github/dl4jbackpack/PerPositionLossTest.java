// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.CnnLossLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.iter.NdIndexIterator;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.LinkedHashMap;
import java.util.Map;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Per-position losses ({@code CnnLossLayer}, as UNet ends): {@code ℓ_n} is the loss summed over the
 * positions of example n, so its Hessian w.r.t. the layer input is block-diagonal over positions.
 * Every quantity against references from DL4J's forward pass alone, float64: the GGN from central
 * differences of the output {@code z} and the per-position loss Hessians written out; the Hessian
 * from five-point differences of DL4J's score; individual gradients from central differences of
 * single-example scores.
 */
class PerPositionLossTest {

    private static final int N = 3;
    private static final int H = 4;
    private static final int W = 3;

    enum Case {
        SIGMOID_XENT(BruteForce.Loss.XENT, 2),
        SOFTMAX_MCXENT(BruteForce.Loss.MCXENT, 3);

        final BruteForce.Loss loss;
        final int channels;

        Case(BruteForce.Loss loss, int channels) {
            this.loss = loss;
            this.channels = channels;
        }

        MultiLayerNetwork build(LossFunction function, Activation activation) {
            return TestNets.build(DataType.DOUBLE, InputType.convolutional(H + 1, W + 1, 2),
                    new ConvolutionLayer.Builder(2, 2).nOut(3).activation(Activation.TANH).build(),
                    new ConvolutionLayer.Builder(1, 1).nOut(channels).activation(Activation.IDENTITY).build(),
                    new CnnLossLayer.Builder(function).activation(activation).build());
        }

        /** @return per-position labels: one-hot over channels (softmax) or binary (sigmoid) */
        INDArray labels() {
            java.util.Random r = new java.util.Random(5);
            INDArray y = Nd4j.zeros(DataType.DOUBLE, N, channels, H, W);
            for (int n = 0; n < N; n++) {
                for (int h = 0; h < H; h++) {
                    for (int w = 0; w < W; w++) {
                        if (loss == BruteForce.Loss.MCXENT) {
                            y.putScalar(new int[] {n, r.nextInt(channels), h, w}, 1.0);
                        } else {
                            for (int c = 0; c < channels; c++) {
                                y.putScalar(new int[] {n, c, h, w}, r.nextBoolean() ? 1.0 : 0.0);
                            }
                        }
                    }
                }
            }
            return y;
        }
    }

    /** @return {@code ∇²_z ℓ_n} over the flattened {@code [C, H, W]} of example n: one block per position */
    private static INDArray lossHessian(Case c, double[] z) {
        int p = H * W;
        INDArray h = Nd4j.zeros(DataType.DOUBLE, c.channels * p, c.channels * p);
        for (int q = 0; q < p; q++) {
            double[] vector = new double[c.channels];
            for (int k = 0; k < c.channels; k++) {
                vector[k] = z[k * p + q];
            }
            double[][] block = c.loss.hessian(vector);
            for (int i = 0; i < c.channels; i++) {
                for (int j = 0; j < c.channels; j++) {
                    h.putScalar(i * p + q, j * p + q, block[i][j]);
                }
            }
        }
        return h;
    }

    @ParameterizedTest
    @EnumSource(Case.class)
    void everyQuantityEqualsTheReferences(Case c) {
        MultiLayerNetwork net = c.build(c.loss.function, c.loss.activation);
        MultiLayerNetwork plain = net.clone();
        MultiLayerNetwork ref = c.build(LossFunction.L2, Activation.IDENTITY);
        ref.setParams(net.params());
        INDArray x = TestNets.features(DataType.DOUBLE, 3, N, 2, H + 1, W + 1);
        INDArray y = c.labels();
        long features = (long) c.channels * H * W;
        BruteForce.Jacobians jac = BatchNormalizationTest.jacobians(ref,
                () -> ref.output(x, false).dup('c').reshape('c', N, features));

        Quantities q = BackPackNetwork.extend(net).backward(x, y, new DiagGGNExact(), new BatchDiagGGNExact(),
                new DiagHessian(), new BatchGrad(), new KFLR(), new KFRA());
        for (String key : jac.shapes.keySet()) {
            INDArray ggn = Nd4j.create(DataType.DOUBLE, jac.shapes.get(key));
            INDArray perExample = Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(N, jac.shapes.get(key)));
            for (int n = 0; n < N; n++) {
                INDArray j = jac.j.get(n).get(key);
                INDArray diag = j.mul(lossHessian(c, jac.z[n]).mmul(j)).sum(0).divi(N).reshape('c', jac.shapes.get(key));
                ggn.addi(diag);
                perExample.get(org.nd4j.linalg.indexing.NDArrayIndex.point(n)).assign(diag);
            }
            assertClose(ggn, q.byKey(DiagGGNExact.class, key), 1e-6, 1e-9, c + " GGN " + key);
            assertClose(perExample, q.byKey(BatchDiagGGNExact.class, key), 1e-6, 1e-9, c + " per-example GGN " + key);
        }
        Map<String, INDArray> hessian = hessianDiagonal(plain, x, y);
        Map<String, INDArray> gradients = individualGradients(plain, x, y);
        for (String key : hessian.keySet()) {
            assertClose(hessian.get(key), q.byKey(DiagHessian.class, key), 1e-4, 1e-6, c + " Hessian " + key);
            assertClose(gradients.get(key), q.byKey(BatchGrad.class, key), 1e-6, 1e-6, c + " gradient " + key);
        }
    }

    @ParameterizedTest
    @EnumSource(Case.class)
    void sampledColumnsOfAllPositionsAtOnceConvergeToTheExactGgn(Case c) {
        MultiLayerNetwork net = c.build(c.loss.function, c.loss.activation);
        INDArray x = TestNets.features(DataType.DOUBLE, 3, N, 2, H + 1, W + 1);
        BackPackNetwork bp = BackPackNetwork.extend(net);
        Quantities exact = bp.backward(x, c.labels(), new DiagGGNExact());
        Nd4j.getRandom().setSeed(42);
        Quantities mc = bp.backward(x, c.labels(), new DiagGGNMC(3000));
        for (String key : net.paramTable().keySet()) {
            INDArray e = exact.byKey(DiagGGNExact.class, key);
            double error = mc.byKey(DiagGGNMC.class, key).sub(e).norm2Number().doubleValue();
            assertTrue(error <= 0.1 * e.norm2Number().doubleValue(), c + " " + key + ": " + error);
        }
    }

    private static double score(MultiLayerNetwork net, INDArray x, INDArray y) {
        return net.score(new DataSet(x, y), false);
    }

    /** Five-point second differences of DL4J's score {@code L = (1/N) Σ_n ℓ_n}. */
    private static Map<String, INDArray> hessianDiagonal(MultiLayerNetwork net, INDArray x, INDArray y) {
        return BatchNormalizationTest.hessianDiagonal(net, () -> score(net, x, y));
    }

    /** {@code g_n = ∇ℓ_n / N} by central differences of single-example scores. */
    private static Map<String, INDArray> individualGradients(MultiLayerNetwork net, INDArray x, INDArray y) {
        double h = 1e-6;
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (String key : net.paramTable().keySet()) {
            INDArray param = net.getParam(key);
            INDArray g = Nd4j.create(DataType.DOUBLE, BruteForce.withBatch(N, param.shape()));
            for (int n = 0; n < N; n++) {
                INDArray xn = Reference.example(x, n);
                INDArray yn = Reference.example(y, n);
                NdIndexIterator it = new NdIndexIterator('c', param.shape());
                while (it.hasNext()) {
                    long[] idx = it.next();
                    double original = param.getDouble(idx);
                    param.putScalar(idx, original + h);
                    double plus = score(net, xn, yn);
                    param.putScalar(idx, original - h);
                    double minus = score(net, xn, yn);
                    param.putScalar(idx, original);
                    long[] at = new long[idx.length + 1];
                    at[0] = n;
                    System.arraycopy(idx, 0, at, 1, idx.length);
                    g.putScalar(at, (plus - minus) / (2 * h) / N);
                }
            }
            out.put(key, g);
        }
        return out;
    }
}
