package io.sessionrepl;

import java.util.ArrayList;
import java.util.List;

/**
 * The outcomes of one {@link Channel#sendWithTicket} send, one per
 * destination, in every replication mode. Close it (or use
 * try-with-resources) to free its native part.
 */
public final class Ticket implements AutoCloseable {
    private final Guard guard;
    private final long id;

    Ticket(long handle) {
        this.guard = new Guard(handle, "SR_INVALID_ARGUMENT", "ticket");
        this.id = guard.with(Native::ticketId);
    }

    /** @return the message id */
    public long messageId() {
        return id;
    }

    /**
     * Waits until every destination's outcome is known.
     *
     * @param timeoutMs how long to wait
     * @return one outcome per destination
     * @throws SessionReplException {@code SR_TIMEOUT} if some are still unknown
     */
    public List<Outcome> await(long timeoutMs) {
        byte[] enc = guard.with(h -> Native.ticketWait(h, timeoutMs));
        Wire.In in = new Wire.In(enc);
        int n = in.u32();
        List<Outcome> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(Outcome.read(id, in));
        }
        return out;
    }

    /** Frees the native part. Idempotent. */
    @Override
    public void close() {
        guard.free(Native::ticketFree);
    }
}
