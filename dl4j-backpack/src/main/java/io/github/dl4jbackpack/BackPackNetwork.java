package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.Extension;
import io.github.dl4jbackpack.internal.InterceptingLayer;
import io.github.dl4jbackpack.internal.InterceptingOutputLayer;
import io.github.dl4jbackpack.internal.Interceptor;
import io.github.dl4jbackpack.internal.Validation;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.layers.IOutputLayer;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.layers.wrapper.BaseWrapperLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.github.dl4jbackpack.spi.BlockCurvature;
import io.github.dl4jbackpack.spi.CurvatureConsumer;
import io.github.dl4jbackpack.spi.CurvatureUpdater;
import org.deeplearning4j.nn.api.Trainable;
import org.deeplearning4j.nn.updater.BaseMultiLayerUpdater;
import org.deeplearning4j.nn.updater.UpdaterBlock;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.learning.regularization.L2Regularization;
import org.nd4j.linalg.learning.regularization.Regularization;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * A DL4J {@link MultiLayerNetwork} whose backward pass also computes the quantities of the
 * BackPACK paper (Dangel, Kunstner &amp; Hennig, ICLR 2020): individual gradients, their norms,
 * gradient variance and second moment, and more (see {@link io.github.dl4jbackpack.extensions}).
 *
 * <pre>{@code
 * BackPackNetwork bp = BackPackNetwork.extend(net);
 * Quantities q = bp.backward(features, labels, new Variance(), new BatchL2Grad());
 * INDArray var = q.get(Variance.class, 0, "W");   // same shape as layer 0's W
 * }</pre>
 *
 * <p><b>What extending does.</b> {@link #extend} wraps each layer implementation in
 * {@code net.getLayers()} with a thin delegating wrapper (a DL4J
 * {@code org.deeplearning4j.nn.layers.wrapper.BaseWrapperLayer}); the configuration, parameters,
 * updater and listeners are untouched. The network keeps working as before: same outputs,
 * bit-identical gradients and training trajectory, and {@code ModelSerializer} writes exactly what
 * it wrote before (a restored network is a plain DL4J network, to be extended again if wanted).
 * Code that casts {@code net.getLayer(i)} to a concrete DL4J layer class should use
 * {@code getUnderlying()} of the wrapper, or {@link #unwrap()} first. Calling {@code net.init()}
 * again replaces the layers; the next {@code backward} or {@code enable} wraps them again.
 *
 * <p><b>During training.</b> After {@link #enable}, every {@code net.fit(...)} iteration computes
 * the enabled extensions in its own backward pass; {@link #latest()} and subscribers
 * ({@link #addQuantitiesListener}) see each iteration's values, before the updater changes the
 * parameters.
 *
 * <p><b>Curvature updaters.</b> If the configuration uses updaters that need curvature (those of
 * {@code dl4j-backpack-optim}, implementing {@link io.github.dl4jbackpack.spi.CurvatureUpdater}),
 * {@code extend} also computes what they need in every training iteration and hands it to them
 * before DL4J applies the update.
 *
 * <p>Not thread-safe, like the DL4J network itself.
 */
public final class BackPackNetwork {

    private static final Logger log = LoggerFactory.getLogger(BackPackNetwork.class);

    /** The source key of extensions enabled by the user. */
    private static final Object USER = new Object();

    private final MultiLayerNetwork net;
    private final Interceptor interceptor = new Interceptor(this);

    /** The source key of extensions required by curvature updaters in the configuration. */
    private static final Object UPDATERS = new Object();

    private BackPackNetwork(MultiLayerNetwork net) {
        this.net = net;
        interceptor.subscribe(this::feedCurvatureUpdaters);
    }

    /**
     * Extends an initialised network. Extending a network that is already extended returns the
     * object that extended it.
     *
     * @param net a network on which {@code init()} has been called
     * @return the extended network
     * @throws IllegalStateException if the network is not initialised
     */
    public static BackPackNetwork extend(MultiLayerNetwork net) {
        Objects.requireNonNull(net, "net");
        if (net.getLayers() == null) {
            throw new IllegalStateException("The network has no layers yet: call net.init() before extend(net)");
        }
        Layer first = net.getLayers()[0];
        BackPackNetwork bp = first instanceof InterceptingLayer ? ((InterceptingLayer) first).interceptor().owner()
                : new BackPackNetwork(net);
        bp.install();
        bp.enableCurvatureUpdaters();
        return bp;
    }

    /**
     * ComputationGraph is not supported yet.
     *
     * @param graph a computation graph
     * @return never
     * @throws UnsupportedOperationException always
     */
    public static BackPackNetwork extend(ComputationGraph graph) {
        throw new UnsupportedOperationException("ComputationGraph is not supported by dl4j-backpack yet; "
                + "extend a MultiLayerNetwork (sequential network) instead");
    }

    /**
     * Sets the memory that one chunk of second-order factor columns may occupy (default 1 GiB).
     * Second-order extensions push several columns per example through the network (the exact GGN
     * and the Hessian as many as the network has outputs, more for Hessian residuals); columns are
     * processed in chunks whose temporaries, over all layers, fit in this budget, trading memory for
     * more, smaller passes.
     *
     * <p>The chunks are computed in a per-thread ND4J workspace of (at most) this size that stays
     * allocated after the pass, so that later passes reuse it instead of allocating afresh; first-order
     * extensions likewise keep a workspace as large as their largest layer needed.
     * {@code Nd4j.getWorkspaceManager().destroyAllWorkspacesForCurrentThread()} releases both.
     *
     * @param bytes a positive number of bytes
     */
    public void setCurvatureMemoryBudget(long bytes) {
        interceptor.setCurvatureMemoryBudget(bytes);
    }

    /** @return the memory that one chunk of second-order factor columns may occupy, in bytes */
    public long curvatureMemoryBudget() {
        return interceptor.curvatureMemoryBudget();
    }

    /** @return the extended DL4J network */
    public MultiLayerNetwork network() {
        return net;
    }

    /**
     * Runs one forward and backward pass on a batch, exactly as
     * {@code net.setInput(features); net.setLabels(labels); net.computeGradientAndScore()} would
     * (leaving {@code net.gradient()} and {@code net.score()} as those calls leave them), and computes
     * the given extensions in the same pass.
     *
     * @param features a batch of features, {@code [N, nIn]} or {@code [N, C, H, W]}
     * @param labels the labels, {@code [N, nOut]}
     * @param extensions the quantities to compute, each class at most once
     * @return the quantities of this pass
     * @throws UnsupportedLayerException if an extension cannot handle a layer of the network
     * @throws IllegalArgumentException on mismatched shapes or duplicate extensions, before the
     *     network is touched
     */
    public Quantities backward(INDArray features, INDArray labels, Extension<?>... extensions) {
        List<Extension<?>> requested = Arrays.asList(extensions);
        Validation.checkDistinct(requested);
        install();
        Validation.checkNetwork(net, requested);
        Validation.checkBatch(net, features, labels);
        if (requested.isEmpty()) {
            net.setInput(features);
            net.setLabels(labels);
            net.computeGradientAndScore();
            return new Quantities(net.score(), features.size(0), Map.of());
        }
        Quantities before = interceptor.latest();
        interceptor.runWith(requested, () -> {
            net.setInput(features);
            net.setLabels(labels);
            net.computeGradientAndScore();
        });
        Quantities q = interceptor.latest();
        if (q == null || q == before) {
            throw new IllegalStateException("The backward pass did not reach the extended layers; was a layer of "
                    + "the network replaced during the pass?");
        }
        return q;
    }

    /**
     * Computes the given extensions in every following training iteration ({@code net.fit}) until
     * {@link #disable()}. Replaces any previously enabled set.
     *
     * @param extensions the quantities to compute, each class at most once
     * @throws UnsupportedLayerException if an extension cannot handle a layer of the network
     */
    public void enable(Extension<?>... extensions) {
        List<Extension<?>> requested = Arrays.asList(extensions);
        Validation.checkDistinct(requested);
        install();
        Validation.checkNetwork(net, requested);
        interceptor.setActive(USER, requested);
        log.debug("Enabled extensions {} for training", requested);
    }

    /** Stops computing extensions during training; the network then costs what it did before. */
    public void disable() {
        interceptor.setActive(USER, List.of());
    }

    /**
     * Lets a component of the library (a listener) ask for extensions in training on its own
     * behalf, independently of {@link #enable}.
     *
     * @param source the component
     * @param extensions what it needs in the following iterations (empty to stop)
     */
    void require(Object source, List<Extension<?>> extensions) {
        if (!extensions.isEmpty()) {
            install();
            Validation.checkNetwork(net, extensions);
        }
        interceptor.setActive(source, extensions);
    }

    /** @return the extensions enabled for training with {@link #enable} (empty when none) */
    public List<Extension<?>> enabled() {
        return interceptor.activeFor(USER);
    }

    /** @return the quantities of the most recent extended pass (training iteration or {@link #backward}) */
    public Optional<Quantities> latest() {
        return Optional.ofNullable(interceptor.latest());
    }

    /**
     * @param listener called with the quantities of every extended pass, on the thread that runs it,
     *     after DL4J's backward pass and before the updater step
     */
    public void addQuantitiesListener(Consumer<Quantities> listener) {
        interceptor.subscribe(Objects.requireNonNull(listener));
    }

    /** @param listener a listener added before */
    public void removeQuantitiesListener(Consumer<Quantities> listener) {
        interceptor.unsubscribe(listener);
    }

    /**
     * Removes the wrappers again: {@code net.getLayers()} holds DL4J's own layer objects afterwards.
     * The extensions are disabled; calling {@link #backward} or {@link #enable} re-installs them.
     *
     * @return the plain network
     */
    public MultiLayerNetwork unwrap() {
        disable();
        Layer[] layers = net.getLayers().clone();
        for (int i = 0; i < layers.length; i++) {
            if (layers[i] instanceof InterceptingLayer) {
                layers[i] = ((BaseWrapperLayer) layers[i]).getUnderlying();
            }
        }
        net.setLayers(layers);
        return net;
    }

    /** Enables, for training, what the curvature updaters of the configuration need. */
    private void enableCurvatureUpdaters() {
        List<Extension<?>> required = new ArrayList<>();
        Set<String> names = new HashSet<>();
        for (Layer layer : net.getLayers()) {
            Layer plain = layer instanceof InterceptingLayer ? ((BaseWrapperLayer) layer).getUnderlying() : layer;
            for (String param : plain.paramTable().keySet()) {
                IUpdater updater = plain.conf().getLayer().getUpdaterByParam(param);
                if (updater instanceof CurvatureUpdater) {
                    for (Extension<?> e : ((CurvatureUpdater) updater).requiredExtensions()) {
                        if (names.add(e.name())) {
                            required.add(e);
                        }
                    }
                }
            }
        }
        if (!required.isEmpty()) {
            Validation.checkNetwork(net, required);
            log.info("Curvature updaters in the configuration: computing {} in every training iteration", names);
        }
        interceptor.setActive(UPDATERS, required);
    }

    /** Hands each curvature updater of the network the quantities of the parameters in its block. */
    private void feedCurvatureUpdaters(Quantities quantities) {
        if (interceptor.activeFor(UPDATERS).isEmpty() || !(net.getUpdater() instanceof BaseMultiLayerUpdater)) {
            return;
        }
        Layer[] layers = net.getLayers();
        for (UpdaterBlock block : ((BaseMultiLayerUpdater<?>) net.getUpdater()).getUpdaterBlocks()) {
            if (!(block.getGradientUpdater() instanceof CurvatureConsumer)) {
                continue;
            }
            List<BlockCurvature.Segment> segments = new ArrayList<>();
            for (UpdaterBlock.ParamState p : block.getLayersAndVariablesInBlock()) {
                int index = indexOf(layers, p.getLayer());
                INDArray param = layers[index].getParam(p.getParamName());
                segments.add(new BlockCurvature.Segment(index, p.getParamName(),
                        p.getParamOffsetStart() - block.getParamOffsetStart(),
                        p.getParamOffsetEnd() - p.getParamOffsetStart(), param.shape(), param.ordering(),
                        l2(p.getLayer(), p.getParamName())));
            }
            ((CurvatureConsumer) block.getGradientUpdater()).acceptCurvature(
                    new BlockCurvature(List.copyOf(segments), quantities, net.getIterationCount(), net.getEpochCount()));
        }
    }

    private static int indexOf(Layer[] layers, Trainable layer) {
        for (int i = 0; i < layers.length; i++) {
            if (layers[i] == layer
                    || (layers[i] instanceof BaseWrapperLayer && ((BaseWrapperLayer) layers[i]).getUnderlying() == layer)) {
                return i;
            }
        }
        throw new IllegalStateException("an updater block refers to a layer that is not in the network");
    }

    private double l2(Trainable layer, String param) {
        List<Regularization> regularizations = layer.getConfig().getRegularizationByParam(param);
        double l2 = 0;
        if (regularizations != null) {
            for (Regularization r : regularizations) {
                if (r instanceof L2Regularization) {
                    l2 += ((L2Regularization) r).getL2().valueAt(net.getIterationCount(), net.getEpochCount());
                }
            }
        }
        return l2;
    }

    private void install() {
        Layer[] layers = net.getLayers();
        boolean installed = true;
        for (Layer layer : layers) {
            installed &= layer instanceof InterceptingLayer && ((InterceptingLayer) layer).interceptor() == interceptor;
        }
        if (installed) {
            return;
        }
        Layer[] wrapped = new Layer[layers.length];
        for (int i = 0; i < layers.length; i++) {
            Layer layer = layers[i] instanceof InterceptingLayer ? ((BaseWrapperLayer) layers[i]).getUnderlying() : layers[i];
            boolean output = i == layers.length - 1 && layer instanceof IOutputLayer;
            InputPreProcessor pre = net.getLayerWiseConfigurations().getInputPreProcess(i);
            wrapped[i] = output ? new InterceptingOutputLayer(layer, i, pre, interceptor)
                    : new InterceptingLayer(layer, i, pre, interceptor);
        }
        net.setLayers(wrapped);
        log.debug("Extended a network of {} layers", layers.length);
    }
}
