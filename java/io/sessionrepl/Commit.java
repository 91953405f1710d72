package io.sessionrepl;

/**
 * A commit (or create, invalidate, id change) in flight: it completes when
 * every member that must hold the session acknowledged. Close it (or use
 * try-with-resources) to free its native part.
 */
public final class Commit implements AutoCloseable {
    private final Guard guard;

    Commit(long handle) {
        this.guard = new Guard(handle, "SR_INVALID_ARGUMENT", "commit");
    }

    /**
     * Waits for the acknowledgements.
     *
     * @param timeoutMs how long to wait
     * @return the number of copies that hold the session now, this node included
     * @throws SessionReplException {@code SR_TIMEOUT} (not yet: it may still
     *     complete), {@code SR_REMOTE_FAILURE} (a copy could not be made),
     *     {@code SR_CONFLICT}, {@code SR_SHUTDOWN}
     */
    public int await(long timeoutMs) {
        return guard.with(h -> Native.commitWait(h, timeoutMs));
    }

    /** @return true once the outcome is known */
    public boolean isDone() {
        return guard.with(Native::commitDone);
    }

    /** Frees the native part. Idempotent. */
    @Override
    public void close() {
        guard.free(Native::commitFree);
    }
}
