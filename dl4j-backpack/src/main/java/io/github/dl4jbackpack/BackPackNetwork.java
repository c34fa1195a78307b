// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.internal.Interceptor;
import io.github.dl4jbackpack.internal.NetworkAccess;
import io.github.dl4jbackpack.internal.PassResult;
import io.github.dl4jbackpack.internal.Validation;
import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.CurvatureConsumer;
import io.github.dl4jbackpack.spi.CurvatureUpdater;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.api.Trainable;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.updater.UpdaterBlock;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.learning.regularization.L2Regularization;
import org.nd4j.linalg.learning.regularization.Regularization;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * A DL4J network — a {@link MultiLayerNetwork} or a {@link ComputationGraph} — whose backward pass
 * also computes the quantities of the BackPACK paper (Dangel, Kunstner &amp; Hennig, ICLR 2020):
 * individual gradients, their norms, gradient variance and second moment, curvature (see
 * {@link io.github.dl4jbackpack.extensions}).
 *
 * <pre>{@code
 * BackPackNetwork bp = BackPackNetwork.extend(net);            // or extend(graph)
 * Quantities q = bp.backward(features, labels, new Variance(), new BatchL2Grad());
 * INDArray var = q.get(Variance.class, "0", "W");   // layer "0" of a MultiLayerNetwork
 * INDArray v2  = q.byKey(Variance.class, "dense1_W"); // or DL4J's parameter key (a graph vertex here)
 * }</pre>
 *
 * <p><b>What extending does.</b> {@link #extend} puts a thin delegating wrapper (a DL4J
 * {@code BaseWrapperLayer}) around each layer implementation: in {@code net.getLayers()} of a
 * MultiLayerNetwork, in each {@code LayerVertex} and {@code getLayers()} of a graph. Configuration
 * objects are never modified (several networks may share one); parameters, updater and listeners
 * are untouched. The network keeps working as before: same outputs, bit-identical gradients and
 * training trajectory, and {@code ModelSerializer} writes exactly what it wrote before (a restored
 * network is a plain DL4J network, to be extended again if wanted). Code that casts a layer of the
 * network to a concrete DL4J layer class should use {@code getUnderlying()} of the wrapper, or
 * {@link #unwrap()} first.
 *
 * <p><b>Graphs.</b> A graph's objective is the sum of its output layers' mean losses, as DL4J
 * defines its score; every quantity refers to it (docs/math.md#graphs). Layers are named by vertex
 * name.
 *
 * <p><b>During training.</b> After {@link #enable}, every {@code fit(...)} iteration computes the
 * enabled extensions in its own backward pass; {@link #latest()} and subscribers
 * ({@link #addQuantitiesListener}) see each iteration's values, before the updater changes the
 * parameters.
 *
 * <p><b>Curvature updaters.</b> If the configuration uses updaters that need curvature (those of
 * {@code dl4j-backpack-optim}, implementing {@link CurvatureUpdater}), {@code extend} also computes
 * what they need in every training iteration in which their updaters ask for it
 * ({@link io.github.dl4jbackpack.spi.CurvatureConsumer#needsCurvature}) and hands it to them before DL4J applies
 * the update.
 *
 * <p>Not thread-safe, like the DL4J network itself.
 */
public final class BackPackNetwork {

    private static final Logger log = LoggerFactory.getLogger(BackPackNetwork.class);

    /** The source key of extensions enabled by the user. */
    private static final Object USER = new Object();
    /** The source key of extensions required by curvature updaters in the configuration. */
    private static final Object UPDATERS = new Object();

    private final NetworkAccess access;
    private final Interceptor interceptor;
    private final List<Consumer<Quantities>> subscribers = new CopyOnWriteArrayList<>();
    private Quantities latest;
    private boolean unwrapped;
    private boolean publishing;
    private final java.util.concurrent.atomic.AtomicReference<Thread> caller =
            new java.util.concurrent.atomic.AtomicReference<>();

    private BackPackNetwork(NetworkAccess access) {
        this.access = access;
        this.interceptor = new Interceptor(this, access.topology(), this::publish);
    }

    /**
     * Extends an initialised MultiLayerNetwork. Extending a network that is already extended
     * returns the object that extended it.
     *
     * @param net a network on which {@code init()} has been called
     * @return the extended network
     * @throws IllegalStateException if the network is not initialised
     */
    public static BackPackNetwork extend(MultiLayerNetwork net) {
        Objects.requireNonNull(net, "net");
        if (net.getLayers() == null) {
            throw new IllegalStateException("The network has no layers yet: call net.init() before extend(net)");
        }
        return extend(NetworkAccess.of(net));
    }

    /**
     * Extends an initialised ComputationGraph. Extending a graph that is already extended returns
     * the object that extended it.
     *
     * @param graph a graph on which {@code init()} has been called
     * @return the extended graph
     * @throws IllegalStateException if the graph is not initialised
     */
    public static BackPackNetwork extend(ComputationGraph graph) {
        Objects.requireNonNull(graph, "graph");
        if (graph.getVertices() == null || graph.getLayers() == null) {
            throw new IllegalStateException("The graph has no vertices yet: call graph.init() before extend(graph)");
        }
        return extend(NetworkAccess.of(graph));
    }

    private static BackPackNetwork extend(NetworkAccess access) {
        Interceptor installed = access.installed();
        BackPackNetwork bp = installed != null ? (BackPackNetwork) installed.owner() : new BackPackNetwork(access);
        bp.ensureInstalled();
        bp.enableCurvatureUpdaters();
        return bp;
    }

    /**
     * Sets the scratch memory of the second-order pass (default 1 GiB). Second-order extensions push
     * several columns per example through the network (the exact GGN and the Hessian as many as the
     * network has outputs, more for Hessian residuals); columns are processed in chunks whose
     * temporaries, over all layers and vertices, fit in this budget, trading memory for more, smaller
     * passes. The scratch workspace is sized to the chunk actually needed (a small network needs
     * little), never above the budget; a network and batch of which not even one column fits fail
     * with a message saying how much is needed. Not counted: the copies of each layer's
     * pre-activation the pass keeps (the size of the layer outputs) and the results.
     *
     * <p>The chunks are computed in a per-thread ND4J workspace that stays allocated after the pass,
     * so that later passes reuse it instead of allocating afresh; first-order extensions likewise keep
     * a workspace as large as their largest layer needed. {@link #releaseThreadMemory()} returns both
     * at once (call it at the end of a thread that ran passes, e.g. in a thread pool's
     * {@code afterExecute}).
     *
     * @param bytes the budget, at least 64 KiB
     * @throws IllegalArgumentException for a smaller budget
     */
    public void setCurvatureMemoryBudget(long bytes) {
        interceptor.setCurvatureMemoryBudget(bytes);
    }

    /**
     * Releases the scratch memory the calling thread's passes keep for reuse (of every extended
     * network), and the memory of closed per-example values kept for the thread's next pass
     * ({@link Quantities#close()}): deterministic, instead of waiting for the thread's end or the garbage
     * collector. The next pass on the thread allocates it again.
     */
    public static void releaseThreadMemory() {
        io.github.dl4jbackpack.internal.memory.ScratchWorkspace.release();
        io.github.dl4jbackpack.internal.memory.ResultMemory.release();
    }

    /**
     * Chooses which statistics the network's {@code BatchNormalization} layers normalise with in the
     * passes that compute extensions: {@link BatchNormStatistics#BATCH} (the default, DL4J's training
     * behaviour), {@link BatchNormStatistics#RUNNING} (as in inference, so that every example is
     * processed independently and per-example quantities are defined) or
     * {@link BatchNormStatistics#BATCH_AS_CONSTANTS} (the batch's statistics, differentiated as
     * constants: an approximation). Layers frozen by {@code FrozenLayer} always use their running
     * statistics, as DL4J makes them.
     *
     * @param statistics the statistics
     */
    public void setBatchNormStatistics(BatchNormStatistics statistics) {
        if (statistics == null) {
            throw new IllegalArgumentException("statistics must not be null");
        }
        interceptor.setRunningStatistics(statistics == BatchNormStatistics.RUNNING);
        interceptor.setBatchStatisticsAsConstants(statistics == BatchNormStatistics.BATCH_AS_CONSTANTS);
    }

    /** @return which statistics BatchNormalization layers use in passes with extensions */
    public BatchNormStatistics batchNormStatistics() {
        return interceptor.runningStatisticsSetting() ? BatchNormStatistics.RUNNING
                : interceptor.batchStatisticsAsConstantsSetting() ? BatchNormStatistics.BATCH_AS_CONSTANTS
                : BatchNormStatistics.BATCH;
    }

    /** @return the scratch memory budget of the second-order pass, in bytes */
    public long curvatureMemoryBudget() {
        return interceptor.curvatureMemoryBudget();
    }

    /** @return the extended DL4J network or graph */
    public Model model() {
        return access.model();
    }

    /**
     * @return the extended MultiLayerNetwork
     * @throws IllegalStateException if a ComputationGraph was extended (see {@link #graph()})
     */
    public MultiLayerNetwork network() {
        if (!(access.model() instanceof MultiLayerNetwork)) {
            throw new IllegalStateException("this BackPackNetwork extends a ComputationGraph: use graph() or model()");
        }
        return (MultiLayerNetwork) access.model();
    }

    /**
     * @return the extended ComputationGraph
     * @throws IllegalStateException if a MultiLayerNetwork was extended (see {@link #network()})
     */
    public ComputationGraph graph() {
        if (!(access.model() instanceof ComputationGraph)) {
            throw new IllegalStateException("this BackPackNetwork extends a MultiLayerNetwork: use network() or model()");
        }
        return (ComputationGraph) access.model();
    }

    /**
     * @return the names of the layers, in topological order: indices ({@code "0"}, {@code "1"}, ...)
     *     in a MultiLayerNetwork, vertex names in a graph (vertices without parameters included)
     */
    public List<String> layerNames() {
        List<String> names = new ArrayList<>();
        for (Node n : access.topology().nodes()) {
            names.add(n.name());
        }
        return names;
    }

    /**
     * Runs one forward and backward pass on a batch of a network with one input and one output,
     * exactly as {@code setInput(features); setLabels(labels); computeGradientAndScore()} would
     * (leaving {@code gradient()} and {@code score()} as those calls leave them), and computes the
     * given extensions in the same pass.
     *
     * @param features a batch of features, {@code [N, nIn]} or {@code [N, C, H, W]}
     * @param labels the labels, {@code [N, nOut]}
     * @param extensions the quantities to compute, each class at most once
     * @return the quantities of this pass
     * @throws UnsupportedLayerException naming every part of the network an extension cannot handle
     * @throws IllegalArgumentException on mismatched shapes or duplicate extensions, before the
     *     network is touched
     */
    public Quantities backward(INDArray features, INDArray labels, Extension<?>... extensions) {
        return backward(new INDArray[] {features}, new INDArray[] {labels}, extensions);
    }

    /**
     * Runs one forward and backward pass on a batch of a network with several inputs or outputs
     * (a graph's {@code setInputs(features); setLabels(labels); computeGradientAndScore()}), and
     * computes the given extensions in the same pass.
     *
     * @param features one array per network input, in the graph's input order
     * @param labels one array per network output, in the graph's output order
     * @param extensions the quantities to compute, each class at most once
     * @return the quantities of this pass
     * @throws UnsupportedLayerException naming every part of the network an extension cannot handle
     * @throws IllegalArgumentException on mismatched numbers or shapes of arrays or duplicate
     *     extensions, before the network is touched
     */
    public Quantities backward(INDArray[] features, INDArray[] labels, Extension<?>... extensions) {
        return backward(features, labels, null, null, extensions);
    }

    /**
     * Runs one forward and backward pass on a batch of sequences with masks
     * ({@code setLayerMaskArrays(featuresMask, labelsMask); setInput(features); setLabels(labels);
     * computeGradientAndScore()}, the masks cleared afterwards as DL4J's {@code fit(DataSet)} clears them),
     * and computes the given extensions in the same pass. An example is a sequence: its quantities are
     * those of its loss summed over its unmasked steps (docs/math.md#sequences-and-weight-sharing).
     *
     * @param features {@code [N, nIn, T]} (or the network's other input shapes)
     * @param labels {@code [N, nOut, T]} for per-step outputs, {@code [N, nOut]} otherwise
     * @param featuresMask {@code [N, T]}, 1 for real steps and 0 for padding, or null
     * @param labelsMask {@code [N, T]} for per-step outputs, or null
     * @param extensions the quantities to compute, each class at most once
     * @return the quantities of this pass
     * @throws UnsupportedLayerException naming every part of the network an extension cannot handle
     * @throws IllegalArgumentException on mismatched shapes of arrays or masks, before the network is touched
     */
    public Quantities backward(INDArray features, INDArray labels, INDArray featuresMask, INDArray labelsMask,
                               Extension<?>... extensions) {
        return backward(new INDArray[] {features}, new INDArray[] {labels},
                featuresMask == null ? null : new INDArray[] {featuresMask},
                labelsMask == null ? null : new INDArray[] {labelsMask}, extensions);
    }

    /**
     * Runs one forward and backward pass on a {@code DataSet} (features, labels and their masks, if any),
     * as {@link #backward(INDArray, INDArray, INDArray, INDArray, Extension[])}.
     *
     * @param batch the batch
     * @param extensions the quantities to compute, each class at most once
     * @return the quantities of this pass
     */
    public Quantities backward(org.nd4j.linalg.dataset.api.DataSet batch, Extension<?>... extensions) {
        return backward(batch.getFeatures(), batch.getLabels(), batch.getFeaturesMaskArray(),
                batch.getLabelsMaskArray(), extensions);
    }

    /**
     * Runs one forward and backward pass on a {@code MultiDataSet} (features, labels and their masks, if
     * any), as {@link #backward(INDArray[], INDArray[], INDArray[], INDArray[], Extension[])}.
     *
     * @param batch the batch
     * @param extensions the quantities to compute, each class at most once
     * @return the quantities of this pass
     */
    public Quantities backward(org.nd4j.linalg.dataset.api.MultiDataSet batch, Extension<?>... extensions) {
        return backward(batch.getFeatures(), batch.getLabels(), batch.getFeaturesMaskArrays(),
                batch.getLabelsMaskArrays(), extensions);
    }

    /**
     * Runs one forward and backward pass on a batch with masks of a network with several inputs or
     * outputs ({@code setLayerMaskArrays(featuresMasks, labelsMasks); setInputs(features);
     * setLabels(labels); computeGradientAndScore()}, the masks cleared afterwards), and computes the given
     * extensions in the same pass.
     *
     * @param features one array per network input, in the graph's input order
     * @param labels one array per network output, in the graph's output order
     * @param featuresMasks one mask per network input (entries may be null), or null for none
     * @param labelsMasks one mask per network output (entries may be null), or null for none
     * @param extensions the quantities to compute, each class at most once
     * @return the quantities of this pass
     * @throws UnsupportedLayerException naming every part of the network an extension cannot handle
     * @throws IllegalArgumentException on mismatched numbers or shapes of arrays or masks or duplicate
     *     extensions, before the network is touched
     */
    public Quantities backward(INDArray[] features, INDArray[] labels, INDArray[] featuresMasks,
                               INDArray[] labelsMasks, Extension<?>... extensions) {
        Validation.checkDistinct(extensions);
        List<Extension<?>> requested = Arrays.asList(extensions);
        if (publishing) {
            throw new IllegalStateException("backward() was called while the network is inside a pass (from a "
                    + "quantities listener?): that would run the network on another batch in the middle of a "
                    + "training step. Collect the quantities and compute later, outside the listener.");
        }
        ensureInstalled();
        checkNetwork(requested);
        Validation.checkBatch(access, features, labels, featuresMasks, labelsMasks, requested);
        Thread self = Thread.currentThread();
        if (!caller.compareAndSet(null, self)) {
            Thread other = caller.get();
            throw new IllegalStateException("backward() is running on thread \"" + (other == null ? "?" : other.getName())
                    + "\" for this network while thread \"" + self.getName() + "\" calls it; DL4J networks are not "
                    + "thread-safe: give each thread its own network (net.clone(), then BackPackNetwork.extend)");
        }
        try {
            if (requested.isEmpty()) {
                access.computeGradientAndScore(features, labels, featuresMasks, labelsMasks);
                return new Quantities(access.score(), features[0].size(0), java.util.Map.of());
            }
            Quantities before = latest;
            interceptor.runWith(requested, () -> access.computeGradientAndScore(features, labels, featuresMasks,
                    labelsMasks));
            Quantities q = latest;
            if (q == null || q == before) {
                throw new IllegalStateException("The backward pass did not reach the extended layers; was a layer of "
                        + "the network replaced during the pass?");
            }
            return q;
        } finally {
            caller.set(null);
        }
    }

    /**
     * Computes the given extensions in every following training iteration ({@code fit}) until
     * {@link #disable()}. Replaces any previously enabled set.
     *
     * @param extensions the quantities to compute, each class at most once
     * @throws UnsupportedLayerException naming every part of the network an extension cannot handle
     */
    public void enable(Extension<?>... extensions) {
        Validation.checkDistinct(extensions);
        List<Extension<?>> requested = Arrays.asList(extensions);
        ensureInstalled();
        checkNetwork(requested);
        interceptor.setActive(USER, requested);
        log.debug("Enabled extensions {} for training", requested);
    }

    /** Stops computing extensions during training; the network then costs what it did before. */
    public void disable() {
        interceptor.setActive(USER, List.of());
    }

    /**
     * Lets a component built on the library (a listener such as {@link GradientVarianceListener}, an application
     * in its own module such as private training) ask for extensions in training on its own behalf, independently
     * of {@link #enable} and of other components: every following training iteration computes the union of what
     * the user and the components ask for, and the component reads its values with
     * {@link #addQuantitiesListener}.
     *
     * @param source the component (its identity keys its request)
     * @param extensions what it needs in the following iterations (empty to stop)
     * @throws UnsupportedLayerException naming every part of the network an extension cannot handle
     */
    public void require(Object source, List<Extension<?>> extensions) {
        if (!extensions.isEmpty()) {
            ensureInstalled();
            checkNetwork(extensions);
        }
        interceptor.setActive(source, extensions);
    }

    /** @return the extensions enabled for training with {@link #enable} (empty when none) */
    public List<Extension<?>> enabled() {
        return interceptor.activeFor(USER);
    }

    /** @return DL4J's iteration count of the network */
    int iteration() {
        return access.iteration();
    }

    /** @return the quantities of the most recent extended pass (training iteration or {@link #backward}) */
    public Optional<Quantities> latest() {
        return Optional.ofNullable(latest);
    }

    /**
     * @param listener called with the quantities of every extended pass, on the thread that runs it,
     *     after DL4J's backward pass and before the updater step; it must not run passes of this network
     */
    public void addQuantitiesListener(Consumer<Quantities> listener) {
        subscribers.add(Objects.requireNonNull(listener, "listener"));
    }

    /** @param listener a listener added before */
    public void removeQuantitiesListener(Consumer<Quantities> listener) {
        subscribers.remove(listener);
    }

    /**
     * Removes the wrappers again: the network holds DL4J's own layer objects afterwards, exactly as
     * before {@link #extend}. This object is then spent: further calls fail; call {@code extend}
     * again to extend the network anew.
     *
     * @return the plain network or graph
     */
    public Model unwrap() {
        disable();
        interceptor.setActive(UPDATERS, List.of());
        if (access.installed() == interceptor) {
            access.uninstall();
        }
        unwrapped = true;
        return access.model();
    }

    /** The results of a completed pass: stored, then handed to the curvature updaters and listeners. */
    private void publish(PassResult result) {
        Quantities q = new Quantities(result.score(), result.batchSize(), result.values());
        latest = q;
        publishing = true;
        try {
            feedCurvatureUpdaters(q);
            for (Consumer<Quantities> subscriber : subscribers) {
                subscriber.accept(q);
            }
        } finally {
            publishing = false;
        }
    }

    private void checkNetwork(List<Extension<?>> extensions) {
        List<Validation.Problem> problems = Validation.checkNetwork(access, extensions,
                interceptor.runningStatisticsSetting() || interceptor.batchStatisticsAsConstantsSetting());
        if (!problems.isEmpty()) {
            List<UnsupportedLayerException.Part> parts = new ArrayList<>();
            for (Validation.Problem p : problems) {
                parts.add(new UnsupportedLayerException.Part(p.layer(), p.type(), p.extension(), p.reason(),
                        p.supported()));
            }
            throw new UnsupportedLayerException(parts);
        }
    }

    private void ensureInstalled() {
        if (unwrapped) {
            throw new IllegalStateException("this BackPackNetwork was unwrapped; call BackPackNetwork.extend(...) "
                    + "again for a new one");
        }
        Interceptor installed = access.installed();
        if (installed == interceptor) {
            return;
        }
        if (installed != null) {
            throw new IllegalStateException("the network is extended by another BackPackNetwork");
        }
        access.install(interceptor);
        log.debug("Extended a network of {} nodes", access.topology().nodes().size());
    }

    /** Enables, for training, what the curvature updaters of the configuration need. */
    private void enableCurvatureUpdaters() {
        List<Extension<?>> required = new ArrayList<>();
        Set<String> names = new HashSet<>();
        for (Node node : access.topology().nodes()) {
            if (!node.isLayer()) {
                continue;
            }
            for (String param : node.layer().paramTable().keySet()) {
                IUpdater updater = node.conf().getLayer().getUpdaterByParam(param);
                if (updater instanceof CurvatureUpdater) {
                    for (Extension<?> e : ((CurvatureUpdater) updater).requiredExtensions()) {
                        if (names.add(e.name())) {
                            required.add(e);
                        }
                    }
                }
            }
        }
        if (!required.isEmpty()) {
            checkNetwork(required);
            log.info("Curvature updaters in the configuration: computing {} in every training iteration", names);
        }
        interceptor.setScheduled(UPDATERS, required, () -> curvatureNeededNow(required));
    }

    /**
     * @param possible every extension the curvature updaters read
     * @return what they read in the training iteration about to run: the extensions of the updaters whose step
     *     asks for curvature in it ({@link CurvatureConsumer#needsCurvature}); all of them before DL4J has
     *     created the network's updater (in its first iteration)
     */
    private List<Extension<?>> curvatureNeededNow(List<Extension<?>> possible) {
        List<UpdaterBlock> blocks = access.updaterBlocks();
        if (blocks.isEmpty()) {
            return possible;
        }
        int iteration = access.iteration();
        Map<String, Extension<?>> needed = new LinkedHashMap<>();
        for (UpdaterBlock block : blocks) {
            if (block.getGradientUpdater() instanceof CurvatureConsumer consumer && consumer.needsCurvature(iteration)
                    && block.getGradientUpdater().getConfig() instanceof CurvatureUpdater updater) {
                for (Extension<?> e : updater.requiredExtensions()) {
                    needed.putIfAbsent(e.name(), e);
                }
            }
        }
        return List.copyOf(needed.values());
    }

    /** Hands each curvature updater of the network the quantities of the parameters in its block. */
    private void feedCurvatureUpdaters(Quantities quantities) {
        if (interceptor.activeFor(UPDATERS).isEmpty()) {
            return;
        }
        for (UpdaterBlock block : access.updaterBlocks()) {
            if (!(block.getGradientUpdater() instanceof CurvatureConsumer)) {
                continue;
            }
            List<BlockCurvature.Segment> segments = new ArrayList<>();
            for (UpdaterBlock.ParamState p : block.getLayersAndVariablesInBlock()) {
                Node node = access.nodeOf(p.getLayer());
                INDArray param = node.layer().getParam(p.getParamName());
                segments.add(new BlockCurvature.Segment(node.name(), p.getParamName(),
                        p.getParamOffsetStart() - block.getParamOffsetStart(),
                        p.getParamOffsetEnd() - p.getParamOffsetStart(), param.shape().clone(), param.ordering(),
                        l2(p.getLayer(), p.getParamName())));
            }
            ((CurvatureConsumer) block.getGradientUpdater()).acceptCurvature(
                    new BlockCurvature(List.copyOf(segments), quantities, access.iteration(), access.epoch()));
        }
    }

    private double l2(Trainable layer, String param) {
        List<Regularization> regularizations = layer.getConfig().getRegularizationByParam(param);
        double l2 = 0;
        if (regularizations != null) {
            for (Regularization r : regularizations) {
                if (r instanceof L2Regularization) {
                    l2 += ((L2Regularization) r).getL2().valueAt(access.iteration(), access.epoch());
                }
            }
        }
        return l2;
    }
}
