// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.BatchNormStatistics;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.broadcast.Broadcast;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.util.ModelSerializer;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.MultiDataSet;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Dataset-scale quantities of a network over a data set in a Spark RDD (docs/spark.md, docs/math.md#data-sets):
 *
 * <pre>{@code
 * DatasetQuantities q = SparkQuantities.of(net)
 *         .extensions(new DiagGGNMC(1), new Variance())
 *         .batchSize(128)
 *         .seed(42)
 *         .compute(trainingData);                     // JavaRDD<DataSet>
 * INDArray fisher = q.get(DiagGGNMC.class, "0", "W");  // the data set's GGN diagonal
 * double b = q.gradientNoiseScale();
 *
 * JavaRDD<ExampleStatistics> perExample = SparkQuantities.of(net).batchSize(128).perExample(trainingData);
 * }</pre>
 *
 * Each partition is processed in mini-batches of its records' examples ({@code batchSize} at a time, the last one
 * of a partition smaller) by a copy of the network restored on the executor from one broadcast of its model file,
 * and the partitions' sums are combined exactly by a tree aggregation: for every supported extension the result
 * is, up to rounding, what one machine computes for one batch of the whole data set, whatever the partitioning
 * (the Monte Carlo extensions draw from ND4J's generator seeded per partition from {@link #seed}, so a run is
 * reproducible for a given partitioning). The results of tasks that Spark retries after a failure count once:
 * only each partition's final result enters the aggregation.
 *
 * <p>Supported: {@link DiagGGNExact}, {@link DiagGGNMC}, {@link DiagHessian}, {@link SumGradSquared},
 * {@link Variance}, {@link KFLR}, {@link KFAC}; the mean gradient always, the gradient noise scale with
 * {@code Variance}. Per-example extensions would be {@code [M, ...]} and are not offered: {@link #perExample}
 * gives the per-example losses and gradient norms as an RDD instead. The network and the extensions are checked on
 * the driver before any job runs. Batch normalisation uses the running statistics by default (each example then
 * contributes independently of its batch; {@link #batchNormStatistics} changes it). Dropout applies as in DL4J's
 * training passes: use a network without it for a deterministic curvature.
 */
public final class SparkQuantities {

    private static final Logger log = LoggerFactory.getLogger(SparkQuantities.class);

    private final Model network;
    private final boolean graph;
    private final List<ExtensionSpec> extensions = new ArrayList<>();
    private int batchSize = 32;
    private long seed = 1;
    private long memoryBudget;
    private BatchNormStatistics batchNormStatistics = BatchNormStatistics.RUNNING;

    private SparkQuantities(Model network, boolean graph) {
        this.network = network;
        this.graph = graph;
    }

    /**
     * @param net the network (initialised); it is serialised once and never modified
     * @return a computation over data sets for it
     */
    public static SparkQuantities of(MultiLayerNetwork net) {
        return new SparkQuantities(checkInitialised(net), false);
    }

    /**
     * @param graph the network (initialised); it is serialised once and never modified
     * @return a computation over data sets for it
     */
    public static SparkQuantities of(ComputationGraph graph) {
        return new SparkQuantities(checkInitialised(graph), true);
    }

    private static <T extends Model> T checkInitialised(T model) {
        if (model == null) {
            throw new IllegalArgumentException("the network must not be null");
        }
        if (model.params() == null) {
            throw new IllegalArgumentException("the network is not initialised: call init() first");
        }
        return model;
    }

    /**
     * @param extensions the dataset-level quantities to compute (see the class comment for the supported ones)
     * @return this
     * @throws IllegalArgumentException naming every unsupported one and what is supported
     */
    public SparkQuantities extensions(Extension<?>... extensions) {
        List<ExtensionSpec> specs = new ArrayList<>();
        List<String> unsupported = new ArrayList<>();
        for (Extension<?> e : extensions) {
            ExtensionSpec spec = ExtensionSpec.of(e);
            if (spec == null) {
                unsupported.add(e.name());
            } else if (specs.stream().anyMatch(s -> s.kind() == spec.kind())) {
                throw new IllegalArgumentException(e.name() + " is requested twice");
            } else {
                specs.add(spec);
            }
        }
        if (!unsupported.isEmpty()) {
            throw new IllegalArgumentException("not available over a data set: " + unsupported + " (per-example "
                    + "values would be [M, ...] for M examples; KFRA's batch-averaged recursion has no exact "
                    + "dataset-level sum). Supported: " + ExtensionSpec.supported() + "; per-example losses and "
                    + "gradient norms: perExample(...)");
        }
        this.extensions.clear();
        this.extensions.addAll(specs);
        return this;
    }

    /**
     * @param batchSize the examples per mini-batch, at least 1 (default 32)
     * @return this
     */
    public SparkQuantities batchSize(int batchSize) {
        if (batchSize < 1) {
            throw new IllegalArgumentException("the batch size must be at least 1, got " + batchSize);
        }
        this.batchSize = batchSize;
        return this;
    }

    /**
     * @param seed the seed of the Monte Carlo draws; partition p draws from ND4J's generator seeded with a value
     *     derived from it and p (default 1)
     * @return this
     */
    public SparkQuantities seed(long seed) {
        this.seed = seed;
        return this;
    }

    /**
     * @param bytes the curvature memory budget of the network on each executor thread
     *     ({@link BackPackNetwork#setCurvatureMemoryBudget}); default the library's
     * @return this
     */
    public SparkQuantities curvatureMemoryBudget(long bytes) {
        if (bytes < 64 * 1024) {
            throw new IllegalArgumentException("the curvature memory budget must be at least 64 KiB, got " + bytes);
        }
        this.memoryBudget = bytes;
        return this;
    }

    /**
     * @param statistics which statistics batch normalisation uses ({@link BatchNormStatistics#RUNNING} by default)
     * @return this
     */
    public SparkQuantities batchNormStatistics(BatchNormStatistics statistics) {
        if (statistics == null) {
            throw new IllegalArgumentException("statistics must not be null");
        }
        this.batchNormStatistics = statistics;
        return this;
    }

    /**
     * @param data the data set, one or more examples per record, of a network with one input and one output
     * @return the data set's quantities
     * @throws io.github.dl4jbackpack.UnsupportedLayerException before any job if the network cannot compute an
     *     extension
     * @throws IllegalArgumentException if the data set is empty
     */
    public DatasetQuantities compute(JavaRDD<DataSet> data) {
        return computeMulti(data.map(DataSet::toMultiDataSet));
    }

    /**
     * @param data the data set as {@code MultiDataSet}s (graphs with several inputs or outputs)
     * @return the data set's quantities
     * @throws io.github.dl4jbackpack.UnsupportedLayerException before any job if the network cannot compute an
     *     extension
     * @throws IllegalArgumentException if the data set is empty
     */
    public DatasetQuantities computeMulti(JavaRDD<MultiDataSet> data) {
        List<Extension<?>> requested = instances();
        checkOnDriver(requested);
        Broadcast<byte[]> model = JavaSparkContext.fromSparkContext(data.context()).broadcast(modelBytes());
        try {
            PartitionPass pass = new PartitionPass(model, graph, List.copyOf(extensions), batchSize, seed,
                    memoryBudget, batchNormStatistics);
            PartialSums total = data.mapPartitionsWithIndex(pass::sums, false)
                    .treeAggregate(PartialSums.empty(), PartialSums::merge, PartialSums::merge);
            if (total.count == 0) {
                throw new IllegalArgumentException("the data set has no examples");
            }
            log.info("Dataset quantities {} over {} examples", extensions, total.count);
            return finish(total);
        } finally {
            model.destroy();
        }
    }

    /**
     * @param data the data set, of a network with one input and one output
     * @return per example, in the data set's order: its identifier (the record's example metadata), partition,
     *     index within the partition, loss and gradient norm; computed lazily when the RDD is used
     */
    public JavaRDD<ExampleStatistics> perExample(JavaRDD<DataSet> data) {
        return perExampleMulti(data.map(DataSet::toMultiDataSet));
    }

    /**
     * @param data the data set as {@code MultiDataSet}s
     * @return per example: its identifier, partition, index within the partition, loss and gradient norm;
     *     computed lazily when the RDD is used. The network is broadcast once for the RDD's lifetime.
     */
    public JavaRDD<ExampleStatistics> perExampleMulti(JavaRDD<MultiDataSet> data) {
        checkOnDriver(List.of(new io.github.dl4jbackpack.extensions.BatchL2Grad()));
        Broadcast<byte[]> model = JavaSparkContext.fromSparkContext(data.context()).broadcast(modelBytes());
        PartitionPass pass = new PartitionPass(model, graph, List.of(), batchSize, seed, memoryBudget,
                batchNormStatistics);
        return data.mapPartitionsWithIndex(pass::examples, true);
    }

    private List<Extension<?>> instances() {
        List<Extension<?>> out = new ArrayList<>();
        for (ExtensionSpec s : extensions) {
            out.add(s.instance());
        }
        return out;
    }

    /** Lets the core check the network against the extensions, on a copy, before anything is shipped. */
    private void checkOnDriver(List<Extension<?>> requested) {
        if (requested.isEmpty()) {
            return;
        }
        Model copy = graph ? ((ComputationGraph) network).clone() : ((MultiLayerNetwork) network).clone();
        BackPackNetwork probe = graph ? BackPackNetwork.extend((ComputationGraph) copy)
                : BackPackNetwork.extend((MultiLayerNetwork) copy);
        probe.setBatchNormStatistics(batchNormStatistics);
        probe.enable(requested.toArray(new Extension<?>[0]));
    }

    private byte[] modelBytes() {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try {
            ModelSerializer.writeModel(network, bytes, false);
        } catch (IOException e) {
            throw new UncheckedIOException("could not serialise the network", e);
        }
        return bytes.toByteArray();
    }

    /** Turns the sums over D into values on the scale of the mean loss over D. */
    private DatasetQuantities finish(PartialSums total) {
        double m = total.count;
        Map<Class<?>, Map<String, Map<String, Object>>> values = new LinkedHashMap<>();
        for (ExtensionSpec spec : extensions) {
            Map<String, Map<String, Object>> byLayer = new LinkedHashMap<>();
            if (spec.kind() == ExtensionSpec.Kind.VARIANCE) {
                // Variance = (1/M) Σ_n (g_n − ḡ)² with g_n = ∇ℓ_n / M: M₂ / M³
                total.gradientSquaredDeviations.forEach((layer, params) -> params.forEach((param, m2) ->
                        byLayer.computeIfAbsent(layer, k -> new LinkedHashMap<>()).put(param, m2.div(m * m * m))));
            } else if (spec.kronecker()) {
                total.kroneckerSums.getOrDefault(spec.name(), Map.of()).forEach((layer, params) ->
                        params.forEach((param, f) -> byLayer.computeIfAbsent(layer, k -> new LinkedHashMap<>())
                                .put(param, scaled(f, 1 / m))));
            } else {
                // curvature: Σ_k N_k X_k / M; SumGradSquared: Σ_n ∇ℓ_n² / M²
                double scale = spec.kind() == ExtensionSpec.Kind.SUM_GRAD_SQUARED ? 1 / (m * m) : 1 / m;
                total.sums.getOrDefault(spec.name(), Map.of()).forEach((layer, params) -> params.forEach(
                        (param, sum) -> byLayer.computeIfAbsent(layer, k -> new LinkedHashMap<>())
                                .put(param, sum.mul(scale))));
            }
            values.put(spec.extensionClass(), byLayer);
        }
        double noiseScale = Double.NaN;
        if (!total.gradientSquaredDeviations.isEmpty()) {
            double trace = 0;
            double squaredNorm = 0;
            for (Map.Entry<String, Map<String, org.nd4j.linalg.api.ndarray.INDArray>> layer
                    : total.gradientMean.entrySet()) {
                for (Map.Entry<String, org.nd4j.linalg.api.ndarray.INDArray> p : layer.getValue().entrySet()) {
                    trace += total.gradientSquaredDeviations.get(layer.getKey()).get(p.getKey())
                            .sumNumber().doubleValue() / m;
                    squaredNorm += p.getValue().mul(p.getValue()).sumNumber().doubleValue();
                }
            }
            noiseScale = trace / squaredNorm;
        }
        return new DatasetQuantities(new Quantities(total.scoreSum / m, total.count, values), total.gradientMean,
                noiseScale);
    }

    private static KroneckerFactors scaled(KroneckerFactors f, double scale) {
        return f.withValues(f.inputFactor().map(a -> a.muli(scale)).orElse(null), f.outputFactor().muli(scale));
    }
}
