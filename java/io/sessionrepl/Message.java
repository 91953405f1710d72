package io.sessionrepl;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;

/** A message handed to a {@link MessageListener}. */
public final class Message {
    // The metadata is decoded on first use: most listeners read only the payload.
    private final byte[] meta;
    private final byte[] payload;
    private InetSocketAddress from;
    private InetSocketAddress peer;
    private byte[] memberId;
    private long id;

    Message(byte[] meta, byte[] payload) {
        this.meta = meta;
        this.payload = payload;
    }

    private void decode() {
        if (memberId != null) {
            return;
        }
        Wire.In in = new Wire.In(meta);
        from = in.addr();
        peer = in.addr();
        byte[] mid = in.fixed(16);
        id = in.u64();
        memberId = mid;
    }

    /** @return the sending member's receiver address (as it announced it) */
    public InetSocketAddress from() { decode(); return from; }

    /** @return the connection's peer address */
    public InetSocketAddress peer() { decode(); return peer; }

    /** @return the sender's 16-byte member id (zeros for a Tribes peer) */
    public byte[] memberId() { decode(); return memberId.clone(); }

    /** @return the message id, unique per sending channel */
    public long id() { decode(); return id; }

    /** @return the payload (inflated if it was compressed); the listener may keep it */
    public byte[] payload() { return payload; }

    /** @return the payload as a read-only buffer */
    public ByteBuffer buffer() { return ByteBuffer.wrap(payload).asReadOnlyBuffer(); }
}
