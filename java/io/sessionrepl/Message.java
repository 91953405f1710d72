package io.sessionrepl;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;

/** A message handed to a {@link MessageListener}. */
public final class Message {
    private final InetSocketAddress from;
    private final InetSocketAddress peer;
    private final byte[] memberId;
    private final long id;
    private final byte[] payload;

    Message(byte[] meta, byte[] payload) {
        Wire.In in = new Wire.In(meta);
        this.from = in.addr();
        this.peer = in.addr();
        this.memberId = in.fixed(16);
        this.id = in.u64();
        this.payload = payload;
    }

    /** @return the sending member's receiver address (as it announced it) */
    public InetSocketAddress from() { return from; }

    /** @return the connection's peer address */
    public InetSocketAddress peer() { return peer; }

    /** @return the sender's 16-byte member id (zeros for a Tribes peer) */
    public byte[] memberId() { return memberId.clone(); }

    /** @return the message id, unique per sending channel */
    public long id() { return id; }

    /** @return the payload (inflated if it was compressed); the listener may keep it */
    public byte[] payload() { return payload; }

    /** @return the payload as a read-only buffer */
    public ByteBuffer buffer() { return ByteBuffer.wrap(payload).asReadOnlyBuffer(); }
}
