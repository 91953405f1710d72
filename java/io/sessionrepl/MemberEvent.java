package io.sessionrepl;

/** A membership change. */
public final class MemberEvent {
    /** The kinds of change. */
    public enum Kind {
        /** A member joined (or became reachable again). */
        ADDED,
        /** A member left; {@link MemberEvent#reason()} says why. */
        REMOVED,
        /** A member went silent but still accepts connections. */
        SUSPECT
    }

    private final Kind kind;
    private final Member member;
    private final String reason;

    MemberEvent(byte[] enc) {
        Wire.In in = new Wire.In(enc);
        int k = in.u8();
        this.kind = k == 1 ? Kind.ADDED : k == 2 ? Kind.REMOVED : Kind.SUSPECT;
        this.member = new Member(in);
        this.reason = in.str();
    }

    /** @return what happened */
    public Kind kind() { return kind; }

    /** @return the member it happened to */
    public Member member() { return member; }

    /** @return why it was removed (e.g. {@code timeout}, {@code shutdown}), else empty */
    public String reason() { return reason; }

    @Override
    public String toString() {
        return kind + " " + member + (reason.isEmpty() ? "" : " (" + reason + ")");
    }
}
