// SPDX-License-Identifier: Apache-2.0
/**
 * Dataset-scale quantities on Apache Spark: {@link io.github.dl4jbackpack.spark.SparkQuantities} computes, from an
 * RDD of {@code DataSet}s or {@code MultiDataSet}s, the curvature (GGN and Hessian diagonals, KFLR and KFAC
 * factors), the gradient's moments and the gradient noise scale of a whole data set, per partition in
 * mini-batches and combined exactly ({@link io.github.dl4jbackpack.spark.DatasetQuantities}), and every example's
 * loss and gradient norm ({@link io.github.dl4jbackpack.spark.ExampleStatistics}). Scaling: docs/math.md#data-sets.
 */
package io.github.dl4jbackpack.spark;
