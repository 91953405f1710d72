package io.sessionrepl.tomcat;

import io.sessionrepl.Lookup;
import io.sessionrepl.SessionEvent;
import io.sessionrepl.SessionReplException;
import io.sessionrepl.SessionStore;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import jakarta.servlet.http.HttpSession;
import jakarta.servlet.http.HttpSessionAttributeListener;
import jakarta.servlet.http.HttpSessionBindingEvent;
import jakarta.servlet.http.HttpSessionEvent;
import jakarta.servlet.http.HttpSessionIdListener;
import jakarta.servlet.http.HttpSessionListener;

import org.apache.catalina.Context;
import org.apache.juli.logging.Log;
import org.apache.juli.logging.LogFactory;

/**
 * The webapp's session listeners on the nodes that receive replicated
 * changes, as DeltaManager does ({@code notifyListenersOnReplication} for
 * the attribute listeners, {@code notifySessionListenersOnReplication} for
 * the session and id listeners, both true by default):
 * {@code sessionCreated} and {@code attributeAdded} when a session made
 * elsewhere arrives, {@code attributeAdded}/{@code attributeReplaced}/
 * {@code attributeRemoved} when another node changes it,
 * {@code sessionIdChanged} when another node renames it (or this one takes
 * it over for its jvmRoute), and
 * {@code sessionDestroyed} when it expires or another node invalidates it
 * (a local expiry fires it whatever the setting).
 *
 * <p>The store's events only name the session: the listeners run on one
 * thread of this manager (fed through a bounded queue, so the store's
 * thread never waits for a webapp), which reads the session's copy here
 * and compares each attribute with a hash of its last value. So a
 * replaced attribute's event carries the new value (Tomcat's carries the
 * old one, which is not kept here), a removed one's carries null, and a
 * destroyed session has no attributes left to read.
 */
final class ReplicaListeners {
    private static final Log log = LogFactory.getLog(ReplicaListeners.class);
    private static final int MAX_QUEUED = 10_000;

    private final NativeSessionManager manager;
    /** Attribute listeners on replicated changes ({@code notifyListenersOnReplication}). */
    private final boolean attributes;
    /** Session listeners on replicated changes ({@code notifySessionListenersOnReplication}). */
    private final boolean sessions;
    private final ThreadPoolExecutor exec;
    private final AtomicLong dropped = new AtomicLong();
    /** Sessions whose attribute hashes are kept at most (oldest dropped). */
    private static final int MAX_SEEN = 200_000;
    /**
     * Session id to attribute name to value hash (the listener thread only).
     * A session dropped from it (past MAX_SEEN, or moved away) looks new
     * again at its next change.
     */
    private final Map<String, Map<String, Integer>> seen = new java.util.LinkedHashMap<String, Map<String, Integer>>() {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Map<String, Integer>> e) {
            return size() > MAX_SEEN;
        }
    };

    ReplicaListeners(NativeSessionManager manager, boolean attributes, boolean sessions, String name) {
        this.manager = manager;
        this.attributes = attributes;
        this.sessions = sessions;
        this.exec = new ThreadPoolExecutor(1, 1, 0, TimeUnit.MILLISECONDS, new ArrayBlockingQueue<>(MAX_QUEUED), r -> {
            Thread t = new Thread(r, "sessionrepl-listeners-" + name);
            t.setDaemon(true);
            return t;
        }, (r, e) -> {
            if (dropped.getAndIncrement() % 1000 == 0) {
                log.warn("NativeSessionManager: session listener queue full (" + MAX_QUEUED
                    + "); events dropped so far: " + dropped.get());
            }
        });
    }

    /** A store event (store thread): queued for the listener thread. */
    void event(SessionEvent e) {
        if (e.id().startsWith(RouteBinder.RECORD)) {
            return;
        }
        boolean local = e.kind() == SessionEvent.Kind.EXPIRED && e.number() == 1;
        if (!attributes && !sessions && !local) {
            return;
        }
        switch (e.kind()) {
            case CREATED:
            case UPDATED:
            case EXPIRED:
            case INVALIDATED:
            case ID_CHANGED:
                exec.execute(() -> handle(e));
                break;
            default:
                break;
        }
    }

    void stop() {
        exec.shutdownNow();
    }

    private void handle(SessionEvent e) {
        Context ctx = manager.getContext();
        SessionStore s = manager.getStore();
        if (ctx == null || s == null) {
            return;
        }
        if (manager.servesNow(e.id())) {
            return; // a request here holds it: its own session object fires the events
        }
        ClassLoader old = ctx.bind(false, null);
        try {
            switch (e.kind()) {
                case CREATED:
                case UPDATED:
                    changed(ctx, s, e.id());
                    break;
                case ID_CHANGED:
                    idChanged(ctx, e.id(), e.newId());
                    break;
                default: { // EXPIRED, INVALIDATED
                    seen.remove(e.id());
                    boolean local = e.kind() == SessionEvent.Kind.EXPIRED && e.number() == 1;
                    if (!sessions && !local) {
                        break;
                    }
                    HttpSession hs = manager.replicaView(e.id(), null).getSession();
                    for (Object l : ctx.getApplicationLifecycleListeners()) {
                        if (l instanceof HttpSessionListener) {
                            call(() -> ((HttpSessionListener) l).sessionDestroyed(new HttpSessionEvent(hs)));
                        }
                    }
                    break;
                }
            }
        } finally {
            ctx.unbind(false, old);
        }
    }

    /** This node renamed a session (a jvmRoute takeover): its id listeners are told, as Tomcat does. */
    void renamedHere(String oldId, String newId) {
        exec.execute(() -> {
            Context ctx = manager.getContext();
            if (ctx == null) {
                return;
            }
            ClassLoader old = ctx.bind(false, null);
            try {
                idChanged(ctx, oldId, newId);
            } finally {
                ctx.unbind(false, old);
            }
        });
    }

    private void idChanged(Context ctx, String oldId, String newId) {
        Map<String, Integer> attrs = seen.remove(oldId);
        if (attrs != null) {
            seen.put(newId, attrs);
        }
        if (!sessions) {
            return;
        }
        HttpSession hs = manager.replicaView(newId, null).getSession();
        for (Object l : ctx.getApplicationEventListeners()) {
            if (l instanceof HttpSessionIdListener) {
                call(() -> ((HttpSessionIdListener) l).sessionIdChanged(new HttpSessionEvent(hs), oldId));
            }
        }
    }

    /** A session created or changed elsewhere: its events from the copy here. */
    private void changed(Context ctx, SessionStore s, String id) {
        Lookup l;
        try {
            l = s.get(id, 0); // the copy here, without a fetch from the primary or a wait
        } catch (SessionReplException x) {
            return;
        }
        if (l.status() != Lookup.Status.FOUND) {
            return;
        }
        Map<String, byte[]> now = l.session().attributes();
        NativeSession view = manager.replicaView(id, l.session());
        HttpSession hs = view.getSession();
        Map<String, Integer> before = seen.get(id);
        boolean created = before == null;
        Map<String, Integer> after = new HashMap<>();
        if (created && sessions) {
            for (Object o : ctx.getApplicationLifecycleListeners()) {
                if (o instanceof HttpSessionListener) {
                    call(() -> ((HttpSessionListener) o).sessionCreated(new HttpSessionEvent(hs)));
                }
            }
        }
        Object[] listeners = attributes ? ctx.getApplicationEventListeners() : new Object[0];
        for (Map.Entry<String, byte[]> a : now.entrySet()) {
            if (a.getKey().equals(RouteClaim.ATTRIBUTE)) {
                continue; // the route binder's claim: no webapp attribute
            }
            int h = Arrays.hashCode(a.getValue()) * 31 + a.getValue().length;
            after.put(a.getKey(), h);
            Integer was = created ? null : before.get(a.getKey());
            if (was != null && was == h) {
                continue;
            }
            HttpSessionBindingEvent ev = new HttpSessionBindingEvent(hs, a.getKey(), view.getAttribute(a.getKey()));
            for (Object o : listeners) {
                if (o instanceof HttpSessionAttributeListener) {
                    HttpSessionAttributeListener al = (HttpSessionAttributeListener) o;
                    call(() -> {
                        if (was == null) {
                            al.attributeAdded(ev);
                        } else {
                            al.attributeReplaced(ev);
                        }
                    });
                }
            }
        }
        if (!created) {
            for (String gone : before.keySet()) {
                if (after.containsKey(gone)) {
                    continue;
                }
                HttpSessionBindingEvent ev = new HttpSessionBindingEvent(hs, gone, null);
                for (Object o : listeners) {
                    if (o instanceof HttpSessionAttributeListener) {
                        call(() -> ((HttpSessionAttributeListener) o).attributeRemoved(ev));
                    }
                }
            }
        }
        seen.put(id, after);
    }

    private static void call(Runnable r) {
        try {
            r.run();
        } catch (Throwable t) {
            log.warn("NativeSessionManager: a session listener threw " + t, t);
        }
    }
}
