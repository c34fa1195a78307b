package io.github.dl4jbackpack.internal.curvature;

import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.memory.MemoryWorkspaceManager;
import org.nd4j.linalg.api.memory.conf.WorkspaceConfiguration;
import org.nd4j.linalg.api.memory.enums.AllocationPolicy;
import org.nd4j.linalg.api.memory.enums.LearningPolicy;
import org.nd4j.linalg.api.memory.enums.ResetPolicy;
import org.nd4j.linalg.api.memory.enums.SpillPolicy;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The memory in which the second-order pass pushes one chunk of columns through the network: one
 * ND4J workspace per thread, of a fixed size, reused by every chunk and every later pass. Without
 * it, each of the pass's large temporaries is a fresh native allocation that the kernel zero-fills
 * page by page and that only the garbage collector returns; that cost more than the arithmetic.
 *
 * <p>The workspace stays allocated between passes (it never exceeds the curvature memory budget)
 * and grows only when a pass needs more; anything beyond its size is allocated outside it.
 * {@code Nd4j.getWorkspaceManager().destroyAllWorkspacesForCurrentThread()} releases it.
 */
final class ScratchWorkspace {

    static final String ID = "dl4j-backpack-curvature";

    private ScratchWorkspace() {
    }

    /**
     * @param bytes the size one chunk needs
     * @return the opened workspace, to be closed when the chunk is done
     */
    static MemoryWorkspace open(long bytes) {
        MemoryWorkspaceManager manager = Nd4j.getWorkspaceManager();
        if (manager.checkIfWorkspaceExists(ID)) {
            MemoryWorkspace existing = manager.getWorkspaceForCurrentThread(ID);
            if (existing.getCurrentSize() >= bytes) {
                return existing.notifyScopeEntered();
            }
            manager.destroyWorkspace(existing);
        }
        WorkspaceConfiguration configuration = WorkspaceConfiguration.builder()
                .initialSize(bytes)
                .policyAllocation(AllocationPolicy.STRICT)
                .policyLearning(LearningPolicy.NONE)
                .policyReset(ResetPolicy.BLOCK_LEFT)
                .policySpill(SpillPolicy.EXTERNAL)
                .build();
        return manager.getAndActivateWorkspace(configuration, ID);
    }
}
