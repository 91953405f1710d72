package io.sessionrepl;

import java.nio.ByteBuffer;

/**
 * The JNI surface of {@code libsessionrepl_jni.so}: loading, the native
 * methods (registered by the library's {@code JNI_OnLoad}), and the static
 * callbacks the engine's threads call. Package-private: users go through
 * {@link Channel} and {@link SessionStore}.
 */
final class Native {
    private Native() {}

    static {
        String path = System.getProperty("sessionrepl.library");
        if (path != null && !path.isEmpty()) {
            System.load(path);
        } else {
            System.loadLibrary("sessionrepl_jni");
        }
    }

    /** Forces loading (and so {@code JNI_OnLoad}) now. */
    static void load() {}

    // -- boundary --
    static native int attachedThreads();
    static native void checkPanicBoundary();

    // -- config and channel --
    static native void configCheck(String[] keys, String[] values, boolean validate);
    static native long channelStart(Object target, String[] keys, String[] values, int want);
    static native void channelStop(long h);
    static native void channelFree(long h);
    static native byte[] channelInfo(long h);
    /** Sends to the prepared set {@code set} (a {@link Destinations} handle), or when 0 to {@code dests}. */
    static native long channelSend(long h, long set, byte[] dests, byte[] arr, ByteBuffer buf,
                                   int off, int len, int opts, boolean ticket);
    static native long channelSendBatch(long h, long set, byte[] dests, ByteBuffer buf, int off, int len, int opts);
    /** A native destination set from {@code Wire.addrs}'s encoding (null: every member). */
    static native long destsNew(byte[] dests);
    static native void destsFree(long set);
    static native long ticketId(long t);
    static native byte[] ticketWait(long t, long ms);
    static native void ticketFree(long t);
    static native byte[] channelMembers(long h);
    static native void channelFlush(long h, long ms);
    static native String channelPrometheus(long h);

    // -- session store --
    static native long storeOpen(Object target, String[] keys, String[] values, int want);
    static native byte[] storeMemberPayload(long h, byte[] addr);
    static native void storeClose(long h);
    static native void storeFree(long h);
    static native void storeWaitReady(long h, long ms);
    static native boolean storeIsReady(long h);
    static native boolean storeIsPrimaryFor(long h, byte[] id);
    static native long storeCommit(long h, byte[] txn, boolean create);
    static native int commitWait(long c, long ms);
    static native boolean commitDone(long c);
    static native void commitFree(long c);
    static native byte[] storeGet(long h, byte[] id, long ms);
    static native void storeAccess(long h, byte[] id);
    static native long storeInvalidate(long h, byte[] id);
    static native long storeChangeId(long h, byte[] old, byte[] nw);
    static native void storeDrain(long h, long ms);
    static native String storeStats(long h);
    static native byte[] storeInfo(long h);

    // -- callbacks, on engine threads (attached once, as daemons) --

    /** The channel or store whose callback this thread is running, if any. */
    private static final ThreadLocal<Object> IN_CALLBACK = new ThreadLocal<>();

    /**
     * Refuses a call that would wait for the engine thread running the
     * caller: closing a channel or store (or waiting on a store) from its
     * own callback.
     */
    static void refuseInCallback(Object target, String what) {
        if (IN_CALLBACK.get() == target) {
            throw new SessionReplException("SR_IN_CALLBACK",
                what + " would wait for the thread running this callback");
        }
    }

    /** A message for a channel's listener; returns null or the failure text. */
    static String onMessage(Object target, byte[] meta, byte[] payload) {
        IN_CALLBACK.set(target);
        try {
            return ((Channel) target).deliver(meta, payload);
        } catch (Throwable t) {
            return reason(t);
        } finally {
            IN_CALLBACK.remove();
        }
    }

    /**
     * A batch of messages for a channel's listener: returns null, or one
     * failure text (or null) per message.
     */
    static String[] onBatch(Object target, ByteBuffer buf, int count, int length) {
        IN_CALLBACK.set(target);
        try {
            return ((Channel) target).deliverBatch(buf, count, length);
        } catch (Throwable t) {
            // A malformed batch (never expected): refuse all of it.
            String[] all = new String[Math.max(0, count)];
            java.util.Arrays.fill(all, "batch refused: " + t);
            return all;
        } finally {
            IN_CALLBACK.remove();
        }
    }

    /** A direct buffer for the native side to lay batches out in. */
    static ByteBuffer allocBatch(int capacity) {
        return ByteBuffer.allocateDirect(capacity);
    }

    /** The failure text of a listener's exception. */
    static String reason(Throwable t) {
        String m = t.toString();
        return m.isEmpty() ? "listener failed" : m;
    }

    /** A membership event for a channel's member listener. */
    static void onMember(Object target, byte[] event) {
        IN_CALLBACK.set(target);
        try {
            if (target instanceof SessionStore) {
                ((SessionStore) target).memberEvent(event);
            } else {
                ((Channel) target).memberEvent(event);
            }
        } catch (Throwable t) {
            Channel.report("member listener", t);
        } finally {
            IN_CALLBACK.remove();
        }
    }

    /** An asynchronous outcome for a channel's outcome listener. */
    static void onOutcome(Object target, byte[] event) {
        IN_CALLBACK.set(target);
        try {
            ((Channel) target).outcome(event);
        } catch (Throwable t) {
            Channel.report("outcome listener", t);
        } finally {
            IN_CALLBACK.remove();
        }
    }

    /** A session store event for its listener. */
    static void onSessionEvent(Object target, byte[] event) {
        IN_CALLBACK.set(target);
        try {
            ((SessionStore) target).event(event);
        } catch (Throwable t) {
            Channel.report("session event listener", t);
        } finally {
            IN_CALLBACK.remove();
        }
    }
}
