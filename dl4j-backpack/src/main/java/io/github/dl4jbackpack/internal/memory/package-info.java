// SPDX-License-Identifier: Apache-2.0
/**
 * Internal: the per-thread scratch workspaces the extensions compute in.
 */
package io.github.dl4jbackpack.internal.memory;
