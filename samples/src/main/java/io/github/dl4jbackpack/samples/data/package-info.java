// SPDX-License-Identifier: Apache-2.0
/**
 * Data sets for the samples: IDX (MNIST, Fashion-MNIST) and CIFAR binary readers, image data sets with
 * a seeded split and a shuffling iterator.
 */
package io.github.dl4jbackpack.samples.data;
