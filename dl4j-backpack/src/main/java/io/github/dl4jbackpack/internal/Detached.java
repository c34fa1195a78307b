// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal;

import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/** Copies that outlive DL4J's workspaces and DL4J's in-place operations. */
final class Detached {

    private Detached() {
    }

    /**
     * A copy outside any workspace. Unlike {@code INDArray.detach()}, which returns the array itself
     * when it is not in a workspace, this is always a copy: DL4J overwrites some arrays in place
     * (e.g. the pre-activation during the activation's backward step).
     *
     * @param array an array, possibly in a workspace
     * @return a new array with the same values, or null for null
     */
    static INDArray copy(INDArray array) {
        if (array == null) {
            return null;
        }
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            return array.dup();
        }
    }
}
