// SPDX-License-Identifier: Apache-2.0
/**
 * Internal: the interception of DL4J's backward pass (layer wrappers, the pass in progress,
 * validation, the one place that knows MultiLayerNetwork from ComputationGraph). Not part of the
 * API: it may change in any release. It depends on {@link io.github.dl4jbackpack.extensions} but
 * never on the root package or {@link io.github.dl4jbackpack.spi}, so the public API and the
 * internals have no import cycle.
 */
package io.github.dl4jbackpack.internal;
