package io.sessionrepl;

import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The replicated session store on one node: a channel with membership plus
 * session replication on top ({@code docs/SESSIONS.md}), in delta (every
 * member holds every session) or backup mode (a primary plus
 * {@code backupCount} copies).
 *
 * <pre>{@code
 * try (SessionStore s = SessionStore.open(cfg, e -> {})) {
 *     s.waitReady(10_000);
 *     try (Commit c = s.create(s.begin("abc").set("count", new byte[] {1}))) {
 *         c.await(5_000);
 *     }
 *     Lookup l = s.get("abc");
 * }
 * }</pre>
 *
 * <p>Thread safety: every method may be called from any thread
 * concurrently (request threads share one store).
 */
public final class SessionStore implements AutoCloseable {
    private final Guard guard;
    private final SessionEventListener listener;
    private final MemberListener members;
    private final InetSocketAddress local;

    private SessionStore(Config cfg, SessionEventListener listener, MemberListener members) {
        this.listener = listener;
        this.members = members;
        int want = (listener != null ? 1 : 0) | (members != null ? 2 : 0);
        long h = Native.storeOpen(this, cfg.keys(), cfg.vals(), want);
        this.guard = new Guard(h, "SR_SHUTDOWN", "session store");
        this.local = new Wire.In(guard.with(Native::storeInfo)).addr();
    }

    /**
     * Opens a store: binds the receiver, starts membership and begins state
     * transfer. Call {@link #waitReady} before serving requests.
     *
     * @param cfg channel keys plus session keys ({@code sessionMode},
     *     {@code backupCount}, {@code accessTimeout}, ...)
     * @param listener told the store's events, or null
     * @return the open store
     * @throws SessionReplException invalid configuration or bind failure
     */
    public static SessionStore open(Config cfg, SessionEventListener listener) {
        return new SessionStore(cfg, listener, null);
    }

    /**
     * As {@link #open(Config, SessionEventListener)}, also telling
     * {@code members} every membership change the store sees (members
     * joining, leaving, going silent), with each member's
     * {@code memberPayload}.
     *
     * @param cfg as for {@link #open(Config, SessionEventListener)}
     * @param listener told the store's events, or null
     * @param members told membership changes, or null
     * @return the open store
     * @throws SessionReplException invalid configuration or bind failure
     */
    public static SessionStore open(Config cfg, SessionEventListener listener, MemberListener members) {
        return new SessionStore(cfg, listener, members);
    }

    /**
     * The application metadata ({@code memberPayload}) of the member at
     * {@code address}, e.g. where to redirect a request that
     * {@link Lookup.Status#MOVED} sent there; this store's own address
     * gives its own.
     *
     * @param address a member's address (a {@link Lookup#movedTo()}, a
     *     {@link #members()} entry)
     * @return its payload (empty if it announced none), or null when no
     *     current member listens there
     * @throws SessionReplException {@code SR_SHUTDOWN} after close
     */
    public byte[] memberPayload(InetSocketAddress address) {
        byte[] a = Wire.addrs(address);
        return guard.with(h -> Native.storeMemberPayload(h, a));
    }

    /** @return the receiver's address (this member's address) */
    public InetSocketAddress localAddress() {
        return local;
    }

    /**
     * Waits until state transfer is complete.
     *
     * @param timeoutMs how long to wait
     * @throws SessionReplException {@code SR_TIMEOUT} (not yet),
     *     {@code SR_REMOTE_FAILURE} ({@code stateTransferTimeout} passed),
     *     {@code SR_SHUTDOWN}, {@code SR_IN_CALLBACK} (from this store's listener)
     */
    public void waitReady(long timeoutMs) {
        Native.refuseInCallback(this, "SessionStore.waitReady");
        guard.with(h -> {
            Native.storeWaitReady(h, timeoutMs);
            return null;
        });
    }

    /** @return true once state transfer completed */
    public boolean isReady() {
        return guard.with(Native::storeIsReady);
    }

    /**
     * @param id a session id
     * @return true if this node is its primary now (a host choosing ids can
     *     draw until this holds, so new sessions start local)
     */
    public boolean isPrimaryFor(String id) {
        byte[] b = Wire.utf8(id);
        return guard.with(h -> Native.storeIsPrimaryFor(h, b));
    }

    /**
     * Starts recording a request's changes to session {@code id}.
     *
     * @param id the session id
     * @return an empty transaction
     */
    public Txn begin(String id) {
        return new Txn(id);
    }

    /**
     * Creates session {@code txn.id()} with the changes in {@code txn}.
     *
     * @param txn the new session's attributes and metadata
     * @return the commit in flight
     * @throws SessionReplException {@code SR_CONFLICT} (id in use),
     *     {@code SR_INVALID_ARGUMENT} (past {@code maxActiveSessions}),
     *     {@code SR_SHUTDOWN}
     */
    public Commit create(Txn txn) {
        byte[] t = txn.encode();
        return new Commit(guard.with(h -> Native.storeCommit(h, t, true)));
    }

    /**
     * Commits a request's changes (the end of a request). An empty
     * {@code txn} records an access and returns a completed commit.
     *
     * @param txn the changes
     * @return the commit in flight
     * @throws SessionReplException {@code SR_NOT_FOUND} (no copy here:
     *     {@link #get} first), {@code SR_SHUTDOWN}
     */
    public Commit commit(Txn txn) {
        byte[] t = txn.encode();
        return new Commit(guard.with(h -> Native.storeCommit(h, t, false)));
    }

    /**
     * Commits and waits for the acknowledgements.
     *
     * @param txn the changes
     * @param timeoutMs how long to wait
     * @return the copies that hold the session now
     * @throws SessionReplException as {@link #commit} and {@link Commit#await}
     */
    public int commit(Txn txn, long timeoutMs) {
        try (Commit c = commit(txn)) {
            return c.await(timeoutMs);
        }
    }

    /**
     * Looks a session up, fetching it from its owner when this node holds
     * no copy (backup mode), waiting up to {@code accessTimeout}.
     *
     * @param id the session id
     * @return found (with a snapshot), moved (with an address) or not found
     * @throws SessionReplException {@code SR_TIMEOUT} if the owner did not answer
     */
    public Lookup get(String id) {
        return get(id, -1);
    }

    /**
     * As {@link #get(String)} with an explicit wait. With {@code 0} it
     * never waits: the answer when one is ready now (this node is the
     * session's settled primary, or delta mode), else the copy this node
     * holds (a backup's copy, which may lag the primary by commits in
     * flight), else {@code SR_TIMEOUT} (only a fetch from the primary
     * could answer).
     *
     * @param id the session id
     * @param timeoutMs how long a fetch may take (negative: {@code
     *     accessTimeout}; 0: no wait, as above)
     * @return the lookup
     * @throws SessionReplException {@code SR_TIMEOUT}
     */
    public Lookup get(String id, long timeoutMs) {
        byte[] b = Wire.utf8(id);
        return new Lookup(guard.with(h -> Native.storeGet(h, b, timeoutMs)));
    }

    /**
     * Records a read-only request (refreshes the last access).
     *
     * @param id the session id
     * @throws SessionReplException {@code SR_NOT_FOUND}
     */
    public void access(String id) {
        byte[] b = Wire.utf8(id);
        guard.with(h -> {
            Native.storeAccess(h, b);
            return null;
        });
    }

    /**
     * Invalidates a session cluster-wide (logout).
     *
     * @param id the session id
     * @return the commit in flight
     * @throws SessionReplException {@code SR_NOT_FOUND}
     */
    public Commit invalidate(String id) {
        byte[] b = Wire.utf8(id);
        return new Commit(guard.with(h -> Native.storeInvalidate(h, b)));
    }

    /**
     * Renames a session cluster-wide (session-fixation protection). Any
     * member may ask: one without a copy hands the rename to the session's
     * primary, as it does a commit.
     *
     * @param oldId the current id
     * @param newId the new id
     * @return the commit in flight
     * @throws SessionReplException {@code SR_NOT_FOUND}, {@code SR_CONFLICT}
     */
    public Commit changeId(String oldId, String newId) {
        byte[] o = Wire.utf8(oldId);
        byte[] n = Wire.utf8(newId);
        return new Commit(guard.with(h -> Native.storeChangeId(h, o, n)));
    }

    /**
     * Hands every session held here to the members that hold it once this
     * node is gone; returns when all acknowledged. Then {@link #close} is safe.
     *
     * @param timeoutMs how long to wait
     * @throws SessionReplException {@code SR_TIMEOUT}, {@code SR_IN_CALLBACK}
     *     (from this store's listener)
     */
    public void drain(long timeoutMs) {
        Native.refuseInCallback(this, "SessionStore.drain");
        guard.with(h -> {
            Native.storeDrain(h, timeoutMs);
            return null;
        });
    }

    /** @return the other members' addresses */
    public List<InetSocketAddress> members() {
        Wire.In in = new Wire.In(guard.with(Native::storeInfo));
        in.addr();
        int n = in.u32();
        List<InetSocketAddress> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(in.addr());
        }
        return out;
    }

    /** @return the node's counters by name ({@code sessions}, {@code commits}, ...) */
    public Map<String, Long> stats() {
        String s = guard.with(Native::storeStats);
        Map<String, Long> m = new LinkedHashMap<>();
        int open = s.indexOf('{');
        int close = s.lastIndexOf('}');
        if (open >= 0 && close > open) {
            for (String kv : s.substring(open + 1, close).split(",")) {
                int c = kv.indexOf(':');
                if (c > 0) {
                    try {
                        m.put(kv.substring(0, c).trim(), Long.parseLong(kv.substring(c + 1).trim()));
                    } catch (NumberFormatException e) {
                        // not a counter
                    }
                }
            }
        }
        return Collections.unmodifiableMap(m);
    }

    /**
     * Closes the store: pending commits fail with {@code SR_SHUTDOWN}, the
     * engine's threads detach from the JVM; later calls throw
     * {@code SR_SHUTDOWN}. Without {@link #drain} first, the others
     * re-replicate this node's sessions from their copies. Idempotent.
     *
     * @throws SessionReplException {@code SR_IN_CALLBACK} from this store's
     *     own listener (it would wait for itself)
     */
    @Override
    public void close() {
        Native.refuseInCallback(this, "SessionStore.close");
        guard.free(Native::storeFree);
    }

    void memberEvent(byte[] enc) {
        members.onMemberEvent(new MemberEvent(enc));
    }

    void event(byte[] enc) {
        listener.onEvent(new SessionEvent(enc));
    }
}
