package io.sessionrepl;

import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** A snapshot of one replicated session, as {@link SessionStore#get} found it. */
public final class Session {
    private final String id;
    private final long version;
    private final byte[] writer;
    private final long creationTime;
    private final long maxInactiveSecs;
    private final byte[] principal;
    private final byte[] authType;
    private final long idleMs;
    private final Map<String, byte[]> attributes;

    Session(Wire.In in) {
        this.id = new String(in.bytes(), StandardCharsets.UTF_8);
        this.version = in.u64();
        this.writer = in.fixed(16);
        this.creationTime = in.u64();
        this.maxInactiveSecs = in.u64();
        this.principal = in.optBytes();
        this.authType = in.optBytes();
        this.idleMs = in.u64();
        int n = in.u32();
        Map<String, byte[]> m = new LinkedHashMap<>();
        for (int i = 0; i < n; i++) {
            String k = new String(in.bytes(), StandardCharsets.UTF_8);
            m.put(k, in.bytes());
        }
        this.attributes = Collections.unmodifiableMap(m);
    }

    /** @return the session id */
    public String id() { return id; }

    /** @return the version counter (bumped by every commit) */
    public long version() { return version; }

    /** The writer half of the version ({@link Txn#basedOn}). */
    byte[] versionWriter() { return writer.clone(); }

    /** @return the creation time (epoch ms as the creating node counted it) */
    public long creationTime() { return creationTime; }

    /** @return seconds of inactivity before expiry; negative: never */
    public long maxInactiveSecs() { return maxInactiveSecs; }

    /** @return the serialized principal, or null */
    public byte[] principal() { return principal; }

    /** @return the serialized auth type, or null */
    public byte[] authType() { return authType; }

    /** @return ms since the last access this node saw */
    public long idleMs() { return idleMs; }

    /** @return the attributes by name */
    public Map<String, byte[]> attributes() { return attributes; }

    /**
     * @param name an attribute name
     * @return its value, or null
     */
    public byte[] attribute(String name) { return attributes.get(name); }
}
