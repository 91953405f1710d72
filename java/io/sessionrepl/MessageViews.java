package io.sessionrepl;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Delivers a receive batch to a {@link MessageViewListener}, one call per
 * message, through one reused read-only payload view and one reused
 * {@link MessageHeader} per receiving thread: no allocation per message.
 * Reads the layout {@code bindings/jni/src/batch.rs} writes ({@code u32
 * meta length, meta, u32 payload length, payload} per message) as hostile.
 */
final class MessageViews {
    private final MessageViewListener listener;
    /** The batch buffer the views were made for (the native side pools a few per channel). */
    private ByteBuffer src;
    /** {@code src} for absolute reads (big-endian, never handed out). */
    private ByteBuffer reader;
    /** The payload view lent to the listener: read-only, over all of {@code src}. */
    private ByteBuffer view;
    private final MessageHeader header = new MessageHeader();

    MessageViews(MessageViewListener listener) {
        this.listener = listener;
    }

    /**
     * Delivers the {@code count} messages in {@code filled[0 .. length)}.
     *
     * @return null when every message was accepted, else one failure text
     *     (or null) per message
     */
    String[] deliver(ByteBuffer filled, int count, int length) {
        if (count < 0 || length < 0 || length > filled.capacity()) {
            String[] all = new String[Math.max(0, count)];
            java.util.Arrays.fill(all, "batch refused: " + count + " messages in " + length + " bytes");
            return all;
        }
        if (filled != src) {
            src = filled;
            reader = filled.duplicate().order(ByteOrder.BIG_ENDIAN);
            view = filled.asReadOnlyBuffer();
        }
        String[] fails = null;
        int at = 0;
        int i = 0;
        try {
            for (; i < count; i++) {
                int metaAt = at + 4;
                int metaLen = entry(at, length);
                int lenAt = metaAt + metaLen;
                int payAt = lenAt + 4;
                int payLen = entry(lenAt, length);
                at = payAt + payLen;
                header.view(reader, metaAt, metaLen);
                view.limit(at).position(payAt);
                view.order(ByteOrder.BIG_ENDIAN);
                try {
                    listener.onMessage(header, view);
                } catch (Throwable t) {
                    if (fails == null) {
                        fails = new String[count];
                    }
                    fails[i] = Native.reason(t);
                }
            }
        } catch (IllegalArgumentException e) {
            // A malformed layout (never expected from the native side):
            // message i and every one after it are refused.
            if (fails == null) {
                fails = new String[count];
            }
            for (int k = i; k < count; k++) {
                fails[k] = "batch refused: " + e.getMessage();
            }
        } finally {
            // A view kept past its call reads nothing.
            view.limit(0);
            header.end();
        }
        return fails;
    }

    /** The u32 length at {@code at}, checked to lie (with its bytes) within {@code length}. */
    private int entry(int at, int length) {
        if (at < 0 || at > length - 4) {
            throw new IllegalArgumentException("truncated length at byte " + at + " of " + length);
        }
        int n = reader.getInt(at);
        if (n < 0 || n > length - at - 4) {
            throw new IllegalArgumentException("entry at byte " + at + " of " + n + " bytes exceeds " + length);
        }
        return n;
    }
}
