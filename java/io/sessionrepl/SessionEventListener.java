package io.sessionrepl;

/**
 * Told the store's events, on its driver thread, outside any lock: it may
 * call the store, except the blocking calls {@link SessionStore#close},
 * {@link SessionStore#waitReady} and {@link SessionStore#drain}.
 */
@FunctionalInterface
public interface SessionEventListener {
    /** @param e the event */
    void onEvent(SessionEvent e);
}
