package io.sessionrepl;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The messages of one {@link MessageBatchListener} call. The payloads are
 * views of one native-filled buffer that is reused after the call returns:
 * read them during the call, or keep a copy ({@link #message(int)}).
 */
public final class MessageBatch {
    private final ByteBuffer buf;
    private final int[] metaAt;
    private final int[] metaLen;
    private final int[] payAt;
    private final int[] payLen;
    private String[] failures;

    /** Reads the layout {@code bindings/jni/src/batch.rs} writes; hostile lengths throw. */
    MessageBatch(ByteBuffer filled, int count, int length) {
        if (count < 0 || length < 0 || length > filled.capacity()) {
            throw new IllegalArgumentException("batch of " + count + " messages in " + length + " bytes");
        }
        ByteBuffer b = filled.duplicate().order(ByteOrder.BIG_ENDIAN);
        b.clear().limit(length);
        this.buf = b;
        metaAt = new int[count];
        metaLen = new int[count];
        payAt = new int[count];
        payLen = new int[count];
        int at = 0;
        for (int i = 0; i < count; i++) {
            metaLen[i] = b.getInt(at);
            metaAt[i] = at + 4;
            at = checked(metaAt[i], metaLen[i], length);
            payLen[i] = b.getInt(at);
            payAt[i] = at + 4;
            at = checked(payAt[i], payLen[i], length);
        }
    }

    /** One message in the batch layout (deliveries outside the worker threads). */
    static ByteBuffer layout(byte[] meta, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(8 + meta.length + payload.length);
        b.putInt(meta.length).put(meta).putInt(payload.length).put(payload);
        return b;
    }

    private static int checked(int at, int len, int length) {
        if (len < 0 || at > length || len > length - at) {
            throw new IllegalArgumentException("batch entry at " + at + " of " + len + " bytes exceeds " + length);
        }
        return at + len;
    }

    /** @return the number of messages */
    public int size() {
        return payAt.length;
    }

    /**
     * @param i the message's index
     * @return its payload as a read-only view, valid during the call only
     */
    public ByteBuffer payload(int i) {
        ByteBuffer v = buf.duplicate();
        v.limit(payAt[i] + payLen[i]).position(payAt[i]);
        return v.slice().asReadOnlyBuffer();
    }

    /**
     * @param i the message's index
     * @return its payload's length in bytes
     */
    public int payloadLength(int i) {
        return payLen[i];
    }

    /**
     * Copies a message out of the batch (metadata and payload); the copy may
     * be kept.
     *
     * @param i the message's index
     * @return the message
     */
    public Message message(int i) {
        ByteBuffer v = buf.duplicate();
        byte[] meta = new byte[metaLen[i]];
        v.position(metaAt[i]);
        v.get(meta);
        byte[] p = new byte[payLen[i]];
        v.position(payAt[i]);
        v.get(p);
        return new Message(meta, p);
    }

    /**
     * Refuses message {@code i}: its sender sees a FAIL with {@code reason}
     * when it asked for an ack after delivery.
     *
     * @param i the message's index
     * @param reason why (shown to the sender)
     */
    public void fail(int i, String reason) {
        if (failures == null) {
            failures = new String[payAt.length];
        }
        failures[i] = reason == null || reason.isEmpty() ? "listener failed" : reason;
    }

    /** Refuses every message not refused yet. */
    void failRest(String reason) {
        for (int i = 0; i < payAt.length; i++) {
            if (failures == null || failures[i] == null) {
                fail(i, reason);
            }
        }
    }

    /** @return null when every message was accepted, else one reason (or null) per message */
    String[] failures() {
        return failures;
    }
}
