package io.sessionrepl.tomcat;

import jakarta.servlet.http.HttpSessionAttributeListener;
import jakarta.servlet.http.HttpSessionBindingEvent;
import jakarta.servlet.http.HttpSessionEvent;
import jakarta.servlet.http.HttpSessionIdListener;
import jakarta.servlet.http.HttpSessionListener;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * The test webapp's session listener: counts the events this node's
 * webapp was told ({@code GET /count?op=events} shows them).
 */
public class CountingListener implements HttpSessionListener, HttpSessionAttributeListener, HttpSessionIdListener {
    static final AtomicInteger CREATED = new AtomicInteger();
    static final AtomicInteger DESTROYED = new AtomicInteger();
    static final AtomicInteger ADDED = new AtomicInteger();
    static final AtomicInteger REPLACED = new AtomicInteger();
    static final AtomicInteger REMOVED = new AtomicInteger();
    static final AtomicInteger ID_CHANGED = new AtomicInteger();

    @Override
    public void sessionCreated(HttpSessionEvent se) {
        CREATED.incrementAndGet();
    }

    @Override
    public void sessionDestroyed(HttpSessionEvent se) {
        DESTROYED.incrementAndGet();
    }

    @Override
    public void attributeAdded(HttpSessionBindingEvent e) {
        ADDED.incrementAndGet();
    }

    @Override
    public void attributeReplaced(HttpSessionBindingEvent e) {
        REPLACED.incrementAndGet();
    }

    @Override
    public void attributeRemoved(HttpSessionBindingEvent e) {
        REMOVED.incrementAndGet();
    }

    @Override
    public void sessionIdChanged(HttpSessionEvent se, String oldId) {
        ID_CHANGED.incrementAndGet();
    }

    /** @return the counts as {@code created=N destroyed=N added=N replaced=N removed=N idchanged=N} */
    static String counts() {
        return "created=" + CREATED.get() + " destroyed=" + DESTROYED.get() + " added=" + ADDED.get()
            + " replaced=" + REPLACED.get() + " removed=" + REMOVED.get() + " idchanged=" + ID_CHANGED.get();
    }
}
