// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.internal.graph.Node;
import io.github.dl4jbackpack.internal.graph.Topology;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * State shared by the intercepting wrappers of one network: which extensions the next backward
 * passes compute, and the pass in progress. Several sources may ask for extensions during training
 * (the user, curvature updaters, listeners); a pass computes the union of what they ask for.
 *
 * <p>A pass starts when the backward step of an output layer begins with at least one extension
 * active (the other outputs of a graph join it), collects the extensions' values layer by layer,
 * and completes when DL4J has computed the training score of every output right after the
 * backward pass (as {@code computeGradientAndScore()} does, inside {@code fit} too): then the
 * second-order pass runs and the result goes to the sink.
 */
public final class Interceptor {

    private final Object owner;
    private final Topology topology;
    private final Consumer<PassResult> sink;
    private final Map<Object, List<Extension<?>>> sources = new LinkedHashMap<>();
    private final Map<Object, Supplier<List<Extension<?>>>> schedules = new LinkedHashMap<>();
    private List<Extension<?>> active = List.of();
    private List<Extension<?>> override;
    private long curvatureMemoryBudget = 1L << 30;
    private boolean runningStatistics;
    private boolean batchStatisticsAsConstants;
    private BackwardPass current;
    private volatile long firstOrderScratch;
    private volatile long sharedStepScratch;

    /**
     * @param owner the public object that extended the network
     * @param topology the network's topology
     * @param sink receives the result of every completed pass, on the thread that ran it
     */
    public Interceptor(Object owner, Topology topology, Consumer<PassResult> sink) {
        this.owner = owner;
        this.topology = topology;
        this.sink = sink;
    }

    /** @return the public object that extended the network */
    public Object owner() {
        return owner;
    }

    /** @return the topology of the network */
    public Topology topology() {
        return topology;
    }

    /**
     * @param source who asks (used as a key)
     * @param extensions what it asks the following training passes to compute (empty to stop)
     * @throws IllegalArgumentException if this conflicts with what another source asks for
     */
    public void setActive(Object source, List<Extension<?>> extensions) {
        schedules.remove(source);
        Map<Object, List<Extension<?>>> next = new LinkedHashMap<>(sources);
        if (extensions.isEmpty()) {
            next.remove(source);
        } else {
            next.put(source, List.copyOf(extensions));
        }
        active = union(next);
        sources.clear();
        sources.putAll(next);
    }

    /**
     * A source whose extensions are needed in some training passes only (curvature updaters that refresh their
     * curvature every few iterations): each training pass asks it what to compute.
     *
     * @param source who asks (used as a key)
     * @param possible every extension it may ask for, checked against the other sources now (empty to stop)
     * @param now what it asks the training pass about to run to compute, a part of {@code possible}
     * @throws IllegalArgumentException if {@code possible} conflicts with what another source asks for
     */
    public void setScheduled(Object source, List<Extension<?>> possible, Supplier<List<Extension<?>>> now) {
        setActive(source, possible);
        if (!possible.isEmpty()) {
            schedules.put(source, now);
        }
    }

    /**
     * @param source a source
     * @return what it asks for (empty when nothing; for a scheduled source, everything it may ask for)
     */
    public List<Extension<?>> activeFor(Object source) {
        return sources.getOrDefault(source, List.of());
    }

    /** @return the extensions the following backward passes compute */
    public List<Extension<?>> active() {
        if (override != null) {
            return override;
        }
        if (schedules.isEmpty()) {
            return active;
        }
        Map<Object, List<Extension<?>>> now = new LinkedHashMap<>(sources);
        schedules.forEach((source, schedule) -> now.put(source, schedule.get()));
        return union(now);
    }

    /**
     * Runs one pass with exactly the given extensions, whatever the sources ask for.
     *
     * @param extensions the extensions of that pass
     * @param pass what runs the pass
     */
    public void runWith(List<Extension<?>> extensions, Runnable pass) {
        BackwardPass running = current;
        if (running != null && running.thread() != Thread.currentThread() && running.thread().isAlive()) {
            throw concurrentUse(running);
        }
        override = List.copyOf(extensions);
        current = null;
        try {
            pass.run();
        } finally {
            override = null;
            current = null;
        }
    }

    /**
     * @return whether the following training passes replace DL4J's gradient
     *     ({@link io.github.dl4jbackpack.extensions.WeightedGradientSum#replacingGradient()})
     */
    boolean replacesGradient() {
        for (Extension<?> e : active()) {
            if (e instanceof io.github.dl4jbackpack.extensions.WeightedGradientSum w && w.replacesGradient()) {
                return true;
            }
        }
        return false;
    }

    /** One extension per class; two sources asking for one class with different settings conflict. */
    private static List<Extension<?>> union(Map<Object, List<Extension<?>>> sources) {
        Map<Class<?>, Extension<?>> byClass = new LinkedHashMap<>();
        for (List<Extension<?>> list : sources.values()) {
            for (Extension<?> e : list) {
                Extension<?> known = byClass.putIfAbsent(e.getClass(), e);
                if (known != null && !known.name().equals(e.name())) {
                    throw new IllegalArgumentException("Two users of this network ask for " + known.name() + " and "
                            + e.name() + " in training; results are keyed by extension class, so they must agree");
                }
            }
        }
        return new ArrayList<>(byClass.values());
    }

    /** @param bytes the memory that one chunk of second-order factor columns may occupy */
    public void setCurvatureMemoryBudget(long bytes) {
        if (bytes < io.github.dl4jbackpack.internal.memory.ScratchWorkspace.MINIMUM_BYTES) {
            throw new IllegalArgumentException("the curvature memory budget must be at least "
                    + io.github.dl4jbackpack.internal.memory.ScratchWorkspace.MINIMUM_BYTES + " bytes, got " + bytes);
        }
        this.curvatureMemoryBudget = bytes;
    }

    /** @return the first-order scratch memory this network's largest layer needed so far, in bytes */
    long firstOrderScratch() {
        return firstOrderScratch;
    }

    /** @param bytes what one layer's first-order computation needed */
    void learnFirstOrderScratch(long bytes) {
        if (bytes > firstOrderScratch) {
            firstOrderScratch = bytes;
        }
    }

    /** @return the size of the shared-step workspace: what the largest layer's values shared with DL4J's step needed */
    long sharedStepScratch() {
        return sharedStepScratch;
    }

    /** @param bytes what one layer's values shared with DL4J's backward step needed */
    void learnSharedStepScratch(long bytes) {
        if (bytes > sharedStepScratch) {
            sharedStepScratch = bytes;
        }
    }

    /**
     * @param running whether layers that normalise over the batch use their running statistics in
     *     passes with extensions
     */
    public void setRunningStatistics(boolean running) {
        this.runningStatistics = running;
    }

    /** @return whether the setting asks for the running statistics, whether or not a pass is running */
    public boolean runningStatisticsSetting() {
        return runningStatistics;
    }

    /**
     * @return whether a training forward step now should normalise with the running statistics: the
     *     setting asks for them and extensions are active
     */
    boolean runningStatistics() {
        return runningStatistics && !active().isEmpty();
    }

    /**
     * @param constants whether layers that normalise over the batch, in passes with extensions, are
     *     differentiated as if the batch's statistics were constants
     */
    public void setBatchStatisticsAsConstants(boolean constants) {
        this.batchStatisticsAsConstants = constants;
    }

    /** @return whether the setting asks for the batch's statistics as constants, whether or not a pass runs */
    public boolean batchStatisticsAsConstantsSetting() {
        return batchStatisticsAsConstants;
    }

    /**
     * @return whether a backward step now should treat the batch's statistics as constants: the setting
     *     asks for it and extensions are active
     */
    boolean batchStatisticsAsConstants() {
        return batchStatisticsAsConstants && !active().isEmpty();
    }

    /** @return the memory that one chunk of second-order factor columns may occupy */
    public long curvatureMemoryBudget() {
        return curvatureMemoryBudget;
    }

    /**
     * @return the pass in progress, or null
     * @throws IllegalStateException if it runs on another thread: DL4J networks are not thread-safe
     */
    BackwardPass current() {
        BackwardPass pass = current;
        if (pass != null && pass.thread() != Thread.currentThread() && pass.thread().isAlive()) {
            throw concurrentUse(pass);
        }
        return pass;
    }

    private static IllegalStateException concurrentUse(BackwardPass pass) {
        return new IllegalStateException("this extended network is in a backward pass on thread \""
                + pass.thread().getName() + "\" while thread \"" + Thread.currentThread().getName() + "\" uses it; "
                + "DL4J networks are not thread-safe: give each thread its own network (net.clone(), then "
                + "BackPackNetwork.extend). If a pass on that thread failed, a new backward(...) there resets it.");
    }

    /**
     * The backward step of an output layer begins: starts a pass, or joins the pass of the other
     * outputs of a graph.
     */
    void outputBackward(Node output, long batchSize) {
        if (current() != null && current.joins(output)) {
            return;
        }
        List<Extension<?>> extensions = active();
        current = extensions.isEmpty() ? null
                : new BackwardPass(extensions, batchSize, topology, curvatureMemoryBudget);
        if (current != null) {
            current.begin(output);
        }
    }

    /** DL4J computed the training score of an output: completes the pass once every output has one. */
    void scoreComputed(Node output, double score) {
        BackwardPass pass = current;
        if (pass == null || !pass.addScore(output, score)) {
            return;
        }
        current = null;
        PassResult result = pass.finish();
        // DL4J calls this while computing the score, inside a workspace: nothing the sink creates (an
        // updater's state, a listener's arrays) may land there
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            sink.accept(result);
        }
        io.github.dl4jbackpack.internal.memory.ResultMemory.passFinished();
    }

    void abandonPass() {
        current = null;
    }
}
