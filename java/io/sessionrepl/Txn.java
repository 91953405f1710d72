package io.sessionrepl;

/**
 * The changes one request makes to one session, recorded in Java and
 * applied by {@link SessionStore#commit} (or {@link SessionStore#create})
 * as one step. Attribute names are strings; values are bytes the host
 * serializes as it likes.
 */
public final class Txn {
    private final String id;
    private final Wire.Out ops = new Wire.Out();
    private boolean empty = true;

    Txn(String id) {
        this.id = id;
    }

    /** @return the session id */
    public String id() {
        return id;
    }

    /** @return true if nothing was recorded (a commit is then just an access) */
    public boolean isEmpty() {
        return empty;
    }

    /**
     * Optimistic concurrency: the commit applies only if the session is
     * still at the version {@code read} was taken at (decided by the
     * session's primary); otherwise it fails with {@code SR_CONFLICT} and
     * changes nothing. Without it, the last writer wins.
     *
     * @param read the snapshot the changes were based on
     * @return this txn
     */
    public Txn basedOn(Session read) {
        ops.u8(6).u64(read.version());
        byte[] w = read.versionWriter();
        for (byte b : w) {
            ops.u8(b & 0xff);
        }
        return this;
    }

    /**
     * @param name attribute name
     * @param value serialized value
     * @return this txn
     */
    public Txn set(String name, byte[] value) {
        ops.u8(1).bytes(Wire.utf8(name)).bytes(value);
        empty = false;
        return this;
    }

    /**
     * @param name attribute to remove
     * @return this txn
     */
    public Txn remove(String name) {
        ops.u8(2).bytes(Wire.utf8(name));
        empty = false;
        return this;
    }

    /**
     * @param secs seconds of inactivity before expiry; negative: never
     * @return this txn
     */
    public Txn setMaxInactive(long secs) {
        ops.u8(3).u64(secs);
        empty = false;
        return this;
    }

    /**
     * @param principal the serialized principal, or null to clear it
     * @return this txn
     */
    public Txn setPrincipal(byte[] principal) {
        ops.u8(4).optBytes(principal);
        empty = false;
        return this;
    }

    /**
     * @param authType the serialized auth type, or null to clear it
     * @return this txn
     */
    public Txn setAuthType(byte[] authType) {
        ops.u8(5).optBytes(authType);
        empty = false;
        return this;
    }

    byte[] encode() {
        byte[] head = new Wire.Out().bytes(Wire.utf8(id)).done();
        byte[] body = ops.done();
        byte[] all = new byte[head.length + body.length];
        System.arraycopy(head, 0, all, 0, head.length);
        System.arraycopy(body, 0, all, head.length, body.length);
        return all;
    }
}
