package io.sessionrepl;

import java.net.InetSocketAddress;

/** What {@link SessionStore#get} found. */
public final class Lookup {
    /** The kinds of answer. */
    public enum Status {
        /** The session is here: {@link Lookup#session()}. */
        FOUND,
        /** This node handed it over while draining: {@link Lookup#movedTo()}. */
        MOVED,
        /** No such session in the cluster. */
        NOT_FOUND
    }

    private final Status status;
    private final Session session;
    private final InetSocketAddress movedTo;

    Lookup(byte[] enc) {
        Wire.In in = new Wire.In(enc);
        int s = in.u8();
        if (s == 0) {
            status = Status.FOUND;
            session = new Session(in);
            movedTo = null;
        } else if (s == 1) {
            status = Status.MOVED;
            session = null;
            movedTo = in.addr();
        } else {
            status = Status.NOT_FOUND;
            session = null;
            movedTo = null;
        }
    }

    /** @return the kind of answer */
    public Status status() { return status; }

    /** @return the session when {@link Status#FOUND}, else null */
    public Session session() { return session; }

    /** @return where to send the request when {@link Status#MOVED}, else null */
    public InetSocketAddress movedTo() { return movedTo; }
}
