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
        private MessageViewListener views;
        private MemberListener members;
        private OutcomeListener outcomes;

        private Builder(Config cfg) {
            this.cfg = cfg;
        }

        /**
         * Receives each message as a {@link Message} of its own (the payload
         * a {@code byte[]} the listener may keep). A channel has one message
         * listener: this replaces one set by {@link #onMessageView}.
         *
         * @param l receives messages; throwing fails a delivery ack
         * @return this builder
         */
        public Builder onMessage(MessageListener l) {
            messages = l;
            views = null;
            return this;
        }

        /**
         * Receives each message with its payload lent as a read-only
         * {@link ByteBuffer} valid during the call only (no copy and no
         * allocation per message; see {@link MessageViewListener} for the
         * rules); replaces {@link #onMessage}. {@link #onMessageBatch}, when
         * set, takes precedence over both.
         *
         * @param l receives messages; throwing fails that message's delivery ack
         * @return this builder
         */
        public Builder onMessageView(MessageViewListener l) {
            views = l;
            messages = null;
            return this;
        }

        /**
         * Receives messages a batch at a time (one call across JNI per batch
         * instead of per message); replaces {@link #onMessage} and
         * {@link #onMessageView}. Messages
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
    /** Each receiving thread's reused views, when the listener is a {@link MessageViewListener}. */
    private final ThreadLocal<MessageViews> views;
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
        MessageViewListener vl = b.views;
        this.views = vl == null ? null : ThreadLocal.withInitial(() -> new MessageViews(vl));
        this.members = b.members;
        this.outcomes = b.outcomes;
        boolean listens = messages != null || batches != null || views != null;
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
     * The bytes are copied before it returns. To send many messages to the
     * same addresses, {@link #sendTo(Destinations, byte[], SendOptions)} with a
     * prepared {@link Destinations} costs less per call.
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
        return call(null, dests(to), payload, null, off, len, opts, false);
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
        direct(payload);
        return call(null, dests(to), null, payload, payload.position(), payload.remaining(), opts, false);
    }

    /**
     * As {@link #send(InetSocketAddress[], byte[], SendOptions)} to a
     * prepared destination set: no address list is encoded or decoded per
     * call. (A name of its own, so that {@code send(null, ...)}, every
     * current member, stays unambiguous.)
     *
     * @param to the destinations, prepared by {@link Destinations#of}
     * @param payload the bytes
     * @param opts ack and compression
     * @return the message id
     * @throws SessionReplException as the other {@code send}
     */
    public long sendTo(Destinations to, byte[] payload, SendOptions opts) {
        return sendTo(to, payload, 0, payload == null ? 0 : payload.length, opts);
    }

    /**
     * As {@link #sendTo(Destinations, byte[], SendOptions)} for
     * {@code payload[off .. off+len)}.
     *
     * @param to the destinations
     * @param payload the array
     * @param off first byte
     * @param len number of bytes
     * @param opts ack and compression
     * @return the message id
     * @throws SessionReplException as the other {@code send}
     */
    public long sendTo(Destinations to, byte[] payload, int off, int len, SendOptions opts) {
        return call(java.util.Objects.requireNonNull(to, "to"), null, payload, null, off, len, opts, false);
    }

    /**
     * As {@link #send(InetSocketAddress[], ByteBuffer, SendOptions)} to a
     * prepared destination set.
     *
     * @param to the destinations
     * @param payload a direct buffer (position to limit; not moved)
     * @param opts ack and compression
     * @return the message id
     * @throws SessionReplException as the other {@code send}
     */
    public long sendTo(Destinations to, ByteBuffer payload, SendOptions opts) {
        direct(payload);
        return call(java.util.Objects.requireNonNull(to, "to"), null, null, payload, payload.position(),
            payload.remaining(), opts, false);
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
        return batch(null, to, batch, opts);
    }

    /**
     * As {@link #sendBatch(InetSocketAddress[], ByteBuffer, SendOptions)} to
     * a prepared destination set.
     *
     * @param to the destinations
     * @param batch a direct buffer of length-prefixed messages
     * @param opts ack and compression, for every message
     * @return the number of messages sent (queued)
     * @throws SessionReplException as the other {@code sendBatch}
     */
    public int sendBatchTo(Destinations to, ByteBuffer batch, SendOptions opts) {
        return batch(java.util.Objects.requireNonNull(to, "to"), null, batch, opts);
    }

    private int batch(Destinations set, InetSocketAddress[] to, ByteBuffer batch, SendOptions opts) {
        direct(batch);
        if (!batch.hasRemaining()) {
            return 0;
        }
        byte[] d = set == null ? dests(to) : null;
        long s = set == null ? 0 : set.handle();
        int o = opts.bits();
        int off = batch.position();
        int len = batch.remaining();
        long r;
        try {
            r = guard.with(h -> Native.channelSendBatch(h, s, d, batch, off, len, o));
        } finally {
            java.lang.ref.Reference.reachabilityFence(set);
        }
        batch.position(off + (int) r);
        return (int) (r >>> 32);
    }

    /** One native send: to the prepared {@code set}, else to the encoded {@code d}. */
    private long call(Destinations set, byte[] d, byte[] arr, ByteBuffer buf, int off, int len, SendOptions opts,
            boolean ticket) {
        long s = set == null ? 0 : set.handle();
        int o = opts.bits();
        try {
            return guard.with(h -> Native.channelSend(h, s, d, arr, buf, off, len, o, ticket));
        } finally {
            // The set's native memory is freed only once it is unreachable.
            java.lang.ref.Reference.reachabilityFence(set);
        }
    }

    private static void direct(ByteBuffer b) {
        if (!b.isDirect()) {
            throw new SessionReplException("SR_INVALID_ARGUMENT", "not a direct ByteBuffer");
        }
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
        int len = payload == null ? 0 : payload.length;
        return new Ticket(call(null, dests(to), payload, null, 0, len, opts, true));
    }

    /**
     * As {@link #sendWithTicket(InetSocketAddress[], byte[], SendOptions)}
     * to a prepared destination set.
     *
     * @param to the destinations
     * @param payload the bytes
     * @param opts ack and compression
     * @return the ticket; close it when done
     * @throws SessionReplException when nothing could be sent at all
     */
    public Ticket sendWithTicketTo(Destinations to, byte[] payload, SendOptions opts) {
        int len = payload == null ? 0 : payload.length;
        return new Ticket(call(java.util.Objects.requireNonNull(to, "to"), null, payload, null, 0, len, opts, true));
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
        direct(payload);
        return new Ticket(call(null, dests(to), null, payload, payload.position(), payload.remaining(), opts, true));
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
        if (batches != null || views != null) {
            ByteBuffer b = MessageBatch.layout(meta, payload);
            String[] f = deliverBatch(b, 1, b.capacity());
            return f == null ? null : f[0];
        }
        messages.onMessage(new Message(meta, payload));
        return null;
    }

    /**
     * Delivers the {@code count} messages laid out in {@code buf[0 ..
     * length)}; returns null or one failure text (or null) per message.
     */
    String[] deliverBatch(ByteBuffer buf, int count, int length) {
        if (views != null && batches == null) {
            return views.get().deliver(buf, count, length);
        }
        MessageBatch b = new MessageBatch(buf, count, length);
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
