// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.DropoutLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LossLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Seeded random networks over the supported layer set (dense, output and loss layers, convolutions
 * in every mode with stride, padding and dilation, pooling, activation and dropout layers, layer
 * dropout, preprocessors), for property-style tests.
 */
final class RandomArchitectures {

    static final Activation[] ACTIVATIONS = {Activation.RELU, Activation.TANH, Activation.SIGMOID, Activation.ELU,
            Activation.LEAKYRELU, Activation.SOFTPLUS, Activation.IDENTITY, Activation.SELU, Activation.SWISH};

    /** A generated network and a batch for it. */
    record Sample(String description, MultiLayerNetwork net, INDArray features, INDArray labels) {
        @Override
        public String toString() {
            return description;
        }
    }

    private RandomArchitectures() {
    }

    /**
     * @param seed the seed of everything random about the sample
     * @param dropout whether layer dropout and dropout layers may appear
     * @param dataType parameter type
     * @param workspaces workspace mode
     */
    static Sample sample(long seed, boolean dropout, DataType dataType, WorkspaceMode workspaces) {
        return sample(seed, dropout, false, dataType, workspaces);
    }

    /**
     * @param secondOrder whether to use only what second-order extensions support (losses with a
     *     Hessian factor, no p-norm pooling)
     */
    static Sample sample(long seed, boolean dropout, boolean secondOrder, DataType dataType, WorkspaceMode workspaces) {
        Random r = new Random(seed);
        List<Layer> layers = new ArrayList<>();
        StringBuilder d = new StringBuilder("seed " + seed + ":");
        long n = 2 + r.nextInt(5);
        InputType input;
        long[] featureShape;
        if (r.nextBoolean()) {
            int nIn = 2 + r.nextInt(6);
            input = InputType.feedForward(nIn);
            featureShape = new long[] {n, nIn};
            d.append(" ff").append(nIn);
        } else {
            int c = 1 + r.nextInt(3);
            int h = 6 + r.nextInt(5);
            int w = 6 + r.nextInt(5);
            input = InputType.convolutional(h, w, c);
            featureShape = new long[] {n, c, h, w};
            d.append(" img").append(c).append('x').append(h).append('x').append(w);
            int blocks = 1 + r.nextInt(2);
            for (int b = 0; b < blocks; b++) {
                int k = 1 + r.nextInt(3);
                int s = 1 + r.nextInt(2);
                int dil = (k > 1 && r.nextInt(4) == 0) ? 2 : 1;
                ConvolutionMode mode = r.nextBoolean() ? ConvolutionMode.Same : ConvolutionMode.Truncate;
                int pad = mode == ConvolutionMode.Truncate ? r.nextInt(2) : 0;
                int effective = (k - 1) * dil + 1;
                if (mode == ConvolutionMode.Truncate && (Math.min(h, w) + 2 * pad - effective) / s + 1 < 2) {
                    continue;
                }
                Activation a = ACTIVATIONS[r.nextInt(ACTIVATIONS.length)];
                ConvolutionLayer.Builder conv = new ConvolutionLayer.Builder(k, k).stride(s, s).padding(pad, pad)
                        .dilation(dil, dil).convolutionMode(mode).nOut(1 + r.nextInt(4)).activation(a)
                        .hasBias(r.nextInt(4) != 0);
                if (dropout && r.nextInt(3) == 0) {
                    conv.dropOut(0.7);
                    d.append(" drop");
                }
                layers.add(conv.build());
                d.append(String.format(" conv%d s%d p%d d%d %s %s", k, s, pad, dil, mode, a));
                if (mode == ConvolutionMode.Same) {
                    h = (h + s - 1) / s;
                    w = (w + s - 1) / s;
                } else {
                    h = (h + 2 * pad - effective) / s + 1;
                    w = (w + 2 * pad - effective) / s + 1;
                }
                if (Math.min(h, w) >= 3 && r.nextBoolean()) {
                    PoolingType type = new PoolingType[] {PoolingType.MAX, PoolingType.AVG, PoolingType.PNORM}[r.nextInt(3)];
                    if (secondOrder && type == PoolingType.PNORM) {
                        type = PoolingType.AVG;
                    }
                    layers.add(new SubsamplingLayer.Builder(type).kernelSize(2, 2).stride(1, 1).pnorm(2).build());
                    h -= 1;
                    w -= 1;
                    d.append(" pool ").append(type);
                }
                if (r.nextInt(4) == 0) {
                    Activation act = ACTIVATIONS[r.nextInt(ACTIVATIONS.length)];
                    layers.add(new ActivationLayer.Builder().activation(act).build());
                    d.append(" act ").append(act);
                }
            }
        }
        int dense = r.nextInt(3);
        for (int i = 0; i < dense; i++) {
            Activation a = ACTIVATIONS[r.nextInt(ACTIVATIONS.length)];
            DenseLayer.Builder b = new DenseLayer.Builder().nOut(2 + r.nextInt(6)).activation(a).hasBias(r.nextInt(4) != 0);
            if (dropout && r.nextInt(3) == 0) {
                b.dropOut(0.6);
                d.append(" drop");
            }
            layers.add(b.build());
            d.append(" dense ").append(a);
            if (dropout && r.nextInt(3) == 0) {
                layers.add(new DropoutLayer.Builder(0.8).build());
                d.append(" dropoutlayer");
            }
        }
        int nOut = 1 + r.nextInt(4);
        LossFunction loss;
        Activation outAct;
        switch (r.nextInt(4)) {
            case 0:
                loss = LossFunction.MCXENT;
                outAct = Activation.SOFTMAX;
                nOut = Math.max(2, nOut);
                break;
            case 1:
                loss = LossFunction.MSE;
                outAct = Activation.IDENTITY;
                break;
            case 2:
                loss = LossFunction.XENT;
                outAct = Activation.SIGMOID;
                break;
            default:
                loss = LossFunction.L2;
                outAct = secondOrder ? Activation.IDENTITY : Activation.TANH;
        }
        if (r.nextInt(5) == 0) {
            layers.add(new DenseLayer.Builder().nOut(nOut).activation(Activation.IDENTITY).build());
            layers.add(new LossLayer.Builder(loss).activation(outAct).build());
            d.append(" lossLayer ");
        } else {
            OutputLayer.Builder o = new OutputLayer.Builder(loss).nOut(nOut).activation(outAct);
            if (dropout && r.nextInt(3) == 0) {
                o.dropOut(0.75);
                d.append(" drop");
            }
            layers.add(o.build());
            d.append(" out ");
        }
        d.append(loss);
        MultiLayerNetwork net = TestNets.build(dataType, input, workspaces, seed, layers.toArray(new Layer[0]));
        return new Sample(d.toString(), net, TestNets.features(dataType, seed + 1, featureShape),
                TestNets.labels(dataType, loss, seed + 2, n, nOut));
    }
}
