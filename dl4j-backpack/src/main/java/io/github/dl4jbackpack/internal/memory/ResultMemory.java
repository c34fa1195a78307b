// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.internal.memory;

import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.indexer.DoubleIndexer;
import org.bytedeco.javacpp.indexer.FloatIndexer;
import org.nd4j.linalg.api.buffer.DataBuffer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * The native memory of large results (individual gradients, per-example curvature diagonals), reused from pass to
 * pass on one thread: the memory of results that were closed ({@code Quantities.close()}) holds the thread's next
 * results of the same type and length instead of fresh pages, which the kernel maps and zero-fills one by one (on a
 * virtual machine this costs far more than the arithmetic that fills them: 200 MB written in 0.7 s fresh, 10 ms
 * reused).
 *
 * <p>A result made here is an array over a buffer that does not own its memory but keeps it alive. Closing the
 * result releases that buffer, so that ND4J refuses operations on it and its views, while the memory goes back to
 * the thread's pool; a result never closed keeps its memory for as long as it is reachable, as any ND4J array.
 * Results never leave the library as they are (users read copies, {@code Quantities}), so a closed result's memory
 * is read again only as the result that reuses it. Memory released and not reused by the thread's next pass is
 * freed at the end of that pass ({@link #passFinished}), so the pool never holds more than one pass's released
 * results, and {@link #release()} frees it at once. Other data types and arrays under {@link #MINIMUM_BYTES} are
 * allocated as usual.
 */
public final class ResultMemory {

    /** Arrays smaller than this are allocated as usual. */
    public static final long MINIMUM_BYTES = 1L << 20;

    private static final ThreadLocal<ResultMemory> OF_THREAD = ThreadLocal.withInitial(ResultMemory::new);

    /** Blocks released and not yet reused, guarded by this. */
    private final List<Block> free = new ArrayList<>();
    /** The bytes of results made in reused blocks on this pool's thread. */
    private long reusedBytes;

    private ResultMemory() {
    }

    /** A block of native memory: an owning ND4J array, handed out through non-owning buffers. */
    private record Block(ResultMemory pool, INDArray owner, DataType type, long length) {
    }

    /** The non-owning pointer of a result over a block of single-precision numbers. */
    private static final class KeptFloats extends FloatPointer {
        final Block block;

        KeptFloats(Block block) {
            super(block.owner().data().addressPointer());
            this.block = block;
            capacity(block.length());
            limit(block.length());
        }
    }

    /** The non-owning pointer of a result over a block of double-precision numbers. */
    private static final class KeptDoubles extends DoublePointer {
        final Block block;

        KeptDoubles(Block block) {
            super(block.owner().data().addressPointer());
            this.block = block;
            capacity(block.length());
            limit(block.length());
        }
    }

    /**
     * @param type the data type
     * @param shape the shape
     * @return an uninitialised c-ordered array outside every workspace, over memory the calling thread's closed
     *     results released when there is a block of the same type and length, else over new memory
     */
    public static INDArray uninitialized(DataType type, long... shape) {
        long length = 1;
        for (long s : shape) {
            length *= s;
        }
        try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
            if ((type != DataType.FLOAT && type != DataType.DOUBLE) || length * type.width() < MINIMUM_BYTES) {
                return Nd4j.createUninitialized(type, shape);
            }
            ResultMemory pool = OF_THREAD.get();
            Block block = pool.take(type, length);
            if (block != null) {
                pool.reusedBytes += length * type.width();
            } else {
                block = new Block(pool, Nd4j.createUninitializedDetached(type, length), type, length);
            }
            DataBuffer buffer;
            if (type == DataType.FLOAT) {
                KeptFloats p = new KeptFloats(block);
                buffer = Nd4j.createBuffer(p, type, length, FloatIndexer.create(p));
            } else {
                KeptDoubles p = new KeptDoubles(block);
                buffer = Nd4j.createBuffer(p, type, length, DoubleIndexer.create(p));
            }
            return Nd4j.create(buffer, shape, Nd4j.getStrides(shape, 'c'), 0, 'c');
        }
    }

    /**
     * @param array an array
     * @return the array if outside every workspace, else a copy of it made by {@link #uninitialized}
     */
    public static INDArray outsideWorkspaces(INDArray array) {
        if (!array.isAttached()) {
            return array;
        }
        return uninitialized(array.dataType(), array.shape()).assign(array);
    }

    /**
     * Ends a result that will not be read again: when it was made by {@link #uninitialized}, its buffer is released
     * (the result and its views refuse every read) and its memory goes back to the pool it came from.
     *
     * @param array a result, or a view of one
     * @return whether the array was such a result (released now or before)
     */
    public static boolean release(INDArray array) {
        DataBuffer data = array.data();
        if (data == null) {
            return false;
        }
        // a view (a reshaped or permuted result) has a buffer of its own over the result's
        if (data.originalDataBuffer() != null) {
            data = data.originalDataBuffer();
        }
        Pointer pointer = data.pointer();
        Block block = pointer instanceof KeptFloats f ? f.block : pointer instanceof KeptDoubles d ? d.block : null;
        if (block == null) {
            return false;
        }
        if (!data.wasClosed()) {
            data.close();
            block.pool().give(block);
        }
        return true;
    }

    /** The end of a pass on the calling thread: the blocks it did not reuse are freed. */
    public static void passFinished() {
        OF_THREAD.get().freeAll();
    }

    /** Frees the calling thread's released blocks now. */
    public static void release() {
        OF_THREAD.get().freeAll();
    }

    /** @return the bytes of results made so far in reused memory on the calling thread */
    public static long reusedBytes() {
        return OF_THREAD.get().reusedBytes;
    }

    /** @return the bytes of released blocks the calling thread holds for reuse */
    public static long heldBytes() {
        ResultMemory pool = OF_THREAD.get();
        synchronized (pool) {
            return pool.free.stream().mapToLong(b -> b.length() * b.type().width()).sum();
        }
    }

    private synchronized Block take(DataType type, long length) {
        for (Iterator<Block> it = free.iterator(); it.hasNext(); ) {
            Block b = it.next();
            if (b.type() == type && b.length() == length) {
                it.remove();
                return b;
            }
        }
        return null;
    }

    private synchronized void give(Block block) {
        free.add(block);
    }

    private void freeAll() {
        List<Block> freed;
        synchronized (this) {
            freed = new ArrayList<>(free);
            free.clear();
        }
        freed.forEach(b -> b.owner().close());
    }
}
