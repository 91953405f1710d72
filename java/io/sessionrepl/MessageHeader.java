package io.sessionrepl;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;

/**
 * The metadata of the message a {@link MessageViewListener} is being given:
 * a view of the native receive batch, reused for every message on the
 * receiving thread and valid only during the listener's call (afterwards
 * every method throws {@link IllegalStateException}). {@link #id()} reads
 * the batch in place; the addresses and {@link #memberId()} are new objects
 * on each call, which the listener may keep.
 */
public final class MessageHeader {
    private ByteBuffer src;
    private int at = -1;
    private int len;

    MessageHeader() {}

    /** Points the view at the meta of the next message: {@code src[at .. at+len)}. */
    void view(ByteBuffer src, int at, int len) {
        if (len < 16 + 8) {
            throw new IllegalArgumentException("message meta of " + len + " bytes");
        }
        this.src = src;
        this.at = at;
        this.len = len;
    }

    /** Ends the view (after the listener's call). */
    void end() {
        at = -1;
        src = null;
    }

    private void live() {
        if (at < 0) {
            throw new IllegalStateException("MessageHeader used after its listener call returned");
        }
    }

    private Wire.In in() {
        live();
        ByteBuffer b = src.duplicate();
        b.limit(at + len).position(at);
        return new Wire.In(b);
    }

    /** @return the sending member's receiver address (as it announced it) */
    public InetSocketAddress from() {
        return in().addr();
    }

    /** @return the connection's peer address */
    public InetSocketAddress peer() {
        Wire.In in = in();
        in.addr();
        return in.addr();
    }

    /** @return the sender's 16-byte member id (zeros for a Tribes peer), a copy */
    public byte[] memberId() {
        live();
        byte[] id = new byte[16];
        ByteBuffer b = src.duplicate();
        b.position(at + len - 8 - 16);
        b.get(id);
        return id;
    }

    /** @return the message id, unique per sending channel */
    public long id() {
        live();
        return src.getLong(at + len - 8);
    }
}
