// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.losses;

import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.activations.impl.ActivationSigmoid;
import org.nd4j.linalg.activations.impl.ActivationSoftmax;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.lossfunctions.ILossFunction;
import org.nd4j.linalg.lossfunctions.impl.LossBinaryXENT;
import org.nd4j.linalg.lossfunctions.impl.LossL2;
import org.nd4j.linalg.lossfunctions.impl.LossMCXENT;
import org.nd4j.linalg.lossfunctions.impl.LossMSE;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.Optional;

/**
 * The supported (loss, output activation) pairs and their curvature (docs/math.md#second-order):
 * softmax with MCXENT or NEGATIVELOGLIKELIHOOD, identity with MSE or L2, sigmoid with XENT.
 */
public final class LossCurvatures {

    /** What is supported, for messages. */
    public static final String SUPPORTED = "softmax with MCXENT or NEGATIVELOGLIKELIHOOD, identity with MSE or L2, "
            + "sigmoid with XENT (all without per-output weights)";

    private LossCurvatures() {
    }

    /**
     * @param loss the loss function
     * @param activation the output activation
     * @return the curvature of the pair, if supported
     */
    public static Optional<LossCurvature> of(ILossFunction loss, IActivation activation) {
        Class<?> l = loss.getClass();
        if ((l == LossMCXENT.class || l == org.nd4j.linalg.lossfunctions.impl.LossNegativeLogLikelihood.class)
                && activation instanceof ActivationSoftmax && ((LossMCXENT) loss).getWeights() == null) {
            return Optional.of(new SoftmaxCrossEntropy());
        }
        if (l == LossMSE.class && activation instanceof ActivationIdentity && ((LossMSE) loss).getWeights() == null) {
            return Optional.of(new SquaredError(true));
        }
        if (l == LossL2.class && activation instanceof ActivationIdentity && ((LossL2) loss).getWeights() == null) {
            return Optional.of(new SquaredError(false));
        }
        if (l == LossBinaryXENT.class && activation instanceof ActivationSigmoid
                && ((LossBinaryXENT) loss).getWeights() == null) {
            return Optional.of(new SigmoidCrossEntropy());
        }
        return Optional.empty();
    }

    /**
     * @param loss a loss function
     * @param activation the activation applied before it
     * @return whether the pair is cross-entropy on probabilities (MCXENT or NLL, no weights, identity
     *     activation): fused with a softmax right before it, it is softmax cross-entropy
     */
    public static boolean isCrossEntropyOfProbabilities(ILossFunction loss, IActivation activation) {
        Class<?> l = loss.getClass();
        return (l == LossMCXENT.class || l == org.nd4j.linalg.lossfunctions.impl.LossNegativeLogLikelihood.class)
                && activation instanceof ActivationIdentity && ((LossMCXENT) loss).getWeights() == null;
    }

    /**
     * @param perVector the curvature of the loss of one channel vector
     * @param shape the shape of the output the loss is applied to at every position, {@code [N, C, H, W]}
     *     or, channels last, {@code [N, H, W, C]}
     * @param channelsLast whether the output is channels last ({@code CNN2DFormat.NHWC})
     * @return the curvature of the loss summed over positions ({@code CnnLossLayer})
     */
    public static LossCurvature perPosition(LossCurvature perVector, long[] shape, boolean channelsLast) {
        return new PerPositionLoss(perVector, channelsLast ? new long[] {shape[0], shape[3], shape[1], shape[2]}
                : shape, channelsLast);
    }

    /**
     * @param perVector the curvature of the loss of one step's output vector
     * @param batch N
     * @param channels the outputs per step C
     * @param steps T
     * @param nwc whether the output is laid out {@code [N, T, C]} (else {@code [N, C, T]})
     * @param mask the label mask as DL4J hands it to the loss ({@code [T·N, 1]}, rows {@code t·N + n}), or null
     * @return the curvature of the loss summed over the (unmasked) time steps ({@code RnnOutputLayer},
     *     {@code RnnLossLayer})
     */
    public static LossCurvature perTimeStep(LossCurvature perVector, long batch, long channels, long steps,
                                            boolean nwc, INDArray mask) {
        return new PerTimeStepLoss(perVector, batch, channels, steps, nwc, mask);
    }

    /** @return the curvature of softmax cross-entropy w.r.t. the logits */
    public static LossCurvature softmaxCrossEntropy() {
        return new SoftmaxCrossEntropy();
    }

    /** {@code ℓ = −Σ_c y_c log p_c}, {@code p = softmax(z)}: {@code H = diag(p) − p pᵀ}. */
    static final class SoftmaxCrossEntropy implements LossCurvature {

        @Override
        public String describe() {
            return "softmax cross-entropy";
        }

        private static INDArray probabilities(INDArray z) {
            return Transforms.softmax(z, true);
        }

        @Override
        public INDArray hessian(INDArray z) {
            INDArray p = probabilities(z);
            long n = p.size(0);
            long c = p.size(1);
            INDArray outer = Nd4j.matmul(p.reshape(n, c, 1), p.reshape(n, 1, c));
            return diagonalMatrices(p).subi(outer);
        }

        @Override
        public INDArray sqrtHessian(INDArray z, long batchSize) {
            // S = diag(√p) − p √pᵀ: S Sᵀ = diag(p) − p pᵀ since Σ p = 1
            INDArray p = probabilities(z);
            long n = p.size(0);
            long c = p.size(1);
            INDArray sqrtP = Transforms.sqrt(p, true);
            INDArray s = diagonalMatrices(sqrtP).subi(Nd4j.matmul(p.reshape(n, c, 1), sqrtP.reshape(n, 1, c)));
            // columns of S_n are S_n[:, v]; store as [N, V, C]
            return s.permute(0, 2, 1).dup('c').divi(Math.sqrt(batchSize));
        }

        @Override
        public INDArray sampledSqrtHessian(INDArray z, long batchSize, int samples) {
            INDArray p = probabilities(z);
            long n = p.size(0);
            long c = p.size(1);
            // cumulative probabilities as one product with the upper triangle of ones (ND4J's cumsum along a
            // dimension walks the rows one by one: half of a logistic regression's DiagGGNMC pass)
            INDArray cumulative = p.mmul(upperTriangleOfOnes(c, p.dataType())).reshape(n, 1, c);
            INDArray u = Nd4j.rand(p.dataType(), n, samples, 1);
            // one-hot of the sampled class: [u < cum_c] − [u < cum_{c−1}]
            INDArray below = cumulative.broadcast(n, samples, c).gt(u.broadcast(n, samples, c)).castTo(p.dataType());
            INDArray oneHot = below.dup();
            oneHot.get(org.nd4j.linalg.indexing.NDArrayIndex.all(), org.nd4j.linalg.indexing.NDArrayIndex.all(),
                    org.nd4j.linalg.indexing.NDArrayIndex.interval(1, c))
                    .subi(below.get(org.nd4j.linalg.indexing.NDArrayIndex.all(),
                            org.nd4j.linalg.indexing.NDArrayIndex.all(),
                            org.nd4j.linalg.indexing.NDArrayIndex.interval(0, c - 1)));
            // guard against round-off making Σp slightly below u: put that mass on the last class
            INDArray none = oneHot.sum(2).rsub(1.0);
            oneHot.get(org.nd4j.linalg.indexing.NDArrayIndex.all(), org.nd4j.linalg.indexing.NDArrayIndex.all(),
                    org.nd4j.linalg.indexing.NDArrayIndex.point(c - 1)).addi(none);
            INDArray gradient = p.reshape(n, 1, c).broadcast(n, samples, c).sub(oneHot);
            return gradient.divi(Math.sqrt((double) batchSize * samples));
        }
    }

    /** @return the {@code [c, c]} matrix with ones on and above the diagonal: {@code (p U)_j = Σ_{i ≤ j} p_i} */
    private static INDArray upperTriangleOfOnes(long c, DataType type) {
        double[] values = new double[(int) (c * c)];
        for (int i = 0; i < c; i++) {
            for (int j = i; j < c; j++) {
                values[(int) (i * c + j)] = 1;
            }
        }
        return Nd4j.createFromArray(values).castTo(type).reshape('c', c, c);
    }

    /**
     * {@code ℓ = s Σ_c (z_c − y_c)²} with {@code s = 1/C} (DL4J MSE) or {@code 1} (L2):
     * {@code H = 2s I}; sampling {@code y ~ N(z, I/(2s))}.
     */
    static final class SquaredError implements LossCurvature {
        private final boolean mean;

        SquaredError(boolean mean) {
            this.mean = mean;
        }

        private double scale(long c) {
            return mean ? 1.0 / c : 1.0;
        }

        @Override
        public String describe() {
            return mean ? "mean squared error" : "squared error (L2)";
        }

        @Override
        public INDArray hessian(INDArray z) {
            long n = z.size(0);
            long c = z.size(1);
            INDArray eye = Nd4j.eye(c).castTo(z.dataType()).muli(2 * scale(c));
            return eye.reshape(1, c, c).broadcast(n, c, c).dup();
        }

        @Override
        public INDArray sqrtHessian(INDArray z, long batchSize) {
            long c = z.size(1);
            return hessian(z).divi(2 * scale(c)).muli(Math.sqrt(2 * scale(c) / batchSize));
        }

        @Override
        public INDArray sampledSqrtHessian(INDArray z, long batchSize, int samples) {
            // ∇_z ℓ(z, y) = 2s (z − y) with z − y ~ N(0, I/(2s)): the gradient is √(2s) times a standard normal
            long n = z.size(0);
            long c = z.size(1);
            INDArray noise = Nd4j.randn(z.dataType(), n, samples, c);
            return noise.muli(Math.sqrt(2 * scale(c)) / Math.sqrt((double) batchSize * samples));
        }
    }

    /** {@code ℓ = −Σ_c [y_c log s_c + (1 − y_c) log(1 − s_c)]}, {@code s = σ(z)}: {@code H = diag(s(1−s))}. */
    static final class SigmoidCrossEntropy implements LossCurvature {

        @Override
        public String describe() {
            return "sigmoid binary cross-entropy";
        }

        private static INDArray curvature(INDArray z) {
            INDArray s = Transforms.sigmoid(z, true);
            return s.mul(s.rsub(1.0));
        }

        @Override
        public INDArray hessian(INDArray z) {
            return diagonalMatrices(curvature(z));
        }

        @Override
        public INDArray sqrtHessian(INDArray z, long batchSize) {
            return diagonalMatrices(Transforms.sqrt(curvature(z), false)).divi(Math.sqrt(batchSize));
        }

        @Override
        public INDArray sampledSqrtHessian(INDArray z, long batchSize, int samples) {
            long n = z.size(0);
            long c = z.size(1);
            INDArray s = Transforms.sigmoid(z, true).reshape(n, 1, c).broadcast(n, samples, c).dup();
            INDArray y = Nd4j.rand(z.dataType(), n, samples, c).lt(s).castTo(z.dataType());
            return s.subi(y).divi(Math.sqrt((double) batchSize * samples));
        }
    }

    /** @return {@code [N, C, C]} with {@code d[n]} on each diagonal */
    static INDArray diagonalMatrices(INDArray d) {
        long n = d.size(0);
        long c = d.size(1);
        INDArray eye = Nd4j.eye(c).castTo(d.dataType()).reshape(1, c, c);
        return eye.broadcast(n, c, c).mul(d.reshape(n, c, 1).broadcast(n, c, c));
    }
}
