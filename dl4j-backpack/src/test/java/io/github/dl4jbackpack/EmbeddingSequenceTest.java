// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import io.github.dl4jbackpack.internal.memory.ScratchWorkspace;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.EmbeddingSequenceLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.preprocessor.FeedForwardToRnnPreProcessor;
import org.deeplearning4j.nn.conf.preprocessor.RnnToFeedForwardPreProcessor;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.Map;
import java.util.TreeSet;

import static io.github.dl4jbackpack.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DL4J's {@code EmbeddingSequenceLayer} (an example is a sequence of row indices): every first-order
 * extension against loops of single-sequence DL4J passes (float64), below dense layers applied at every
 * step with an {@code RnnOutputLayer} and below global pooling, with indices repeated within and across
 * sequences, with and without bias, NCW and NWC output, with masks of variable lengths aligned at the start
 * and at the end; only the rows a sequence uses (at its real steps) are nonzero in its gradient; input
 * {@code [N, T]} and {@code [N, 1, T]} agree; float32 within tolerance of float64; a vocabulary of 200,000
 * rows costs the reductions no per-example memory proportional to it; Kronecker factors refused by name
 * (the curvature diagonals are tested in {@code EmbeddingCurvatureTest}).
 */
class EmbeddingSequenceTest {

    private static final int VOCABULARY = 9;
    private static final int DIM = 4;
    private static final int T = 5;
    private static final int[] LENGTHS = {5, 2, 4, 1};
    private DataType before;

    @BeforeEach
    void doublePrecision() {
        before = Nd4j.defaultFloatingPointType();
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    @AfterEach
    void restore() {
        Nd4j.setDefaultDataTypes(before, before);
        BackPackNetwork.releaseThreadMemory();
    }

    /**
     * @return indices {@code [N, T]}: row 3 three times in sequence 0 and again in sequences 2 and 3, row 7 in
     *     sequences 0, 1 and 3, row 0 (the index a padded step typically holds) in several
     */
    private static INDArray indices() {
        return Nd4j.create(new double[][] {{3, 7, 3, 0, 3}, {7, 1, 1, 5, 0}, {2, 3, 8, 2, 0}, {3, 7, 7, 0, 0}});
    }

    /**
     * Embedding (tanh; the builder's default input length, which DL4J's forward step replaces by the input's),
     * dense (sigmoid) at every step, softmax output at every step; built with the preprocessors
     * {@code setInputType} would add, but without it: DL4J's shape inference would set the embedding's nIn
     * to the input's size (1).
     */
    private static MultiLayerNetwork perStepNetwork(DataType type, boolean bias, RNNFormat format) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(5).dataType(type)
                .list(new EmbeddingSequenceLayer.Builder().nIn(VOCABULARY).nOut(DIM).hasBias(bias)
                                .outputDataFormat(format).activation(Activation.TANH).build(),
                        new DenseLayer.Builder().nIn(DIM).nOut(5).activation(Activation.SIGMOID).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(5).nOut(3)
                                .dataFormat(format).build())
                .inputPreProcessor(1, new RnnToFeedForwardPreProcessor(format))
                .inputPreProcessor(2, new FeedForwardToRnnPreProcessor(format)).build());
        net.init();
        TestNets.randomiseParameters(net, 5);
        return net;
    }

    /**
     * Embedding (tanh), global pooling over time, softmax output, without the (pass-through) preprocessor
     * {@code setInputType} would add (DL4J's shape inference types global pooling over time as a time
     * series; the batch checks know its output is one row per sequence).
     */
    private static MultiLayerNetwork pooledNetwork(boolean bias, PoolingType pooling) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(6)
                .dataType(DataType.DOUBLE)
                .list(new EmbeddingSequenceLayer.Builder().nIn(VOCABULARY).nOut(DIM).inputLength(T).hasBias(bias)
                                .activation(Activation.TANH).build(),
                        new GlobalPoolingLayer.Builder(pooling).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(DIM).nOut(3)
                                .build())
                .build());
        net.init();
        TestNets.randomiseParameters(net, 6);
        return net;
    }

    /** @return the indices as {@code [N, 1, T]}, the other shape DL4J accepts */
    private static INDArray withChannel(INDArray indices) {
        return indices.reshape('c', indices.size(0), 1, indices.size(1));
    }

    @Test
    void perStepOutputsEqualSingleSequencePasses() {
        for (boolean bias : new boolean[] {true, false}) {
            for (RNNFormat format : RNNFormat.values()) {
                MultiLayerNetwork net = perStepNetwork(DataType.DOUBLE, bias, format);
                INDArray y = SequenceTest.stepLabels(LENGTHS.length, 3, 7);
                if (format == RNNFormat.NWC) {
                    y = y.permute(0, 2, 1).dup();
                }
                String what = "bias " + bias + ", " + format;
                Reference.assertFirstOrderEqualsSingleSequencePasses(net, indices(), y, null, null, what);
                for (boolean alignEnd : new boolean[] {false, true}) {
                    INDArray m = SequenceTest.mask(alignEnd, LENGTHS);
                    Reference.assertFirstOrderEqualsSingleSequencePasses(net, withChannel(indices()), y, m, m,
                            what + ", masks, align end " + alignEnd);
                    Reference.assertFirstOrderEqualsSingleSequencePasses(net, indices(), y, m, m,
                            what + ", [N, T] indices with masks, align end " + alignEnd);
                }
            }
        }
    }

    /**
     * A feature mask with every step's label kept, the embedding read directly by the output layer: the
     * gradient reaching the embedding's output at padded steps is not zero, and DL4J's masking of
     * {@code ∂L/∂z} there (in place, in the array its activation returned) keeps them out.
     */
    @Test
    void paddedStepsContributeNothingWhereTheirOutputGradientIsNotZero() {
        for (Activation activation : new Activation[] {Activation.TANH, Activation.IDENTITY}) {
            MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(7)
                    .dataType(DataType.DOUBLE)
                    .list(new EmbeddingSequenceLayer.Builder().nIn(VOCABULARY).nOut(DIM).inputLength(T).hasBias(true)
                                    .activation(activation).build(),
                            new RnnOutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(DIM)
                                    .nOut(3).dataFormat(RNNFormat.NCW).build())
                    .build());
            net.init();
            TestNets.randomiseParameters(net, 7);
            INDArray y = SequenceTest.stepLabels(LENGTHS.length, 3, 7);
            INDArray allSteps = Nd4j.ones(DataType.DOUBLE, LENGTHS.length, T);
            for (boolean alignEnd : new boolean[] {false, true}) {
                INDArray m = SequenceTest.mask(alignEnd, LENGTHS);
                String what = activation + ", feature mask only, align end " + alignEnd;
                Reference.assertFirstOrderEqualsSingleSequencePasses(net, withChannel(indices()), y, m, allSteps, what);
                assertOnlyRowsReadAtRealStepsAreNonzero(BackPackNetwork.extend(net).backward(withChannel(indices()), y,
                        m, allSteps, new BatchGrad()).byKey(BatchGrad.class, "0_W"), m, what);
            }
        }
    }

    @Test
    void pooledSequencesEqualSingleSequencePasses() {
        for (PoolingType pooling : new PoolingType[] {PoolingType.AVG, PoolingType.MAX, PoolingType.SUM}) {
            for (boolean bias : new boolean[] {true, false}) {
                MultiLayerNetwork net = pooledNetwork(bias, pooling);
                INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 8, LENGTHS.length, 3);
                String what = pooling + " pooling, bias " + bias;
                Reference.assertFirstOrderEqualsSingleSequencePasses(net, indices(), y, null, null, what);
                for (boolean alignEnd : new boolean[] {false, true}) {
                    Reference.assertFirstOrderEqualsSingleSequencePasses(net, withChannel(indices()), y,
                            SequenceTest.mask(alignEnd, LENGTHS), null, what + ", mask, align end " + alignEnd);
                }
            }
        }
    }

    @Test
    void onlyTheRowsASequenceReadsAtItsRealStepsAreNonzero() {
        MultiLayerNetwork net = perStepNetwork(DataType.DOUBLE, false, RNNFormat.NCW);
        INDArray y = SequenceTest.stepLabels(LENGTHS.length, 3, 7);
        for (boolean alignEnd : new boolean[] {false, true}) {
            INDArray m = SequenceTest.mask(alignEnd, LENGTHS);
            assertOnlyRowsReadAtRealStepsAreNonzero(BackPackNetwork.extend(net).backward(withChannel(indices()), y, m,
                    m, new BatchGrad()).byKey(BatchGrad.class, "0_W"), m, "align end " + alignEnd);
        }
    }

    /** Asserts {@code g [N, VOCABULARY, DIM]} is nonzero exactly in the rows each sequence reads where m is 1. */
    private static void assertOnlyRowsReadAtRealStepsAreNonzero(INDArray g, INDArray m, String what) {
        INDArray x = indices();
        assertArrayEquals(new long[] {x.size(0), VOCABULARY, DIM}, g.shape(), what);
        for (int n = 0; n < x.size(0); n++) {
            TreeSet<Integer> read = new TreeSet<>();
            for (int t = 0; t < T; t++) {
                if (m.getDouble(n, t) != 0) {
                    read.add(x.getInt(n, t));
                }
            }
            for (int row = 0; row < VOCABULARY; row++) {
                double norm = g.slice(n).getRow(row).norm2Number().doubleValue();
                assertEquals(read.contains(row), norm > 0, what + ": sequence " + n + " row " + row);
            }
        }
    }

    @Test
    void bothInputShapesGiveTheSameQuantities() {
        MultiLayerNetwork net = perStepNetwork(DataType.DOUBLE, true, RNNFormat.NCW);
        INDArray y = SequenceTest.stepLabels(LENGTHS.length, 3, 7);
        Quantities flat = BackPackNetwork.extend(net).backward(indices(), y, new BatchGrad(), new Variance(),
                new BatchDotGrad());
        Quantities channel = BackPackNetwork.extend(net).backward(withChannel(indices()), y, new BatchGrad(),
                new Variance(), new BatchDotGrad());
        for (String key : new String[] {"0_W", "0_b"}) {
            assertClose(flat.byKey(BatchGrad.class, key), channel.byKey(BatchGrad.class, key), 1e-14, 1e-15,
                    "BatchGrad " + key);
            assertClose(flat.byKey(Variance.class, key), channel.byKey(Variance.class, key), 1e-14, 1e-15,
                    "Variance " + key);
            assertClose(flat.byKey(BatchDotGrad.class, key), channel.byKey(BatchDotGrad.class, key), 1e-14, 1e-15,
                    "BatchDotGrad " + key);
        }
    }

    @Test
    void float32WithinToleranceOfFloat64() {
        MultiLayerNetwork wide = perStepNetwork(DataType.DOUBLE, true, RNNFormat.NCW);
        MultiLayerNetwork narrow = perStepNetwork(DataType.FLOAT, true, RNNFormat.NCW);
        narrow.setParams(wide.params().castTo(DataType.FLOAT));
        INDArray x = withChannel(indices());
        INDArray y = SequenceTest.stepLabels(LENGTHS.length, 3, 7);
        INDArray m = SequenceTest.mask(true, LENGTHS);
        Quantities a = BackPackNetwork.extend(wide).backward(x, y, m, m, new BatchGrad(), new BatchL2Grad(),
                new SumGradSquared(), new Variance(), new BatchDotGrad());
        Quantities b = BackPackNetwork.extend(narrow).backward(x.castTo(DataType.FLOAT), y.castTo(DataType.FLOAT),
                m.castTo(DataType.FLOAT), m.castTo(DataType.FLOAT), new BatchGrad(), new BatchL2Grad(),
                new SumGradSquared(), new Variance(), new BatchDotGrad());
        for (String key : new String[] {"0_W", "0_b"}) {
            assertClose(a.byKey(BatchGrad.class, key), b.byKey(BatchGrad.class, key), 1e-4, 1e-5, "float32 " + key);
            assertClose(a.byKey(BatchL2Grad.class, key), b.byKey(BatchL2Grad.class, key), 1e-3, 1e-5, "norms " + key);
            assertClose(a.byKey(SumGradSquared.class, key), b.byKey(SumGradSquared.class, key), 1e-3, 1e-5,
                    "second moment " + key);
            assertClose(a.byKey(Variance.class, key), b.byKey(Variance.class, key), 1e-3, 1e-5, "variance " + key);
            assertClose(a.byKey(BatchDotGrad.class, key), b.byKey(BatchDotGrad.class, key), 1e-3, 1e-5, "dots " + key);
        }
    }

    /**
     * A vocabulary of 200,000 rows of 64 values and 32 sequences: one example's gradient of W is as large as
     * W, so quantities formed from per-example gradients would need 32 × |W|. BatchL2Grad, SumGradSquared
     * and Variance must stay within a few |W| of first-order scratch memory (their own results are |W| each)
     * and agree, on the rows used, with the single-sequence passes of a twin network whose table holds only
     * those rows (zero elsewhere).
     */
    @Test
    void largeVocabularyReductionsNeedNoPerExampleVocabularyMemory() {
        int vocabulary = 200_000;
        int dim = 64;
        int n = 32;
        int steps = 6;
        java.util.Random random = new java.util.Random(9);
        long[][] rows = new long[n][steps];
        TreeSet<Long> used = new TreeSet<>();
        for (int i = 0; i < n; i++) {
            for (int t = 0; t < steps; t++) {
                // a few frequent rows shared by many sequences, and rare ones anywhere in the table
                rows[i][t] = random.nextInt(3) == 0 ? random.nextInt(5) : random.nextInt(vocabulary);
                used.add(rows[i][t]);
            }
        }
        long[] usedRows = used.stream().mapToLong(Long::longValue).toArray();
        MultiLayerNetwork big = sequenceClassifier(vocabulary, dim, steps);
        MultiLayerNetwork twin = sequenceClassifier(usedRows.length, dim, steps);
        INDArray bigTable = big.getParam("0_W");
        twin.getParam("0_W").assign(Nd4j.pullRows(bigTable, 1, java.util.Arrays.stream(usedRows)
                .mapToInt(Math::toIntExact).toArray()));
        twin.getParam("0_b").assign(big.getParam("0_b"));
        twin.getParam("2_W").assign(big.getParam("2_W"));
        twin.getParam("2_b").assign(big.getParam("2_b"));
        INDArray x = Nd4j.create(DataType.DOUBLE, n, steps);
        INDArray twinX = Nd4j.create(DataType.DOUBLE, n, steps);
        for (int i = 0; i < n; i++) {
            for (int t = 0; t < steps; t++) {
                x.putScalar(i, t, rows[i][t]);
                twinX.putScalar(i, t, java.util.Arrays.binarySearch(usedRows, rows[i][t]));
            }
        }
        INDArray y = TestNets.labels(DataType.DOUBLE, LossFunction.MCXENT, 10, n, 3);

        BackPackNetwork bp = BackPackNetwork.extend(big);
        // the first pass teaches the first-order scratch workspace its size and touches DL4J's own arrays
        bp.backward(x, y, new BatchL2Grad(), new SumGradSquared(), new Variance());
        boolean peakMeasured = resetPeakResidentMemory();
        long residentBefore = residentKilobytes("VmRSS:");
        Quantities q = bp.backward(x, y, new BatchL2Grad(), new SumGradSquared(), new Variance());
        long tableBytes = (long) vocabulary * dim * Double.BYTES;
        long scratch = ScratchWorkspace.allocatedBytes(ScratchWorkspace.FIRST_ORDER);
        assertTrue(scratch <= 4 * tableBytes, "first-order scratch " + scratch + " bytes, table " + tableBytes);
        if (peakMeasured) {
            // arrays made outside the scratch workspace show in the process's peak resident memory
            long peakGrowth = 1024 * (residentKilobytes("VmHWM:") - residentBefore);
            assertTrue(peakGrowth <= 8 * tableBytes, "peak resident memory grew by " + peakGrowth + " bytes, table "
                    + tableBytes);
        }

        Map<String, INDArray> g = Reference.individualGradients(twin, twinX, y);
        INDArray usedIndex = Nd4j.createFromArray(usedRows);
        for (String key : new String[] {"0_W", "0_b"}) {
            assertClose(Reference.squaredNorms(g.get(key)), q.byKey(BatchL2Grad.class, key), 1e-10, 1e-12,
                    "norms " + key);
        }
        INDArray secondMoment = q.byKey(SumGradSquared.class, "0_W");
        INDArray variance = q.byKey(Variance.class, "0_W");
        assertClose(Reference.sumGradSquared(g.get("0_W")), secondMoment.get(usedIndex), 1e-10, 1e-12,
                "second moment of the used rows");
        assertClose(Reference.variance(g.get("0_W")), variance.get(usedIndex), 1e-8, 1e-12,
                "variance of the used rows");
        assertEquals(0.0, secondMoment.sumNumber().doubleValue() - secondMoment.get(usedIndex).sumNumber()
                .doubleValue(), 1e-12 * secondMoment.sumNumber().doubleValue(), "unused rows of the second moment");
        assertEquals(0.0, variance.sumNumber().doubleValue() - variance.get(usedIndex).sumNumber().doubleValue(),
                1e-12 * variance.sumNumber().doubleValue(), "unused rows of the variance");
    }

    /** @return whether the process's peak resident memory could be reset (Linux: /proc/self/clear_refs) */
    private static boolean resetPeakResidentMemory() {
        try {
            java.nio.file.Files.writeString(java.nio.file.Path.of("/proc/self/clear_refs"), "5");
            return residentKilobytes("VmHWM:") > 0;
        } catch (java.io.IOException | UnsupportedOperationException e) {
            return false;
        }
    }

    /** @return a memory figure of this process from /proc/self/status, in kB, or -1 where there is none */
    private static long residentKilobytes(String field) {
        try {
            for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/self/status"))) {
                if (line.startsWith(field)) {
                    return Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
        } catch (java.io.IOException e) {
            return -1;
        }
        return -1;
    }

    /** Embedding with bias (tanh), average over time, softmax output; built without shape inference. */
    private static MultiLayerNetwork sequenceClassifier(int vocabulary, int dim, int steps) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(11)
                .dataType(DataType.DOUBLE)
                .list(new EmbeddingSequenceLayer.Builder().nIn(vocabulary).nOut(dim).inputLength(steps).hasBias(true)
                                .activation(Activation.TANH).build(),
                        new GlobalPoolingLayer.Builder(PoolingType.AVG).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).activation(Activation.SOFTMAX).nIn(dim).nOut(3)
                                .build())
                .inputPreProcessor(2, new RnnToFeedForwardPreProcessor()).build());
        net.init();
        TestNets.randomiseParameters(net, 11);
        return net;
    }

    @Test
    void kroneckerFactorsAreRefusedNamingTheLayer() {
        MultiLayerNetwork net = perStepNetwork(DataType.DOUBLE, true, RNNFormat.NCW);
        INDArray y = SequenceTest.stepLabels(LENGTHS.length, 3, 7);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> BackPackNetwork.extend(net).backward(indices(), y,
                        new io.github.dl4jbackpack.extensions.KFAC()));
        assertEquals("0", e.layerName(), e.getMessage());
        assertTrue(e.getMessage().contains("Kronecker factors of embeddings"), e.getMessage());
        BackPackNetwork.extend(net).backward(indices(), y, new BatchL2Grad());
    }
}
