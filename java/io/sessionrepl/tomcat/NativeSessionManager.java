package io.sessionrepl.tomcat;

import io.sessionrepl.Commit;
import io.sessionrepl.Config;
import io.sessionrepl.Lookup;
import io.sessionrepl.SessionEvent;
import io.sessionrepl.SessionReplException;
import io.sessionrepl.SessionStore;
import io.sessionrepl.Txn;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.io.ObjectStreamClass;
import java.util.LinkedHashMap;
import java.util.Map;

import jakarta.servlet.ServletException;

import org.apache.catalina.LifecycleException;
import org.apache.catalina.LifecycleState;
import org.apache.catalina.Session;
import org.apache.catalina.connector.Request;
import org.apache.catalina.connector.Response;
import org.apache.catalina.session.ManagerBase;
import org.apache.catalina.valves.ValveBase;
import org.apache.juli.logging.Log;
import org.apache.juli.logging.LogFactory;

/**
 * Phase 2 of the Tomcat drop-in: a {@code <Manager>} backed by sessionrepl's
 * native session store, without Tomcat's cluster:
 * {@code <Context><Manager className="io.sessionrepl.tomcat.NativeSessionManager"
 * sessionMode="backup" backupCount="1" mcastAddr="228.0.0.4" .../></Context>}.
 *
 * <p>Sessions live in the native store (delta: every member holds every
 * session; backup: a primary plus {@code backupCount} copies). A request
 * reads the session from the store (fetched from its owner when this node
 * holds no copy), and its attribute changes are committed, Java-serialized,
 * when it ends: the response waits until every copy acknowledged
 * ({@code commitTimeout}, ms). {@code changeSessionId} and invalidation act
 * cluster-wide; idle expiry is the store's. At start the context waits up
 * to {@code stateTransferTimeout} seconds for state transfer; at stop,
 * unless {@code expireSessionsOnShutdown="true"}, the node drains (hands its
 * sessions to the others) before it closes. New session ids are drawn so
 * that this node is their primary.
 *
 * <p>Attributes: every sessionrepl key ({@code sessionMode}, {@code backupCount},
 * {@code mcastAddr}, {@code tcpListenAddress}, ...), plus
 * {@code stateTransferTimeout} (s), {@code commitTimeout} (ms),
 * {@code drainTimeout} (ms) and {@code expireSessionsOnShutdown}.
 */
public class NativeSessionManager extends ManagerBase {
    private static final Log log = LogFactory.getLog(NativeSessionManager.class);

    private final LinkedHashMap<String, String> keys = new LinkedHashMap<>();
    private long stateTransferTimeoutMs = 60_000;
    private long commitTimeoutMs = 10_000;
    private long drainTimeoutMs = 60_000;
    private boolean expireSessionsOnShutdown;
    private boolean notifyListenersOnReplication = true;
    private boolean notifySessionListenersOnReplication = true;
    private volatile SessionStore store;
    private volatile RouteBinder routes;
    private volatile RouteValve routeValve;
    private volatile ReplicaListeners replicaListeners;
    private Thread shutdownHook;

    /** A manager in backup mode with one backup. */
    public NativeSessionManager() {
        keys.put("sessionMode", "backup");
        keys.put("backupCount", "1");
        // A Tomcat node's cores serve requests: no polling for acks or input
        // (an idleSpinMicros attribute still sets it). make bench-tomcat's
        // store line (2 nodes, 4 clients, 2 vCPUs): 4,876-6,039 requests/s
        // without it, 4,469-4,479 with the library's 50 us.
        keys.put("idleSpinMicros", "0");
    }

    /**
     * Sets a {@code server.xml} attribute.
     *
     * @param name a sessionrepl key or one of this manager's attributes
     * @param value its value (sessionrepl keys are checked at start)
     * @return false for an unknown name (Tomcat then warns)
     */
    public boolean setProperty(String name, String value) {
        try {
            switch (name) {
                case "stateTransferTimeout":
                    stateTransferTimeoutMs = Long.parseLong(value.trim()) * 1000;
                    return true;
                case "commitTimeout":
                    commitTimeoutMs = Long.parseLong(value.trim());
                    return true;
                case "drainTimeout":
                    drainTimeoutMs = Long.parseLong(value.trim());
                    return true;
                case "expireSessionsOnShutdown":
                    expireSessionsOnShutdown = Boolean.parseBoolean(value.trim());
                    return true;
                case "notifyListenersOnReplication":
                    // the store always reports other members' changes (this
                    // manager needs them); these two only gate the webapp's listeners
                    notifyListenersOnReplication = Boolean.parseBoolean(value.trim());
                    return true;
                case "notifySessionListenersOnReplication":
                    notifySessionListenersOnReplication = Boolean.parseBoolean(value.trim());
                    return true;
                default:
                    if (!Attributes.isSessionreplKey(name)) {
                        return false;
                    }
                    keys.put(name, value);
                    return true;
            }
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("NativeSessionManager attribute '" + name + "'=\"" + value
                + "\": not a number", e);
        }
    }

    /** @return the native store (null before start) */
    public SessionStore getStore() {
        return store;
    }

    /**
     * The store's settings: the attributes, over this manager's defaults.
     *
     * @throws LifecycleException an attribute with a bad value, named
     */
    Config config() throws LifecycleException {
        Config cfg = new Config();
        cfg.set("notifyListenersOnReplication", "true");
        for (Map.Entry<String, String> e : keys.entrySet()) {
            try {
                cfg.set(e.getKey(), e.getValue());
            } catch (SessionReplException x) {
                throw new LifecycleException("NativeSessionManager attribute '" + e.getKey() + "'=\""
                    + e.getValue() + "\": " + x.detail(), x);
            }
        }
        return cfg;
    }

    @Override
    protected synchronized void startInternal() throws LifecycleException {
        super.startInternal();
        try {
            store = SessionStore.open(config(), this::event);
        } catch (SessionReplException e) {
            throw new LifecycleException("NativeSessionManager: " + e.getMessage(), e);
        }
        try {
            store.waitReady(stateTransferTimeoutMs);
        } catch (SessionReplException e) {
            log.warn("NativeSessionManager: state transfer not complete after " + stateTransferTimeoutMs
                + " ms (" + e.result() + "); serving with the sessions received so far");
        }
        replicaListeners = new ReplicaListeners(this, notifyListenersOnReplication,
            notifySessionListenersOnReplication, getContext().getName());
        String route = getJvmRoute();
        if (route != null && !route.isEmpty()) {
            RouteBinder rb = new RouteBinder(route, (o, n) -> {
                ReplicaListeners rl = replicaListeners;
                if (rl != null) {
                    rl.renamedHere(o, n);
                }
            });
            rb.publish(store, commitTimeoutMs);
            routes = rb;
            // on the host, so that it runs before any valve of the context
            // (the authenticator reads the session early)
            routeValve = new RouteValve();
            getContext().getParent().getPipeline().addValve(routeValve);
        }
        getContext().getPipeline().addValve(new CommitValve());
        // Embedded Tomcat (and a JVM ended by SIGTERM without Catalina's own
        // hook) never stops the context: drain from a shutdown hook then.
        shutdownHook = new Thread(this::shutdownDrain, "sessionrepl-drain");
        Runtime.getRuntime().addShutdownHook(shutdownHook);
        log.info("NativeSessionManager: session store on " + store.localAddress() + " " + keys);
        setState(LifecycleState.STARTING);
    }

    private synchronized void shutdownDrain() {
        shutdownHook = null;
        closeStore("JVM shutdown");
    }

    @Override
    protected synchronized void stopInternal() throws LifecycleException {
        setState(LifecycleState.STOPPING);
        Thread h = shutdownHook;
        shutdownHook = null;
        if (h != null) {
            try {
                Runtime.getRuntime().removeShutdownHook(h);
            } catch (IllegalStateException e) {
                // the JVM is shutting down: the hook runs (and finds the store closed)
            }
        }
        ReplicaListeners rl = replicaListeners;
        replicaListeners = null;
        if (rl != null) {
            rl.stop();
        }
        routes = null;
        RouteValve rv = routeValve;
        routeValve = null;
        if (rv != null && getContext().getParent() != null) {
            getContext().getParent().getPipeline().removeValve(rv);
        }
        closeStore("stop");
        sessions.clear();
        super.stopInternal();
    }

    /** Drains (unless expireSessionsOnShutdown) and closes the store, once. */
    private synchronized void closeStore(String why) {
        SessionStore s = store;
        if (s != null) {
            if (!expireSessionsOnShutdown) {
                try {
                    s.drain(drainTimeoutMs);
                    // stdout too: at JVM shutdown the log manager may be gone
                    System.out.println("NativeSessionManager: drained at " + why + "; every session handed over");
                    log.info("NativeSessionManager: drained at " + why + "; every session handed over");
                } catch (SessionReplException e) {
                    System.out.println("NativeSessionManager: drain incomplete at " + why + ": " + e.getMessage());
                }
            }
            s.close();
            store = null;
        }
    }

    @Override
    public Session createEmptySession() {
        return new NativeSession(this);
    }

    /** Draws ids until this node is their primary (at most 32 draws). */
    @Override
    protected String generateSessionId() {
        String id = super.generateSessionId();
        SessionStore s = store;
        for (int i = 0; s != null && i < 32 && !s.isPrimaryFor(id); i++) {
            id = super.generateSessionId();
        }
        return id;
    }

    /**
     * The session for this request: the one this request already uses, or
     * a fresh read from the store (fetched from its owner if needed).
     *
     * @param id the session id
     * @return the session, or null
     * @throws IOException never
     */
    @Override
    public Session findSession(String id) throws IOException {
        if (id == null || id.startsWith(RouteBinder.RECORD)) {
            return null; // a route record is never a session (a forged cookie)
        }
        Session local = sessions.get(id);
        if (local != null) {
            return local;
        }
        SessionStore s = store;
        if (s == null) {
            return null;
        }
        Lookup l;
        try {
            l = s.get(id);
        } catch (SessionReplException e) {
            log.warn("NativeSessionManager: reading session " + id + ": " + e.getMessage());
            return null;
        }
        if (l.status() != Lookup.Status.FOUND) {
            return null;
        }
        NativeSession ns = load(id, l.session(), true);
        ns.markInStore();
        return ns;
    }

    /**
     * A session object from a store snapshot (null: the id only).
     * {@code serve}: put it in {@code sessions} for the rest of the request;
     * otherwise it is a detached view for listeners.
     */
    private NativeSession load(String id, io.sessionrepl.Session snap, boolean serve) {
        NativeSession ns = (NativeSession) createEmptySession();
        ns.loading(true);
        try {
            ns.setNew(false);
            ns.setValid(true);
            if (serve) {
                ns.setId(id, false); // also puts it in `sessions` for the rest of this request
            } else {
                ns.detachedId(id);
            }
            if (snap == null) {
                return ns;
            }
            ns.setCreationTime(snap.creationTime());
            ns.setMaxInactiveInterval((int) Math.max(Integer.MIN_VALUE, Math.min(Integer.MAX_VALUE,
                snap.maxInactiveSecs())));
            for (Map.Entry<String, byte[]> e : snap.attributes().entrySet()) {
                if (e.getKey().equals(RouteClaim.ATTRIBUTE)) {
                    continue; // the route binder's, not the webapp's
                }
                Object v = deserialize(e.getKey(), e.getValue());
                if (v != null) {
                    ns.setAttribute(e.getKey(), v, false);
                }
            }
        } finally {
            ns.loading(false);
        }
        return ns;
    }

    /** A detached session object for listeners on replicated changes. */
    NativeSession replicaView(String id, io.sessionrepl.Session snap) {
        return load(id, snap, false);
    }

    /** True while a request here holds session {@code id}. */
    boolean servesNow(String id) {
        return sessions.containsKey(id);
    }

    /**
     * Renames the session here and cluster-wide (both {@code rotateSessionId}
     * and {@code changeSessionId} come through here).
     */
    @Override
    protected void changeSessionId(Session session, String newId, boolean notifySessionListeners,
            boolean notifyContainerListeners) {
        String old = session.getIdInternal();
        super.changeSessionId(session, newId, notifySessionListeners, notifyContainerListeners);
        SessionStore s = store;
        if (s != null && session instanceof NativeSession && ((NativeSession) session).isInStore()) {
            try (Commit c = s.changeId(old, newId)) {
                c.await(commitTimeoutMs);
            } catch (SessionReplException e) {
                log.warn("NativeSessionManager: changing id " + old + ": " + e.getMessage());
            }
        }
    }

    void invalidateInStore(String id) {
        SessionStore s = store;
        if (s == null) {
            return;
        }
        try (Commit c = s.invalidate(id)) {
            c.await(commitTimeoutMs);
        } catch (SessionReplException e) {
            if (!"SR_NOT_FOUND".equals(e.result())) {
                log.warn("NativeSessionManager: invalidating " + id + ": " + e.getMessage());
            }
        }
    }

    /** At the end of a request: commit its changes, then forget the local object. */
    void commit(NativeSession ns) {
        SessionStore s = store;
        if (s == null) {
            return;
        }
        String id = ns.getIdInternal();
        try {
            if (ns.isValid()) {
                Txn t = s.begin(id);
                boolean create = !ns.isInStore();
                if (ns.drainChanges(t, this) || create) {
                    try (Commit c = create ? s.create(t) : s.commit(t)) {
                        c.await(commitTimeoutMs);
                    }
                    ns.markInStore();
                } else {
                    try {
                        s.access(id);
                    } catch (SessionReplException e) {
                        if (!"SR_NOT_FOUND".equals(e.result())) {
                            throw e;
                        }
                    }
                }
            }
        } catch (SessionReplException e) {
            log.warn("NativeSessionManager: commit of session " + id + ": " + e.getMessage());
        } finally {
            sessions.remove(id);
        }
    }

    /**
     * Store events (its driver thread): route renames to the route binder,
     * replicated changes to the listeners' thread, and expiries and
     * invalidations elsewhere to a session a request here holds.
     */
    private void event(SessionEvent e) {
        RouteBinder rb = routes;
        if (rb != null) {
            rb.event(e);
        }
        ReplicaListeners rl = replicaListeners;
        if (rl != null) {
            rl.event(e);
        }
        if (e.kind() == SessionEvent.Kind.EXPIRED || e.kind() == SessionEvent.Kind.INVALIDATED) {
            Session s = sessions.get(e.id());
            if (s instanceof NativeSession) {
                ((NativeSession) s).expireFromStore();
            }
        }
    }

    byte[] serialize(String name, Object value) {
        try {
            ByteArrayOutputStream bos = new ByteArrayOutputStream();
            try (ObjectOutputStream oos = new ObjectOutputStream(bos)) {
                oos.writeObject(value);
            }
            return bos.toByteArray();
        } catch (IOException e) {
            log.warn("NativeSessionManager: attribute '" + name + "' is not serializable and is not replicated: " + e);
            return null;
        }
    }

    private Object deserialize(String name, byte[] b) {
        ClassLoader cl = getContext().getLoader() != null ? getContext().getLoader().getClassLoader()
            : Thread.currentThread().getContextClassLoader();
        try (ObjectInputStream in = new LoaderObjectInputStream(new ByteArrayInputStream(b), cl)) {
            return in.readObject();
        } catch (IOException | ClassNotFoundException e) {
            log.warn("NativeSessionManager: attribute '" + name + "' could not be read: " + e);
            return null;
        }
    }

    /** Resolves classes with the webapp's class loader. */
    private static final class LoaderObjectInputStream extends ObjectInputStream {
        private final ClassLoader cl;

        LoaderObjectInputStream(InputStream in, ClassLoader cl) throws IOException {
            super(in);
            this.cl = cl;
        }

        @Override
        protected Class<?> resolveClass(ObjectStreamClass desc) throws IOException, ClassNotFoundException {
            try {
                return Class.forName(desc.getName(), false, cl);
            } catch (ClassNotFoundException e) {
                return super.resolveClass(desc);
            }
        }
    }

    /** Nothing to load: sessions live in the native store. */
    @Override
    public void load() {
    }

    /** Nothing to unload: sessions live in the native store (drained at stop). */
    @Override
    public void unload() {
    }

    /**
     * On the host's pipeline: moves a request of this context whose session
     * id names a dead node's jvmRoute to this node's route ({@link RouteBinder}).
     */
    private final class RouteValve extends ValveBase {
        RouteValve() {
            super(true);
        }

        @Override
        public void invoke(Request request, Response response) throws IOException, ServletException {
            RouteBinder rb = routes;
            if (rb != null && request.getContext() == getContext()) {
                int minutes = getContext().getSessionTimeout();
                rb.bind(request, store, commitTimeoutMs, minutes > 0 ? minutes * 60 : -1);
            }
            getNext().invoke(request, response);
        }
    }

    /** Commits the session of each request when it ends. */
    private final class CommitValve extends ValveBase {
        CommitValve() {
            super(true);
        }

        @Override
        public void invoke(Request request, Response response) throws IOException, ServletException {
            try {
                getNext().invoke(request, response);
            } finally {
                Session s = request.getSessionInternal(false);
                if (s instanceof NativeSession) {
                    commit((NativeSession) s);
                }
            }
        }
    }
}
