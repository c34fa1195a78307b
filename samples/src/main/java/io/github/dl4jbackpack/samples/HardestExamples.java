// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.Quantities;
import io.github.dl4jbackpack.extensions.BatchL2Grad;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.preprocessor.CnnToFeedForwardPreProcessor;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.transferlearning.FineTuneConfiguration;
import org.deeplearning4j.nn.transferlearning.TransferLearning;
import org.deeplearning4j.nn.transferlearning.TransferLearningHelper;
import org.deeplearning4j.nn.weights.WeightInit;
import org.deeplearning4j.zoo.model.VGG16;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;
import org.nd4j.nativeblas.NativeOps;
import org.nd4j.nativeblas.NativeOpsHolder;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.IntStream;

/**
 * Transfer learning and outlier detection: DL4J's zoo VGG16 (random weights: pretrained weights
 * cannot be downloaded offline) is adapted to the UCI digits with {@link TransferLearning}, and
 * per-example gradient norms from BackPACK's {@link BatchL2Grad} list the training examples the
 * trained model finds hardest.
 *
 * <ul>
 *   <li><b>Input.</b> VGG16's five 2×2 max-poolings need at least 32×32 pixels: each 8×8 digit
 *       (scaled to [0, 1]) is upsampled by nearest neighbour (every pixel becomes a 4×4 block, so no
 *       new intensities appear) and replicated to 3 channels.</li>
 *   <li><b>Transfer.</b> The zoo graph (vertices {@code "0"}…{@code "17"}: 13 convolutions and 5
 *       max-poolings; {@code "18"}, {@code "19"}: dense 4096 with dropout; {@code "20"}: the output
 *       layer) is built for 1000 classes and adapted with {@code TransferLearning.GraphBuilder}: the
 *       convolutional feature extractor up to the last pooling {@code "17"} is frozen
 *       ({@code setFeatureExtractor}), and the classifier is removed and replaced by a new one for
 *       10 classes, 512-512-10 without dropout as in the CIFAR-10 variants of VGG16 (at 32×32 the
 *       convolutions end in 512 numbers per image; without dropout a per-example gradient depends
 *       on the example alone, not on a dropout mask). Adam trains the classifier; the graph stays
 *       in float32.</li>
 *   <li><b>Training.</b> The frozen part computes the same features in every epoch, so
 *       {@link TransferLearningHelper} featurizes every image once ({@code [512, 1, 1]} per image;
 *       this is most of the run time) and only the unfrozen head ({@code "18"}–{@code "20"}, 530,442
 *       parameters) is trained on the features. Random weights make the features tiny (about 1e-3),
 *       so they are centred per feature and divided by their overall standard deviation (statistics
 *       of the training set).</li>
 *   <li><b>Hardest examples.</b> The trained head is extended with {@link BackPackNetwork#extend}
 *       and one pass per batch computes {@link BatchL2Grad}, the squared norms of
 *       {@code g_n = ∇ℓ_n / N} for every trainable parameter. Summed over parameters, the norm of
 *       the per-example loss gradient is {@code ‖∇ℓ_n‖ = N·sqrt(Σ ‖g_n‖²)}. Large norms mark the
 *       examples the model fits worst or that pull hardest on its parameters: mislabelled,
 *       ambiguous or unusual digits.</li>
 * </ul>
 *
 * <p>Options: {@code --epochs E} (default 4), {@code --batch B} (64), {@code --seed S} (7),
 * {@code --limit N} (use only the first N training examples; default {@value #DEFAULT_LIMIT}, 0 for all
 * 1,500). 297 examples are held out for testing, as in the other samples.
 */
public final class HardestExamples {

    /** The input side VGG16 needs: 32 is halved five times to 1. */
    static final int INPUT_SIDE = 32;
    /** The last vertex of VGG16's convolutional feature extractor (its fifth max-pooling). */
    static final String FEATURE_EXTRACTOR = "17";
    /** VGG16's first dense layer (vertex name in the zoo graph), replaced. */
    static final String DENSE1 = "18";
    /** VGG16's second dense layer, replaced. */
    static final String DENSE2 = "19";
    /** VGG16's output layer, replaced. */
    static final String OUTPUT = "20";
    /**
     * Width of the new dense layers: at 32×32 the convolutions end in 512 numbers per image, and the
     * classifier becomes 512-512-10 as in the CIFAR-10 variants of VGG16 (not ImageNet's 4096-4096-1000).
     */
    static final int DENSE_WIDTH = 512;
    /** Features per image at the end of the frozen part: 512 channels of 1×1. */
    static final int FEATURES = 512;
    /** Number of examples held out for testing, as in the other samples. */
    static final int TEST_SIZE = 297;
    /**
     * Training examples used by default. Featurizing is most of the run time (on two cores about 60 ms
     * per image while another build runs, about half that on idle cores): 1,000 keep a run under two
     * minutes on a busy machine; {@code --limit 0} uses all 1,500.
     */
    static final int DEFAULT_LIMIT = 1000;
    /** How many of the hardest examples are listed. */
    static final int LISTED = 10;

    private static final String SHADES = " .:-=+*#%@";

    private HardestExamples() {
    }

    /**
     * What a run computed, for tests.
     *
     * @param head the trained head (the unfrozen part of the transfer-learned graph), extended
     * @param features the featurized training examples, flattened to {@code [N, 512]} (see {@link #headInput})
     * @param labels their one-hot labels
     * @param digitIndex for each training example, its row in the shipped digits file
     * @param norms for each training example, the norm of its loss gradient ‖∇ℓ_n‖ over the head's parameters
     * @param hardest positions (into the training examples) of the listed examples, largest norm first
     * @param testAccuracy the test accuracy after the last epoch
     */
    record Result(ComputationGraph head, INDArray features, INDArray labels, int[] digitIndex, double[] norms,
            int[] hardest, double testAccuracy) {
    }

    /**
     * Runs the sample.
     *
     * @param args see the class comment
     */
    public static void main(String[] args) {
        Map<String, String> opts = GradientNoiseDemo.options(args);
        int epochs = Integer.parseInt(opts.getOrDefault("epochs", "4"));
        int batch = Integer.parseInt(opts.getOrDefault("batch", "64"));
        long seed = Long.parseLong(opts.getOrDefault("seed", "7"));
        int limit = Integer.parseInt(opts.getOrDefault("limit", String.valueOf(DEFAULT_LIMIT)));
        run(epochs, batch, seed, limit, System.out, System.err);
    }

    /**
     * The zoo VGG16 adapted to the digits: the convolutional feature extractor frozen, the classifier
     * replaced by a new one ({@link #DENSE_WIDTH}-{@link #DENSE_WIDTH}-10, without dropout) under the
     * same vertex names.
     */
    static ComputationGraph transferGraph(long seed) {
        ComputationGraph vgg16 = VGG16.builder().seed(seed).inputShape(new int[] {3, INPUT_SIDE, INPUT_SIDE})
                .numClasses(1000).build().init();
        FineTuneConfiguration fineTune = new FineTuneConfiguration.Builder()
                .seed(seed)
                .updater(new Adam(1e-3))
                .build();
        // Remove and add rather than nOutReplace: a replaced layer keeps the zoo layer's dropout (0.5)
        // whatever the fine-tune configuration says, and a per-example gradient should depend on the
        // example alone, not on a dropout mask.
        return new TransferLearning.GraphBuilder(vgg16)
                .fineTuneConfiguration(fineTune)
                .setFeatureExtractor(FEATURE_EXTRACTOR)
                .removeVertexAndConnections(OUTPUT)
                .removeVertexAndConnections(DENSE2)
                .removeVertexAndConnections(DENSE1)
                .addLayer(DENSE1, new DenseLayer.Builder().nIn(FEATURES).nOut(DENSE_WIDTH).activation(Activation.RELU)
                        .weightInit(WeightInit.XAVIER).build(), new CnnToFeedForwardPreProcessor(1, 1, FEATURES),
                        FEATURE_EXTRACTOR)
                .addLayer(DENSE2, new DenseLayer.Builder().nIn(DENSE_WIDTH).nOut(DENSE_WIDTH).activation(Activation.RELU)
                        .weightInit(WeightInit.XAVIER).build(), DENSE1)
                .addLayer(OUTPUT, new OutputLayer.Builder(LossFunction.NEGATIVELOGLIKELIHOOD).nIn(DENSE_WIDTH)
                        .nOut(Digits.CLASSES).activation(Activation.SOFTMAX).weightInit(WeightInit.XAVIER).build(), DENSE2)
                .setOutputs(OUTPUT)
                .build();
    }

    /**
     * The digits as VGG16 input: {@code [N, 64]} (or {@code [N, 1, 8, 8]}) to {@code [N, 3, 32, 32]},
     * nearest-neighbour upsampling, the gray value in every channel.
     */
    static INDArray toVggInput(INDArray digits) {
        int n = (int) digits.size(0);
        int factor = INPUT_SIDE / Digits.SIDE;
        float[] in = digits.dup('c').data().asFloat();
        float[] out = new float[n * 3 * INPUT_SIDE * INPUT_SIDE];
        int plane = INPUT_SIDE * INPUT_SIDE;
        for (int i = 0; i < n; i++) {
            for (int y = 0; y < INPUT_SIDE; y++) {
                for (int x = 0; x < INPUT_SIDE; x++) {
                    float v = in[i * Digits.SIDE * Digits.SIDE + (y / factor) * Digits.SIDE + x / factor];
                    for (int c = 0; c < 3; c++) {
                        out[(i * 3 + c) * plane + y * INPUT_SIDE + x] = v;
                    }
                }
            }
        }
        return Nd4j.create(out, new long[] {n, 3, INPUT_SIDE, INPUT_SIDE}, DataType.FLOAT);
    }

    /**
     * @return what the run computed (see {@link Result})
     */
    static Result run(int epochs, int batch, long seed, int limit, PrintStream out, PrintStream progress) {
        return run(epochs, batch, seed, limit, TEST_SIZE, out, progress);
    }

    /**
     * @param testSize how many examples to hold out (tests use fewer, to featurize less)
     * @return what the run computed (see {@link Result})
     */
    static Result run(int epochs, int batch, long seed, int limit, int testSize, PrintStream out,
            PrintStream progress) {
        long start = System.nanoTime();
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        DataSet all = Digits.load(DataType.FLOAT);
        int[] order = Digits.shuffledIndices(all.numExamples(), new Random(seed));
        int trainEnd = limit > 0 ? Math.min(order.length, testSize + limit) : order.length;
        int[] testRows = Arrays.copyOfRange(order, 0, testSize);
        int[] trainRows = Arrays.copyOfRange(order, testSize, trainEnd);
        INDArray digits = all.getFeatures();
        INDArray labels = all.getLabels();

        ComputationGraph transfer = transferGraph(seed);
        TransferLearningHelper helper = new TransferLearningHelper(transfer);
        ComputationGraph head = helper.unfrozenGraph();
        out.printf("VGG16 (DL4J zoo, random weights, input 3x%dx%d): %,d parameters; frozen up to vertex \"%s\", "
                        + "trainable head %s: %,d parameters.%n", INPUT_SIDE, INPUT_SIDE, transfer.numParams(),
                FEATURE_EXTRACTOR, String.join(", ", trainableLayers(head)), head.numParams());

        long featurizeStart = System.nanoTime();
        INDArray flat = digits.dup('c').reshape(digits.size(0), (long) Digits.SIDE * Digits.SIDE);
        INDArray trainX = featurize(helper, flat, labels, trainRows, batch, "featurize train", progress);
        INDArray trainY = Nd4j.pullRows(labels, 1, trainRows);
        INDArray testX = featurize(helper, flat, labels, testRows, batch, "featurize test ", progress);
        INDArray testY = Nd4j.pullRows(labels, 1, testRows);
        // Random VGG16 weights (Xavier-initialised, ReLU) shrink the signal layer by layer: the features
        // are about 1e-3. Centred per feature and divided by one overall standard deviation (of the
        // training set; per-feature scaling would blow up nearly constant features), the head learns
        // at usual rates.
        INDArray mean = trainX.mean(0);
        trainX.subiRowVector(mean);
        testX.subiRowVector(mean);
        double scale = trainX.stdNumber().doubleValue();
        trainX.divi(scale);
        testX.divi(scale);
        int trainSize = trainRows.length;
        out.printf("Featurized %d training and %d test digits once (upsampled to %dx%d, 3 channels) in %.1f s; "
                + "training the head, batch %d, %d epochs.%n", trainSize, testSize, INPUT_SIDE, INPUT_SIDE,
                secondsSince(featurizeStart), batch, epochs);

        // The head's layers are small: OpenMP's thread synchronisation costs more than their work (many
        // times more on a busy machine), so the head runs on one thread; the convolutions above used all.
        NativeOps nativeOps = NativeOpsHolder.getInstance().getDeviceNativeOps();
        int threads = nativeOps.ompGetMaxThreads();
        nativeOps.setOmpNumThreads(1);
        double testAccuracy;
        double[] norms;
        double normSeconds;
        try {
            testAccuracy = train(head, trainX, trainY, testX, testY, epochs, batch, seed, out, progress);
            long normsStart = System.nanoTime();
            norms = perExampleGradientNorms(BackPackNetwork.extend(head), trainX, trainY, batch, progress);
            normSeconds = secondsSince(normsStart);
        } finally {
            nativeOps.setOmpNumThreads(threads);
        }
        int[] hardest = IntStream.range(0, trainSize).boxed()
                .sorted(Comparator.comparingDouble((Integer n) -> norms[n]).reversed())
                .limit(LISTED).mapToInt(Integer::intValue).toArray();
        int[] digitIndex = trainRows;
        INDArray probabilities = head.outputSingle(headInput(trainX));

        out.printf("%nPer-example loss gradient norms ‖∇ℓ_n‖ over the head's %,d trainable parameters for all %d "
                + "training examples%n(BatchL2Grad, one pass per batch of %d, %.1f s; never forming the %.1f GB of "
                + "individual gradients):%n", head.numParams(), trainSize, batch, normSeconds,
                head.numParams() * 4.0 * trainSize / 1e9);
        out.printf("median %.4g; the %d largest:%n", median(norms), hardest.length);
        out.printf("  %4s %6s %5s %9s %9s %10s%n", "rank", "index", "label", "predicted", "p(label)", "‖∇ℓ_n‖");
        for (int r = 0; r < hardest.length; r++) {
            int n = hardest[r];
            int label = trainY.getRow(n).argMax().getInt(0);
            INDArray p = probabilities.getRow(n);
            out.printf("  %4d %6d %5d %9d %9.4f %10.4g%n", r + 1, digitIndex[n], label, p.argMax().getInt(0),
                    p.getDouble(label), norms[n]);
        }
        out.println();
        out.print(render(digits, digitIndex, hardest, trainY, probabilities));
        out.printf("(index: row in the shipped digits file; p(label): predicted probability of the true label; "
                + "%.1f s in all)%n", secondsSince(start));
        return new Result(head, trainX, trainY, digitIndex, norms, hardest, testAccuracy);
    }

    /**
     * Trains the head on the features, printing the mean training loss and the accuracies per epoch.
     *
     * @return the test accuracy after the last epoch
     */
    private static double train(ComputationGraph head, INDArray trainX, INDArray trainY, INDArray testX,
            INDArray testY, int epochs, int batch, long seed, PrintStream out, PrintStream progress) {
        int trainSize = (int) trainX.size(0);
        Random random = new Random(seed);
        double testAccuracy = 0;
        for (int epoch = 1; epoch <= epochs; epoch++) {
            int[] perm = Digits.shuffledIndices(trainSize, random);
            int iterations = (trainSize + batch - 1) / batch;
            ProgressBar bar = new ProgressBar(progress, String.format("epoch %d/%d", epoch, epochs), iterations);
            double lossSum = 0;
            for (int it = 0; it < iterations; it++) {
                int[] idx = Arrays.copyOfRange(perm, it * batch, Math.min(trainSize, (it + 1) * batch));
                head.fit(new INDArray[] {headInput(trainX, idx)}, new INDArray[] {Nd4j.pullRows(trainY, 1, idx)});
                lossSum += head.score();
                bar.update(it + 1, String.format("loss %.4f", lossSum / (it + 1)));
            }
            bar.finish();
            double trainAccuracy = accuracy(head, trainX, trainY);
            testAccuracy = accuracy(head, testX, testY);
            out.printf("epoch %2d: mean training loss %.4f, training accuracy %.3f, test accuracy %.3f%n", epoch,
                    lossSum / iterations, trainAccuracy, testAccuracy);
        }
        return testAccuracy;
    }

    /**
     * ‖∇ℓ_n‖ for every example over all trainable parameters of the extended network, from one
     * BackPACK pass per batch: {@code N·sqrt(Σ_params ‖g_n‖²)}, since {@code g_n = ∇ℓ_n / N}.
     */
    static double[] perExampleGradientNorms(BackPackNetwork bp, INDArray x, INDArray y, int batch,
            PrintStream progress) {
        int size = (int) x.size(0);
        double[] norms = new double[size];
        int batches = (size + batch - 1) / batch;
        ProgressBar bar = new ProgressBar(progress, "gradient norms", batches);
        for (int b = 0; b < batches; b++) {
            int from = b * batch;
            int to = Math.min(size, from + batch);
            int[] idx = IntStream.range(from, to).toArray();
            Quantities q = bp.backward(headInput(x, idx), Nd4j.pullRows(y, 1, idx), new BatchL2Grad());
            double[] squared = new double[idx.length];
            for (String layer : q.layerNames(BatchL2Grad.class)) {
                for (INDArray value : q.layer(BatchL2Grad.class, layer).values()) {
                    double[] v = value.castTo(DataType.DOUBLE).toDoubleVector();
                    for (int i = 0; i < v.length; i++) {
                        squared[i] += v[i];
                    }
                }
            }
            for (int i = 0; i < idx.length; i++) {
                norms[from + i] = q.batchSize() * Math.sqrt(squared[i]);
            }
            bar.update(b + 1, "");
        }
        bar.finish();
        return norms;
    }

    /**
     * Featurizes the given rows of the digits ({@code [1797, 64]}) in batches: the activations of the
     * frozen part's last vertex.
     */
    private static INDArray featurize(TransferLearningHelper helper, INDArray digits, INDArray labels, int[] rows,
            int batch, String label, PrintStream progress) {
        int batches = (rows.length + batch - 1) / batch;
        ProgressBar bar = new ProgressBar(progress, label, batches);
        List<INDArray> parts = new ArrayList<>();
        for (int b = 0; b < batches; b++) {
            int[] idx = Arrays.copyOfRange(rows, b * batch, Math.min(rows.length, (b + 1) * batch));
            DataSet images = new DataSet(toVggInput(Nd4j.pullRows(digits, 1, idx)), Nd4j.pullRows(labels, 1, idx));
            INDArray f = helper.featurize(images).getFeatures();
            parts.add(f.reshape(f.size(0), f.length() / f.size(0)).detach());
            bar.update(b + 1, "");
        }
        bar.finish();
        return Nd4j.concat(0, parts.toArray(new INDArray[0]));
    }

    /** All flattened features as the head's input. */
    static INDArray headInput(INDArray features) {
        return features.reshape(features.size(0), features.size(1), 1, 1);
    }

    /** Rows of the flattened features as the head's input, {@code [n, 512, 1, 1]} (the last pooling's output). */
    static INDArray headInput(INDArray features, int[] rows) {
        INDArray x = Nd4j.pullRows(features, 1, rows);
        return x.reshape(rows.length, features.size(1), 1, 1);
    }

    private static double secondsSince(long nanoTime) {
        return (System.nanoTime() - nanoTime) / 1e9;
    }

    private static List<String> trainableLayers(ComputationGraph head) {
        List<String> names = new ArrayList<>();
        for (org.deeplearning4j.nn.api.Layer l : head.getLayers()) {
            if (l.numParams() > 0) {
                names.add("\"" + l.conf().getLayer().getLayerName() + "\" " + l.conf().getLayer().getClass().getSimpleName());
            }
        }
        return names;
    }

    private static double accuracy(ComputationGraph head, INDArray x, INDArray y) {
        INDArray predicted = head.outputSingle(headInput(x)).argMax(1);
        return predicted.eq(y.argMax(1)).castTo(DataType.FLOAT).meanNumber().doubleValue();
    }

    static double median(double[] values) {
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        int m = sorted.length / 2;
        return sorted.length % 2 == 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
    }

    /** The listed digits side by side, five per row, with rank, index and label → prediction. */
    private static String render(INDArray digits, int[] digitIndex, int[] hardest, INDArray labels,
            INDArray probabilities) {
        StringBuilder sb = new StringBuilder();
        int perRow = 5;
        int width = 14;
        for (int start = 0; start < hardest.length; start += perRow) {
            int end = Math.min(hardest.length, start + perRow);
            StringBuilder head1 = new StringBuilder("  ");
            StringBuilder head2 = new StringBuilder("  ");
            for (int r = start; r < end; r++) {
                int n = hardest[r];
                head1.append(pad(String.format("#%d %d", r + 1, digitIndex[n]), width));
                head2.append(pad(String.format("%d->%d", labels.getRow(n).argMax().getInt(0),
                        probabilities.getRow(n).argMax().getInt(0)), width));
            }
            sb.append(head1.toString().stripTrailing()).append('\n').append(head2.toString().stripTrailing())
                    .append('\n');
            for (int y = 0; y < Digits.SIDE; y++) {
                StringBuilder line = new StringBuilder("  ");
                for (int r = start; r < end; r++) {
                    StringBuilder pixels = new StringBuilder("|");
                    for (int x = 0; x < Digits.SIDE; x++) {
                        double v = digits.getDouble(digitIndex[hardest[r]], 0, y, x);
                        pixels.append(SHADES.charAt((int) Math.min(SHADES.length() - 1, Math.round(v * (SHADES.length() - 1)))));
                    }
                    line.append(pad(pixels.append('|').toString(), width));
                }
                sb.append(line.toString().stripTrailing()).append('\n');
            }
            sb.append('\n');
        }
        return sb.toString();
    }

    private static String pad(String s, int width) {
        return s.length() >= width ? s + " " : s + " ".repeat(width - s.length());
    }
}
