package io.sessionrepl;

/**
 * Per-send options: which acknowledgement to ask for and whether to
 * compress. {@link #DEFAULT} takes both from the channel's configuration
 * ({@code waitForAck}, {@code syncAck}, {@code compress}).
 */
public final class SendOptions {
    /** The acknowledgement a send asks for. */
    public enum Ack {
        /** No ack: the message counts as sent once written. */
        NONE,
        /** The receiver acks on receipt ({@code waitForAck} without {@code syncAck}). */
        RECEIPT,
        /** The receiver acks after its listener returned; a listener failure is a FAIL. */
        DELIVERY,
        /** Whatever the channel's configuration says. */
        DEFAULT
    }

    /** The configuration's ack and compression. */
    public static final SendOptions DEFAULT = new SendOptions(Ack.DEFAULT, null);

    private final Ack ack;
    private final Boolean compress;

    private SendOptions(Ack ack, Boolean compress) {
        this.ack = ack;
        this.compress = compress;
    }

    /**
     * @param ack the acknowledgement to ask for
     * @return options with that ack and the configured compression
     */
    public static SendOptions ack(Ack ack) {
        return new SendOptions(ack, null);
    }

    /**
     * @param compress compress the payload (subject to {@code compressionMinSize})
     * @return these options with compression set
     */
    public SendOptions compress(boolean compress) {
        return new SendOptions(ack, compress);
    }

    /** @return the ack asked for */
    public Ack ackMode() {
        return ack;
    }

    int bits() {
        int b = ack == Ack.NONE ? 0 : ack == Ack.RECEIPT ? 1 : ack == Ack.DELIVERY ? 2 : 3;
        if (compress == null) {
            b |= 8;
        } else if (compress) {
            b |= 4;
        }
        return b;
    }
}
