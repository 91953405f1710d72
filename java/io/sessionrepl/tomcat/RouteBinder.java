package io.sessionrepl.tomcat;

import io.sessionrepl.Commit;
import io.sessionrepl.Lookup;
import io.sessionrepl.SessionEvent;
import io.sessionrepl.SessionReplException;
import io.sessionrepl.SessionStore;

import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.catalina.connector.Request;
import org.apache.juli.logging.Log;
import org.apache.juli.logging.LogFactory;

/**
 * What Tomcat's {@code JvmRouteBinderValve} does for a
 * {@link NativeSessionManager}: a request whose session id ends in another
 * node's {@code jvmRoute} ({@code <Engine jvmRoute="...">}) after that node
 * failed gets the session under this node's route, and a new session
 * cookie, so a sticky load balancer sends the client here from now on.
 *
 * <p>How renames converge when requests of one session reach several nodes
 * at once: exactly one node renames a given dead-route session, and every
 * other node follows that rename (never renames it a second time, never
 * serves it under a third id, and is switched only to an id that exists).
 * <ul>
 * <li>Only a dead route is rewritten. Each node publishes its route in the
 *     store itself (a record {@code sessionrepl-route.<route>} holding its
 *     store address, replicated like a session and never expiring); a route
 *     whose address is a current member is alive, and its sessions are
 *     served as they are, so round-robin between live nodes renames
 *     nothing. A route without a record (not yet published: a node retries
 *     at its next request) is taken as alive, never renamed on a guess.</li>
 * <li><b>Claim.</b> Before renaming, a node reads the session and claims
 *     it: a commit based on the version it read that writes the claim into
 *     the session itself, attribute {@code sessionrepl-claim} naming the
 *     old id, the new id, the claimant's store address and the attempt
 *     ({@link RouteClaim}; never handed to the webapp or its listeners).
 *     The session's primary applies one commit per version: of the nodes
 *     that read one version, one claim applies and the others get
 *     {@code SR_CONFLICT} and read again. A claim is thus in every read
 *     made after it applied, so a node that reads later sees it.</li>
 * <li><b>Follow.</b> A node that reads a claim of this id by a live
 *     claimant (a current member, or this node's own attempt still in
 *     progress on another request) does not claim: it waits, polling every
 *     {@code POLL_MS} and at most the commit timeout, until the rename
 *     shows (the store's {@code ID_CHANGED} event, the forwarding record,
 *     or the old id gone and the claim's new id there), then moves the
 *     request to that id with a new cookie; never to an id before it
 *     exists. If the rename never shows in time, the request is served
 *     under its old id and the next request tries again. A claim refused
 *     with {@code SR_NOT_FOUND} (the winner renamed the session after this
 *     node's read) is followed the same way.</li>
 * <li><b>Take over.</b> A claim whose claimant has left the membership
 *     (it died between its claim and its rename), or that this node's
 *     earlier run or a failed attempt left, is dead: the next reader claims
 *     over it on the version it read, by the same rule.</li>
 * <li><b>Rename.</b> The winner renames the session with the store's
 *     {@code changeId} (which the primary does not order, so the claim is
 *     what excludes a second rename), then leaves a forwarding record
 *     {@code sessionrepl-moved.<old id>} (expiring like a session); holders
 *     also learn the rename from the {@code ID_CHANGED} event (kept in a
 *     bounded map). A request still carrying the old id is moved to the
 *     winner's id, with a new cookie, and never renamed again. Only renames
 *     that keep the id's part before the route are followed, so an id
 *     rotated for session-fixation protection is never handed to the
 *     holder of the old id.</li>
 * <li>A session that vanished without a claim seen here (renamed by a node
 *     whose claim this one never read, or gone) is waited for at most
 *     {@code RACE_WAIT_MS} for its forwarding record; then its id is served
 *     as it is, and remembered (bounded) so later requests do not wait.</li>
 * </ul>
 *
 * <p>Not covered: a claimant cut off by a partition that membership turns
 * into two views (each side takes the other for dead), and a claimant
 * that stays a member without renaming (restarted at the same address
 * before its rename): its claim is waited for, then the id is served as
 * it is.
 */
final class RouteBinder {
    private static final Log log = LogFactory.getLog(RouteBinder.class);
    /**
     * Prefix of the records kept in the store: {@code sessionrepl-route.<route>}
     * and {@code sessionrepl-moved.<old id>}; never a Tomcat session id
     * (those are hex).
     */
    static final String RECORD = "sessionrepl-";
    private static final String ROUTE = RECORD + "route.";
    private static final String MOVED = RECORD + "moved.";
    private static final int MAX_RENAMES = 10_000;
    /**
     * How long a node waits for the forwarding record of a session that
     * vanished (renamed by a node whose claim it never read, or gone).
     */
    private static final long RACE_WAIT_MS = 1_000;
    /** Poll interval while waiting for another node's rename. */
    private static final long POLL_MS = 20;

    private final String route;
    /**
     * Old ids a node waited for in vain (no such session, no rename): later
     * requests with them are served as they are at once (bounded, oldest
     * dropped), so a stale cookie costs the wait once, not per request.
     */
    private final Map<String, Boolean> gone = new LinkedHashMap<String, Boolean>(64, 0.75f, false) {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Boolean> e) {
            return size() > MAX_RENAMES;
        }
    };

    /** Route to the store address its record named, as last read. */
    private final Map<String, String> addresses = new java.util.concurrent.ConcurrentHashMap<>();
    /** Route renames seen: old id to new id (bounded, oldest dropped). */
    private final Map<String, String> renames = new LinkedHashMap<String, String>(64, 0.75f, false) {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<String, String> e) {
            return size() > MAX_RENAMES;
        }
    };

    /** This run's part of every claim attempt's name. */
    private final String run = Long.toHexString(new java.security.SecureRandom().nextLong());
    private final java.util.concurrent.atomic.AtomicLong attempts = new java.util.concurrent.atomic.AtomicLong();
    /** Old id to the attempt of this node's claim of it in progress (one per id). */
    private final Map<String, String> claiming = new java.util.concurrent.ConcurrentHashMap<>();

    /** Told (old id, new id) after this node renamed a session. */
    private final java.util.function.BiConsumer<String, String> renamedHere;

    RouteBinder(String route, java.util.function.BiConsumer<String, String> renamedHere) {
        this.route = route;
        this.renamedHere = renamedHere;
    }

    /** True once this node's route record is in the store. */
    private volatile boolean published;

    /** Publishes this node's route and store address (again at the next request if it failed). */
    void publish(SessionStore s, long timeoutMs) {
        published = publishOnce(s, timeoutMs);
    }

    private boolean publishOnce(SessionStore s, long timeoutMs) {
        byte[] me = s.localAddress().toString().getBytes(StandardCharsets.UTF_8);
        try (Commit c = s.create(s.begin(ROUTE + route).setMaxInactive(-1).set("member", me))) {
            c.await(timeoutMs);
            return true;
        } catch (SessionReplException e) {
            if (!"SR_CONFLICT".equals(e.result())) {
                log.warn("NativeSessionManager: publishing jvmRoute " + route + ": " + e.getMessage());
                return false;
            }
        }
        // a record from an earlier run of this node: overwrite its address
        try (Commit c = s.commit(s.begin(ROUTE + route).setMaxInactive(-1).set("member", me))) {
            c.await(timeoutMs);
            return true;
        } catch (SessionReplException x) {
            log.warn("NativeSessionManager: publishing jvmRoute " + route + ": " + x.getMessage());
            return false;
        }
    }

    /** A store event: remembers route renames (store thread; no waiting). */
    void event(SessionEvent e) {
        if (e.kind() == SessionEvent.Kind.ID_CHANGED && isRouteRename(e.id(), e.newId())) {
            remember(e.id(), e.newId());
        }
    }

    static boolean isRouteRename(String oldId, String newId) {
        int a = oldId.lastIndexOf('.');
        int b = newId.lastIndexOf('.');
        return a > 0 && a == b && oldId.regionMatches(0, newId, 0, a) && !oldId.equals(newId);
    }

    /**
     * Before the request uses its session: follows a known route rename, or
     * renames the session here when its route's node is gone.
     */
    void bind(Request request, SessionStore s, long timeoutMs, int maxInactiveSecs) {
        String to = bind(request.getRequestedSessionId(), s, timeoutMs, maxInactiveSecs);
        if (to != null) {
            request.changeSessionId(to);
        }
    }

    /** Test seam: run between this node's read of a session and its claim. */
    volatile Runnable beforeClaim;
    /** Test seam: run after this node's claim of a session applied, before its rename. */
    volatile Runnable afterClaim;

    /**
     * The id a request carrying session id {@code id} must use instead
     * (null: keep it).
     */
    String bind(String id, SessionStore s, long timeoutMs, int maxInactiveSecs) {
        if (s == null) {
            return null;
        }
        if (!published) {
            publish(s, timeoutMs);
        }
        if (id == null || id.startsWith(RECORD)) {
            return null;
        }
        int dot = id.lastIndexOf('.');
        if (dot <= 0 || id.substring(dot + 1).equals(route)) {
            return null;
        }
        String known = renamed(s, id, timeoutMs, false);
        if (known != null) {
            return known;
        }
        synchronized (gone) {
            if (gone.containsKey(id)) {
                return null;
            }
        }
        if (routeAlive(s, id.substring(dot + 1), timeoutMs)) {
            return null;
        }
        return takeOver(s, id, id.substring(0, dot + 1) + route, timeoutMs, maxInactiveSecs);
    }

    /**
     * Renames {@code id} (whose route's node is gone) to {@code newId} if
     * this node wins its claim, or follows the rename of the node that
     * claimed it. Returns the id the request must use, or null to keep its
     * own. Every wait is bounded: by {@code timeoutMs} for a live
     * claimant's rename, by {@link #RACE_WAIT_MS} for the forwarding record
     * of a session that vanished.
     */
    private String takeOver(SessionStore s, String id, String newId, long timeoutMs, int maxInactiveSecs) {
        long start = System.nanoTime();
        long claimantBy = start + timeoutMs * 1_000_000L;
        boolean missing = false;
        long vanishedBy = 0; // from when the session was first found missing
        RouteClaim seen = null; // the last live claim of another attempt read here
        while (true) {
            String known = renamed(s, id, timeoutMs, true);
            if (known != null) {
                return known;
            }
            Lookup l;
            try {
                l = s.get(id, timeoutMs);
            } catch (SessionReplException e) {
                log.warn("NativeSessionManager: taking session " + id + " over: " + e.getMessage());
                return null;
            }
            if (l.status() != Lookup.Status.FOUND) {
                if (seen != null && exists(s, seen.newId, timeoutMs)) {
                    // the claimant renamed it; its record or event is a moment behind
                    remember(id, seen.newId);
                    return seen.newId;
                }
                // gone, or renamed by a node whose claim this one never read
                if (!missing) {
                    missing = true;
                    vanishedBy = System.nanoTime() + Math.min(timeoutMs, RACE_WAIT_MS) * 1_000_000L;
                }
                if (seen != null) {
                    if (!pauseUntil(claimantBy)) {
                        return null;
                    }
                } else if (!pauseUntil(vanishedBy)) {
                    synchronized (gone) {
                        gone.put(id, Boolean.TRUE);
                    }
                    return null;
                }
                continue;
            }
            io.sessionrepl.Session read = l.session();
            RouteClaim c = RouteClaim.parse(read.attribute(RouteClaim.ATTRIBUTE));
            if (c != null && c.oldId.equals(id) && isRouteRename(id, c.newId) && claimantAlive(s, c)) {
                seen = c; // its claimant renames it: wait for that, never claim over it
                if (!pauseUntil(claimantBy)) {
                    log.warn("NativeSessionManager: session " + id + " claimed (" + c + ") but not renamed after "
                        + timeoutMs + " ms; serving it as it is");
                    return null;
                }
                continue;
            }
            // no claim, or one whose claimant is gone: claim it on this version
            String attempt = run + "-" + attempts.incrementAndGet();
            if (claiming.putIfAbsent(id, attempt) != null) {
                // another request here is about to claim it: its claim shows at the next read
                if (!pauseUntil(claimantBy)) {
                    return null;
                }
                continue;
            }
            Claimed r;
            try {
                Runnable before = beforeClaim;
                if (before != null) {
                    before.run();
                }
                r = claim(s, read, new RouteClaim(id, newId, me(s), attempt), timeoutMs);
                if (r == Claimed.WON) {
                    Runnable hook = afterClaim;
                    if (hook != null) {
                        hook.run();
                    }
                    return rename(s, id, newId, attempt, timeoutMs, maxInactiveSecs);
                }
            } finally {
                claiming.remove(id, attempt);
            }
            if (r == Claimed.CLOSED || r == Claimed.REFUSED && !pauseUntil(claimantBy)
                    || System.nanoTime() - claimantBy > 0) {
                return null;
            }
            // the session changed since the read (another node's claim or
            // rename), or the claim was refused for now: read it again
        }
    }

    /** How a claim ended. */
    private enum Claimed {
        /** Applied: this node renames the session. */
        WON,
        /** {@code SR_CONFLICT} or {@code SR_NOT_FOUND}: the session changed (or was renamed) since the read. */
        CHANGED,
        /** Refused for now or outcome unknown: read again after a pause. */
        REFUSED,
        /** This node's store is closed. */
        CLOSED
    }

    /**
     * Writes claim {@code c} into the session, based on the version read:
     * the session's primary applies one commit per version, so of the
     * nodes that read one version one claim applies; the others get
     * {@code SR_CONFLICT} (or {@code SR_NOT_FOUND} once the winner renamed
     * it) and read the winner's claim or rename.
     */
    private static Claimed claim(SessionStore s, io.sessionrepl.Session read, RouteClaim c, long timeoutMs) {
        try (Commit k = s.commit(s.begin(c.oldId).basedOn(read).set(RouteClaim.ATTRIBUTE, c.encode()))) {
            k.await(timeoutMs);
            return Claimed.WON;
        } catch (SessionReplException e) {
            switch (e.result()) {
                case "SR_CONFLICT":
                case "SR_NOT_FOUND":
                    return Claimed.CHANGED;
                case "SR_SHUTDOWN":
                    return Claimed.CLOSED;
                default:
                    // if it did apply, its attempt is no longer in progress
                    // here: this node's next read claims over it
                    log.warn("NativeSessionManager: claiming session " + c.oldId + ": " + e.getMessage());
                    return Claimed.REFUSED;
            }
        }
    }

    /** The winner's rename, then its forwarding record; returns the id to use (null: keep it). */
    private String rename(SessionStore s, String id, String newId, String attempt, long timeoutMs,
            int maxInactiveSecs) {
        Commit rename;
        try {
            rename = s.changeId(id, newId);
        } catch (SessionReplException e) {
            // refused before anything applied (the new id in use or retired):
            // no rename will come, so the claim is withdrawn for the others
            log.warn("NativeSessionManager: renaming session " + id + " to " + newId + ": " + e.getMessage());
            withdraw(s, id, attempt, timeoutMs);
            return null;
        }
        try (Commit c = rename) {
            c.await(timeoutMs);
        } catch (SessionReplException e) {
            // not every holder acknowledged it in time; it has applied here
            // and may still apply everywhere: the claim stands, and the
            // request moves only if the new id is there
            log.warn("NativeSessionManager: renaming session " + id + " to " + newId + ": " + e.getMessage());
            if (!exists(s, newId, timeoutMs)) {
                return null;
            }
        }
        try (Commit c = s.create(s.begin(MOVED + id).setMaxInactive(maxInactiveSecs)
                .set("to", newId.getBytes(StandardCharsets.UTF_8)))) {
            c.await(timeoutMs);
        } catch (SessionReplException e) {
            log.warn("NativeSessionManager: recording the move of " + id + ": " + e.getMessage());
        }
        remember(id, newId);
        log.info("NativeSessionManager: took session " + id + " over from a dead route as " + newId);
        renamedHere.accept(id, newId);
        return newId;
    }

    /** Removes this attempt's claim from the session, if it is still there (based on a fresh read). */
    private static void withdraw(SessionStore s, String id, String attempt, long timeoutMs) {
        try {
            Lookup l = s.get(id, timeoutMs);
            RouteClaim c = l.status() == Lookup.Status.FOUND
                ? RouteClaim.parse(l.session().attribute(RouteClaim.ATTRIBUTE)) : null;
            if (c != null && c.attempt.equals(attempt)) {
                s.commit(s.begin(id).basedOn(l.session()).remove(RouteClaim.ATTRIBUTE), timeoutMs);
            }
        } catch (SessionReplException e) {
            log.warn("NativeSessionManager: withdrawing the claim of session " + id + ": " + e.getMessage());
        }
    }

    /**
     * True while claim {@code c}'s rename may still come: its claimant is a
     * member, or it is this node's and its attempt is in progress (a claim
     * this node's earlier run or a failed attempt left is dead).
     */
    private boolean claimantAlive(SessionStore s, RouteClaim c) {
        if (c.claimant.equals(me(s))) {
            return c.attempt.equals(claiming.get(c.oldId));
        }
        return isMember(s, c.claimant);
    }

    private static String me(SessionStore s) {
        return s.localAddress().toString();
    }

    private static boolean exists(SessionStore s, String id, long timeoutMs) {
        try {
            return s.get(id, timeoutMs).status() == Lookup.Status.FOUND;
        } catch (SessionReplException e) {
            return false;
        }
    }

    private void remember(String oldId, String newId) {
        synchronized (renames) {
            renames.put(oldId, newId);
        }
    }

    /** Sleeps one poll interval; false (without sleeping) once {@code deadline} (nanoTime) passed. */
    private static boolean pauseUntil(long deadline) {
        if (System.nanoTime() - deadline > 0) {
            return false;
        }
        try {
            Thread.sleep(POLL_MS);
            return true;
        } catch (InterruptedException x) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /** The id {@code id} was renamed to, from the events seen or (with {@code look}) the store. */
    private String renamed(SessionStore s, String id, long timeoutMs, boolean look) {
        synchronized (renames) {
            String known = renames.get(id);
            if (known != null || !look) {
                return known;
            }
        }
        try {
            Lookup l = s.get(MOVED + id, timeoutMs);
            byte[] to = l.status() == Lookup.Status.FOUND ? l.session().attributes().get("to") : null;
            if (to == null) {
                return null;
            }
            String newId = new String(to, StandardCharsets.UTF_8);
            if (!isRouteRename(id, newId)) {
                return null;
            }
            remember(id, newId);
            return newId;
        } catch (SessionReplException e) {
            return null;
        }
    }

    /** True when {@code other}'s record names a current member. */
    private boolean routeAlive(SessionStore s, String other, long timeoutMs) {
        String cached = addresses.get(other);
        if (cached != null && isMember(s, cached)) {
            return true;
        }
        // not known, or its last address is gone: read the record again (a
        // restarted node publishes its new address)
        Lookup l;
        try {
            l = s.get(ROUTE + other, timeoutMs);
        } catch (SessionReplException e) {
            return true; // unknown: do not rename on a guess
        }
        byte[] m = l.status() == Lookup.Status.FOUND ? l.session().attributes().get("member") : null;
        if (m == null) {
            // no record (never published, or lost with all its holders):
            // a live node's sessions must never be renamed on a guess
            return true;
        }
        String addr = new String(m, StandardCharsets.UTF_8);
        addresses.put(other, addr);
        return isMember(s, addr);
    }

    private static boolean isMember(SessionStore s, String addr) {
        for (InetSocketAddress a : s.members()) {
            if (a.toString().equals(addr)) {
                return true;
            }
        }
        return false;
    }
}
