// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.memory;

import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.memory.MemoryWorkspaceManager;
import org.nd4j.linalg.api.memory.conf.WorkspaceConfiguration;
import org.nd4j.linalg.api.memory.enums.AllocationPolicy;
import org.nd4j.linalg.api.memory.enums.LearningPolicy;
import org.nd4j.linalg.api.memory.enums.ResetPolicy;
import org.nd4j.linalg.api.memory.enums.SpillPolicy;
import org.nd4j.linalg.factory.Nd4j;


/**
 * Memory the extensions compute in: an ND4J workspace per thread and purpose, of a fixed size,
 * reused by every scope and every later pass. Without it each large temporary is a fresh native
 * allocation that the kernel zero-fills page by page and that only the garbage collector returns,
 * which cost more time than the arithmetic and let memory pile up between collections.
 *
 * <p>Arrays allocated in a scope are valid until it closes: whatever outlives it is copied out
 * ({@link #outside(org.nd4j.linalg.api.ndarray.INDArray)}). The workspace stays allocated between
 * passes and grows only when a scope needs more than it holds; allocations beyond its size are
 * made outside it. {@code Nd4j.getWorkspaceManager().destroyAllWorkspacesForCurrentThread()}
 * releases it.
 */
public final class ScratchWorkspace implements AutoCloseable {

    /** Per-layer first-order computations, sized by what the largest layer needed so far. */
    public static final String FIRST_ORDER = "dl4j-backpack-first-order";
    /** Chunks of columns of the second-order pass, sized from the memory budget. */
    public static final String CURVATURE = "dl4j-backpack-curvature";

    /** The smallest workspace, so that tiny scopes do not create many tiny workspaces. */
    public static final long MINIMUM_BYTES = 1L << 16;

    /**
     * The workspace of one step of a loop inside a layer's computation (a chunk of examples or columns):
     * opened and closed around each step, so that the steps' temporaries reuse one block instead of
     * adding up in the enclosing scope.
     */
    public static final String LOOP_STEP = "dl4j-backpack-loop-step";

    /**
     * Values a layer kind computes before DL4J's backward step of the layer and uses after it (an LSTM's replayed
     * recurrence, {@code LayerDerivatives#firstOrderSharingForward}): open around the layer's whole step but
     * current only where borrowed ({@link #openAside}, {@link #borrow}), so that DL4J's own step allocates exactly
     * where it would without it.
     */
    public static final String SHARED_STEP = "dl4j-backpack-shared-step";

    /**
     * Values a pass computes once and reads until its end (a layer's unfolded input, its activation's derivative,
     * {@code RecordedLayer#cachedValue}): open around the curvature part of a pass, current only where borrowed, and
     * sized by what the thread's previous passes needed ({@link #openAsideLearned}), so that these values, often
     * tens of megabytes, reuse the same memory from pass to pass instead of fresh pages.
     */
    public static final String PASS_CACHE = "dl4j-backpack-pass-cache";

    /** What scopes opened by {@link #openAsideLearned} used, per purpose, on this thread. */
    private static final ThreadLocal<java.util.Map<String, Long>> NEEDED = ThreadLocal.withInitial(java.util.HashMap::new);

    private final String id;
    private final MemoryWorkspace workspace;
    /** Whether closing this scope records what it used ({@link #openAsideLearned}). */
    private boolean learning;

    private ScratchWorkspace(String id, MemoryWorkspace workspace) {
        this.id = id;
        this.workspace = workspace;
    }

    /**
     * Opens the workspace with at least the given size (an existing larger one is reused).
     *
     * @param id {@link #FIRST_ORDER} or {@link #CURVATURE}
     * @param bytes the size the scope needs (for first-order scopes: what the network's largest layer
     *     needed so far, see {@link #used()})
     * @return the open scope
     */
    public static ScratchWorkspace open(String id, long bytes) {
        return open(id, bytes, Long.MAX_VALUE);
    }

    /**
     * Opens the workspace with a size in {@code [bytes, limit]}: an existing workspace of this thread
     * is reused when its size is in that range, else replaced by one of exactly {@code bytes}.
     *
     * @param id {@link #FIRST_ORDER}, {@link #CURVATURE} or {@link #LOOP_STEP}
     * @param bytes the size the scope needs
     * @param limit the largest workspace the caller accepts (a memory budget)
     * @return the open scope
     */
    public static ScratchWorkspace open(String id, long bytes, long limit) {
        long size = Math.max(MINIMUM_BYTES, bytes);
        MemoryWorkspaceManager manager = Nd4j.getWorkspaceManager();
        if (manager.checkIfWorkspaceExists(id)) {
            MemoryWorkspace existing = manager.getWorkspaceForCurrentThread(id);
            if (existing.getCurrentSize() >= size && existing.getCurrentSize() <= Math.max(size, limit)) {
                return new ScratchWorkspace(id, existing.notifyScopeEntered());
            }
            manager.destroyWorkspace(existing);
        }
        WorkspaceConfiguration configuration = WorkspaceConfiguration.builder()
                .initialSize(size)
                .policyAllocation(AllocationPolicy.STRICT)
                .policyLearning(LearningPolicy.NONE)
                .policyReset(ResetPolicy.BLOCK_LEFT)
                .policySpill(SpillPolicy.EXTERNAL)
                .build();
        return new ScratchWorkspace(id, manager.getAndActivateWorkspace(configuration, id));
    }

    /**
     * Opens the workspace as {@link #open(String, long)} does, then makes the workspace that was current before
     * current again: the open workspace receives allocations only inside {@link #borrow} until it closes.
     *
     * @param id {@link #SHARED_STEP}
     * @param bytes the size the scope needs
     * @return the open scope
     */
    public static ScratchWorkspace openAside(String id, long bytes) {
        MemoryWorkspace previous = Nd4j.getMemoryManager().getCurrentWorkspace();
        ScratchWorkspace scope = open(id, bytes);
        Nd4j.getMemoryManager().setCurrentWorkspace(previous);
        return scope;
    }

    /**
     * Opens the workspace aside ({@link #openAside}) with the size the thread's earlier scopes of this purpose used
     * at most; closing the scope records what it used, so that the workspace grows once to what a pass needs and is
     * reused after that.
     *
     * @param id {@link #PASS_CACHE}
     * @return the open scope
     */
    public static ScratchWorkspace openAsideLearned(String id) {
        ScratchWorkspace scope = openAside(id, NEEDED.get().getOrDefault(id, MINIMUM_BYTES));
        scope.learning = true;
        return scope;
    }

    /**
     * @param id {@link #SHARED_STEP} or {@link #PASS_CACHE}
     * @return a scope in which the calling thread allocates in that workspace when it is open ({@link #openAside}),
     *     else outside every workspace; closing the scope makes the previous workspace current again and keeps
     *     what was allocated
     */
    public static MemoryWorkspace borrow(String id) {
        MemoryWorkspaceManager manager = Nd4j.getWorkspaceManager();
        if (manager.checkIfWorkspaceExists(id)) {
            MemoryWorkspace workspace = manager.getWorkspaceForCurrentThread(id);
            if (workspace.isScopeActive()) {
                return workspace.notifyScopeBorrowed();
            }
        }
        return Nd4j.getMemoryManager().scopeOutOfWorkspaces();
    }

    /**
     * Destroys the calling thread's scratch workspaces (every purpose), returning their memory now
     * rather than when the thread's workspaces are otherwise destroyed; the next pass on this thread
     * allocates them again.
     */
    public static void release() {
        MemoryWorkspaceManager manager = Nd4j.getWorkspaceManager();
        for (String id : new String[] {FIRST_ORDER, CURVATURE, LOOP_STEP, SHARED_STEP, PASS_CACHE}) {
            if (manager.checkIfWorkspaceExists(id)) {
                manager.destroyWorkspace(manager.getWorkspaceForCurrentThread(id));
            }
        }
    }

    /**
     * @param id a purpose
     * @return whether the calling thread allocates in that workspace now (inside a {@link #borrow} of it, say)
     */
    public static boolean isCurrent(String id) {
        MemoryWorkspace current = Nd4j.getMemoryManager().getCurrentWorkspace();
        return current != null && id.equals(current.getId());
    }

    /**
     * @param id a purpose
     * @return whether the calling thread has a scope of that workspace open
     */
    public static boolean isActive(String id) {
        MemoryWorkspaceManager manager = Nd4j.getWorkspaceManager();
        return manager.checkIfWorkspaceExists(id) && manager.getWorkspaceForCurrentThread(id).isScopeActive();
    }

    /**
     * @param id {@link #FIRST_ORDER} or {@link #CURVATURE}
     * @return the bytes the calling thread's workspace of that purpose holds, 0 if it has none
     */
    public static long allocatedBytes(String id) {
        MemoryWorkspaceManager manager = Nd4j.getWorkspaceManager();
        return manager.checkIfWorkspaceExists(id) ? manager.getWorkspaceForCurrentThread(id).getCurrentSize() : 0;
    }

    /**
     * @param array an array, possibly in a workspace
     * @return the array itself when it is in none, else a copy outside every workspace
     */
    public static org.nd4j.linalg.api.ndarray.INDArray outside(org.nd4j.linalg.api.ndarray.INDArray array) {
        if (array == null || !array.isAttached()) {
            return array;
        }
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            return array.dup();
        }
    }

    /** @return the bytes allocated in this scope so far (a size for the next scope of the same work) */
    public long used() {
        return workspace.getThisCycleAllocations();
    }

    /** Closes the scope. */
    @Override
    public void close() {
        if (learning) {
            NEEDED.get().merge(id, used(), Math::max);
        }
        workspace.close();
    }
}
