package io.sessionrepl;

import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A native handle that calls share (read lock) and that close frees once
 * (write lock), so no call ever uses a freed handle: after close, calls
 * fail with a {@link SessionReplException} instead of crashing.
 */
final class Guard {
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private long handle;
    private final String closedResult;
    private final String what;

    Guard(long handle, String closedResult, String what) {
        this.handle = handle;
        this.closedResult = closedResult;
        this.what = what;
    }

    /** A native call on the live handle. */
    interface Call<T> {
        T apply(long h);
    }

    /** Runs {@code c} with the handle, or throws if closed. */
    <T> T with(Call<T> c) {
        ReentrantReadWriteLock.ReadLock r = lock.readLock();
        r.lock();
        try {
            if (handle == 0) {
                throw new SessionReplException(closedResult, what + " is closed");
            }
            return c.apply(handle);
        } finally {
            r.unlock();
        }
    }

    /** The handle for a call that must not wait for the lock (stop), or 0. */
    long peek() {
        return handle;
    }

    /** Frees the handle once, after every running call ended. */
    boolean free(java.util.function.LongConsumer f) {
        ReentrantReadWriteLock.WriteLock w = lock.writeLock();
        w.lock();
        try {
            if (handle == 0) {
                return false;
            }
            long h = handle;
            handle = 0;
            f.accept(h);
            return true;
        } finally {
            w.unlock();
        }
    }
}
