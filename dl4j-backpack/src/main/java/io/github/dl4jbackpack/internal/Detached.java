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

    /**
     * Whether an array of DL4J's backward step is a temporary of that step alone: its memory overlaps none of
     * the arrays the step received or returned (DL4J's identity activation returns its incoming gradient, a
     * parameterless layer returns its {@code δ} as the next gradient, a graph may hand one gradient to several
     * layers). Conservative: whole underlying buffers are compared.
     *
     * @param temporary the array, possibly in a workspace
     * @param others the step's incoming gradient, returned gradient and parameter gradients (nulls ignored)
     * @return true when none of them shares memory with it
     */
    static boolean isTemporaryOfStep(INDArray temporary, INDArray... others) {
        if (temporary == null || temporary.isEmpty()) {
            return false;
        }
        long[] range = memoryRange(temporary);
        for (INDArray other : others) {
            if (other != null && !other.isEmpty()) {
                long[] o = memoryRange(other);
                if (range[0] < o[1] && o[0] < range[1]) {
                    return false;
                }
            }
        }
        return true;
    }

    /** @return the start and end addresses of the whole buffer an array is a view of */
    private static long[] memoryRange(INDArray array) {
        org.nd4j.linalg.api.buffer.DataBuffer buffer = array.data();
        while (buffer.underlyingDataBuffer() != null && buffer.underlyingDataBuffer() != buffer) {
            buffer = buffer.underlyingDataBuffer();
        }
        long start = buffer.addressPointer().address();
        return new long[] {start, start + buffer.length() * buffer.getElementSize()};
    }
}
