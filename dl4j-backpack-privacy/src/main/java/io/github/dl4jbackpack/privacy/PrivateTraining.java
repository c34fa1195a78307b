// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import io.github.dl4jbackpack.extensions.WeightedGradientSum;
import io.github.dl4jbackpack.privacy.accounting.NoiseCalibration;
import io.github.dl4jbackpack.privacy.accounting.RdpAccountant;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.conf.BackpropType;
import org.deeplearning4j.nn.conf.graph.GraphVertex;
import org.deeplearning4j.nn.conf.graph.LayerVertex;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.optimize.api.BaseTrainingListener;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.SplittableRandom;
import java.util.TreeSet;

/**
 * Differentially private training (DP-SGD, Abadi et al. 2016) of a DL4J network with its own updater: in every
 * step each example's loss gradient is clipped ({@link Clipping}), the clipped gradients are summed, Gaussian noise
 * {@code N(0, σ²C²)} is added to every coordinate, the sum is divided by the expected batch size {@code q·M}, and
 * the network's DL4J updater (SGD, Adam, ...) applies the result as it would apply the ordinary gradient. Batches
 * are Poisson-sampled ({@link #iterator()}), and an RDP accountant tracks the privacy spent
 * ({@link #epsilon(double)}); docs/privacy.md says what is guaranteed.
 *
 * <pre>{@code
 * PrivateTraining dp = PrivateTraining.builder()
 *         .clipping(Clipping.flat(1.0))
 *         .targetEpsilon(3.0, 1e-5, 10)          // or .noiseMultiplier(1.1)
 *         .expectedBatchSize(256)
 *         .build(net, trainingData);
 * net.fit(dp.iterator(), 10);
 * double epsilon = dp.epsilon(1e-5);
 * }</pre>
 *
 * <p>The clipped sum comes from the extended backward pass (per-example norms and weighted sums of individual
 * gradients, {@link WeightedGradientSum}), never from materialised per-example gradients where a layer's gradient
 * is a product. Refused before anything runs, in one message: batch normalisation (it mixes the examples of a
 * batch and updates its running statistics from them without noise), truncated BPTT, layers the library does not
 * support, and invalid settings. A pass on a batch that did not come from {@link #iterator()} fails before the
 * updater runs, unless {@link Builder#acceptBatchesNotPoissonSampled()} was set.
 */
public final class PrivateTraining {

    private static final Logger log = LoggerFactory.getLogger(PrivateTraining.class);
    private final Model model;
    private final BackPackNetwork network;
    private final Clipping clipping;
    private final double noiseMultiplier;
    private final double sampleRate;
    private final int examples;
    private final double reportDelta;
    private final boolean acceptAnyBatches;
    private final GaussianNoise noise;
    private final RdpAccountant accountant = new RdpAccountant();
    private final PoissonSampling iterator;
    private final Step listener = new Step();
    private Quantities captured;
    private long steps;
    private long consumed;
    private StepStatistics last;
    /** The norm of flat clipping in the coming step (changes after each step with adaptive clipping). */
    private double clipNorm;
    /** The gradient's noise multiplier: σ, or σ_Δ with adaptive clipping. */
    private final double gradientNoise;
    /** The clipped sums of the parts of a logical batch handed out before its last part, by parameter key. */
    private final Map<String, INDArray> accumulated = new java.util.LinkedHashMap<>();
    private long accumulatedExamples;
    private int accumulatedClipped;

    private PrivateTraining(Builder b, Model model, DataSet data, double noiseMultiplier) {
        this.model = model;
        this.network = model instanceof MultiLayerNetwork mln ? BackPackNetwork.extend(mln)
                : BackPackNetwork.extend((ComputationGraph) model);
        this.clipping = b.clipping;
        this.clipNorm = clipping.norm();
        this.gradientNoise = clipping.isAdaptive()
                ? Clipping.gradientNoiseMultiplier(noiseMultiplier, clipping.countNoiseMultiplier()) : noiseMultiplier;
        this.noiseMultiplier = noiseMultiplier;
        this.examples = data.numExamples();
        this.sampleRate = b.sampleRate(examples);
        this.reportDelta = b.reportDelta;
        this.acceptAnyBatches = b.acceptAnyBatches;
        long seed = b.seed != null ? b.seed : new SecureRandom().nextLong();
        long samplingSeed = b.seed != null ? b.seed ^ 0x5DEECE66DL : new SecureRandom().nextLong();
        if (b.seed != null) {
            log.warn("Private training with a fixed seed ({}): the noise and the sampling are reproducible, and "
                    + "predictable to anyone who knows the seed; use a seed only for experiments", b.seed);
        }
        this.noise = new GaussianNoise(new SplittableRandom(seed));
        this.iterator = new PoissonSampling(data, sampleRate, new SplittableRandom(samplingSeed), b.physicalBatch,
                this::accumulate);
        network.require(listener, List.of(new BatchL2Grad(), WeightedGradientSum.replacingGradient()));
        network.addQuantitiesListener(q -> captured = q);
        if (model instanceof MultiLayerNetwork mln) {
            mln.addListeners(listener);
        } else {
            ((ComputationGraph) model).addListeners(listener);
        }
        log.info("Private training: {}, noise multiplier {}, sample rate {} (expected batch {} of {} examples, {} "
                + "steps per epoch)", clipping, noiseMultiplier, sampleRate, sampleRate * examples, examples,
                iterator.stepsPerEpoch());
    }

    /** @return a builder of the settings */
    public static Builder builder() {
        return new Builder();
    }

    /** @return the Poisson-sampled batches to train on ({@code net.fit(dp.iterator(), epochs)}) */
    public PoissonSampling iterator() {
        return iterator;
    }

    /**
     * @param delta δ in (0, 1)
     * @return the ε of the steps taken so far at that δ (RDP accountant, improved conversion)
     */
    public double epsilon(double delta) {
        return accountant.epsilon(delta);
    }

    /** @return the private steps taken so far (empty batches included) */
    public long steps() {
        return steps;
    }

    /** @return the noise multiplier σ (given, or calibrated for a target ε) */
    public double noiseMultiplier() {
        return noiseMultiplier;
    }

    /** @return the sample rate q */
    public double sampleRate() {
        return sampleRate;
    }

    /** @return the clipping rule */
    public Clipping clipping() {
        return clipping;
    }

    /** @return the accountant (read it; do not add steps to it) */
    public RdpAccountant accountant() {
        return accountant;
    }

    /** @return the extended network */
    public BackPackNetwork network() {
        return network;
    }

    /** @return what the last step did, or null before the first */
    public StepStatistics lastStep() {
        return last;
    }

    /**
     * What one private step did.
     *
     * @param batchSize the sampled batch's size (0 for an empty batch)
     * @param clipped how many of its examples were clipped
     * @param medianNorm the median of {@code ‖∇ℓ_n‖} before clipping (NaN for an empty batch; of the last part with
     *     virtual steps)
     */
    public record StepStatistics(long batchSize, int clipped, double medianNorm) {
    }

    /** The {@link BaseTrainingListener} that replaces DL4J's gradient by the private one, before the updater. */
    private final class Step extends BaseTrainingListener {

        @Override
        public void onGradientCalculation(Model m) {
            if (m != model) {
                throw new IllegalStateException("this PrivateTraining belongs to another network");
            }
            Quantities q = captured;
            captured = null;
            if (q == null || !q.contains(WeightedGradientSum.class)) {
                throw new IllegalStateException("no extended pass preceded this step; private training needs the "
                        + "network's own fit with the extension installed by PrivateTraining");
            }
            consumed++;
            if (!acceptAnyBatches && consumed > iterator.batchesIssued()) {
                throw new IllegalStateException("this batch did not come from PrivateTraining.iterator(): the "
                        + "privacy analysis assumes Poisson sampling; train with net.fit(dp.iterator(), epochs), or "
                        + "set acceptBatchesNotPoissonSampled() to accept a weaker analysis");
            }
            boolean empty = !acceptAnyBatches && iterator.lastBatchEmpty();
            Map<String, INDArray> view = gradientViews(m);
            double scale = (m.conf().isMiniBatch() ? q.batchSize() : 1) / (sampleRate * examples);
            ClippedSum clipped = ClippedSum.of(q, currentRule(), empty);
            if (!view.keySet().equals(clipped.keys())) {
                TreeSet<String> missing = new TreeSet<>(view.keySet());
                missing.removeAll(clipped.keys());
                throw new IllegalStateException("no per-example gradients for " + missing + ": their gradient "
                        + "cannot be made private");
            }
            List<INDArray> targets = new ArrayList<>();
            for (String layer : q.layerNames(WeightedGradientSum.class)) {
                for (String param : q.params(WeightedGradientSum.class, layer)) {
                    targets.add(view.get(layer + "_" + param));
                }
            }
            noise.writeInto(targets, noiseStandardDeviation());
            // each sum added in place, its temporaries in the library's scratch workspace; the copies the sums
            // keep freed at once (outside workspaces, ND4J would free them only at a garbage collection)
            for (String layer : q.layerNames(WeightedGradientSum.class)) {
                for (String param : q.params(WeightedGradientSum.class, layer)) {
                    INDArray target = view.get(layer + "_" + param);
                    clipped.addTo(layer, param, target);
                    INDArray earlier = accumulated.get(layer + "_" + param);
                    if (earlier != null) {
                        target.addi(earlier);
                    }
                    target.muli(scale);
                }
            }
            clipped.freeSums();
            double[] norms = clipped.norms().clone();
            java.util.Arrays.sort(norms);
            double median = norms.length % 2 == 1 ? norms[norms.length / 2]
                    : 0.5 * (norms[norms.length / 2 - 1] + norms[norms.length / 2]);
            long batch = empty ? 0 : q.batchSize() + accumulatedExamples;
            int clippedExamples = empty ? 0 : clipped.clipped() + accumulatedClipped;
            if (clipping.isAdaptive()) {
                adaptNorm(batch - clippedExamples);
            }
            record(empty ? new StepStatistics(0, 0, Double.NaN)
                    : new StepStatistics(batch, clippedExamples, median));
            accumulated.clear();
            accumulatedExamples = 0;
            accumulatedClipped = 0;
            // the next step's noise is drawn while DL4J's update and the next pass run
            noise.prefetch(targets, noiseStandardDeviation());
        }

        @Override
        public void onEpochEnd(Model m) {
            log.info("Private training: {} steps, ε = {} at δ = {}", steps, String.format("%.4f",
                    accountant.epsilon(reportDelta)), reportDelta);
        }
    }

    /** @return the clipping of the coming step: the rule itself, or flat clipping to the current adaptive norm */
    private Clipping currentRule() {
        return clipping.isAdaptive() ? Clipping.flat(clipNorm) : clipping;
    }

    /**
     * Adaptive clipping's update after a step: {@code C ← C · exp(−η (b − γ))}, b the noisy fraction of unclipped
     * examples over the expected batch size.
     *
     * @param unclipped how many examples of the step had {@code ‖∇ℓ_n‖ ≤ C}
     */
    private void adaptNorm(long unclipped) {
        double fraction = (unclipped + clipping.countNoiseMultiplier() * noise.random().nextGaussian()) / (sampleRate * examples);
        clipNorm *= Math.exp(-clipping.normLearningRate() * (fraction - clipping.targetQuantile()));
    }

    /** @return the flat clipping norm of the coming step (with adaptive clipping, as it has adapted so far) */
    public double clipNorm() {
        return clipNorm;
    }

    /**
     * A part of a logical batch larger than the physical batch size, before its last part: its clipped sums, from
     * an extended pass without update, are kept until the step of the last part adds them.
     */
    private void accumulate(DataSet part) {
        Quantities q = network.backward(part, new BatchL2Grad(), WeightedGradientSum.replacingGradient());
        ClippedSum clipped = ClippedSum.of(q, currentRule(), false);
        for (String layer : q.layerNames(WeightedGradientSum.class)) {
            for (String param : q.params(WeightedGradientSum.class, layer)) {
                INDArray total = accumulated.get(layer + "_" + param);
                if (total == null) {
                    try (MemoryWorkspace outside = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                        // column-major, as DL4J's gradient views: a dense sum is accumulated by its product
                        WeightedGradientSum.Deferred sum = q.get(WeightedGradientSum.class, layer, param);
                        total = Nd4j.create(model.params().dataType(), sum.shape(), 'f');
                    }
                    accumulated.put(layer + "_" + param, total);
                }
                clipped.addTo(layer, param, total);
            }
        }
        clipped.freeSums();
        accumulatedExamples += q.batchSize();
        accumulatedClipped += clipped.clipped();
    }

    private void record(StepStatistics s) {
        steps++;
        accountant.step(noiseMultiplier, sampleRate, 1);
        last = s;
    }

    /** @return the standard deviation of the coming step's noise per coordinate, σ·C (σ_Δ·C_t when adaptive) */
    private double noiseStandardDeviation() {
        return gradientNoise * (clipping.isPerLayer() ? clipping.sensitivity() : clipNorm);
    }

    /** @return the network's gradient views by DL4J parameter key */
    private static Map<String, INDArray> gradientViews(Model m) {
        Gradient g = m.gradient();
        return g == null ? Map.of() : g.gradientForVariable();
    }

    /** The settings of private training; {@link #build} checks them together with the network. */
    public static final class Builder {
        private Clipping clipping;
        private Double noiseMultiplier;
        private double targetEpsilon = Double.NaN;
        private double targetDelta = Double.NaN;
        private int targetEpochs;
        private double rate = Double.NaN;
        private long expectedBatch;
        private double reportDelta = Double.NaN;
        private Long seed;
        private boolean acceptAnyBatches;
        private int physicalBatch;

        private Builder() {
        }

        /**
         * Virtual steps: a sampled batch of more than {@code size} examples is processed in parts of at most
         * {@code size} (the clipped sums of all parts are added before the noise and the update), so that memory
         * stays bounded whatever the sample rate. The step is the same as with the whole batch at once.
         *
         * @param size the largest part, at least 1 (0, the default: no limit)
         * @return this
         */
        public Builder physicalBatchSize(int size) {
            this.physicalBatch = size;
            return this;
        }

        /**
         * @param clipping how each example's gradient is clipped (required)
         * @return this
         */
        public Builder clipping(Clipping clipping) {
            this.clipping = Objects.requireNonNull(clipping, "clipping");
            return this;
        }

        /**
         * @param sigma σ ≥ 0: the noise's standard deviation is {@code σ·C} (C the clipping's sensitivity; with
         *     adaptive clipping {@code σ_Δ·C_t}, see {@link Clipping#adaptive})
         * @return this
         */
        public Builder noiseMultiplier(double sigma) {
            this.noiseMultiplier = sigma;
            return this;
        }

        /**
         * Calibrates σ so that training for {@code epochs} epochs spends at most ε at δ (RDP accountant; the ε
         * reached is within 1% below the target).
         *
         * @param epsilon ε &gt; 0
         * @param delta δ in (0, 1), also the δ at which ε is logged at the end of each epoch
         * @param epochs the number of epochs to train
         * @return this
         */
        public Builder targetEpsilon(double epsilon, double delta, int epochs) {
            this.targetEpsilon = epsilon;
            this.targetDelta = delta;
            this.targetEpochs = epochs;
            return this;
        }

        /**
         * @param q the probability with which each example joins each batch, in (0, 1]
         * @return this
         */
        public Builder sampleRate(double q) {
            this.rate = q;
            this.expectedBatch = 0;
            return this;
        }

        /**
         * @param size the expected batch size B: the sample rate is {@code B / M} for M training examples
         * @return this
         */
        public Builder expectedBatchSize(long size) {
            this.expectedBatch = size;
            this.rate = Double.NaN;
            return this;
        }

        /**
         * @param delta the δ at which ε is logged at the end of each epoch (default: the target's δ, else 1e-5)
         * @return this
         */
        public Builder reportDelta(double delta) {
            this.reportDelta = delta;
            return this;
        }

        /**
         * Makes the noise and the sampling reproducible (a warning is logged: anyone who knows the seed can
         * predict the noise). By default both are seeded from {@link SecureRandom}.
         *
         * @param seed the seed
         * @return this
         */
        public Builder seed(long seed) {
            this.seed = seed;
            return this;
        }

        /**
         * Accepts training on batches that were not Poisson-sampled (e.g. shuffled fixed-size batches of the
         * user's own iterator): ε is still computed by the Poisson analysis, which then only approximates the
         * guarantee (a warning is logged).
         *
         * @return this
         */
        public Builder acceptBatchesNotPoissonSampled() {
            this.acceptAnyBatches = true;
            return this;
        }

        private double sampleRate(int examples) {
            return expectedBatch > 0 ? (double) expectedBatch / examples : rate;
        }

        /**
         * @param net the network (its DL4J updater applies the private gradients)
         * @param data the training examples, sampled by {@link #iterator()}
         * @return the private training, installed on the network
         * @throws IllegalArgumentException naming every setting or part of the network that voids the guarantee
         * @throws io.github.dl4jbackpack.UnsupportedLayerException naming every layer the library cannot handle
         */
        public PrivateTraining build(MultiLayerNetwork net, DataSet data) {
            List<String> problems = new ArrayList<>();
            for (int i = 0; i < net.getnLayers(); i++) {
                checkLayer(String.valueOf(i), net.getLayerWiseConfigurations().getConf(i).getLayer(), problems);
            }
            if (net.getLayerWiseConfigurations().getBackpropType() == BackpropType.TruncatedBPTT) {
                problems.add("truncated BPTT: each segment would be a separate step on the same sequences, which "
                        + "the privacy analysis does not account for; use standard backpropagation");
            }
            return build(net, data, problems);
        }

        /**
         * @param graph the graph (one input and one output: trained with {@code fit(DataSetIterator)})
         * @param data the training examples, sampled by {@link #iterator()}
         * @return the private training, installed on the graph
         * @throws IllegalArgumentException naming every setting or part of the graph that voids the guarantee
         * @throws io.github.dl4jbackpack.UnsupportedLayerException naming every layer the library cannot handle
         */
        public PrivateTraining build(ComputationGraph graph, DataSet data) {
            List<String> problems = new ArrayList<>();
            for (Map.Entry<String, GraphVertex> e : graph.getConfiguration().getVertices().entrySet()) {
                if (e.getValue() instanceof LayerVertex v) {
                    checkLayer(e.getKey(), v.getLayerConf().getLayer(), problems);
                }
            }
            if (graph.getConfiguration().getBackpropType() == BackpropType.TruncatedBPTT) {
                problems.add("truncated BPTT: each segment would be a separate step on the same sequences, which "
                        + "the privacy analysis does not account for; use standard backpropagation");
            }
            return build(graph, data, problems);
        }

        private static void checkLayer(String name, Layer layer, List<String> problems) {
            if (layer instanceof BatchNormalization) {
                problems.add("layer " + name + " (BatchNormalization): it normalises every example with the "
                        + "statistics of its batch, so one example's gradient depends on the others, and it updates "
                        + "its running statistics from the batch without noise; remove it or freeze it "
                        + "(FrozenLayer)");
            }
        }

        private PrivateTraining build(Model model, DataSet data, List<String> problems) {
            Objects.requireNonNull(data, "data");
            int m = data.numExamples();
            if (clipping == null) {
                problems.add("no clipping: set clipping(Clipping.flat(C)) or a per-layer rule");
            }
            boolean target = !Double.isNaN(targetEpsilon);
            if (noiseMultiplier == null && !target) {
                problems.add("no noise: set noiseMultiplier(σ) or targetEpsilon(ε, δ, epochs)");
            }
            if (noiseMultiplier != null && target) {
                problems.add("both a noise multiplier and a target ε: set one");
            }
            if (noiseMultiplier != null && !(noiseMultiplier >= 0 && Double.isFinite(noiseMultiplier))) {
                problems.add("noise multiplier " + noiseMultiplier + ": it must be finite and at least 0");
            }
            if (target && (!(targetEpsilon > 0) || !(targetDelta > 0 && targetDelta < 1) || targetEpochs < 1)) {
                problems.add("target ε " + targetEpsilon + ", δ " + targetDelta + ", epochs " + targetEpochs
                        + ": ε must be positive, δ in (0, 1), at least one epoch");
            }
            if (clipping != null && clipping.isPerLayer()) {
                java.util.Set<String> layers = new java.util.TreeSet<>();
                model.paramTable(true).keySet().forEach(k -> layers.add(k.substring(0, k.lastIndexOf('_'))));
                java.util.Set<String> missing = new java.util.TreeSet<>(layers);
                missing.removeAll(clipping.thresholds().keySet());
                java.util.Set<String> unknown = new java.util.TreeSet<>(clipping.thresholds().keySet());
                unknown.removeAll(layers);
                if (!missing.isEmpty() || !unknown.isEmpty()) {
                    problems.add("per-layer clipping needs a threshold for exactly the layers with parameters "
                            + layers + "; missing " + missing + ", unknown " + unknown);
                }
            }
            if (physicalBatch < 0) {
                problems.add("physical batch size " + physicalBatch + ": it must be at least 1 (or 0 for no limit)");
            }
            double q = sampleRate(m);
            if (m < 1) {
                problems.add("the data set has no examples");
            } else if (!(q > 0 && q <= 1)) {
                problems.add("sample rate " + q + (expectedBatch > 0 ? " (expected batch " + expectedBatch + " of "
                        + m + " examples)" : "") + ": it must be in (0, 1]; set sampleRate(q) or expectedBatchSize(B)");
            }
            if (!problems.isEmpty()) {
                throw new IllegalArgumentException("Private training refused (nothing was changed):\n  - "
                        + String.join("\n  - ", problems));
            }
            if (acceptAnyBatches) {
                log.warn("Private training accepts batches that are not Poisson-sampled: the reported ε assumes "
                        + "Poisson sampling and only approximates the guarantee of other sampling schemes");
            }
            if (Double.isNaN(reportDelta)) {
                reportDelta = target ? targetDelta : 1e-5;
            }
            double sigma = target ? NoiseCalibration.noiseMultiplier(targetEpsilon, targetDelta, q,
                    (long) targetEpochs * PoissonSampling.stepsPerEpoch(q)) : noiseMultiplier;
            if (clipping.isAdaptive()) {
                // refused here, before anything is installed, where σ_b ≤ σ/2
                Clipping.gradientNoiseMultiplier(sigma, clipping.countNoiseMultiplier());
            }
            return new PrivateTraining(this, model, data, sigma);
        }
    }
}
