package io.sessionrepl;

import java.net.InetSocketAddress;

/** A cluster member as membership knows it. */
public final class Member {
    private final byte[] id;
    private final InetSocketAddress address;
    private final byte[] domain;
    private final long aliveMs;
    private final boolean sessionrepl;
    private final byte[] payload;

    Member(Wire.In in) {
        this.id = in.fixed(16);
        this.address = in.addr();
        this.domain = in.bytes();
        this.aliveMs = in.u64();
        this.sessionrepl = in.u8() != 0;
        this.payload = in.bytes();
    }

    /** @return its 16-byte member id */
    public byte[] id() { return id.clone(); }

    /** @return its receiver's address (where to send) */
    public InetSocketAddress address() { return address; }

    /** @return its cluster domain bytes */
    public byte[] domain() { return domain.clone(); }

    /** @return how long it has been running, as it announced, in ms */
    public long aliveMs() { return aliveMs; }

    /** @return true if it is a sessionrepl node (false: a plain Tribes node) */
    public boolean isSessionrepl() { return sessionrepl; }

    /**
     * @return the application metadata it announces ({@code memberPayload}:
     *     e.g. its HTTP address for redirects), empty if none; only
     *     multicast heartbeats carry it
     */
    public byte[] payload() { return payload.clone(); }

    @Override
    public String toString() {
        return "Member{" + address + (sessionrepl ? " sessionrepl" : " tribes") + "}";
    }
}
