// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.layers;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.layers.recurrent.LastTimeStepLayer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Set;

/**
 * DL4J's {@code LastTimeStep} wrapper: the wrapped recurrent layer's output read at each sequence's last
 * real step (the last step whose feature mask is nonzero, the last step without a mask), {@code [N, H]}.
 * The gradient at the wrapper's output is the wrapped layer's output gradient at those steps and zero at
 * every other step, so the wrapped layer's kind computes the first-order terms from it. Wrapped kinds
 * whose output gradient the library takes from a fused activation are not supported (the recurrent
 * kinds differentiate their own activations).
 */
public final class LastTimeStepKind extends FirstOrderWrapperKind {

    /** @param wrapped the kind of the wrapped layer */
    LastTimeStepKind(LayerDerivatives wrapped) {
        super(wrapped);
    }

    private static Layer inner(Layer layer) {
        return ((LastTimeStepLayer) layer).getUnderlying();
    }

    @Override
    protected String wrapperName() {
        return "LastTimeStep";
    }

    @Override
    public String kindName() {
        return "LastTimeStep(" + wrapped.kindName() + ")";
    }

    @Override
    public boolean matches(Layer layer) {
        return layer instanceof LastTimeStepLayer && wrapped.matches(inner(layer));
    }

    @Override
    public String unsupportedConfiguration(Layer layer) {
        return unsupportedWrapped(inner(layer));
    }

    @Override
    public Set<String> trainableParameters(Layer layer) {
        return wrapped.trainableParameters(inner(layer));
    }

    /** The wrapped layer's terms, for the output gradient placed at each sequence's last real step. */
    @Override
    public FirstOrderTerms firstOrder(Layer layer, INDArray input, INDArray outputGradient) {
        Layer inner = inner(layer);
        // DL4J's own reading of the layout, which also knows the Bidirectional configuration
        boolean nwc = org.deeplearning4j.util.TimeSeriesUtils.getFormatFromRnnLayer(inner.conf().getLayer())
                == RNNFormat.NWC;
        long n = outputGradient.size(0);
        long units = outputGradient.size(1);
        long steps = input.size(nwc ? 1 : 2);
        INDArray expanded = nwc ? Nd4j.zeros(outputGradient.dataType(), n, steps, units)
                : Nd4j.zeros(outputGradient.dataType(), n, units, steps);
        long[] last = lastSteps(layer.getMaskArray(), n, steps);
        for (int i = 0; i < n; i++) {
            INDArray row = outputGradient.getRow(i);
            if (nwc) {
                expanded.get(org.nd4j.linalg.indexing.NDArrayIndex.point(i),
                        org.nd4j.linalg.indexing.NDArrayIndex.point(last[i]),
                        org.nd4j.linalg.indexing.NDArrayIndex.all()).assign(row);
            } else {
                expanded.get(org.nd4j.linalg.indexing.NDArrayIndex.point(i), org.nd4j.linalg.indexing.NDArrayIndex.all(),
                        org.nd4j.linalg.indexing.NDArrayIndex.point(last[i])).assign(row);
            }
        }
        return wrapped.firstOrder(inner, input, expanded);
    }

    /**
     * @param mask the feature mask {@code [N, T]}, or null
     * @return per sequence the last step with a nonzero mask (as DL4J reads it), the last step without a mask
     */
    static long[] lastSteps(INDArray mask, long n, long steps) {
        long[] last = new long[(int) n];
        for (int i = 0; i < n; i++) {
            last[i] = steps - 1;
            if (mask != null) {
                last[i] = 0;
                for (long t = steps - 1; t >= 0; t--) {
                    if (mask.getDouble(i, t) != 0) {
                        last[i] = t;
                        break;
                    }
                }
            }
        }
        return last;
    }
}
