package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.Extension;

import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * State shared by the intercepting wrappers of one network: which extensions the next backward
 * passes compute, the pass in progress, and the results of the last completed pass. Several
 * sources may ask for extensions during training (the user, curvature updaters, listeners); a pass
 * computes the union of what they ask for.
 *
 * <p>A pass starts when the output layer's backward step begins with at least one extension
 * active, collects the extensions' values layer by layer, and is published when DL4J computes the
 * training score right after the backward pass (as {@code computeGradientAndScore()} does, inside
 * {@code fit} too).
 */
public final class Interceptor {

    private final BackPackNetwork owner;
    private final Map<Object, List<Extension<?>>> sources = new LinkedHashMap<>();
    private List<Extension<?>> active = List.of();
    private List<Extension<?>> override;
    private long curvatureMemoryBudget = 1L << 30;
    private BackwardPass current;
    private Quantities latest;
    private final List<Consumer<Quantities>> subscribers = new CopyOnWriteArrayList<>();

    /** @param owner the extended network this state belongs to */
    public Interceptor(BackPackNetwork owner) {
        this.owner = owner;
    }

    /** @return the extended network this state belongs to */
    public BackPackNetwork owner() {
        return owner;
    }

    /**
     * @param source who asks (used as a key)
     * @param extensions what it asks the following training passes to compute (empty to stop)
     * @throws IllegalArgumentException if this conflicts with what another source asks for
     */
    public void setActive(Object source, List<Extension<?>> extensions) {
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
     * @param source a source
     * @return what it asks for (empty when nothing)
     */
    public List<Extension<?>> activeFor(Object source) {
        return sources.getOrDefault(source, List.of());
    }

    /** @return the extensions the following backward passes compute */
    public List<Extension<?>> active() {
        return override != null ? override : active;
    }

    /**
     * Runs one pass with exactly the given extensions, whatever the sources ask for.
     *
     * @param extensions the extensions of that pass
     * @param pass what runs the pass
     */
    public void runWith(List<Extension<?>> extensions, Runnable pass) {
        override = List.copyOf(extensions);
        try {
            pass.run();
        } finally {
            override = null;
        }
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

    /** @return the results of the last completed pass, or null before the first */
    public Quantities latest() {
        return latest;
    }

    /** @param subscriber called with the results of every completed pass, on the training thread */
    public void subscribe(Consumer<Quantities> subscriber) {
        subscribers.add(subscriber);
    }

    /** @param subscriber a subscriber to remove */
    public void unsubscribe(Consumer<Quantities> subscriber) {
        subscribers.remove(subscriber);
    }

    /** @param bytes the memory that one chunk of second-order factor columns may occupy */
    public void setCurvatureMemoryBudget(long bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("memory budget must be positive, got " + bytes);
        }
        this.curvatureMemoryBudget = bytes;
    }

    /** @return the memory that one chunk of second-order factor columns may occupy */
    public long curvatureMemoryBudget() {
        return curvatureMemoryBudget;
    }

    void beginPass(long batchSize, int layerCount) {
        List<Extension<?>> extensions = active();
        current = extensions.isEmpty() ? null
                : new BackwardPass(extensions, batchSize, layerCount, curvatureMemoryBudget);
    }

    BackwardPass current() {
        return current;
    }

    void completePass() {
        if (current != null) {
            current.complete();
        }
    }

    void finishPass(double score) {
        BackwardPass pass = current;
        if (pass == null || !pass.isComplete()) {
            return;
        }
        current = null;
        latest = pass.finish(score);
        // DL4J calls this while computing the score, possibly inside a workspace: nothing a
        // subscriber creates (the updater's state, a listener's arrays) may land there
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            for (Consumer<Quantities> subscriber : subscribers) {
                subscriber.accept(latest);
            }
        }
    }

    void abandonPass() {
        current = null;
    }
}
