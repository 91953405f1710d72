package io.sessionrepl.tomcat;

import io.sessionrepl.Txn;

import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.catalina.Manager;
import org.apache.catalina.session.StandardSession;

/**
 * A session of {@link NativeSessionManager}: a {@link StandardSession} that
 * records the attribute changes of the current request, for the commit at
 * its end, and leaves expiry to the native store (whose primary expires a
 * session cluster-wide once it is idle everywhere).
 */
public class NativeSession extends StandardSession {
    private static final long serialVersionUID = 1L;

    /** Changed attributes of this request: name to value (null: removed). */
    private final transient Map<String, Object> changes = new LinkedHashMap<>();
    private transient boolean inStore;
    private transient boolean loading;
    private transient boolean fromStore;
    private transient boolean metaChanged;

    /**
     * @param manager the manager that owns it
     */
    public NativeSession(Manager manager) {
        super(manager);
    }

    /**
     * Records the change, then sets the attribute.
     *
     * @param name attribute name
     * @param value attribute value
     * @param notify call listeners
     */
    @Override
    public void setAttribute(String name, Object value, boolean notify) {
        super.setAttribute(name, value, notify);
        if (!loading) {
            synchronized (changes) {
                changes.put(name, value);
            }
        }
    }

    /**
     * Records the removal, then removes the attribute.
     *
     * @param name attribute name
     * @param notify call listeners
     */
    @Override
    public void removeAttribute(String name, boolean notify) {
        super.removeAttribute(name, notify);
        if (!loading) {
            synchronized (changes) {
                changes.put(name, null);
            }
        }
    }

    /**
     * @param interval seconds of inactivity before expiry
     */
    @Override
    public void setMaxInactiveInterval(int interval) {
        super.setMaxInactiveInterval(interval);
        if (!loading) {
            metaChanged = true;
        }
    }

    /**
     * Valid until invalidated; idle expiry is the native store's (a local
     * idle timer would not see requests served by other members).
     *
     * @return true until invalidated or expired by the store
     */
    @Override
    public boolean isValid() {
        return this.isValid;
    }

    /**
     * Invalidates: cluster-wide unless the store itself reported it.
     *
     * @param notify call listeners
     */
    @Override
    public void expire(boolean notify) {
        if (!isValid) {
            return;
        }
        if (!fromStore && inStore && manager instanceof NativeSessionManager) {
            ((NativeSessionManager) manager).invalidateInStore(getIdInternal());
        }
        super.expire(notify);
    }

    /** Sets the id without registering with the manager (a detached view). */
    void detachedId(String newId) {
        this.id = newId;
    }

    void loading(boolean on) {
        loading = on;
    }

    void markInStore() {
        inStore = true;
    }

    boolean isInStore() {
        return inStore;
    }

    void expireFromStore() {
        fromStore = true;
        expire(true);
    }

    /** Moves this request's changes into {@code t}; false if there were none. */
    boolean drainChanges(Txn t, NativeSessionManager m) {
        boolean any = metaChanged || !inStore;
        if (metaChanged || !inStore) {
            t.setMaxInactive(getMaxInactiveInterval());
            metaChanged = false;
        }
        synchronized (changes) {
            for (Map.Entry<String, Object> e : changes.entrySet()) {
                if (e.getValue() == null) {
                    t.remove(e.getKey());
                } else {
                    byte[] v = m.serialize(e.getKey(), e.getValue());
                    if (v == null) {
                        continue;
                    }
                    t.set(e.getKey(), v);
                }
                any = true;
            }
            changes.clear();
        }
        return any;
    }
}
