// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * The Gaussian noise of the private steps, {@code N(0, sd²)} per gradient coordinate, drawn by Java's ziggurat
 * sampler ({@code SplittableRandom.nextGaussian}) one step ahead: after a step has taken its noise, the next step's
 * is drawn on a background thread while DL4J's update and the next pass run. The values and their order are those
 * of drawing each step's noise when it is needed (parameter by parameter, coordinate by coordinate, from one
 * generator), so a seeded run is reproducible whatever the timing. The main thread may use the generator
 * ({@link #random()}) only between {@link #writeInto} and {@link #prefetch}.
 *
 * <p>Memory: one step's noise, one value per parameter in the gradient's data type (float or double), on the Java
 * heap, in buffers that every step reuses. The background thread ends after a second without work.
 */
final class GaussianNoise {

    private final SplittableRandom random;
    private final ThreadPoolExecutor executor = new ThreadPoolExecutor(0, 1, 1, TimeUnit.SECONDS,
            new LinkedBlockingQueue<>(), r -> {
                Thread t = new Thread(r, "dl4j-backpack-privacy-noise");
                t.setDaemon(true);
                return t;
            });
    private Future<Drawn> pending;
    /** The buffers of the last draw and their layouts, reused by the next draw of the same layouts. */
    private List<Layout> bufferLayouts = List.of();
    private List<Object> buffers = List.of();

    /** One step's noise, drawn for given arrays and standard deviation. */
    private record Drawn(double sd, List<Layout> layouts, List<Object> values) {
    }

    /** What a gradient view needs: its length and whether it is double precision. */
    private record Layout(long length, boolean doubles) {
        static Layout of(INDArray a) {
            return new Layout(a.length(), a.dataType() == DataType.DOUBLE);
        }
    }

    /** @param random the generator of every draw */
    GaussianNoise(SplittableRandom random) {
        this.random = random;
    }

    /** @return the generator, for draws of the main thread between a step's noise and the next prefetch */
    SplittableRandom random() {
        return random;
    }

    /**
     * Overwrites each target with {@code N(0, sd²)} per element: the prefetched values if they were drawn for
     * these arrays and this standard deviation, else values drawn now. Waits for a prefetch in progress.
     *
     * @param targets the gradient views, in the step's order
     * @param sd the standard deviation
     */
    void writeInto(List<INDArray> targets, double sd) {
        List<Layout> layouts = new ArrayList<>(targets.size());
        targets.forEach(t -> layouts.add(Layout.of(t)));
        Drawn drawn = take();
        if (drawn == null || drawn.sd != sd || !drawn.layouts.equals(layouts)) {
            if (drawn != null) {
                throw new IllegalStateException("the private step's noise was drawn for other gradient arrays or "
                        + "another standard deviation (" + drawn.sd + ", now " + sd + ")");
            }
            drawn = draw(layouts, sd);
        }
        for (int i = 0; i < targets.size(); i++) {
            write(targets.get(i), drawn.values.get(i));
        }
    }

    /**
     * Starts drawing the next step's noise, for arrays laid out as these and this standard deviation.
     *
     * @param targets the gradient views of this step (only their lengths and data types are read)
     * @param sd the next step's standard deviation
     */
    void prefetch(List<INDArray> targets, double sd) {
        List<Layout> layouts = new ArrayList<>(targets.size());
        targets.forEach(t -> layouts.add(Layout.of(t)));
        pending = executor.submit(() -> draw(layouts, sd));
    }

    private Drawn take() {
        Future<Drawn> f = pending;
        pending = null;
        if (f == null) {
            return null;
        }
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for the private step's noise", e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("drawing the private step's noise failed", e.getCause());
        }
    }

    /**
     * Draws one step's noise into the buffers of the last draw where the layouts are the same (a step's noise is
     * written into the gradient before the next draw starts, so one set of buffers serves every step).
     */
    private Drawn draw(List<Layout> layouts, double sd) {
        List<Object> values = layouts.equals(bufferLayouts) ? buffers : new ArrayList<>(layouts.size());
        boolean fresh = values != buffers;
        for (int b = 0; b < layouts.size(); b++) {
            Layout l = layouts.get(b);
            int n = Math.toIntExact(l.length);
            if (l.doubles) {
                double[] z = fresh ? new double[n] : (double[]) values.get(b);
                for (int i = 0; i < n; i++) {
                    z[i] = sd * random.nextGaussian();
                }
                if (fresh) {
                    values.add(z);
                }
            } else {
                float[] z = fresh ? new float[n] : (float[]) values.get(b);
                for (int i = 0; i < n; i++) {
                    z[i] = (float) (sd * random.nextGaussian());
                }
                if (fresh) {
                    values.add(z);
                }
            }
        }
        bufferLayouts = layouts;
        buffers = values;
        return new Drawn(sd, layouts, values);
    }

    /** Writes the values into the view's memory in one copy where the view is contiguous (DL4J's views are). */
    private static void write(INDArray target, Object values) {
        boolean contiguous = target.elementWiseStride() == 1 && !target.isEmpty();
        if (values instanceof double[] z) {
            if (contiguous) {
                java.nio.DoubleBuffer buffer = target.data().asNioDouble();
                buffer.position(Math.toIntExact(target.offset()));
                buffer.put(z);
            } else {
                target.assign(Nd4j.createFromArray(z).reshape(target.ordering(), target.shape()));
            }
        } else {
            float[] z = (float[]) values;
            if (contiguous && target.dataType() == DataType.FLOAT) {
                java.nio.FloatBuffer buffer = target.data().asNioFloat();
                buffer.position(Math.toIntExact(target.offset()));
                buffer.put(z);
            } else {
                target.assign(Nd4j.createFromArray(z).reshape(target.ordering(), target.shape()));
            }
        }
    }
}
