package io.sessionrepl;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A running replication channel of the native engine: a receiver, senders
 * in the configured {@code replicationMode} ({@code synchronous},
 * {@code pooled}, {@code asynchronous}, {@code fastasyncqueue}) and,
 * unless {@code membershipType=none}, membership.
 *
 * <pre>{@code
 * try (Channel ch = Channel.builder(new Config().set("membershipType", "none"))
 *         .onMessage(m -> System.out.println(m.payload().length + " bytes from " + m.from()))
 *         .start()) {
 *     ch.send(new InetSocketAddress[] {peer}, "hello".getBytes(), SendOptions.DEFAULT);
 * }
 * }</pre>
 *
 * <p>Thread safety: every method may be called from any thread. Listeners
 * run on the engine's threads, which attach to the JVM once (as daemon
 * threads) and detach when the channel stops.
 */
public final class Channel implements AutoCloseable {
    /** Collects the configuration and listeners of a channel. */
    public static final class Builder {
        private final Config cfg;
        private MessageListener messages;
        private MessageBatchListener batches;
        private MemberListener members;
        private OutcomeListener outcomes;

        private Builder(Config cfg) {
            this.cfg = cfg;
        }

        /**
         * @param l receives messages; throwing fails a delivery ack
         * @return this builder
         */
        public Builder onMessage(MessageListener l) {
            messages = l;
            return this;
        }

        /**
         * Receives messages a batch at a time (one call across JNI per batch
         * instead of per message); replaces {@link #onMessage}. Messages
         * from Tribes connections come as batches of one.
         *
         * @param l receives batches of messages
         * @return this builder
         */
        public Builder onMessageBatch(MessageBatchListener l) {
            batches = l;
            return this;
        }

        /**
         * @param l told membership changes
         * @return this builder
         */
        public Builder onMember(MemberListener l) {
            members = l;
            return this;
        }

        /**
         * @param l told outcomes in the asynchronous modes
         * @return this builder
         */
        public Builder onOutcome(OutcomeListener l) {
            outcomes = l;
            return this;
        }

        /**
         * Starts the channel: binds the receiver, starts senders and membership.
         *
         * @return the running channel
         * @throws SessionReplException invalid configuration ({@code
         *     SR_INVALID_CONFIG_VALUE}), bind failure ({@code SR_IO}), ...
         */
        public Channel start() {
            return new Channel(this);
        }
    }

    private final MessageListener messages;
    private final MessageBatchListener batches;
    private final MemberListener members;
    private final OutcomeListener outcomes;
    private final Guard guard;
    private final InetSocketAddress local;
    private final byte[] memberId;
    /** The last destination array and its encoding (senders reuse their arrays). */
    private volatile Object[] lastDests = {null, null};

    /**
     * @param cfg the configuration
     * @return a builder for a channel with {@code cfg}
     */
    public static Builder builder(Config cfg) {
        return new Builder(cfg);
    }

    private Channel(Builder b) {
        this.messages = b.messages;
        this.batches = b.batches;
        this.members = b.members;
        this.outcomes = b.outcomes;
        boolean listens = messages != null || batches != null;
        int want = (listens ? 1 : 0) | (members != null ? 2 : 0) | (outcomes != null ? 4 : 0);
        long h = Native.channelStart(this, b.cfg.keys(), b.cfg.vals(), want);
        this.guard = new Guard(h, "SR_NOT_RUNNING", "channel");
        Wire.In in = new Wire.In(guard.with(Native::channelInfo));
        this.local = in.addr();
        this.memberId = in.fixed(16);
    }

    private byte[] dests(InetSocketAddress[] to) {
        Object[] last = lastDests;
        if (last[0] == to && to != null && Arrays.equals((InetSocketAddress[]) last[2], to)) {
            return (byte[]) last[1];
        }
        byte[] enc = Wire.addrs(to);
        if (to != null) {
            lastDests = new Object[] {to, enc, to.clone()};
        }
        return enc;
    }

    /** @return the receiver's bound address (members send here) */
    public InetSocketAddress localAddress() {
        return local;
    }

    /** @return this node's 16-byte member id */
    public byte[] memberId() {
        return memberId.clone();
    }

    /**
     * Sends {@code payload} to every address in {@code to} (null or empty:
     * every current member). In {@code synchronous} and {@code pooled} modes
     * it returns when every destination acked (or, without ack, when it was
     * written) and throws the first failure; in the asynchronous modes it
     * returns once queued, and each outcome goes to the outcome listener.
     *
     * @param to destinations
     * @param payload the bytes
     * @param opts ack and compression
     * @return the message id
     * @throws SessionReplException {@code SR_QUEUE_FULL}, {@code SR_TIMEOUT},
     *     {@code SR_REMOTE_FAILURE}, {@code SR_UNREACHABLE}, {@code SR_NOT_RUNNING}, ...
     */
    public long send(InetSocketAddress[] to, byte[] payload, SendOptions opts) {
        return send(to, payload, 0, payload == null ? 0 : payload.length, opts);
    }

    /**
     * As {@link #send(InetSocketAddress[], byte[], SendOptions)} for
     * {@code payload[off .. off+len)}.
     *
     * @param to destinations
     * @param payload the array
     * @param off first byte
     * @param len number of bytes
     * @param opts ack and compression
     * @return the message id
     * @throws SessionReplException as the other {@code send}
     */
    public long send(InetSocketAddress[] to, byte[] payload, int off, int len, SendOptions opts) {
        byte[] d = dests(to);
        int o = opts.bits();
        return guard.with(h -> Native.channelSend(h, d, payload, null, off, len, o, false));
    }

    /**
     * Sends the remaining bytes of a direct {@link ByteBuffer} (position to
     * limit; the position is not moved). The bytes are copied before it
     * returns.
     *
     * @param to destinations
     * @param payload a direct buffer
     * @param opts ack and compression
     * @return the message id
     * @throws SessionReplException as the other {@code send};
     *     {@code SR_INVALID_ARGUMENT} for a heap buffer
     */
    public long send(InetSocketAddress[] to, ByteBuffer payload, SendOptions opts) {
        if (!payload.isDirect()) {
            throw new SessionReplException("SR_INVALID_ARGUMENT", "not a direct ByteBuffer");
        }
        byte[] d = dests(to);
        int o = opts.bits();
        int off = payload.position();
        int len = payload.remaining();
        return guard.with(h -> Native.channelSend(h, d, null, payload, off, len, o, false));
    }

    /**
     * Sends many messages in one call across JNI: {@code batch} holds, from
     * its position to its limit, each message as a big-endian {@code int}
     * length followed by that many bytes ({@link #putMessage} writes one).
     * Each message is sent as by {@link #send(InetSocketAddress[], byte[],
     * SendOptions)}, in order; the bytes are copied before it returns.
     * The position moves past the messages sent. When a message cannot be
     * sent (a full queue in the asynchronous modes, a failure in the
     * synchronous ones) the call stops there: it throws if that was the
     * first message, else it returns the count so far (the next call meets
     * the failure first).
     *
     * @param to destinations (null or empty: every current member)
     * @param batch a direct buffer of length-prefixed messages
     * @param opts ack and compression, for every message
     * @return the number of messages sent (queued), at least 1 when any remained
     * @throws SessionReplException as {@code send}; {@code SR_INVALID_ARGUMENT}
     *     for a heap buffer or a length that exceeds the buffer
     */
    public int sendBatch(InetSocketAddress[] to, ByteBuffer batch, SendOptions opts) {
        if (!batch.isDirect()) {
            throw new SessionReplException("SR_INVALID_ARGUMENT", "not a direct ByteBuffer");
        }
        if (!batch.hasRemaining()) {
            return 0;
        }
        byte[] d = dests(to);
        int o = opts.bits();
        int off = batch.position();
        int len = batch.remaining();
        long r = guard.with(h -> Native.channelSendBatch(h, d, batch, off, len, o));
        batch.position(off + (int) r);
        return (int) (r >>> 32);
    }

    /**
     * Appends one message to a batch for {@link #sendBatch}.
     *
     * @param batch the batch being filled
     * @param payload the message
     * @param off its first byte
     * @param len its length
     * @return false (and nothing written) when it does not fit
     * @throws IndexOutOfBoundsException (nothing written) when {@code off}
     *     and {@code len} do not lie within {@code payload}
     */
    public static boolean putMessage(ByteBuffer batch, byte[] payload, int off, int len) {
        java.util.Objects.checkFromIndexSize(off, len, payload.length);
        if (batch.remaining() - 4 < len) {
            return false;
        }
        batch.putInt(len).put(payload, off, len);
        return true;
    }

    /**
     * Sends and returns a {@link Ticket} that completes with every
     * destination's {@link Outcome}, in all modes (per-destination failures
     * go to the ticket, not to an exception).
     *
     * @param to destinations (null or empty: every current member)
     * @param payload the bytes
     * @param opts ack and compression
     * @return the ticket; close it when done
     * @throws SessionReplException when nothing could be sent at all
     */
    public Ticket sendWithTicket(InetSocketAddress[] to, byte[] payload, SendOptions opts) {
        byte[] d = dests(to);
        int o = opts.bits();
        int len = payload == null ? 0 : payload.length;
        return new Ticket(guard.with(h -> Native.channelSend(h, d, payload, null, 0, len, o, true)));
    }

    /**
     * As {@link #sendWithTicket(InetSocketAddress[], byte[], SendOptions)}
     * for a direct buffer's remaining bytes.
     *
     * @param to destinations
     * @param payload a direct buffer
     * @param opts ack and compression
     * @return the ticket
     * @throws SessionReplException as the other {@code sendWithTicket}
     */
    public Ticket sendWithTicket(InetSocketAddress[] to, ByteBuffer payload, SendOptions opts) {
        if (!payload.isDirect()) {
            throw new SessionReplException("SR_INVALID_ARGUMENT", "not a direct ByteBuffer");
        }
        byte[] d = dests(to);
        int o = opts.bits();
        int off = payload.position();
        int len = payload.remaining();
        return new Ticket(guard.with(h -> Native.channelSend(h, d, null, payload, off, len, o, true)));
    }

    /** @return the current members (empty with {@code membershipType=none}) */
    public List<Member> members() {
        Wire.In in = new Wire.In(guard.with(Native::channelMembers));
        int n = in.u32();
        List<Member> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(new Member(in));
        }
        return out;
    }

    /**
     * Waits until every queued message has an outcome (asynchronous modes).
     *
     * @param timeoutMs how long to wait
     * @throws SessionReplException {@code SR_TIMEOUT}
     */
    public void flush(long timeoutMs) {
        guard.with(h -> {
            Native.channelFlush(h, timeoutMs);
            return null;
        });
    }

    /** @return the counters in Prometheus text format ({@code sessionrepl_*}) */
    public String prometheus() {
        return guard.with(Native::channelPrometheus);
    }

    /** @return the counters by name ({@code msgs_sent}, {@code acks_received}, ...) */
    public Map<String, Long> stats() {
        Map<String, Long> m = new LinkedHashMap<>();
        for (String line : prometheus().split("\n")) {
            if (line.startsWith("sessionrepl_")) {
                int sp = line.indexOf(' ');
                m.put(line.substring("sessionrepl_".length(), sp), Long.parseLong(line.substring(sp + 1).trim()));
            }
        }
        return Collections.unmodifiableMap(m);
    }

    /**
     * Stops: no new sends; queued and unacknowledged messages end as
     * {@code SR_SHUTDOWN}; the receiver closes and the engine's threads
     * detach from the JVM. Later calls throw {@code SR_NOT_RUNNING}.
     * Idempotent.
     *
     * @throws SessionReplException {@code SR_IN_CALLBACK} when called from
     *     one of this channel's own listeners (it would wait for itself)
     */
    public void stop() {
        Native.refuseInCallback(this, "Channel.stop");
        long h = guard.peek();
        if (h != 0) {
            guard.with(x -> {
                Native.channelStop(x);
                return null;
            });
        }
    }

    /**
     * Stops the channel and frees its native part. Idempotent.
     *
     * @throws SessionReplException {@code SR_IN_CALLBACK} when called from
     *     one of this channel's own listeners
     */
    @Override
    public void close() {
        Native.refuseInCallback(this, "Channel.close");
        try {
            stop();
        } catch (SessionReplException e) {
            // closed concurrently
        }
        guard.free(Native::channelFree);
    }

    // -- from Native, on engine threads --

    /** Delivers one message; returns null or the failure text. */
    String deliver(byte[] meta, byte[] payload) throws Exception {
        if (batches != null) {
            String[] f = deliverBatch(MessageBatch.of(meta, payload));
            return f == null ? null : f[0];
        }
        messages.onMessage(new Message(meta, payload));
        return null;
    }

    /** Delivers a batch; returns null or one failure text (or null) per message. */
    String[] deliverBatch(MessageBatch b) {
        if (batches != null) {
            try {
                batches.onBatch(b);
            } catch (Throwable t) {
                b.failRest(Native.reason(t));
            }
            return b.failures();
        }
        for (int i = 0; i < b.size(); i++) {
            try {
                messages.onMessage(b.message(i));
            } catch (Throwable t) {
                b.fail(i, Native.reason(t));
            }
        }
        return b.failures();
    }

    void memberEvent(byte[] enc) {
        members.onMemberEvent(new MemberEvent(enc));
    }

    void outcome(byte[] enc) {
        Wire.In in = new Wire.In(enc);
        long id = in.u64();
        outcomes.onOutcome(Outcome.read(id, in));
    }

    static void report(String what, Throwable t) {
        System.err.println("sessionrepl: " + what + " threw " + t);
    }
}
