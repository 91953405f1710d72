package io.sessionrepl;

import static io.sessionrepl.ApiTest.WAIT;
import static io.sessionrepl.ApiTest.check;
import static io.sessionrepl.ApiTest.eq;
import static io.sessionrepl.ApiTest.expect;
import static io.sessionrepl.ApiTest.kib;
import static io.sessionrepl.ApiTest.plain;
import static io.sessionrepl.ApiTest.to;
import static io.sessionrepl.ApiTest.waitFor;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The batch APIs ({@link Channel#sendBatch}, {@link MessageBatchListener}),
 * run by {@link ApiTest}'s runner against the real native library.
 */
final class BatchTest {
    private BatchTest() {}

    /** A message {@code i} of a test: 4-byte index then {@code size - 4} bytes of pattern. */
    static byte[] msg(int i, int size) {
        byte[] b = kib(i);
        b = Arrays.copyOf(b, size);
        ByteBuffer.wrap(b).putInt(i);
        return b;
    }

    static ByteBuffer batchOf(int from, int count, int size) {
        ByteBuffer buf = ByteBuffer.allocateDirect(count * (4 + size));
        for (int i = from; i < from + count; i++) {
            byte[] m = msg(i, size);
            check(Channel.putMessage(buf, m, 0, m.length), "message fits");
        }
        buf.flip();
        return buf;
    }

    /**
     * sendBatch delivers every message exactly, in order, in every mode and
     * with tcpThreadCount 0 and 2, to a batch listener that sees batches of
     * more than one message at least once (so batching is real), and moves
     * the buffer's position past what it sent.
     */
    static void batchesArriveInOrder() throws Exception {
        for (String mode : ApiTest.MODES) {
            for (String threads : new String[] {"0", "2"}) {
                List<byte[]> got = new CopyOnWriteArrayList<>();
                AtomicInteger largest = new AtomicInteger();
                AtomicInteger metaOk = new AtomicInteger();
                try (Channel a = Channel.builder(plain(mode)).start();
                     Channel b = Channel.builder(plain(mode).set("tcpThreadCount", threads)).onMessageBatch(batch -> {
                         largest.accumulateAndGet(batch.size(), Math::max);
                         for (int i = 0; i < batch.size(); i++) {
                             ByteBuffer p = batch.payload(i);
                             check(p.isReadOnly(), "payload view is read-only");
                             byte[] copy = new byte[p.remaining()];
                             p.get(copy);
                             got.add(copy);
                             Message m = batch.message(i);
                             if (Arrays.equals(copy, m.payload()) && m.id() > 0 && m.from() != null) {
                                 metaOk.incrementAndGet();
                             }
                         }
                     }).start()) {
                    int n = 2000;
                    int sent = 0;
                    SendOptions o = SendOptions.ack(SendOptions.Ack.NONE).compress(false);
                    while (sent < n) {
                        ByteBuffer buf = batchOf(sent, Math.min(100, n - sent), 200);
                        int pos0 = buf.position();
                        int k = a.sendBatch(to(b), buf, o);
                        check(k >= 1, "sendBatch sends at least one");
                        eq(pos0 + k * 204, buf.position(), "position after " + k + " messages");
                        sent += k;
                    }
                    String what = mode + " tcpThreadCount=" + threads;
                    waitFor(() -> got.size() >= n, what + " delivery of all");
                    eq(n, got.size(), what + " delivered exactly once");
                    for (int i = 0; i < n; i++) {
                        check(Arrays.equals(msg(i, 200), got.get(i)), what + " message " + i + " intact and in order");
                    }
                    eq(n, metaOk.get(), what + " message() copies match the views");
                    if (threads.equals("0") && !mode.equals("synchronous") && !mode.equals("pooled")) {
                        check(largest.get() > 1, what + " batches of more than one (largest " + largest.get() + ")");
                    }
                }
            }
        }
    }

    /**
     * A batch listener refuses one message with fail(i) and the whole batch
     * by throwing; the per-message listener's exception still fails only
     * its message. The senders see exactly those FAILs.
     */
    static void batchFailuresReachSenders() throws Exception {
        for (String mode : ApiTest.MODES) {
            try (Channel a = Channel.builder(plain(mode)).start();
                 Channel b = Channel.builder(plain(mode)).onMessageBatch(batch -> {
                     for (int i = 0; i < batch.size(); i++) {
                         ByteBuffer p = batch.payload(i);
                         byte[] head = new byte[Math.min(4, p.remaining())];
                         p.get(head);
                         String s = new String(head, StandardCharsets.US_ASCII);
                         if (s.equals("boom")) {
                             throw new IllegalStateException("batch thrown by test");
                         }
                         if (s.equals("bad!")) {
                             batch.fail(i, "refused message " + i);
                         }
                     }
                 }).start()) {
                SendOptions d = SendOptions.ack(SendOptions.Ack.DELIVERY);
                for (String[] c : new String[][] {{"good", "ACKED", ""}, {"bad!", "FAILED", "refused message"},
                        {"boom", "FAILED", "batch thrown by test"}, {"good", "ACKED", ""}}) {
                    try (Ticket t = a.sendWithTicket(to(b), c[0].getBytes(StandardCharsets.US_ASCII), d)) {
                        Outcome o = t.await(WAIT).get(0);
                        eq(c[1], o.status().name(), mode + " " + c[0] + ": " + o);
                        if (!c[2].isEmpty()) {
                            eq("SR_REMOTE_FAILURE", o.result(), mode + " result");
                            check(o.detail().contains(c[2]), mode + " reason carried: " + o.detail());
                        }
                    }
                }
            }
        }
    }

    /**
     * A batch far larger than the native side's copy group (64 KiB), with
     * messages of 10 bytes to 70 KiB (one larger than a group by itself),
     * arrives whole and in order in every mode; a malformed length after
     * good messages ends the call at them, and the next call refuses it.
     */
    static void largeMixedBatchesArriveWhole() throws Exception {
        int[] sizes = {200, 3000, 70_000, 10, 65_532, 65_533, 1};
        for (String mode : ApiTest.MODES) {
            List<byte[]> got = new CopyOnWriteArrayList<>();
            try (Channel b = ApiTest.receiver(mode, got); Channel a = Channel.builder(plain(mode)).start()) {
                int n = 70;
                List<byte[]> sent = new ArrayList<>();
                int total = 0;
                for (int i = 0; i < n; i++) {
                    sent.add(msg(i, Math.max(4, sizes[i % sizes.length])));
                    total += 4 + sent.get(i).length;
                }
                ByteBuffer buf = ByteBuffer.allocateDirect(total + 8);
                for (byte[] m : sent) {
                    check(Channel.putMessage(buf, m, 0, m.length), "message fits");
                }
                // a length that claims more than the buffer holds
                buf.putInt(1_000_000).putInt(7).flip();
                SendOptions o = SendOptions.ack(SendOptions.Ack.NONE).compress(false);
                int done = 0;
                while (done < n) {
                    int k = a.sendBatch(to(b), buf, o);
                    check(k >= 1, mode + ": sendBatch sends at least one");
                    done += k;
                }
                eq(n, done, mode + ": every good message taken, not the malformed one");
                eq(total, buf.position(), mode + ": position at the malformed length");
                SessionReplException e = expect("SR_INVALID_ARGUMENT", () -> a.sendBatch(to(b), buf, o));
                check(e.detail().contains("claims"), mode + ": detail " + e.detail());
                waitFor(() -> got.size() >= n, mode + " delivery of all");
                eq(n, got.size(), mode + ": delivered exactly once");
                for (int i = 0; i < n; i++) {
                    check(Arrays.equals(sent.get(i), got.get(i)), mode + ": message " + i + " intact and in order");
                }
            }
        }
    }

    /**
     * sendBatch in synchronous mode stops at a refused message: the call
     * returns the messages before it, the next call throws its failure.
     */
    static void syncBatchStopsAtFailure() throws Exception {
        List<byte[]> got = new CopyOnWriteArrayList<>();
        try (Channel b = ApiTest.receiver("synchronous", got); Channel a = Channel.builder(plain("synchronous")).start()) {
            ByteBuffer buf = ByteBuffer.allocateDirect(1024);
            for (String s : new String[] {"one", "two", "bad", "four"}) {
                byte[] p = s.getBytes(StandardCharsets.US_ASCII);
                Channel.putMessage(buf, p, 0, p.length);
            }
            buf.flip();
            SendOptions d = SendOptions.ack(SendOptions.Ack.DELIVERY);
            eq(2, a.sendBatch(to(b), buf, d), "messages before the refused one");
            eq(14, buf.position(), "position after two messages");
            SessionReplException e = expect("SR_REMOTE_FAILURE", () -> a.sendBatch(to(b), buf, d));
            check(e.detail().contains("refused by test listener"), "reason: " + e.detail());
            eq(14, buf.position(), "position unchanged by a failed call");
            eq(2, got.size(), "two delivered");
        }
    }

    /** Bad batches are refused with a clear error and the channel keeps working. */
    static void badBatchesRefused() throws Exception {
        List<byte[]> got = new CopyOnWriteArrayList<>();
        Channel b = ApiTest.receiver("synchronous", got);
        Channel a = Channel.builder(plain("synchronous")).start();
        try {
            SendOptions d = SendOptions.ack(SendOptions.Ack.DELIVERY);
            expect("SR_INVALID_ARGUMENT", () -> a.sendBatch(to(b), ByteBuffer.allocate(16), d));
            ByteBuffer lying = ByteBuffer.allocateDirect(16);
            lying.putInt(1_000_000).putInt(7).flip();
            SessionReplException e = expect("SR_INVALID_ARGUMENT", () -> a.sendBatch(to(b), lying, d));
            check(e.detail().contains("claims"), "detail: " + e.detail());
            ByteBuffer shortHeader = ByteBuffer.allocateDirect(2);
            shortHeader.put((byte) 0).put((byte) 1).flip();
            expect("SR_INVALID_ARGUMENT", () -> a.sendBatch(to(b), shortHeader, d));
            eq(0, a.sendBatch(to(b), ByteBuffer.allocateDirect(0), d), "empty batch");
            check(!Channel.putMessage(ByteBuffer.allocateDirect(5), new byte[2], 0, 2), "putMessage refuses what does not fit");
            ByteBuffer untouched = ByteBuffer.allocateDirect(16);
            for (int[] bad : new int[][] {{0, -1}, {-1, 1}, {1, 2}}) {
                try {
                    Channel.putMessage(untouched, new byte[2], bad[0], bad[1]);
                    throw new AssertionError("putMessage accepted off=" + bad[0] + " len=" + bad[1]);
                } catch (IndexOutOfBoundsException expected) {
                    eq(0, untouched.position(), "nothing written for off=" + bad[0] + " len=" + bad[1]);
                }
            }
            eq(1, a.sendBatch(to(b), batchOf(0, 1, 64), d), "a good batch after the bad ones");
            eq(1, got.size(), "delivered");
        } finally {
            a.close();
            b.close();
        }
        expect("SR_NOT_RUNNING", () -> a.sendBatch(to(b), batchOf(0, 1, 64), SendOptions.DEFAULT));
    }

    /** The tests, for ApiTest's runner. */
    static List<Object[]> tests() {
        List<Object[]> t = new ArrayList<>();
        t.add(new Object[] {"batch_send_and_batch_listener_deliver_in_order", (ApiTest.Body) BatchTest::batchesArriveInOrder});
        t.add(new Object[] {"large_mixed_batches_arrive_whole", (ApiTest.Body) BatchTest::largeMixedBatchesArriveWhole});
        t.add(new Object[] {"batch_listener_failures_reach_senders", (ApiTest.Body) BatchTest::batchFailuresReachSenders});
        t.add(new Object[] {"sync_send_batch_stops_at_a_refused_message", (ApiTest.Body) BatchTest::syncBatchStopsAtFailure});
        t.add(new Object[] {"bad_batches_are_refused", (ApiTest.Body) BatchTest::badBatchesRefused});
        return t;
    }
}
