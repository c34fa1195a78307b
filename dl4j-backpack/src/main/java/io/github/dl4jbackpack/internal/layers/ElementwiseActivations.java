// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationCube;
import org.nd4j.linalg.activations.impl.ActivationELU;
import org.nd4j.linalg.activations.impl.ActivationGELU;
import org.nd4j.linalg.activations.impl.ActivationHardSigmoid;
import org.nd4j.linalg.activations.impl.ActivationHardTanH;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.activations.impl.ActivationLReLU;
import org.nd4j.linalg.activations.impl.ActivationRationalTanh;
import org.nd4j.linalg.activations.impl.ActivationReLU;
import org.nd4j.linalg.activations.impl.ActivationReLU6;
import org.nd4j.linalg.activations.impl.ActivationRectifiedTanh;
import org.nd4j.linalg.activations.impl.ActivationSELU;
import org.nd4j.linalg.activations.impl.ActivationSigmoid;
import org.nd4j.linalg.activations.impl.ActivationSoftPlus;
import org.nd4j.linalg.activations.impl.ActivationSoftSign;
import org.nd4j.linalg.activations.impl.ActivationSwish;
import org.nd4j.linalg.activations.impl.ActivationTanH;
import org.nd4j.linalg.activations.impl.ActivationThresholdedReLU;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.Set;

/**
 * Derivatives of DL4J's elementwise activation functions {@code a = φ(z)}: the first derivative
 * exactly as DL4J's own backward pass computes it, and the second derivative (for the residual
 * terms of the Hessian, docs/math.md#hessian-diagonal), written out per activation with DL4J's own
 * constants.
 */
public final class ElementwiseActivations {

    private static final Set<Class<? extends IActivation>> PIECEWISE_LINEAR = Set.of(ActivationIdentity.class,
            ActivationReLU.class, ActivationReLU6.class, ActivationLReLU.class, ActivationHardTanH.class,
            ActivationHardSigmoid.class, ActivationThresholdedReLU.class);

    private static final Set<Class<? extends IActivation>> SMOOTH = Set.of(ActivationSigmoid.class,
            ActivationTanH.class, ActivationSoftPlus.class, ActivationSoftSign.class, ActivationELU.class,
            ActivationSELU.class, ActivationSwish.class, ActivationGELU.class, ActivationCube.class,
            ActivationRationalTanh.class, ActivationRectifiedTanh.class);

    /** DL4J/libnd4j SELU constants. */
    static final double SELU_ALPHA = 1.6732632423543772848170429916717;
    static final double SELU_LAMBDA = 1.0507009873554804934193349852946;
    /** DL4J's GELU (sigmoid approximation) slope, a float constant in libnd4j. */
    static final double GELU_SLOPE = 1.702f;
    /** DL4J's rational tanh constants, float constants in libnd4j. */
    static final double RATIONAL_SCALE = 1.7159f;
    static final double RATIONAL_QUARTIC = 1.41645f;

    /** Names of the supported activations, for messages. */
    public static final String SUPPORTED = "identity, relu, relu6, leakyrelu, thresholdedrelu, hardtanh, hardsigmoid "
            + "(piecewise linear), sigmoid, tanh, softplus, softsign, elu, selu, swish, gelu, cube, rationaltanh, "
            + "rectifiedtanh";

    private ElementwiseActivations() {
    }

    /**
     * An activation that stands in for another (the library's recording activation in the private
     * configuration copy of an extended layer): derivatives are those of the delegate.
     */
    public interface Delegating {
        /** @return the activation this one stands in for */
        IActivation delegate();
    }

    /**
     * @param activation an activation function, possibly a stand-in
     * @return the activation it stands for
     */
    public static IActivation plain(IActivation activation) {
        return activation instanceof Delegating ? ((Delegating) activation).delegate() : activation;
    }

    /**
     * @param activation an activation function
     * @param hessian whether its second derivative is needed
     * @return why it cannot be used in a second-order pass, or null
     */
    public static String unsupported(IActivation activation, boolean hessian) {
        Class<?> c = activation.getClass();
        if (!PIECEWISE_LINEAR.contains(c) && !SMOOTH.contains(c)) {
            return "activation " + activation + " is not supported by second-order extensions (supported: "
                    + SUPPORTED + ")";
        }
        if (hessian && activation instanceof ActivationGELU && ((ActivationGELU) activation).isPrecise()) {
            return "the precise GELU of DL4J computes its derivative from a different formula than its value, so its "
                    + "Hessian is not defined consistently; use the default GELU";
        }
        return null;
    }

    /**
     * @param activation a supported activation
     * @return whether {@code φ'' = 0} almost everywhere (no Hessian residual)
     */
    public static boolean isPiecewiseLinear(IActivation activation) {
        return PIECEWISE_LINEAR.contains(activation.getClass());
    }

    /**
     * @param activation a supported activation
     * @param z pre-activations (not modified)
     * @return {@code φ'(z)}, as DL4J's backward pass computes it
     */
    public static INDArray firstDerivative(IActivation activation, INDArray z) {
        INDArray ones = z.ulike().assign(1.0);
        return activation.backprop(z.dup(), ones).getFirst();
    }

    /**
     * @param activation a supported activation
     * @param z pre-activations (not modified)
     * @return {@code φ''(z)} (zeros for piecewise-linear activations)
     */
    public static INDArray secondDerivative(IActivation activation, INDArray z) {
        if (isPiecewiseLinear(activation)) {
            return z.ulike().assign(0.0);
        }
        if (activation instanceof ActivationSigmoid) {
            INDArray s = Transforms.sigmoid(z, true);
            return s.mul(s.rsub(1.0)).muli(s.mul(-2.0).addi(1.0));
        }
        if (activation instanceof ActivationTanH) {
            INDArray t = Transforms.tanh(z, true);
            return t.mul(-2.0).muli(t.mul(t).rsubi(1.0));
        }
        if (activation instanceof ActivationSoftPlus) {
            INDArray s = Transforms.sigmoid(z, true);
            return s.mul(s.rsub(1.0));
        }
        if (activation instanceof ActivationSoftSign) {
            INDArray denominator = Transforms.abs(z, true).addi(1.0);
            return Transforms.sign(z, true).muli(-2.0).divi(Transforms.pow(denominator, 3, false));
        }
        if (activation instanceof ActivationELU) {
            double alpha = ((ActivationELU) activation).getAlpha();
            // exp(min(z, 0)): the positive side, where φ'' = 0, must not overflow to Inf·0 = NaN
            return negativePart(z, Transforms.exp(Transforms.min(z, 0.0, true), false).muli(alpha));
        }
        if (activation instanceof ActivationSELU) {
            return negativePart(z, Transforms.exp(Transforms.min(z, 0.0, true), false).muli(SELU_ALPHA * SELU_LAMBDA));
        }
        if (activation instanceof ActivationSwish) {
            return sigmoidProductSecondDerivative(z, 1.0);
        }
        if (activation instanceof ActivationGELU) {
            return sigmoidProductSecondDerivative(z, GELU_SLOPE);
        }
        if (activation instanceof ActivationCube) {
            return z.mul(6.0);
        }
        if (activation instanceof ActivationRationalTanh) {
            return rationalTanhSecondDerivative(z);
        }
        if (activation instanceof ActivationRectifiedTanh) {
            INDArray t = Transforms.tanh(z, true);
            INDArray positive = z.gt(0.0).castTo(z.dataType());
            return t.mul(-2.0).muli(t.mul(t).rsubi(1.0)).muli(positive);
        }
        throw new IllegalArgumentException(unsupported(activation, true));
    }

    /** @return {@code values} where {@code z ≤ 0}, else 0 */
    private static INDArray negativePart(INDArray z, INDArray values) {
        return values.muli(z.lte(0.0).castTo(z.dataType()));
    }

    /** {@code d²/dz² [z σ(kz)] = k σ(1−σ) (2 + kz (1 − 2σ))} with {@code σ = σ(kz)}. */
    private static INDArray sigmoidProductSecondDerivative(INDArray z, double k) {
        INDArray kz = z.mul(k);
        INDArray s = Transforms.sigmoid(kz, true);
        INDArray slope = s.mul(s.rsub(1.0)).muli(k);
        return slope.muli(kz.muli(s.mul(-2.0).addi(1.0)).addi(2.0));
    }

    /**
     * DL4J's rational tanh {@code φ(x) = A sgn(y)(1 − 1/a)}, {@code y = 2x/3},
     * {@code a = 1 + |y| + y² + c y⁴}: with {@code b = 1 + 2|y| + 4c|y|³} and
     * {@code b' = 2 + 12c y²}, {@code φ'' = A (2/3)² sgn(y) (b' a − 2 b²) / a³}.
     */
    private static INDArray rationalTanhSecondDerivative(INDArray z) {
        INDArray y = z.mul(2.0 / 3.0);
        INDArray absY = Transforms.abs(y, true);
        INDArray y2 = y.mul(y);
        INDArray a = y2.mul(y2).muli(RATIONAL_QUARTIC).addi(y2).addi(absY).addi(1.0);
        INDArray b = Transforms.pow(absY, 3, true).muli(4 * RATIONAL_QUARTIC).addi(absY.mul(2.0)).addi(1.0);
        INDArray bPrime = y2.mul(12 * RATIONAL_QUARTIC).addi(2.0);
        INDArray numerator = bPrime.muli(a).subi(b.mul(b).muli(2.0));
        return numerator.divi(Transforms.pow(a, 3, true)).muli(Transforms.sign(y, true))
                .muli(RATIONAL_SCALE * 4.0 / 9.0);
    }
}
