package io.sessionrepl;

import static io.sessionrepl.ApiTest.WAIT;
import static io.sessionrepl.ApiTest.check;
import static io.sessionrepl.ApiTest.eq;
import static io.sessionrepl.ApiTest.expect;
import static io.sessionrepl.ApiTest.plain;
import static io.sessionrepl.ApiTest.to;
import static io.sessionrepl.ApiTest.waitFor;
import static io.sessionrepl.BatchTest.msg;

import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.ReadOnlyBufferException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The lending receive API ({@link MessageViewListener}) and prepared
 * destination sets ({@link Destinations}), run by {@link ApiTest}'s runner
 * against the real native library.
 */
final class ViewTest {
    private ViewTest() {}

    /**
     * Every message arrives byte for byte, once, in order, through a
     * read-only direct view whose position..limit is exactly the payload,
     * with its header (id, sender, member id) right; in every mode, with
     * tcpThreadCount 0 and 2, sent to an address array and to a prepared
     * set; and the views are reused (far fewer view objects than messages).
     */
    static void viewsDeliverExactPayloadsAndHeaders() throws Exception {
        for (String mode : ApiTest.MODES) {
            for (String threads : new String[] {"0", "2"}) {
                String what = mode + " tcpThreadCount=" + threads;
                List<byte[]> got = new CopyOnWriteArrayList<>();
                List<String> bad = new CopyOnWriteArrayList<>();
                Set<ByteBuffer> views = Collections.newSetFromMap(Collections.synchronizedMap(new IdentityHashMap<>()));
                Map<Long, Boolean> ids = new ConcurrentHashMap<>();
                try (Channel a = Channel.builder(plain(mode)).start();
                     Channel b = Channel.builder(plain(mode).set("tcpThreadCount", threads)).onMessageView((h, p) -> {
                         views.add(p);
                         if (!p.isReadOnly() || !p.isDirect() || p.order() != ByteOrder.BIG_ENDIAN) {
                             bad.add("view not read-only, direct and big-endian");
                         }
                         if (!h.from().equals(a.localAddress()) || !Arrays.equals(h.memberId(), a.memberId())) {
                             bad.add("header names " + h.from() + ", not the sender " + a.localAddress());
                         }
                         if (ids.put(h.id(), true) != null) {
                             bad.add("id " + h.id() + " twice");
                         }
                         byte[] copy = new byte[p.remaining()];
                         p.get(copy);
                         got.add(copy);
                         // the listener may move the view: the next message's is reset
                         p.order(ByteOrder.LITTLE_ENDIAN).limit(p.position());
                     }).start()) {
                    int n = 1500;
                    Destinations set = Destinations.of(to(b));
                    SendOptions o = SendOptions.ack(SendOptions.Ack.NONE).compress(false);
                    for (int i = 0; i < n; i++) {
                        byte[] m = msg(i, 4 + (i * 131) % 3000);
                        if (i % 2 == 0) {
                            a.sendTo(set, m, o);
                        } else {
                            a.send(to(b), m, o);
                        }
                    }
                    waitFor(() -> got.size() >= n, what + " delivery of all");
                    eq(n, got.size(), what + " delivered exactly once");
                    eq(List.of(), bad, what + " listener checks");
                    for (int i = 0; i < n; i++) {
                        check(Arrays.equals(msg(i, 4 + (i * 131) % 3000), got.get(i)),
                            what + " message " + i + " intact and in order");
                    }
                    check(views.size() <= 16, what + " views reused: " + views.size() + " view objects for " + n);
                }
            }
        }
    }

    /**
     * A view or header kept past its listener call cannot be read: the
     * payload view reads nothing, the header throws; a write to the view
     * is refused during the call.
     */
    static void viewsKeptPastTheirCallReadNothing() throws Exception {
        AtomicReference<ByteBuffer> kept = new AtomicReference<>();
        AtomicReference<MessageHeader> keptHeader = new AtomicReference<>();
        List<String> seen = new CopyOnWriteArrayList<>();
        try (Channel b = Channel.builder(plain("synchronous")).onMessageView((h, p) -> {
                 try {
                     p.put(p.position(), (byte) 0);
                     seen.add("written");
                 } catch (ReadOnlyBufferException expected) {
                     seen.add(p.remaining() + " bytes, id " + h.id());
                 }
                 kept.set(p);
                 keptHeader.set(h);
             }).start();
             Channel a = Channel.builder(plain("synchronous")).start()) {
            long id = a.send(to(b), "kept".getBytes(StandardCharsets.US_ASCII), SendOptions.ack(SendOptions.Ack.DELIVERY));
            eq(List.of("4 bytes, id " + id), seen, "the view during its call");
            ByteBuffer p = kept.get();
            eq(0, p.remaining(), "a kept view has nothing left");
            try {
                p.get();
                throw new AssertionError("a kept view was read");
            } catch (BufferUnderflowException expected) {
                // refused
            }
            try {
                p.get(0);
                throw new AssertionError("a kept view was read at an index");
            } catch (IndexOutOfBoundsException expected) {
                // refused
            }
            try {
                keptHeader.get().id();
                throw new AssertionError("a kept header was read");
            } catch (IllegalStateException expected) {
                check(expected.getMessage().contains("after its listener call"), "reason: " + expected.getMessage());
            }
        }
    }

    /**
     * A view listener's exception fails only its message: in every mode the
     * sender sees FAIL with the exception's text for it and ACKED for the
     * next, exactly one outcome each, and the later messages are delivered.
     */
    static void viewListenerExceptionFailsOnlyItsMessage() throws Exception {
        for (String mode : ApiTest.MODES) {
            List<String> got = new CopyOnWriteArrayList<>();
            try (Channel a = Channel.builder(plain(mode)).start();
                 Channel b = Channel.builder(plain(mode)).onMessageView((h, p) -> {
                     byte[] c = new byte[p.remaining()];
                     p.get(c);
                     String s = new String(c, StandardCharsets.US_ASCII);
                     if (s.startsWith("bad")) {
                         throw new IllegalStateException("view refused " + s);
                     }
                     got.add(s);
                 }).start()) {
                Destinations set = Destinations.of(to(b));
                SendOptions d = SendOptions.ack(SendOptions.Ack.DELIVERY);
                for (String[] c : new String[][] {{"good1", "ACKED"}, {"bad1", "FAILED"}, {"good2", "ACKED"}}) {
                    try (Ticket t = a.sendWithTicketTo(set, c[0].getBytes(StandardCharsets.US_ASCII), d)) {
                        List<Outcome> os = t.await(WAIT);
                        eq(1, os.size(), mode + " one outcome");
                        Outcome o = os.get(0);
                        eq(c[1], o.status().name(), mode + " " + c[0] + ": " + o);
                        if (c[1].equals("FAILED")) {
                            eq("SR_REMOTE_FAILURE", o.result(), mode + " result");
                            check(o.detail().contains("view refused bad1"), mode + " reason carried: " + o.detail());
                        }
                    }
                }
                eq(List.of("good1", "good2"), got, mode + " accepted messages");
            }
        }
    }

    /**
     * Prepared sets: bad input is refused where the set is made; one set
     * reaches several receivers and works with any channel, sendBatch and
     * sendWithTicket; the empty set means every current member (none here:
     * a clear error); a closed channel refuses it; thousands of sets made
     * and dropped are freed without a crash.
     */
    static void destinationsSendExactlyAndRefuseBadInput() throws Exception {
        try {
            Destinations.of(new InetSocketAddress[] {null});
            throw new AssertionError("a null address was accepted");
        } catch (NullPointerException expected) {
            // refused
        }
        try {
            Destinations.of(InetSocketAddress.createUnresolved("no.such.host", 1));
            throw new AssertionError("an unresolved address was accepted");
        } catch (IllegalArgumentException expected) {
            // refused
        }
        eq(List.of(), Destinations.of().addresses(), "the empty set");
        List<byte[]> got1 = new CopyOnWriteArrayList<>();
        List<byte[]> got2 = new CopyOnWriteArrayList<>();
        try (Channel b1 = ApiTest.receiver("synchronous", got1);
             Channel b2 = ApiTest.receiver("synchronous", got2);
             Channel a = Channel.builder(plain("synchronous")).start();
             Channel a2 = Channel.builder(plain("fastasyncqueue")).start()) {
            Destinations both = Destinations.of(b1.localAddress(), b2.localAddress());
            eq(List.of(b1.localAddress(), b2.localAddress()), both.addresses(), "addresses in order");
            SendOptions d = SendOptions.ack(SendOptions.Ack.DELIVERY);
            a.sendTo(both, ApiTest.kib(1), d);
            a2.sendTo(both, ApiTest.kib(2), d);
            a2.flush(WAIT);
            ByteBuffer direct = ByteBuffer.allocateDirect(100);
            direct.put(ApiTest.kib(3), 0, 100).flip();
            a.sendTo(both, direct, d);
            eq(0, direct.position(), "a direct payload's position is not moved");
            eq(2, a.sendBatchTo(both, BatchTest.batchOf(10, 2, 64), d), "sendBatch to a set");
            try (Ticket t = a.sendWithTicketTo(both, ApiTest.kib(4), d)) {
                List<Outcome> os = t.await(WAIT);
                eq(2, os.size(), "one outcome per destination");
                for (Outcome o : os) {
                    eq(Outcome.Status.ACKED, o.status(), "ticket outcome " + o);
                }
            }
            List<byte[]> want = new ArrayList<>(List.of(ApiTest.kib(1), ApiTest.kib(2), Arrays.copyOf(ApiTest.kib(3), 100),
                msg(10, 64), msg(11, 64), ApiTest.kib(4)));
            for (List<byte[]> got : List.of(got1, got2)) {
                waitFor(() -> got.size() >= want.size(), "delivery to both");
                eq(want.size(), got.size(), "each receiver got each message once");
                for (int i = 0; i < want.size(); i++) {
                    check(Arrays.equals(want.get(i), got.get(i)), "message " + i + " intact");
                }
            }
            SessionReplException e = expect("SR_INVALID_ARGUMENT", () -> a.sendTo(Destinations.of(), ApiTest.kib(5), d));
            check(e.detail().contains("no current members"), "detail: " + e.detail());
            for (int i = 0; i < 20_000; i++) {
                Destinations.of(b1.localAddress());
            }
            System.gc();
            a.sendTo(both, ApiTest.kib(6), d);
            a.close();
            expect("SR_NOT_RUNNING", () -> a.sendTo(both, ApiTest.kib(7), d));
        }
    }

    /**
     * The intake stays bounded with a prepared set: a fastasync channel
     * whose peer never reads refuses with SR_QUEUE_FULL once its
     * maxQueueLength is full, and every message it accepted gets exactly
     * one outcome (here, when the channel closes).
     */
    static void destinationsQueueFullAndOneOutcomeEach() throws Exception {
        Map<Long, Integer> outcomes = new ConcurrentHashMap<>();
        try (ServerSocket deaf = new ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
            Channel a = Channel.builder(plain("fastasyncqueue").set("maxQueueLength", "4")
                .set("queueAddWaitTimeout", "0")).onOutcome(o -> outcomes.merge(o.messageId(), 1, Integer::sum)).start();
            List<Long> accepted = new ArrayList<>();
            boolean full = false;
            try {
                Destinations set = Destinations.of(new InetSocketAddress("127.0.0.1", deaf.getLocalPort()));
                SendOptions d = SendOptions.ack(SendOptions.Ack.DELIVERY);
                byte[] p = new byte[16 * 1024];
                for (int i = 0; i < 2000 && !full; i++) {
                    try {
                        accepted.add(a.sendTo(set, p, d));
                    } catch (SessionReplException e) {
                        eq("SR_QUEUE_FULL", e.result(), "refusal");
                        full = true;
                    }
                }
            } finally {
                a.close();
            }
            check(full, "the bounded queue refused a send (accepted " + accepted.size() + ")");
            check(!accepted.isEmpty(), "some were accepted first");
            waitFor(() -> outcomes.size() >= accepted.size(), "an outcome for each accepted message");
            for (long id : accepted) {
                eq(1, outcomes.getOrDefault(id, 0), "outcomes of message " + id);
            }
            eq(accepted.size(), outcomes.size(), "no outcome for a refused message");
        }
    }

    /** The tests, for ApiTest's runner. */
    static List<Object[]> tests() {
        List<Object[]> t = new ArrayList<>();
        t.add(new Object[] {"view_listener_delivers_exact_payloads_and_headers",
            (ApiTest.Body) ViewTest::viewsDeliverExactPayloadsAndHeaders});
        t.add(new Object[] {"view_kept_past_its_call_reads_nothing", (ApiTest.Body) ViewTest::viewsKeptPastTheirCallReadNothing});
        t.add(new Object[] {"view_listener_exception_fails_only_its_message",
            (ApiTest.Body) ViewTest::viewListenerExceptionFailsOnlyItsMessage});
        t.add(new Object[] {"destinations_send_exactly_and_refuse_bad_input",
            (ApiTest.Body) ViewTest::destinationsSendExactlyAndRefuseBadInput});
        t.add(new Object[] {"destinations_queue_full_and_one_outcome_each",
            (ApiTest.Body) ViewTest::destinationsQueueFullAndOneOutcomeEach});
        return t;
    }
}
