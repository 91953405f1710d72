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
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The send intake of {@code bindings/jni/src/intake.rs} (payloads copied
 * into pooled chunks that are reused once their messages are sent) and
 * its input checks, run by {@link ApiTest}'s runner.
 */
final class IntakeTest {
    private IntakeTest() {}

    /** Sizes that cross chunk boundaries, hit the 16 KiB own-allocation limit and exceed it. */
    static int size(int i) {
        if (i % 97 == 0) {
            return 64 * 1024 + 1 + i % 7;
        }
        if (i % 89 == 0) {
            return 16 * 1024 + i % 2;
        }
        return 4 + (i * 131) % 4000;
    }

    /**
     * Thousands of messages of mixed sizes through send(byte[]), send of a
     * direct buffer and sendBatch, from two threads at once, in
     * fastasyncqueue (payloads stay in the intake's chunks while queued):
     * every payload arrives byte for byte, so no chunk is reused while a
     * message cut from it is still unsent.
     */
    static void pooledIntakeKeepsPayloadsIntact() throws Exception {
        final int n = 3000;
        List<byte[]> got = new CopyOnWriteArrayList<>();
        try (Channel b = Channel.builder(plain("fastasyncqueue")).onMessage(m -> got.add(m.payload())).start();
             Channel a = Channel.builder(plain("fastasyncqueue")).start()) {
            InetSocketAddress[] to = to(b);
            SendOptions none = SendOptions.ack(SendOptions.Ack.NONE);
            Thread other = new Thread(() -> {
                ByteBuffer d = ByteBuffer.allocateDirect(70 * 1024);
                for (int i = n; i < 2 * n; i++) {
                    byte[] m = msg(i, size(i));
                    d.clear();
                    d.put(m).flip();
                    a.send(to, d, none);
                }
            });
            other.start();
            ByteBuffer batch = ByteBuffer.allocateDirect(8 * (4 + 70 * 1024));
            for (int i = 0; i < n; ) {
                if (i % 3 == 0) {
                    byte[] m = msg(i, size(i));
                    a.send(to, m, none);
                    i++;
                    continue;
                }
                batch.clear();
                int k = 0;
                for (; k < 8 && i + k < n; k++) {
                    byte[] m = msg(i + k, size(i + k));
                    check(Channel.putMessage(batch, m, 0, m.length), "fits");
                }
                batch.flip();
                while (batch.hasRemaining()) {
                    a.sendBatch(to, batch, none);
                }
                i += k;
            }
            other.join(WAIT);
            waitFor(() -> got.size() >= 2 * n, "all " + 2 * n + " messages (now " + got.size() + ")");
            boolean[] seen = new boolean[2 * n];
            for (byte[] p : got) {
                int i = ByteBuffer.wrap(p).getInt();
                check(i >= 0 && i < 2 * n && !seen[i], "index " + i + " once");
                seen[i] = true;
                check(Arrays.equals(msg(i, size(i)), p), "payload " + i + " of " + p.length + " bytes intact");
            }
        }
    }

    /**
     * A payload over maxFrameSize is refused before any copy, in send and
     * sendBatch, naming the limit; more than eight destinations (decoded
     * off the stack) still reach every one.
     */
    static void intakeChecksAndManyDestinations() throws Exception {
        List<byte[]> got = new CopyOnWriteArrayList<>();
        try (Channel b = Channel.builder(plain("synchronous")).onMessage(m -> got.add(m.payload())).start();
             Channel a = Channel.builder(plain("synchronous").set("maxFrameSize", "2048").set("maxDecompressedSize", "131072")).start()) {
            SendOptions ack = SendOptions.ack(SendOptions.Ack.DELIVERY);
            SessionReplException e = expect("SR_INVALID_ARGUMENT", () -> a.send(to(b), new byte[4096], ack));
            check(e.detail().contains("maxFrameSize"), "detail names the limit: " + e.detail());
            ByteBuffer big = ByteBuffer.allocateDirect(4 + 4096);
            check(Channel.putMessage(big, new byte[4096], 0, 4096), "fits");
            big.flip();
            e = expect("SR_INVALID_ARGUMENT", () -> a.sendBatch(to(b), big, ack));
            check(e.detail().contains("maxFrameSize"), "batch detail names the limit: " + e.detail());
            eq(0, big.position(), "nothing consumed");
            // ten destinations, each a receiver of its own
            List<Channel> rs = new ArrayList<>();
            List<byte[]> many = new CopyOnWriteArrayList<>();
            try {
                InetSocketAddress[] tos = new InetSocketAddress[10];
                for (int i = 0; i < tos.length; i++) {
                    Channel r = Channel.builder(plain("synchronous")).onMessage(m -> many.add(m.payload())).start();
                    rs.add(r);
                    tos[i] = r.localAddress();
                }
                try (Ticket t = a.sendWithTicket(tos, msg(7, 100), ack)) {
                    List<Outcome> os = t.await(WAIT);
                    eq(10, os.size(), "one outcome per destination");
                    for (Outcome o : os) {
                        eq(Outcome.Status.ACKED, o.status(), "acked by " + o.destination());
                    }
                }
                eq(10, many.size(), "every destination delivered");
                for (byte[] p : many) {
                    check(Arrays.equals(msg(7, 100), p), "payload intact");
                }
            } finally {
                for (Channel r : rs) {
                    r.close();
                }
            }
            eq(0, got.size(), "refused payloads never sent");
        }
    }

    /**
     * SessionStore.get(id, 0) answers from what this node holds without
     * waiting: the copy it holds (delta mode, both nodes; backup mode, the
     * primary), not SR_TIMEOUT.
     */
    static void storeGetWithoutWait() throws Exception {
        for (String mode : new String[] {"delta", "backup"}) {
            Config c = ApiTest.cluster("fastasyncqueue").set("sessionMode", mode).set("backupCount", "1");
            try (SessionStore a = SessionStore.open(c, null); SessionStore b = SessionStore.open(c, null)) {
                a.waitReady(WAIT);
                b.waitReady(WAIT);
                waitFor(() -> a.members().size() == 1 && b.members().size() == 1, "stores see each other");
                String id = null;
                for (int i = 0; id == null; i++) {
                    if (a.isPrimaryFor("g" + i)) {
                        id = "g" + i;
                    }
                }
                try (Commit k = a.create(a.begin(id).set("v", new byte[] {9}))) {
                    eq(2, k.await(WAIT), mode + ": two copies");
                }
                String sid = id;
                // b holds a copy (delta: every node; backup: the backup) once replicated
                waitFor(() -> b.get(sid).status() == Lookup.Status.FOUND, mode + ": b answers with a wait");
                Lookup held = b.get(id, 0);
                eq(Lookup.Status.FOUND, held.status(), mode + ": b.get(id, 0) from the copy b holds");
                check(Arrays.equals(new byte[] {9}, held.session().attribute("v")), mode + ": b's value");
                Lookup l = a.get(id, 0);
                eq(Lookup.Status.FOUND, l.status(), mode + ": a.get(id, 0) on the node holding the copy");
                check(Arrays.equals(new byte[] {9}, l.session().attribute("v")), mode + ": value");
                String unknown = null;
                for (int i = 0; unknown == null; i++) {
                    if (a.isPrimaryFor("never-" + i)) {
                        unknown = "never-" + i;
                    }
                }
                eq(Lookup.Status.NOT_FOUND, a.get(unknown, 0).status(), mode + ": unknown id, no wait");
            }
        }
    }

    /** The tests, for ApiTest's runner. */
    static List<Object[]> tests() {
        List<Object[]> t = new ArrayList<>();
        t.add(new Object[] {"pooled_intake_keeps_every_payload_intact", (ApiTest.Body) IntakeTest::pooledIntakeKeepsPayloadsIntact});
        t.add(new Object[] {"intake_refuses_oversized_and_reaches_many_destinations",
            (ApiTest.Body) IntakeTest::intakeChecksAndManyDestinations});
        t.add(new Object[] {"store_get_with_zero_wait_answers_from_the_held_copy", (ApiTest.Body) IntakeTest::storeGetWithoutWait});
        return t;
    }
}
