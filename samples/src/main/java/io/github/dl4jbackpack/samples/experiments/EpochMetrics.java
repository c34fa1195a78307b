// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

/**
 * The metrics DeepOBS records after each epoch (epoch 0: before training): mean cross-entropy loss
 * and accuracy on a training subset, the validation set and the test set.
 *
 * @param epoch epochs trained
 * @param trainLoss loss on the training evaluation subset
 * @param trainAccuracy accuracy on the training evaluation subset
 * @param validLoss loss on the validation set
 * @param validAccuracy accuracy on the validation set
 * @param testLoss loss on the test set
 * @param testAccuracy accuracy on the test set
 */
public record EpochMetrics(int epoch, double trainLoss, double trainAccuracy, double validLoss, double validAccuracy,
                           double testLoss, double testAccuracy) {

    /** The recorded quantities, in CSV column order. */
    public enum Metric {
        /** Training loss. */
        TRAIN_LOSS("train_loss", "train loss"),
        /** Training accuracy. */
        TRAIN_ACCURACY("train_accuracy", "train accuracy"),
        /** Validation loss. */
        VALID_LOSS("valid_loss", "validation loss"),
        /** Validation accuracy. */
        VALID_ACCURACY("valid_accuracy", "validation accuracy"),
        /** Test loss. */
        TEST_LOSS("test_loss", "test loss"),
        /** Test accuracy. */
        TEST_ACCURACY("test_accuracy", "test accuracy");

        private final String column;
        private final String title;

        Metric(String column, String title) {
            this.column = column;
            this.title = title;
        }

        /** @return the CSV column name */
        public String column() {
            return column;
        }

        /** @return the plot title */
        public String title() {
            return title;
        }

        /**
         * @param m one epoch's metrics
         * @return this metric's value
         */
        public double of(EpochMetrics m) {
            switch (this) {
                case TRAIN_LOSS: return m.trainLoss;
                case TRAIN_ACCURACY: return m.trainAccuracy;
                case VALID_LOSS: return m.validLoss;
                case VALID_ACCURACY: return m.validAccuracy;
                case TEST_LOSS: return m.testLoss;
                default: return m.testAccuracy;
            }
        }
    }

    /**
     * @param epoch epochs trained
     * @return the record of a run that stopped before this epoch (all values NaN)
     */
    public static EpochMetrics missing(int epoch) {
        return new EpochMetrics(epoch, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN);
    }
}
