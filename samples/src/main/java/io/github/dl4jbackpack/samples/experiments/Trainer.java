// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import io.github.dl4jbackpack.BackPackNetwork;
import io.github.dl4jbackpack.samples.data.ImageDataSet;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.List;

/** Trains one network with one setting and seed, evaluating after every epoch. */
final class Trainer {

    private static final Logger LOG = LoggerFactory.getLogger(Trainer.class);
    private static final int EVAL_CHUNK = 500;
    private static final long GC_INTERVAL_NANOS = 1_000_000_000L;

    /**
     * The data of one problem, fixed across runs.
     *
     * @param train the training examples the optimiser sees
     * @param trainEval the subset of the training split evaluated after each epoch
     * @param validation the validation examples evaluated
     * @param test the test examples evaluated
     */
    record Data(ImageDataSet train, DataSet trainEval, DataSet validation, DataSet test) {
    }

    /** Receives progress: called after every iteration and epoch. */
    interface Progress {
        /**
         * @param iterations iterations done in this run
         * @param epoch the current epoch (1-based)
         * @param loss the last minibatch loss
         */
        void update(long iterations, int epoch, double loss);
    }

    private Trainer() {
    }

    static RunResult train(ProblemPlan plan, Data data, Setting setting, long seed, Progress progress) {
        long start = System.nanoTime();
        Nd4j.getRandom().setSeed(seed);
        MultiLayerNetwork net = plan.problem().build(DataType.FLOAT, setting.optimizer().updater(setting.alpha(),
                Double.isNaN(setting.lambda()) ? 0 : setting.lambda()), seed, plan.problem().l2());
        if (setting.optimizer().curvature()) {
            BackPackNetwork.extend(net);
        }
        boolean flat = plan.problem().flatInput();
        DataSetIterator it = data.train().iterator(plan.batch(), flat, seed);
        List<EpochMetrics> epochs = new ArrayList<>();
        epochs.add(evaluate(net, data, 0));
        String status = RunResult.OK;
        long iterations = 0;
        long lastGc = System.nanoTime();
        for (int epoch = 1; epoch <= plan.epochs() && status.equals(RunResult.OK); epoch++) {
            it.reset();
            while (it.hasNext()) {
                try {
                    net.fit(it.next());
                } catch (RuntimeException e) {
                    LOG.warn("{} {} seed {} failed in epoch {}: {}", plan.problem().deepObsName(), setting.describe(),
                            seed, epoch, e.toString());
                    status = "failed: " + e;
                    break;
                }
                double loss = net.score();
                lastGc = collectGarbageOccasionally(lastGc);
                progress.update(++iterations, epoch, loss);
                if (!Double.isFinite(loss)) {
                    status = RunResult.DIVERGED;
                    break;
                }
            }
            epochs.add(status.equals(RunResult.OK) ? evaluate(net, data, epoch) : EpochMetrics.missing(epoch));
        }
        for (int epoch = epochs.size(); epoch <= plan.epochs(); epoch++) {
            epochs.add(EpochMetrics.missing(epoch));
        }
        return new RunResult(plan.problem().deepObsName(), setting, seed, plan.config(), status,
                (System.nanoTime() - start) / 1e9, epochs);
    }

    /**
     * ND4J frees an array's native memory only when the garbage collector finds the array
     * unreachable, and a training step allocates far more native memory (hundreds of MB for the
     * curvature of 2C2D) than Java heap, so without help the collector rarely runs and the process
     * grows until the operating system kills it. A collection at most once a second bounds that at
     * a cost of a few per cent.
     *
     * @return the time of the last collection
     */
    private static long collectGarbageOccasionally(long lastGc) {
        long now = System.nanoTime();
        if (now - lastGc < GC_INTERVAL_NANOS) {
            return lastGc;
        }
        System.gc();
        return System.nanoTime();
    }

    static EpochMetrics evaluate(MultiLayerNetwork net, Data data, int epoch) {
        double[] train = lossAndAccuracy(net, data.trainEval());
        double[] valid = lossAndAccuracy(net, data.validation());
        double[] test = lossAndAccuracy(net, data.test());
        return new EpochMetrics(epoch, train[0], train[1], valid[0], valid[1], test[0], test[1]);
    }

    /**
     * @return mean cross-entropy (probabilities floored at 1e-30) and accuracy of the network's
     *         predictions in inference mode (no dropout)
     */
    static double[] lossAndAccuracy(MultiLayerNetwork net, DataSet set) {
        long n = set.numExamples();
        double loss = 0;
        double correct = 0;
        for (long from = 0; from < n; from += EVAL_CHUNK) {
            long to = Math.min(n, from + EVAL_CHUNK);
            INDArray x = chunk(set.getFeatures(), from, to);
            INDArray y = chunk(set.getLabels(), from, to).castTo(DataType.DOUBLE);
            INDArray p = net.output(x, false).castTo(DataType.DOUBLE);
            INDArray pTrue = p.mul(y).sum(1);
            loss -= Transforms.log(Transforms.max(pTrue, 1e-30), false).sumNumber().doubleValue();
            correct += p.argMax(1).eq(y.argMax(1)).castTo(DataType.DOUBLE).sumNumber().doubleValue();
        }
        return new double[] {loss / n, correct / n};
    }

    private static INDArray chunk(INDArray a, long from, long to) {
        return a.rank() == 2 ? a.get(NDArrayIndex.interval(from, to), NDArrayIndex.all())
                : a.get(NDArrayIndex.interval(from, to), NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.all());
    }
}
