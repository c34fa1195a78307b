package io.github.dl4jbackpack.internal;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.Extension;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * State shared by the intercepting wrappers of one network: which extensions the next backward
 * passes compute, the pass in progress, and the results of the last completed pass.
 *
 * <p>A pass starts when the output layer's backward step begins with at least one extension
 * active, collects the extensions' values layer by layer, and is published when DL4J computes the
 * training score right after the backward pass (as {@code computeGradientAndScore()} does, inside
 * {@code fit} too).
 */
public final class Interceptor {

    private final BackPackNetwork owner;
    private List<Extension<?>> active = List.of();
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

    /** @param extensions the extensions every following backward pass computes (may be empty) */
    public void setActive(List<Extension<?>> extensions) {
        this.active = List.copyOf(extensions);
    }

    /** @return the extensions the following backward passes compute */
    public List<Extension<?>> active() {
        return active;
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
        current = active.isEmpty() ? null : new BackwardPass(active, batchSize, layerCount, curvatureMemoryBudget);
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
        for (Consumer<Quantities> subscriber : subscribers) {
            subscriber.accept(latest);
        }
    }

    void abandonPass() {
        current = null;
    }
}
