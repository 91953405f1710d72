package io.sessionrepl;

import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

/** Something the session store tells its host. */
public final class SessionEvent {
    /** The kinds of event. */
    public enum Kind {
        /** Not used. */
        NONE,
        /** Another member created a session (or it arrived by transfer). */
        CREATED,
        /** Another member changed a session; {@link SessionEvent#number()} is its version. */
        UPDATED,
        /** A session expired; {@link SessionEvent#number()} is 1 if this node expired it. */
        EXPIRED,
        /** Another member invalidated a session. */
        INVALIDATED,
        /** Another member renamed a session to {@link SessionEvent#newId()}. */
        ID_CHANGED,
        /** Every copy acked a commit; {@link SessionEvent#number()} is the copy count. */
        COMMIT_ACKED,
        /** A commit could not be acked by every copy; {@link SessionEvent#detail()} says why. */
        COMMIT_FAILED,
        /** Two versions met; the higher one was kept. */
        CONFLICT,
        /** A fetch finished; {@link SessionEvent#number()} is 1 if the session arrived. */
        FETCHED,
        /** State transfer complete; {@link SessionEvent#number()} is the sessions held. */
        READY,
        /** State transfer failed; {@link SessionEvent#detail()} says why. */
        TRANSFER_FAILED,
        /** Every session was handed over: safe to close. */
        DRAINED
    }

    private final Kind kind;
    private final String id;
    private final String newId;
    private final InetSocketAddress member;
    private final long number;
    private final String detail;

    SessionEvent(byte[] enc) {
        Wire.In in = new Wire.In(enc);
        int k = in.u8();
        this.kind = k < Kind.values().length ? Kind.values()[k] : Kind.NONE;
        this.id = new String(in.bytes(), StandardCharsets.UTF_8);
        this.newId = new String(in.bytes(), StandardCharsets.UTF_8);
        this.member = in.u8() != 0 ? in.addr() : null;
        this.number = in.u64();
        this.detail = in.str();
    }

    /** @return what happened */
    public Kind kind() { return kind; }

    /** @return the session id (old id for {@link Kind#ID_CHANGED}), or empty */
    public String id() { return id; }

    /** @return the new id for {@link Kind#ID_CHANGED}, else empty */
    public String newId() { return newId; }

    /** @return the member it came from, or null */
    public InetSocketAddress member() { return member; }

    /** @return the kind's number (version, copies, sessions, flag) */
    public long number() { return number; }

    /** @return the kind's text (failure reason), or empty */
    public String detail() { return detail; }

    @Override
    public String toString() {
        return kind + " " + id + (newId.isEmpty() ? "" : "->" + newId)
            + (member == null ? "" : " by " + member) + " " + number + (detail.isEmpty() ? "" : " " + detail);
    }
}
