// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.BatchNormStatistics;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KroneckerFactors;
import io.github.dl4jbackpack.extensions.Variance;
import org.apache.spark.broadcast.Broadcast;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.layers.normalization.BatchNormalization;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.params.BatchNormalizationParamInitializer;
import org.deeplearning4j.util.ModelSerializer;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.memory.conf.WorkspaceConfiguration;
import org.nd4j.linalg.api.memory.enums.AllocationPolicy;
import org.nd4j.linalg.api.memory.enums.LearningPolicy;
import org.nd4j.linalg.api.memory.enums.ResetPolicy;
import org.nd4j.linalg.api.memory.enums.SpillPolicy;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.MultiDataSet;
import org.nd4j.linalg.factory.Nd4j;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Set;

/**
 * What an executor does with one partition: restores the network from the broadcast model file, extends it and
 * runs the partition's mini-batches through it. Serialisable: Spark ships it with the tasks (the network itself
 * travels once per executor, as the broadcast).
 */
final class PartitionPass implements Serializable {

    private static final long serialVersionUID = 1L;
    /** The parameters of batch normalisation that are running statistics, not trained by the gradient. */
    /** The per-thread workspace of a batch's temporaries. */
    static final String WORKSPACE_ID = "dl4j-backpack-spark-batch";
    private static final WorkspaceConfiguration BATCH_WORKSPACE = WorkspaceConfiguration.builder()
            .policyAllocation(AllocationPolicy.OVERALLOCATE)
            .overallocationLimit(0.2)
            .policyLearning(LearningPolicy.FIRST_LOOP)
            .policyReset(ResetPolicy.BLOCK_LEFT)
            .policySpill(SpillPolicy.REALLOCATE)
            .build();
    private static final Set<String> RUNNING_STATISTICS = Set.of(BatchNormalizationParamInitializer.GLOBAL_MEAN,
            BatchNormalizationParamInitializer.GLOBAL_VAR, BatchNormalizationParamInitializer.GLOBAL_LOG_STD);

    private final Broadcast<byte[]> model;
    private final boolean graph;
    private final List<ExtensionSpec> extensions;
    private final int batchSize;
    private final long seed;
    private final long memoryBudget;
    private final BatchNormStatistics batchNormStatistics;

    PartitionPass(Broadcast<byte[]> model, boolean graph, List<ExtensionSpec> extensions, int batchSize, long seed,
                  long memoryBudget, BatchNormStatistics batchNormStatistics) {
        this.model = model;
        this.graph = graph;
        this.extensions = extensions;
        this.batchSize = batchSize;
        this.seed = seed;
        this.memoryBudget = memoryBudget;
        this.batchNormStatistics = batchNormStatistics;
    }

    /**
     * @param partition the partition's index
     * @param records its records
     * @return one element: the partition's sums (empty for an empty partition)
     */
    Iterator<PartialSums> sums(Integer partition, Iterator<MultiDataSet> records) {
        PartialSums sums = PartialSums.empty();
        Batches batches = new Batches(records, batchSize);
        if (!batches.hasNext()) {
            return List.of(sums).iterator();
        }
        BackPackNetwork net = restore();
        // Monte Carlo draws: reproducible per partition (ND4J's generator does not reproduce draws after seed 0)
        Nd4j.getRandom().setSeed(seed * 1_000_003L + partition + 1);
        Extension<?>[] requested = extensions.stream().map(ExtensionSpec::instance).toArray(Extension<?>[]::new);
        boolean variance = extensions.stream().anyMatch(s -> s.kind() == ExtensionSpec.Kind.VARIANCE);
        try {
            while (batches.hasNext()) {
                Batches.Batch batch = batches.next();
                long n = batch.size();
                try (Quantities q = net.backward(batch.data(), requested);
                     MemoryWorkspace ignored = batchWorkspace()) {
                    addGradients(net, q, n, variance, sums);
                    for (ExtensionSpec spec : extensions) {
                        if (spec.kind() != ExtensionSpec.Kind.VARIANCE) {
                            addValues(spec, q, n, sums);
                        }
                    }
                    sums.finishBatch(n, q.score());
                }
            }
        } finally {
            release();
        }
        return List.of(sums).iterator();
    }

    /** Adds one extension's values of a batch: {@code N_k X_k}, {@code N_k² SGS_k}, factors weighted by N_k. */
    private static void addValues(ExtensionSpec spec, Quantities q, long n, PartialSums sums) {
        for (String layer : q.layerNames(classOf(spec))) {
            for (String param : q.params(classOf(spec), layer)) {
                Object value = q.get(classOf(spec), layer, param);
                if (value instanceof KroneckerFactors f) {
                    sums.addFactors(spec.name(), layer, param,
                            f.inputFactor().map(a -> PartialSums.float64(a).muli(n)).orElse(null),
                            PartialSums.float64(f.outputFactor()).muli(n), f);
                } else {
                    double weight = spec.kind() == ExtensionSpec.Kind.SUM_GRAD_SQUARED ? (double) n * n : n;
                    sums.addSum(spec.name(), layer, param, PartialSums.float64((INDArray) value).muli(weight));
                }
            }
        }
    }

    /**
     * @return the workspace of one batch's temporaries (the copies read from its quantities, the merge's
     *     intermediate arrays): reused from batch to batch instead of native memory that ND4J would free only at a
     *     garbage collection, which a loop making little Java garbage rarely triggers
     */
    private static MemoryWorkspace batchWorkspace() {
        return Nd4j.getWorkspaceManager().getAndActivateWorkspace(BATCH_WORKSPACE, WORKSPACE_ID);
    }

    /** Returns the partition's scratch memory (the core's and the batch workspace) deterministically. */
    private static void release() {
        BackPackNetwork.releaseThreadMemory();
        MemoryWorkspace ws = Nd4j.getWorkspaceManager().getWorkspaceForCurrentThread(BATCH_WORKSPACE, WORKSPACE_ID);
        Nd4j.getWorkspaceManager().destroyWorkspace(ws);
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private static Class<? extends Extension<Object>> classOf(ExtensionSpec spec) {
        return (Class) spec.extensionClass();
    }

    /** Adds the batch's mean gradient (DL4J's summed gradient over N) and, with Variance, {@code N³ Variance}. */
    private static void addGradients(BackPackNetwork net, Quantities q, long n, boolean variance, PartialSums sums) {
        Model model = net.model();
        Gradient gradient = model.gradient();
        for (String layer : net.layerNames()) {
            Layer l = layerOf(model, layer);
            if (l == null || l.paramTable() == null) {
                continue;
            }
            for (String param : l.paramTable().keySet()) {
                if (l instanceof BatchNormalization && RUNNING_STATISTICS.contains(param)) {
                    continue;
                }
                INDArray g = gradient.getGradientFor(layer + "_" + param);
                if (g == null) {
                    continue;
                }
                INDArray squaredDeviations = null;
                if (variance) {
                    if (!q.layerNames(Variance.class).contains(layer)
                            || !q.params(Variance.class, layer).contains(param)) {
                        continue;
                    }
                    squaredDeviations = PartialSums.float64(q.get(Variance.class, layer, param))
                            .muli((double) n * n * n);
                }
                INDArray mean = PartialSums.float64(g).reshape(l.getParam(param).shape()).divi(n);
                sums.addGradient(layer, param, n, mean, squaredDeviations);
            }
        }
    }

    private static Layer layerOf(Model model, String name) {
        if (model instanceof MultiLayerNetwork net) {
            return net.getLayer(Integer.parseInt(name));
        }
        return ((ComputationGraph) model).getLayer(name);
    }

    /**
     * @param partition the partition's index
     * @param records its records
     * @return each example's loss and gradient norm
     */
    Iterator<ExampleStatistics> examples(Integer partition, Iterator<MultiDataSet> records) {
        Batches batches = new Batches(records, batchSize);
        List<ExampleStatistics> out = new ArrayList<>();
        if (!batches.hasNext()) {
            return out.iterator();
        }
        BackPackNetwork net = restore();
        long index = 0;
        try {
            while (batches.hasNext()) {
                Batches.Batch batch = batches.next();
                long n = batch.size();
                try (Quantities q = net.backward(batch.data(), new BatchL2Grad());
                     MemoryWorkspace ignored = batchWorkspace()) {
                    // ‖∇ℓ_n‖² = N² Σ_params ‖g_n‖²
                    INDArray squaredNorms = null;
                    for (String layer : q.layerNames(BatchL2Grad.class)) {
                        for (String param : q.params(BatchL2Grad.class, layer)) {
                            INDArray v = PartialSums.float64(q.get(BatchL2Grad.class, layer, param)).reshape(n);
                            squaredNorms = squaredNorms == null ? v : squaredNorms.addi(v);
                        }
                    }
                    INDArray losses = losses(net.model(), batch.data()).reshape(n);
                    for (int i = 0; i < n; i++) {
                        double norm = squaredNorms == null ? 0 : Math.sqrt(squaredNorms.getDouble(i)) * n;
                        out.add(new ExampleStatistics(batch.ids().get(i), partition, index++, losses.getDouble(i),
                                norm));
                    }
                }
            }
        } finally {
            release();
        }
        return out.iterator();
    }

    /** @return the batch's per-example losses, {@code [N]}, computed by DL4J outside every workspace (it insists) */
    private static INDArray losses(Model model, MultiDataSet batch) {
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            return scoreExamples(model, batch);
        }
    }

    private static INDArray scoreExamples(Model model, MultiDataSet batch) {
        if (model instanceof MultiLayerNetwork net) {
            DataSet ds = new DataSet(batch.getFeatures(0), batch.getLabels(0),
                    batch.getFeaturesMaskArrays() == null ? null : batch.getFeaturesMaskArray(0),
                    batch.getLabelsMaskArrays() == null ? null : batch.getLabelsMaskArray(0));
            return PartialSums.float64(net.scoreExamples(ds, false));
        }
        return PartialSums.float64(((ComputationGraph) model).scoreExamples(batch, false));
    }

    /** @return this executor thread's copy of the network, extended */
    private BackPackNetwork restore() {
        byte[] bytes = model.value();
        BackPackNetwork net;
        try {
            if (graph) {
                net = BackPackNetwork.extend(ModelSerializer.restoreComputationGraph(new ByteArrayInputStream(bytes),
                        false));
            } else {
                net = BackPackNetwork.extend(ModelSerializer.restoreMultiLayerNetwork(new ByteArrayInputStream(bytes),
                        false));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("could not restore the broadcast network", e);
        }
        net.setBatchNormStatistics(batchNormStatistics);
        if (memoryBudget > 0) {
            net.setCurvatureMemoryBudget(memoryBudget);
        }
        return net;
    }
}
