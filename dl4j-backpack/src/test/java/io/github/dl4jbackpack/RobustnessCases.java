// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.BatchDiagGGNExact;
import io.github.dl4jbackpack.extensions.BatchDiagGGNMC;
import io.github.dl4jbackpack.extensions.BatchDiagHessian;
import io.github.dl4jbackpack.extensions.BatchDotGrad;
import io.github.dl4jbackpack.extensions.BatchGrad;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.DiagGGNMC;
import io.github.dl4jbackpack.extensions.DiagHessian;
import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.extensions.KFAC;
import io.github.dl4jbackpack.extensions.KFLR;
import io.github.dl4jbackpack.extensions.KFRA;
import io.github.dl4jbackpack.extensions.SumGradSquared;
import io.github.dl4jbackpack.extensions.Variance;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.layers.BaseOutputLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.lossfunctions.ILossFunction;
import org.nd4j.linalg.lossfunctions.impl.LossBinaryXENT;
import org.nd4j.linalg.lossfunctions.impl.LossMCXENT;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.function.Supplier;
import java.util.stream.Collectors;

/**
 * The seeded generator of {@link RobustnessTest}: for one seed, a random supported network (a
 * {@link RandomArchitectures} MultiLayerNetwork or a {@link GraphNets} topology), an untouched twin
 * (a clone taken before extending), a random subset of extensions, a valid warm-up batch, and the
 * batch of the case, drawn from one {@link Category}. Everything random about a case derives from
 * its seed, so {@code -Drobustness.seed=<seed>} reproduces it alone.
 */
final class RobustnessCases {

    private RobustnessCases() {
    }

    /** What the documented behaviour for a category is. */
    enum Kind {
        /** must succeed (or, for second-order extensions on graphs they do not support, UnsupportedLayerException) */
        VALID,
        /**
         * NaN or ±Inf inside the batch: refused with IllegalArgumentException before running, or
         * "garbage in" — the pass runs, DL4J's gradient is what the plain network computes, and every
         * value that has a reference (first order; exact GGN rows of finite examples) is finite exactly
         * where the float64 reference is: never a finite number made from non-finite data, never a
         * non-finite one where the data of that value is finite
         */
        NON_FINITE,
        /**
         * must be refused with IllegalArgumentException (UnsupportedLayerException) or
         * IllegalStateException, with a message, before the network is touched; unless DL4J itself
         * accepts the batch (a spatial size a convolutional network happens to handle), in which case
         * success with correct values is also fine
         */
        INVALID
    }

    enum Category {
        PLAIN(Kind.VALID),
        SINGLE_EXAMPLE(Kind.VALID),
        ROW_VIEW(Kind.VALID),
        STRIDED_VIEW(Kind.VALID),
        NON_C_LAYOUT(Kind.VALID),
        F_ORDER(Kind.VALID),
        OTHER_DTYPE(Kind.VALID),
        TINY(Kind.VALID),
        HUGE(Kind.VALID),
        IDENTICAL_EXAMPLES(Kind.VALID),
        NAN_FEATURES(Kind.NON_FINITE),
        INF_FEATURES(Kind.NON_FINITE),
        NAN_LABELS(Kind.NON_FINITE),
        INF_LABELS(Kind.NON_FINITE),
        FEATURE_RANK(Kind.INVALID),
        LABEL_RANK(Kind.INVALID),
        FEATURE_WIDTH(Kind.INVALID),
        LABEL_WIDTH(Kind.INVALID),
        BATCH_MISMATCH(Kind.INVALID),
        EMPTY_BATCH(Kind.INVALID),
        NULL_ARRAY(Kind.INVALID),
        ARRAY_COUNT(Kind.INVALID),
        DUPLICATE_EXTENSION(Kind.INVALID),
        NULL_EXTENSION(Kind.INVALID);

        final Kind kind;

        Category(Kind kind) {
            this.kind = kind;
        }
    }

    static final List<Supplier<Extension<?>>> FIRST_ORDER = List.of(BatchGrad::new, BatchL2Grad::new,
            SumGradSquared::new, Variance::new, BatchDotGrad::new);
    static final List<Supplier<Extension<?>>> SECOND_ORDER = List.of(DiagGGNExact::new, BatchDiagGGNExact::new,
            () -> new DiagGGNMC(2), () -> new BatchDiagGGNMC(2), DiagHessian::new, BatchDiagHessian::new, KFAC::new,
            KFLR::new, KFRA::new);

    /** One generated case. */
    static final class Case {
        final long seed;
        final Category category;
        final boolean graph;
        final GraphNets.Topology topology;
        final String network;
        final DataType dataType;
        /** the network that is extended */
        final Model net;
        /** a clone of {@link #net} taken before anything else, never extended */
        final Model twin;
        final INDArray[] warmFeatures;
        final INDArray[] warmLabels;
        /** the batch of the case (either may be null, or contain null, for NULL_ARRAY) */
        INDArray[] features;
        INDArray[] labels;
        /** whether to call the single-array {@code backward(INDArray, INDArray, ...)} */
        boolean singleArrayCall;
        Extension<?>[] extensions;
        /** the example holding the NaN/Inf (NON_FINITE), or -1 */
        int dirtyExample = -1;
        /** whether the non-finite value is in the features (else in the labels) */
        boolean dirtyFeatures;
        /** what was done to the batch */
        String mutation = "";
        final boolean secondOrder;

        Case(long seed, Category category, boolean graph, GraphNets.Topology topology, String network,
             DataType dataType, Model net, INDArray[] warmFeatures, INDArray[] warmLabels, boolean secondOrder) {
            this.seed = seed;
            this.category = category;
            this.graph = graph;
            this.topology = topology;
            this.network = network;
            this.dataType = dataType;
            this.net = net;
            this.twin = graph ? ((ComputationGraph) net).clone() : ((MultiLayerNetwork) net).clone();
            this.warmFeatures = warmFeatures;
            this.warmLabels = warmLabels;
            this.secondOrder = secondOrder;
        }

        /** @return whether an extension of the class was requested */
        boolean has(Class<?> extension) {
            return extensions != null && Arrays.stream(extensions).anyMatch(e -> e != null && e.getClass() == extension);
        }

        List<String> extensionNames() {
            if (extensions == null) {
                return null;
            }
            return Arrays.stream(extensions).map(e -> e == null ? "null" : e.name()).collect(Collectors.toList());
        }

        /**
         * @return whether the documented validation refuses the extensions for this network
         *     (second-order extensions on graphs with vertices or fan-outs they do not support)
         */
        boolean expectUnsupported() {
            if (!graph || extensions == null) {
                return false;
            }
            boolean kfra = has(KFRA.class);
            return kfra && (topology == GraphNets.Topology.RESIDUAL || topology == GraphNets.Topology.VERTEX_ZOO
                    || topology == GraphNets.Topology.MULTI_OUTPUT);
        }

        /** @return the batch size of the (valid-shaped) batch */
        long n() {
            return features[0].size(0);
        }

        @Override
        public String toString() {
            return "seed " + seed + ": " + category + " on " + network + " [" + dataType + "] " + mutation
                    + " extensions " + extensionNames();
        }
    }

    /** @return the case of one seed; its category is {@code Category.values()[seed % count]} */
    static Case generate(long seed) {
        Category category = Category.values()[(int) Math.floorMod(seed, (long) Category.values().length)];
        Random r = new Random(seed * 0x9E3779B97F4A7C15L + 17);
        boolean graph = r.nextInt(3) == 0;
        boolean second = r.nextInt(3) == 0;
        DataType dataType = r.nextInt(4) != 0 ? DataType.DOUBLE : DataType.FLOAT;
        WorkspaceMode workspaces = r.nextBoolean() ? WorkspaceMode.ENABLED : WorkspaceMode.NONE;
        int n = category == Category.SINGLE_EXAMPLE ? 1
                : category == Category.IDENTICAL_EXAMPLES ? 2 + r.nextInt(second ? 2 : 4)
                : 1 + r.nextInt(second ? 3 : 6);

        Case c;
        if (graph) {
            GraphNets.Topology topology = GraphNets.Topology.values()[r.nextInt(GraphNets.Topology.values().length)];
            ComputationGraph g = topology.build(dataType, workspaces, seed);
            GraphNets.Data warm = topology.data(g, 2, seed + 100);
            c = new Case(seed, category, true, topology, "graph " + topology + " (" + workspaces + ")", dataType, g,
                    warm.features(), warm.labels(), second);
            GraphNets.Data data = topology.data(g, n, seed + 200);
            c.features = data.features();
            c.labels = data.labels();
        } else {
            RandomArchitectures.Sample s = RandomArchitectures.sample(seed, false, second, dataType, workspaces);
            long[] featureShape = s.features().shape();
            long nOut = s.labels().size(1);
            ILossFunction loss = lossOf(s.net());
            c = new Case(seed, category, false, null, "network {" + s.description() + "} (" + workspaces + ")",
                    dataType, s.net(), new INDArray[] {gaussian(dataType, r, withN(featureShape, 2))},
                    new INDArray[] {labels(dataType, loss, r, 2, nOut)}, second);
            c.features = new INDArray[] {gaussian(dataType, r, withN(featureShape, n))};
            c.labels = new INDArray[] {labels(dataType, loss, r, n, nOut)};
            c.singleArrayCall = r.nextBoolean();
        }
        c.extensions = extensions(r, second, category.kind == Kind.VALID);
        mutate(c, r);
        return c;
    }

    // ---------------------------------------------------------------- extensions

    static Extension<?>[] extensions(Random r, boolean second, boolean mayBeEmpty) {
        List<Extension<?>> out = new ArrayList<>();
        if (mayBeEmpty && r.nextInt(15) == 0) {
            return new Extension<?>[0];
        }
        for (Supplier<Extension<?>> s : FIRST_ORDER) {
            if (r.nextBoolean()) {
                out.add(s.get());
            }
        }
        if (second) {
            List<Supplier<Extension<?>>> pool = new ArrayList<>(SECOND_ORDER);
            Collections.shuffle(pool, r);
            if (r.nextBoolean()) {
                // the exact GGN diagonal has a brute-force reference: ask for it more often
                out.add(r.nextBoolean() ? new DiagGGNExact() : new BatchDiagGGNExact());
                pool.removeIf(s -> s.get().getClass() == out.get(out.size() - 1).getClass());
            }
            int k = 1 + r.nextInt(3);
            for (int i = 0; i < k; i++) {
                out.add(pool.get(i).get());
            }
        }
        if (out.isEmpty()) {
            out.add(FIRST_ORDER.get(r.nextInt(FIRST_ORDER.size())).get());
        }
        Collections.shuffle(out, r);
        return out.toArray(new Extension<?>[0]);
    }

    // ---------------------------------------------------------------- data

    static long[] withN(long[] shape, long n) {
        long[] s = shape.clone();
        s[0] = n;
        return s;
    }

    static INDArray gaussian(DataType dataType, Random r, long... shape) {
        long length = 1;
        for (long s : shape) {
            length *= s;
        }
        double[] v = new double[(int) length];
        for (int i = 0; i < v.length; i++) {
            v[i] = r.nextGaussian();
        }
        return Nd4j.createFromArray(v).reshape('c', shape).castTo(dataType);
    }

    static ILossFunction lossOf(MultiLayerNetwork net) {
        Layer out = net.getLayerWiseConfigurations().getConf(net.getnLayers() - 1).getLayer();
        if (out instanceof BaseOutputLayer) {
            return ((BaseOutputLayer) out).getLossFn();
        }
        return ((LossLayer) out).getLossFn();
    }

    /** @return labels for the loss: one-hot (cross-entropy), binary (binary cross-entropy) or N(0,1) */
    static INDArray labels(DataType dataType, ILossFunction loss, Random r, long n, long nOut) {
        double[][] y = new double[(int) n][(int) nOut];
        for (int i = 0; i < n; i++) {
            if (loss instanceof LossMCXENT) {
                y[i][r.nextInt((int) nOut)] = 1.0;
            } else {
                for (int j = 0; j < nOut; j++) {
                    y[i][j] = loss instanceof LossBinaryXENT ? (r.nextBoolean() ? 1.0 : 0.0) : r.nextGaussian();
                }
            }
        }
        if (n == 0) {
            return Nd4j.create(dataType, 0, nOut);
        }
        return Nd4j.createFromArray(y).castTo(dataType);
    }

    // ---------------------------------------------------------------- mutations

    private static void mutate(Case c, Random r) {
        DataType other = c.dataType == DataType.DOUBLE ? (r.nextInt(3) == 0 ? DataType.HALF : DataType.FLOAT)
                : DataType.DOUBLE;
        switch (c.category) {
            case PLAIN:
            case SINGLE_EXAMPLE:
                break;
            case ROW_VIEW:
                c.features = each(c.features, a -> view(a, r, 1));
                c.labels = each(c.labels, a -> view(a, r, 1));
                c.mutation = "views with offsets into larger arrays";
                break;
            case STRIDED_VIEW:
                c.features = each(c.features, a -> view(a, r, 2));
                c.labels = each(c.labels, a -> view(a, r, 2));
                c.mutation = "strided views (every other row/column of larger arrays)";
                break;
            case NON_C_LAYOUT:
                if (r.nextBoolean()) {
                    c.features = each(c.features, RobustnessCases::reversedLayout);
                    c.labels = each(c.labels, RobustnessCases::reversedLayout);
                    c.mutation = "transposed copies transposed back (reversed strides)";
                } else {
                    c.features = each(c.features, a -> a.rank() == 2 ? a.transpose().transpose() : a.permute(0, 1, 3, 2).permute(0, 1, 3, 2));
                    c.labels = each(c.labels, a -> a.transpose().transpose());
                    c.mutation = "transposed-then-transposed views";
                }
                break;
            case F_ORDER:
                c.features = each(c.features, a -> a.dup('f'));
                c.labels = each(c.labels, a -> a.dup('f'));
                c.mutation = "'f'-ordered copies";
                break;
            case OTHER_DTYPE: {
                int which = r.nextInt(3);
                if (which != 1) {
                    c.features = each(c.features, a -> a.castTo(other));
                }
                if (which != 0) {
                    c.labels = each(c.labels, a -> a.castTo(other == DataType.HALF ? DataType.FLOAT : other));
                }
                c.mutation = (which == 0 ? "features" : which == 1 ? "labels" : "features and labels") + " as "
                        + other + (which != 0 && other == DataType.HALF ? " (labels FLOAT)" : "");
                break;
            }
            case TINY:
                c.features = each(c.features, a -> a.mul(1e-30));
                c.mutation = "features × 1e-30";
                break;
            case HUGE: {
                // float32 overflows at 3.4e38 (exp at z > 88.7): 1e3 is already extreme there
                double scale = c.dataType == DataType.DOUBLE ? 1e15 : 1e3;
                c.features = each(c.features, a -> a.mul(scale));
                c.mutation = "features × " + scale;
                break;
            }
            case IDENTICAL_EXAMPLES:
                c.features = each(c.features, RobustnessCases::repeatFirst);
                c.labels = each(c.labels, RobustnessCases::repeatFirst);
                c.mutation = "all " + c.n() + " examples identical";
                break;
            case NAN_FEATURES:
            case INF_FEATURES:
            case NAN_LABELS:
            case INF_LABELS: {
                boolean inFeatures = c.category == Category.NAN_FEATURES || c.category == Category.INF_FEATURES;
                double value = c.category.name().startsWith("NAN") ? Double.NaN
                        : r.nextBoolean() ? Double.POSITIVE_INFINITY : Double.NEGATIVE_INFINITY;
                INDArray[] arrays = inFeatures ? c.features : c.labels;
                int k = r.nextInt(arrays.length);
                INDArray a = arrays[k].dup();
                int example = r.nextInt((int) a.size(0));
                long[] idx = new long[a.rank()];
                idx[0] = example;
                for (int d = 1; d < idx.length; d++) {
                    idx[d] = r.nextInt((int) a.size(d));
                }
                a.putScalar(idx, value);
                arrays[k] = a;
                c.dirtyExample = example;
                c.dirtyFeatures = inFeatures;
                c.mutation = value + " at " + (inFeatures ? "feature" : "label") + " array " + k + " index "
                        + Arrays.toString(idx);
                break;
            }
            case FEATURE_RANK: {
                int k = r.nextInt(c.features.length);
                INDArray a = c.features[k];
                int variant = r.nextInt(3);
                if (variant == 0) {
                    c.features[k] = a.reshape(a.length());
                    c.mutation = "feature array " + k + " flattened to rank 1";
                } else if (variant == 1) {
                    c.features[k] = a.reshape(withTrailingOne(a.shape()));
                    c.mutation = "feature array " + k + " with a trailing axis of 1 (rank " + (a.rank() + 1) + ")";
                } else {
                    c.features[k] = a.rank() == 2 ? a.reshape(a.size(0), a.size(1), 1, 1)
                            : a.reshape(a.size(0), a.length() / a.size(0));
                    c.mutation = "feature array " + k + " reshaped to rank " + (a.rank() == 2 ? 4 : 2);
                }
                break;
            }
            case LABEL_RANK: {
                int k = r.nextInt(c.labels.length);
                INDArray a = c.labels[k];
                int variant = r.nextInt(3);
                c.labels[k] = variant == 0 ? a.reshape(a.length())
                        : variant == 1 ? a.reshape(a.size(0), a.size(1), 1) : a.reshape(a.size(0), a.size(1), 1, 1);
                c.mutation = "label array " + k + " reshaped to " + Arrays.toString(c.labels[k].shape());
                break;
            }
            case FEATURE_WIDTH: {
                int k = r.nextInt(c.features.length);
                INDArray a = c.features[k];
                long[] shape = a.shape().clone();
                int axis = a.rank() == 2 ? 1 : 1 + r.nextInt(3);
                shape[axis] = shape[axis] + (shape[axis] > 1 && r.nextBoolean() ? -1 : 1 + r.nextInt(2));
                c.features[k] = gaussian(a.dataType(), r, shape);
                c.mutation = "feature array " + k + " of shape " + Arrays.toString(shape) + " instead of "
                        + Arrays.toString(a.shape());
                break;
            }
            case LABEL_WIDTH: {
                int k = r.nextInt(c.labels.length);
                INDArray a = c.labels[k];
                long width = a.size(1) + (a.size(1) > 1 && r.nextBoolean() ? -1 : 1);
                c.labels[k] = gaussian(a.dataType(), r, a.size(0), width);
                c.mutation = "label array " + k + " with " + width + " columns instead of " + a.size(1);
                break;
            }
            case BATCH_MISMATCH: {
                boolean inFeatures = c.features.length > 1 && r.nextBoolean();
                INDArray[] arrays = inFeatures ? c.features : c.labels;
                int k = inFeatures ? 1 + r.nextInt(arrays.length - 1) : r.nextInt(arrays.length);
                INDArray a = arrays[k];
                long n = a.size(0) > 1 && r.nextBoolean() ? a.size(0) - 1 : a.size(0) + 1;
                arrays[k] = gaussian(a.dataType(), r, withN(a.shape(), n));
                c.mutation = (inFeatures ? "feature" : "label") + " array " + k + " with " + n + " examples, the others "
                        + a.size(0);
                break;
            }
            case EMPTY_BATCH:
                c.features = each(c.features, a -> Nd4j.create(a.dataType(), withN(a.shape(), 0)));
                c.labels = each(c.labels, a -> Nd4j.create(a.dataType(), withN(a.shape(), 0)));
                c.mutation = "N = 0";
                break;
            case NULL_ARRAY: {
                int variant = r.nextInt(4);
                if (variant == 0) {
                    c.features = c.singleArrayCall ? new INDArray[] {null} : null;
                    c.mutation = "features null";
                } else if (variant == 1) {
                    c.labels = c.singleArrayCall ? new INDArray[] {null} : null;
                    c.mutation = "labels null";
                } else if (variant == 2) {
                    c.features[r.nextInt(c.features.length)] = null;
                    c.mutation = "a null feature array";
                } else {
                    c.labels[r.nextInt(c.labels.length)] = null;
                    c.mutation = "a null label array";
                }
                break;
            }
            case ARRAY_COUNT: {
                c.singleArrayCall = false;
                boolean inFeatures = r.nextBoolean();
                INDArray[] arrays = inFeatures ? c.features : c.labels;
                List<INDArray> list = new ArrayList<>(Arrays.asList(arrays));
                if (r.nextBoolean() || list.size() == 1 && r.nextBoolean()) {
                    list.add(list.get(r.nextInt(list.size())).dup());
                } else {
                    list.remove(r.nextInt(list.size()));
                }
                INDArray[] changed = list.toArray(new INDArray[0]);
                if (inFeatures) {
                    c.features = changed;
                } else {
                    c.labels = changed;
                }
                c.mutation = changed.length + " " + (inFeatures ? "feature" : "label") + " arrays instead of "
                        + arrays.length;
                break;
            }
            case DUPLICATE_EXTENSION: {
                List<Extension<?>> list = new ArrayList<>(Arrays.asList(c.extensions));
                Extension<?> e = list.get(r.nextInt(list.size()));
                Extension<?> copy = e instanceof DiagGGNMC ? new DiagGGNMC(1 + r.nextInt(3))
                        : e instanceof BatchDiagGGNMC ? new BatchDiagGGNMC(1 + r.nextInt(3)) : e;
                list.add(r.nextInt(list.size() + 1), copy);
                c.extensions = list.toArray(new Extension<?>[0]);
                c.mutation = "extension " + e.name() + " twice" + (copy == e ? " (same instance)" : "");
                break;
            }
            case NULL_EXTENSION: {
                if (r.nextInt(4) == 0) {
                    c.extensions = null;
                    c.mutation = "extensions array null";
                } else {
                    List<Extension<?>> list = new ArrayList<>(Arrays.asList(c.extensions));
                    list.add(r.nextInt(list.size() + 1), null);
                    c.extensions = list.toArray(new Extension<?>[0]);
                    c.mutation = "a null extension";
                }
                break;
            }
            default:
                throw new IllegalStateException(c.category.name());
        }
        if (c.features == null || c.labels == null || c.features.length != 1 || c.labels.length != 1) {
            c.singleArrayCall = false;
        }
    }

    private static INDArray[] each(INDArray[] arrays, java.util.function.UnaryOperator<INDArray> f) {
        INDArray[] out = new INDArray[arrays.length];
        for (int i = 0; i < arrays.length; i++) {
            out[i] = f.apply(arrays[i]);
        }
        return out;
    }

    private static long[] withTrailingOne(long[] shape) {
        long[] s = Arrays.copyOf(shape, shape.length + 1);
        s[shape.length] = 1;
        return s;
    }

    /**
     * @return a view with the values of {@code a} into a larger random array of the same type: along every
     *     axis an offset, and along the first two axes a step of {@code step}
     */
    static INDArray view(INDArray a, Random r, int step) {
        long[] shape = a.shape();
        long[] big = new long[shape.length];
        INDArrayIndex[] idx = new INDArrayIndex[shape.length];
        for (int d = 0; d < shape.length; d++) {
            long s = d < 2 ? step : 1;
            long offset = r.nextInt(3);
            big[d] = offset + shape[d] * s + r.nextInt(2);
            idx[d] = s == 1 ? NDArrayIndex.interval(offset, offset + shape[d])
                    : NDArrayIndex.interval(offset, s, offset + shape[d] * s);
        }
        INDArray container = gaussian(a.dataType(), r, big);
        INDArray v = container.get(idx);
        if (!Arrays.equals(v.shape(), shape)) {
            throw new IllegalStateException("view of shape " + Arrays.toString(v.shape()) + " for " + Arrays.toString(shape));
        }
        v.assign(a);
        return v;
    }

    /** @return the values of {@code a} in an array whose strides are those of the reversed axis order */
    static INDArray reversedLayout(INDArray a) {
        int[] reverse = new int[a.rank()];
        for (int d = 0; d < reverse.length; d++) {
            reverse[d] = reverse.length - 1 - d;
        }
        return a.permute(reverse).dup('c').permute(reverse);
    }

    static INDArray repeatFirst(INDArray a) {
        INDArray first = Reference.example(a, 0);
        INDArray[] copies = new INDArray[(int) a.size(0)];
        Arrays.fill(copies, first);
        return Nd4j.concat(0, copies);
    }
}
