package io.sessionrepl;

import java.net.InetSocketAddress;

/** How one message ended at one destination. */
public final class Outcome {
    /** The kinds of end. */
    public enum Status {
        /** Written; no ack was asked for. */
        SENT,
        /** Acknowledged by the receiver. */
        ACKED,
        /** Failed: see {@link Outcome#result()} and {@link Outcome#detail()}. */
        FAILED
    }

    private final long messageId;
    private final InetSocketAddress destination;
    private final Status status;
    private final String result;
    private final String detail;

    Outcome(long messageId, InetSocketAddress destination, Status status, String result, String detail) {
        this.messageId = messageId;
        this.destination = destination;
        this.status = status;
        this.result = result;
        this.detail = detail;
    }

    static Outcome read(long id, Wire.In in) {
        InetSocketAddress a = in.addr();
        int s = in.u8();
        String r = in.str();
        String d = in.str();
        return new Outcome(id, a, s == 0 ? Status.SENT : s == 1 ? Status.ACKED : Status.FAILED, r, d);
    }

    /** @return the message id {@link Channel#send} returned */
    public long messageId() { return messageId; }

    /** @return the destination (its receiver's address) */
    public InetSocketAddress destination() { return destination; }

    /** @return how it ended */
    public Status status() { return status; }

    /** @return true unless {@link Status#FAILED} */
    public boolean ok() { return status != Status.FAILED; }

    /**
     * @return {@code SR_OK}, or the failure's {@code sr_result} name
     *     ({@code SR_REMOTE_FAILURE} when the receiver's listener threw,
     *     {@code SR_TIMEOUT}, {@code SR_UNREACHABLE}, ...)
     */
    public String result() { return result; }

    /** @return the failure's detail (the receiver's reason), or empty */
    public String detail() { return detail; }

    /** @return this outcome as a {@link SessionReplException}, or null when ok */
    public SessionReplException toException() {
        return ok() ? null : new SessionReplException(result, destination + ": " + detail);
    }

    @Override
    public String toString() {
        return "Outcome{" + messageId + " " + destination + " " + status
            + (ok() ? "" : " " + result + " " + detail) + "}";
    }
}
