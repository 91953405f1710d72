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
 * at once:
 * <ul>
 * <li>Only a dead route is rewritten. Each node publishes its route in the
 *     store itself (a record {@code sessionrepl-route.<route>} holding its
 *     store address, replicated like a session and never expiring); a route
 *     whose address is a current member is alive, and its sessions are
 *     served as they are, so round-robin between live nodes renames
 *     nothing. A route without a record (not yet published: a node retries
 *     at its next request) is taken as alive, never renamed on a guess.</li>
 * <li>Before renaming, a node claims the session: a commit based on the
 *     version it read, which the session's primary applies for one claimant
 *     only; the others get {@code SR_CONFLICT} and do not rename. Then the
 *     winner renames it with the store's {@code changeId}.</li>
 * <li>The winner leaves a forwarding record {@code sessionrepl-moved.<old
 *     id>} in the store (expiring like a session); holders also learn the
 *     rename from the store's {@code ID_CHANGED} event (kept in a bounded
 *     map). A request still carrying the old id is moved to the winner's
 *     id, with a new cookie, and never renamed again. Only renames that
 *     keep the id's part before the route are followed, so an id rotated
 *     for session-fixation protection is never handed to the holder of
 *     the old id.</li>
 * </ul>
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
    /** How long a node that lost a rename race waits for the winner's rename to show. */
    private static final long RACE_WAIT_MS = 1_000;

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
            synchronized (renames) {
                renames.put(e.id(), e.newId());
            }
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
        known = renamed(s, id, timeoutMs, true);
        if (known != null) {
            return known;
        }
        String newId = id.substring(0, dot + 1) + route;
        try {
            claim(s, id, timeoutMs);
            Runnable hook = afterClaim;
            if (hook != null) {
                hook.run();
            }
            try (Commit c = s.changeId(id, newId)) {
                c.await(timeoutMs);
            }
        } catch (SessionReplException e) {
            // another node renamed it first (its forwarding record or event
            // may be a moment behind its rename), or the session is gone
            known = awaitRename(s, id, timeoutMs);
            if (known != null) {
                return known;
            }
            synchronized (gone) {
                gone.put(id, Boolean.TRUE);
            }
            if (!"SR_NOT_FOUND".equals(e.result())) {
                log.warn("NativeSessionManager: taking session " + id + " over: " + e.getMessage());
            }
            return null;
        }
        try (Commit c = s.create(s.begin(MOVED + id).setMaxInactive(maxInactiveSecs)
                .set("to", newId.getBytes(StandardCharsets.UTF_8)))) {
            c.await(timeoutMs);
        } catch (SessionReplException e) {
            log.warn("NativeSessionManager: recording the move of " + id + ": " + e.getMessage());
        }
        synchronized (renames) {
            renames.put(id, newId);
        }
        log.info("NativeSessionManager: took session " + id + " over from a dead route as " + newId);
        renamedHere.accept(id, newId);
        return newId;
    }

    /**
     * Makes this node the one that renames {@code id}: a commit based on
     * the version read here, which the session's primary applies for one
     * node only (the store's optimistic check); every other node's claim on
     * that version fails with {@code SR_CONFLICT}. The store's
     * {@code changeId} alone does not exclude a second rename (two
     * survivors renamed one session to two ids in a run here).
     */
    private static void claim(SessionStore s, String id, long timeoutMs) {
        Lookup l = s.get(id, timeoutMs);
        if (l.status() != Lookup.Status.FOUND) {
            throw new SessionReplException("SR_NOT_FOUND", "session " + id + " is gone");
        }
        io.sessionrepl.Session read = l.session();
        try (Commit c = s.commit(s.begin(id).basedOn(read).setMaxInactive(read.maxInactiveSecs()))) {
            c.await(timeoutMs);
        }
    }

    /** Waits, at most {@link #RACE_WAIT_MS}, for another node's rename of {@code id} to show. */
    private String awaitRename(SessionStore s, String id, long timeoutMs) {
        long end = System.nanoTime() + Math.min(timeoutMs, RACE_WAIT_MS) * 1_000_000L;
        while (true) {
            String known = renamed(s, id, timeoutMs, true);
            if (known != null || System.nanoTime() > end) {
                return known;
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException x) {
                Thread.currentThread().interrupt();
                return null;
            }
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
            synchronized (renames) {
                renames.put(id, newId);
            }
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
