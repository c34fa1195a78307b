package io.github.dl4jbackpack.internal.curvature;

/**
 * What a second-order extension needs from the second-order pass: the diagonal of the curvature
 * obtained from one kind of factor, summed over the batch or per example.
 *
 * @param kind the factor to propagate
 * @param perExample whether the per-example terms are needed
 */
public record CurvatureRequest(FactorKind kind, boolean perExample) {
}
