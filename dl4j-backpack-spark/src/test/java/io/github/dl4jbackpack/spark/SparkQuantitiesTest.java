// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.UnsupportedLayerException;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkException;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.graph.MergeVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.LSTM;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.weightnoise.DropConnect;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.MultiDataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Dataset-level quantities on {@code local[2]}: against one machine's pass over the whole data set as one batch
 * (float64, 1e-10, for one to eight partitions, empty and uneven ones included, and two batch sizes), the gradient
 * noise scale against single-example passes through DL4J, Monte Carlo values reproducible and unbiased, every
 * example's loss and gradient norm against single-example passes, a graph, float32, and bad input refused.
 */
class SparkQuantitiesTest {

    /** Examples per record: uneven, one record of a single example. */
    private static final int[] RECORD_SIZES = {4, 1, 7, 2, 5, 4};
    private static final int M = 23;

    private static JavaSparkContext sc;

    @BeforeAll
    static void start() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        sc = new JavaSparkContext(new SparkConf().setMaster("local[2]").setAppName("SparkQuantitiesTest")
                .set("spark.ui.enabled", "false").set("spark.driver.host", "127.0.0.1"));
    }

    @AfterAll
    static void stop() {
        sc.stop();
    }

    static MultiLayerNetwork network(DataType type) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder().seed(7).dataType(type)
                .list(new DenseLayer.Builder().nOut(5).activation(Activation.TANH).build(),
                        new DenseLayer.Builder().nOut(4).activation(Activation.SIGMOID).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.feedForward(4)).build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        return net;
    }

    /** @return the whole data set as one batch, with each example's identifier "example-i" */
    static DataSet allExamples(DataType type) {
        Nd4j.getRandom().setSeed(1_000_004L);
        INDArray x = Nd4j.randn(type, M, 4);
        INDArray y = Nd4j.zeros(type, M, 3);
        for (int i = 0; i < M; i++) {
            y.putScalar(i, (i * 7) % 3, 1.0);
        }
        DataSet all = new DataSet(x, y);
        List<Serializable> ids = new ArrayList<>();
        for (int i = 0; i < M; i++) {
            ids.add("example-" + i);
        }
        all.setExampleMetaData(ids);
        return all;
    }

    /** @return the data set split into records of {@link #RECORD_SIZES}, each with its examples' identifiers */
    static List<DataSet> records(DataSet all) {
        List<DataSet> records = new ArrayList<>();
        int from = 0;
        for (int size : RECORD_SIZES) {
            DataSet r = (DataSet) all.getRange(from, from + size);
            List<Serializable> ids = new ArrayList<>();
            for (int i = from; i < from + size; i++) {
                ids.add("example-" + i);
            }
            r.setExampleMetaData(ids);
            records.add(r);
            from += size;
        }
        return records;
    }

    private static void assertClose(INDArray expected, INDArray actual, double tolerance, String what) {
        INDArray e = expected.castTo(DataType.DOUBLE);
        INDArray a = actual.castTo(DataType.DOUBLE);
        assertEquals(java.util.Arrays.toString(e.shape()), java.util.Arrays.toString(a.shape()), what + " shape");
        double scale = Math.max(e.amaxNumber().doubleValue(), 1e-300);
        double error = e.sub(a).amaxNumber().doubleValue();
        assertTrue(error <= tolerance * scale, what + ": error " + error + " relative to " + scale);
    }

    @Test
    void everyDatasetQuantityEqualsOnePassOverTheWholeDataSetForAnyPartitioning() {
        MultiLayerNetwork net = network(DataType.DOUBLE);
        DataSet all = allExamples(DataType.DOUBLE);
        MultiLayerNetwork single = net.clone();
        Quantities reference = BackPackNetwork.extend(single).backward(all.getFeatures(), all.getLabels(),
                new DiagGGNExact(), new DiagHessian(), new SumGradSquared(), new Variance(), new KFLR());
        INDArray referenceGradientSum = single.gradient().gradient().dup();
        INDArray before = net.params().dup();
        for (int partitions : new int[] {1, 2, 3, 8}) {
            for (int batchSize : new int[] {3, 64}) {
                String what = partitions + " partitions, batch " + batchSize;
                JavaRDD<DataSet> data = sc.parallelize(records(all), partitions);
                DatasetQuantities q = SparkQuantities.of(net).batchSize(batchSize)
                        .extensions(new DiagGGNExact(), new DiagHessian(), new SumGradSquared(), new Variance(),
                                new KFLR())
                        .compute(data);
                assertEquals(M, q.size(), what);
                assertEquals(reference.score(), q.score(), 1e-10, what + ": score");
                for (String layer : new String[] {"0", "1", "2"}) {
                    for (String param : new String[] {"W", "b"}) {
                        String at = what + ", " + layer + "_" + param;
                        for (Class<? extends io.github.dl4jbackpack.extensions.Extension<INDArray>> e : List.of(
                                DiagGGNExact.class, DiagHessian.class, SumGradSquared.class, Variance.class)) {
                            assertClose(reference.get(e, layer, param), q.get(e, layer, param), 1e-10,
                                    at + " " + e.getSimpleName());
                        }
                        KroneckerFactors expected = reference.get(KFLR.class, layer, param);
                        KroneckerFactors actual = q.get(KFLR.class, layer, param);
                        assertEquals(expected.factors().size(), actual.factors().size(), at);
                        for (int f = 0; f < expected.factors().size(); f++) {
                            assertClose(expected.factors().get(f), actual.factors().get(f), 1e-10, at + " KFLR " + f);
                        }
                        assertClose(single.gradient().getGradientFor(layer + "_" + param).div(M),
                                q.meanGradient(layer, param), 1e-10, at + " mean gradient");
                    }
                }
            }
        }
        assertEquals(before, net.params(), "the driver's network is not modified");
        assertTrue(referenceGradientSum.amaxNumber().doubleValue() > 0);
    }

    @Test
    void theGradientNoiseScaleIsTheTraceOfThePerExampleCovarianceOverTheSquaredMeanGradient() {
        MultiLayerNetwork net = network(DataType.DOUBLE);
        DataSet all = allExamples(DataType.DOUBLE);
        // single-example passes through DL4J itself: ∇ℓ_n for each n
        MultiLayerNetwork plain = net.clone();
        INDArray[] gradients = new INDArray[M];
        INDArray mean = null;
        for (int n = 0; n < M; n++) {
            plain.setInput(all.getFeatures().getRow(n, true));
            plain.setLabels(all.getLabels().getRow(n, true));
            plain.computeGradientAndScore();
            gradients[n] = plain.gradient().gradient().dup();
            mean = mean == null ? gradients[n].dup() : mean.addi(gradients[n]);
        }
        mean.divi(M);
        double trace = 0;
        for (INDArray g : gradients) {
            INDArray d = g.sub(mean);
            trace += d.mul(d).sumNumber().doubleValue() / M;
        }
        double expected = trace / mean.mul(mean).sumNumber().doubleValue();
        DatasetQuantities q = SparkQuantities.of(net).batchSize(5).extensions(new Variance())
                .compute(sc.parallelize(records(all), 3));
        assertEquals(expected, q.gradientNoiseScale(), 1e-9 * expected);
        DatasetQuantities withoutVariance = SparkQuantities.of(net).batchSize(5).extensions(new DiagGGNExact())
                .compute(sc.parallelize(records(all), 3));
        IllegalStateException e = assertThrows(IllegalStateException.class, withoutVariance::gradientNoiseScale);
        assertTrue(e.getMessage().contains("Variance"), e.getMessage());
    }

    @Test
    void monteCarloValuesAreReproducibleAndAverageToTheExactOnes() {
        MultiLayerNetwork net = network(DataType.DOUBLE);
        DataSet all = allExamples(DataType.DOUBLE);
        JavaRDD<DataSet> data = sc.parallelize(records(all), 3);
        INDArray first = SparkQuantities.of(net).batchSize(4).seed(5).extensions(new DiagGGNMC(50)).compute(data)
                .get(DiagGGNMC.class, "0", "W");
        INDArray again = SparkQuantities.of(net).batchSize(4).seed(5).extensions(new DiagGGNMC(50)).compute(data)
                .get(DiagGGNMC.class, "0", "W");
        INDArray other = SparkQuantities.of(net).batchSize(4).seed(6).extensions(new DiagGGNMC(50)).compute(data)
                .get(DiagGGNMC.class, "0", "W");
        assertEquals(first, again, "the same seed gives the same draws");
        assertTrue(first.sub(other).amaxNumber().doubleValue() > 0, "another seed gives other draws");
        INDArray exact = SparkQuantities.of(net).batchSize(4).extensions(new DiagGGNExact()).compute(data)
                .get(DiagGGNExact.class, "0", "W");
        INDArray average = Nd4j.zeros(DataType.DOUBLE, exact.shape());
        int seeds = 8;
        for (int s = 0; s < seeds; s++) {
            average.addi(SparkQuantities.of(net).batchSize(4).seed(100 + s).extensions(new DiagGGNMC(50))
                    .compute(data).get(DiagGGNMC.class, "0", "W"));
        }
        average.divi(seeds);
        // 400 draws per example: the sum over all entries within 5% of the exact one
        double exactSum = exact.sumNumber().doubleValue();
        assertEquals(exactSum, average.sumNumber().doubleValue(), 0.05 * exactSum);
    }

    @Test
    void kfacSharesKflrsInputFactorAndASmallMemoryBudgetChangesNothing() {
        MultiLayerNetwork net = network(DataType.DOUBLE);
        JavaRDD<DataSet> data = sc.parallelize(records(allExamples(DataType.DOUBLE)), 3);
        DatasetQuantities kflr = SparkQuantities.of(net).batchSize(5).extensions(new KFLR(), new DiagGGNExact())
                .compute(data);
        DatasetQuantities kfac = SparkQuantities.of(net).batchSize(5).extensions(new KFAC(20)).compute(data);
        DatasetQuantities budget = SparkQuantities.of(net).batchSize(5).curvatureMemoryBudget(64 * 1024)
                .extensions(new DiagGGNExact()).compute(data);
        for (String layer : new String[] {"0", "1", "2"}) {
            KroneckerFactors exact = kflr.get(KFLR.class, layer, "W");
            KroneckerFactors sampled = kfac.get(KFAC.class, layer, "W");
            assertClose(exact.inputFactor().get(), sampled.inputFactor().get(), 1e-12, layer + ": A is exact in KFAC");
            assertClose(exact.outputFactor(), sampled.outputFactor(), 0.5, layer + ": B sampled, near KFLR's");
            assertClose(kflr.get(DiagGGNExact.class, layer, "W"), budget.get(DiagGGNExact.class, layer, "W"), 1e-12,
                    layer + ": chunked under a 64 KiB budget");
        }
    }

    @Test
    void sequencesOfDifferentLengthsArePaddedAndMaskedAsOneBatchOfThemAll() {
        MultiLayerNetwork lstm = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(11)
                .dataType(DataType.DOUBLE)
                .list(new LSTM.Builder().nOut(4).activation(Activation.TANH).build(),
                        new RnnOutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.recurrent(2)).build());
        lstm.init();
        List<DataSet> records = new ArrayList<>();
        Nd4j.getRandom().setSeed(1_000_010L);
        for (int r = 0; r < 5; r++) {
            int n = 2 + r % 2;
            int t = 3 + 2 * (r % 3);
            INDArray y = Nd4j.zeros(DataType.DOUBLE, n, 3, t);
            for (int i = 0; i < n; i++) {
                for (int step = 0; step < t; step++) {
                    y.putScalar(new int[] {i, (i + step + r) % 3, step}, 1.0);
                }
            }
            records.add(new DataSet(Nd4j.randn(DataType.DOUBLE, n, 2, t), y));
        }
        DataSet all = DataSet.merge(records);
        Quantities reference = BackPackNetwork.extend(lstm.clone()).backward(all, new DiagGGNExact(),
                new Variance());
        DatasetQuantities q = SparkQuantities.of(lstm).batchSize(4).extensions(new DiagGGNExact(), new Variance())
                .compute(sc.parallelize(records, 2));
        assertEquals(all.numExamples(), q.size());
        for (String layer : new String[] {"0", "1"}) {
            for (String param : reference.params(DiagGGNExact.class, layer)) {
                assertClose(reference.get(DiagGGNExact.class, layer, param), q.get(DiagGGNExact.class, layer, param),
                        1e-10, layer + "_" + param);
                assertClose(reference.get(Variance.class, layer, param), q.get(Variance.class, layer, param),
                        1e-10, layer + "_" + param);
            }
        }
    }

    @Test
    void everyExamplesLossAndGradientNormMatchSingleExamplePasses() {
        MultiLayerNetwork net = network(DataType.DOUBLE);
        DataSet all = allExamples(DataType.DOUBLE);
        List<ExampleStatistics> stats = SparkQuantities.of(net).batchSize(3)
                .perExample(sc.parallelize(records(all), 4)).collect();
        assertEquals(M, stats.size());
        MultiLayerNetwork plain = net.clone();
        long[] perPartition = new long[4];
        for (int n = 0; n < M; n++) {
            ExampleStatistics s = stats.get(n);
            assertEquals("example-" + n, s.id(), "in the data set's order, with the record's identifiers");
            assertEquals(perPartition[s.partition()]++, s.index(), "index within partition " + s.partition());
            DataSet one = new DataSet(all.getFeatures().getRow(n, true), all.getLabels().getRow(n, true));
            plain.setInput(one.getFeatures());
            plain.setLabels(one.getLabels());
            plain.computeGradientAndScore();
            assertEquals(plain.score(), s.loss(), 1e-10, "loss of example " + n);
            assertEquals(plain.gradient().gradient().norm2Number().doubleValue(), s.gradientNorm(), 1e-10,
                    "gradient norm of example " + n);
        }
    }

    @Test
    void aGraphWithTwoInputsTakesMultiDataSets() {
        ComputationGraphConfiguration conf = new NeuralNetConfiguration.Builder().seed(3).dataType(DataType.DOUBLE)
                .graphBuilder().addInputs("a", "b")
                .addLayer("da", new DenseLayer.Builder().nIn(2).nOut(3).activation(Activation.TANH).build(), "a")
                .addLayer("db", new DenseLayer.Builder().nIn(2).nOut(3).activation(Activation.TANH).build(), "b")
                .addVertex("merge", new MergeVertex(), "da", "db")
                .addLayer("out", new OutputLayer.Builder(LossFunction.MCXENT).nIn(6).nOut(3)
                        .activation(Activation.SOFTMAX).build(), "merge")
                .setOutputs("out").build();
        ComputationGraph graph = new ComputationGraph(conf);
        graph.init();
        DataSet all = allExamples(DataType.DOUBLE);
        INDArray a = all.getFeatures().getColumns(0, 1);
        INDArray b = all.getFeatures().getColumns(2, 3);
        List<MultiDataSet> records = new ArrayList<>();
        for (int from = 0; from < M; from += 6) {
            int to = Math.min(M, from + 6);
            records.add(new org.nd4j.linalg.dataset.MultiDataSet(
                    new INDArray[] {a.getRows(range(from, to)), b.getRows(range(from, to))},
                    new INDArray[] {all.getLabels().getRows(range(from, to))}));
        }
        ComputationGraph single = graph.clone();
        Quantities reference = BackPackNetwork.extend(single).backward(new INDArray[] {a, b},
                new INDArray[] {all.getLabels()}, new DiagGGNExact(), new Variance());
        DatasetQuantities q = SparkQuantities.of(graph).batchSize(4).extensions(new DiagGGNExact(), new Variance())
                .computeMulti(sc.parallelize(records, 3));
        for (String layer : new String[] {"da", "db", "out"}) {
            assertClose(reference.get(DiagGGNExact.class, layer, "W"), q.get(DiagGGNExact.class, layer, "W"), 1e-10,
                    layer);
            assertClose(reference.get(Variance.class, layer, "W"), q.get(Variance.class, layer, "W"), 1e-10, layer);
        }
    }

    private static int[] range(int from, int to) {
        int[] r = new int[to - from];
        for (int i = 0; i < r.length; i++) {
            r[i] = from + i;
        }
        return r;
    }

    @Test
    void aFloat32NetworkAgreesWithTheFloat64OneWithinFloat32Accuracy() {
        MultiLayerNetwork doubles = network(DataType.DOUBLE);
        MultiLayerNetwork floats = doubles.convertDataType(DataType.FLOAT);
        DataSet all = allExamples(DataType.DOUBLE);
        List<DataSet> floatRecords = new ArrayList<>();
        for (DataSet r : records(all)) {
            floatRecords.add(new DataSet(r.getFeatures().castTo(DataType.FLOAT), r.getLabels().castTo(DataType.FLOAT)));
        }
        DatasetQuantities d = SparkQuantities.of(doubles).batchSize(4).extensions(new DiagGGNExact(), new Variance())
                .compute(sc.parallelize(records(all), 3));
        DatasetQuantities f = SparkQuantities.of(floats).batchSize(4).extensions(new DiagGGNExact(), new Variance())
                .compute(sc.parallelize(floatRecords, 3));
        for (String layer : new String[] {"0", "1", "2"}) {
            assertClose(d.get(DiagGGNExact.class, layer, "W"), f.get(DiagGGNExact.class, layer, "W"), 1e-4, layer);
            assertClose(d.get(Variance.class, layer, "W"), f.get(Variance.class, layer, "W"), 1e-3, layer);
        }
        assertEquals(d.gradientNoiseScale(), f.gradientNoiseScale(), 1e-3 * d.gradientNoiseScale());
    }

    @Test
    void badInputIsRefusedWithAClearMessage() {
        MultiLayerNetwork net = network(DataType.DOUBLE);
        IllegalArgumentException unsupported = assertThrows(IllegalArgumentException.class,
                () -> SparkQuantities.of(net).extensions(new BatchGrad(), new KFRA()));
        assertTrue(unsupported.getMessage().contains("BatchGrad") && unsupported.getMessage().contains("KFRA")
                && unsupported.getMessage().contains("perExample"), unsupported.getMessage());
        assertThrows(IllegalArgumentException.class, () -> SparkQuantities.of(net).batchSize(0));

        // a network the core cannot extend: refused on the driver, before any job runs
        MultiLayerNetwork noisy = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().dataType(DataType.DOUBLE)
                .list(new DenseLayer.Builder().nOut(3).weightNoise(new DropConnect(0.5)).build(),
                        new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.feedForward(4)).build());
        noisy.init();
        sc.setJobGroup("refused", "a network the core cannot extend");
        JavaRDD<DataSet> data = sc.parallelize(records(allExamples(DataType.DOUBLE)), 2);
        UnsupportedLayerException e = assertThrows(UnsupportedLayerException.class,
                () -> SparkQuantities.of(noisy).extensions(new DiagGGNExact()).compute(data));
        assertTrue(e.getMessage().contains("weight noise"), e.getMessage());
        assertEquals(0, sc.statusTracker().getJobIdsForGroup("refused").length, "no job ran");
        sc.clearJobGroup();

        // records that do not fit the network: the executor's error, with the core's message
        List<DataSet> wrong = List.of(new DataSet(Nd4j.rand(DataType.DOUBLE, 3, 5), Nd4j.rand(DataType.DOUBLE, 3, 3)));
        SparkException shape = assertThrows(SparkException.class,
                () -> SparkQuantities.of(net).extensions(new DiagGGNExact()).compute(sc.parallelize(wrong, 1)));
        assertTrue(shape.getMessage().contains("IllegalArgumentException"), shape.getMessage());

        IllegalArgumentException empty = assertThrows(IllegalArgumentException.class,
                () -> SparkQuantities.of(net).extensions(new DiagGGNExact())
                        .compute(sc.parallelize(new ArrayList<DataSet>(), 2)));
        assertTrue(empty.getMessage().contains("no examples"), empty.getMessage());
    }
}
