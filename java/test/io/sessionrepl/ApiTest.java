package io.sessionrepl;

import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;

/**
 * Tests of the io.sessionrepl Java API against the real native library:
 * real channels and stores on 127.0.0.1, each cluster with its own
 * multicast group and port. A tiny runner (Debian ships no JUnit 5 jar
 * that runs standalone here): each test is a method, every check an
 * assertion that throws; the last line is "N passed, N failed".
 *
 * Run: java -Djava.net.preferIPv4Stack=true -Dsessionrepl.library=.../libsessionrepl_jni.so
 *      -cp classes:testclasses io.sessionrepl.ApiTest [name-filter]
 */
public final class ApiTest {
    static final long WAIT = 20_000;
    static final String[] MODES = {"synchronous", "pooled", "asynchronous", "fastasyncqueue"};
    static final AtomicInteger CLUSTER = new AtomicInteger();

    interface Body {
        void run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        String filter = args.length > 0 ? args[0] : "";
        List<Object[]> tests = new ArrayList<>();
        tests.add(new Object[] {"bad_config_key_throws_unknown_config_key", (Body) ApiTest::badConfigKey});
        tests.add(new Object[] {"bad_config_value_throws_naming_the_key", (Body) ApiTest::badConfigValue});
        tests.add(new Object[] {"bad_cross_key_config_fails_at_start", (Body) ApiTest::badCrossKey});
        tests.add(new Object[] {"every_mode_delivers_and_acks_with_outcomes", (Body) ApiTest::everyModeAcks});
        tests.add(new Object[] {"every_mode_reports_listener_exception_as_fail", (Body) ApiTest::everyModeFails});
        tests.add(new Object[] {"sync_send_throws_remote_failure", (Body) ApiTest::syncSendThrows});
        tests.add(new Object[] {"async_outcome_listener_gets_acked_and_failed", (Body) ApiTest::asyncOutcomeListener});
        tests.add(new Object[] {"no_ack_send_ends_sent", (Body) ApiTest::noAckSent});
        tests.add(new Object[] {"direct_bytebuffer_and_slices_are_sent_exactly", (Body) ApiTest::directBuffer});
        tests.add(new Object[] {"unreachable_destination_fails", (Body) ApiTest::unreachable});
        tests.add(new Object[] {"stats_and_prometheus_count_messages", (Body) ApiTest::stats});
        tests.add(new Object[] {"multicast_members_are_announced", (Body) ApiTest::members});
        tests.add(new Object[] {"use_after_stop_or_close_throws", (Body) ApiTest::useAfterClose});
        tests.add(new Object[] {"native_panic_becomes_exception", (Body) ApiTest::panicBoundary});
        tests.add(new Object[] {"closing_from_own_callback_is_refused", (Body) ApiTest::inCallback});
        tests.add(new Object[] {"callback_threads_detach_on_stop", (Body) ApiTest::threadsDetach});
        tests.add(new Object[] {"store_replicates_commits_ids_and_invalidation", (Body) ApiTest::storeCycle});
        tests.add(new Object[] {"store_backup_mode_fetch_and_drain", (Body) ApiTest::storeBackupDrain});
        tests.add(new Object[] {"store_misuse_throws", (Body) ApiTest::storeMisuse});
        tests.add(new Object[] {"store_commit_based_on_a_stale_read_conflicts", (Body) ApiTest::storeBasedOn});
        tests.addAll(BatchTest.tests());
        tests.addAll(IntakeTest.tests());
        tests.addAll(MemberPayloadTest.tests());
        tests.addAll(ViewTest.tests());
        int passed = 0;
        int failed = 0;
        for (Object[] t : tests) {
            String name = (String) t[0];
            if (!name.contains(filter)) {
                continue;
            }
            long t0 = System.nanoTime();
            try {
                ((Body) t[1]).run();
                passed++;
                System.out.printf("test %s ... ok (%d ms)%n", name, (System.nanoTime() - t0) / 1_000_000);
            } catch (Throwable e) {
                failed++;
                System.out.printf("test %s ... FAILED: %s%n", name, e);
                e.printStackTrace(System.out);
            }
        }
        System.out.printf("java-api: %d passed, %d failed%n", passed, failed);
        System.exit(failed == 0 && passed > 0 ? 0 : 1);
    }

    // -- helpers --

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static void eq(Object want, Object got, String what) {
        if (!java.util.Objects.equals(want, got)) {
            throw new AssertionError(what + ": want " + want + ", got " + got);
        }
    }

    static SessionReplException expect(String result, Body b) throws Exception {
        try {
            b.run();
        } catch (SessionReplException e) {
            eq(result, e.result(), "result name of " + e);
            return e;
        }
        throw new AssertionError("expected SessionReplException " + result);
    }

    static void waitFor(BooleanSupplier cond, String what) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WAIT);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(10);
        }
    }

    static Config plain(String mode) {
        return new Config()
            .set("tcpListenAddress", "127.0.0.1")
            .set("membershipType", "none")
            .set("replicationMode", mode)
            .set("ackTimeout", "10000");
    }

    /**
     * A cluster of its own: multicast group, port and domain no other test
     * shares (also used by the Tomcat package's tests).
     *
     * @param mode the replication mode
     * @return the configuration
     */
    public static Config cluster(String mode) {
        int n = CLUSTER.incrementAndGet();
        long pid = ProcessHandle.current().pid();
        return new Config()
            .set("tcpListenAddress", "127.0.0.1")
            .set("replicationMode", mode)
            .set("membershipType", "multicast")
            .set("mcastAddr", "239.253." + (pid % 250) + "." + (n % 250 + 1))
            .set("mcastPort", String.valueOf(30_000 + (pid * 7 + n * 97) % 20_000))
            .set("mcastBindAddress", "127.0.0.1")
            .set("mcastTTL", "1")
            .set("mcastFrequency", "100")
            .set("mcastDropTime", "1500")
            .set("domain", "java-api-" + pid + "-" + n);
    }

    static byte[] kib(int seed) {
        byte[] b = new byte[1024];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    static InetSocketAddress[] to(Channel c) {
        return new InetSocketAddress[] {c.localAddress()};
    }

    /** A receiver that records payloads and throws for those starting with "bad". */
    static Channel receiver(String mode, List<byte[]> got) {
        return Channel.builder(plain(mode)).onMessage(m -> {
            byte[] p = m.payload();
            if (p.length >= 3 && p[0] == 'b' && p[1] == 'a' && p[2] == 'd') {
                throw new IllegalStateException("refused by test listener");
            }
            got.add(p);
        }).start();
    }

    // -- tests --

    static void badConfigKey() throws Exception {
        SessionReplException e = expect("SR_UNKNOWN_CONFIG_KEY", () -> new Config().set("noSuchKey", "1"));
        check(e.detail().contains("noSuchKey"), "detail names the key: " + e.detail());
    }

    static void badConfigValue() throws Exception {
        SessionReplException e = expect("SR_INVALID_CONFIG_VALUE", () -> new Config().set("ackTimeout", "soon"));
        check(e.detail().contains("ackTimeout"), "detail names the key: " + e.detail());
        expect("SR_INVALID_CONFIG_VALUE", () -> new Config().set("replicationMode", "carrier-pigeon"));
        expect("SR_NULL_PARAMETER", () -> new Config().set("ackTimeout", null));
    }

    static void badCrossKey() throws Exception {
        Config c = plain("synchronous").set("reconnectBackoffMax", "10").set("reconnectBackoffMin", "5000");
        expect("SR_INVALID_CONFIG_VALUE", c::validate);
        expect("SR_INVALID_CONFIG_VALUE", () -> Channel.builder(c).start());
        expect("SR_INVALID_CONFIG_VALUE", () -> SessionStore.open(c, null));
    }

    static void everyModeAcks() throws Exception {
        for (String mode : MODES) {
            List<byte[]> got = new CopyOnWriteArrayList<>();
            try (Channel b = receiver(mode, got); Channel a = Channel.builder(plain(mode)).start()) {
                for (SendOptions.Ack ack : new SendOptions.Ack[] {SendOptions.Ack.RECEIPT, SendOptions.Ack.DELIVERY}) {
                    byte[] p = kib(ack.ordinal());
                    try (Ticket t = a.sendWithTicket(to(b), p, SendOptions.ack(ack))) {
                        List<Outcome> os = t.await(WAIT);
                        eq(1, os.size(), mode + " outcome count");
                        eq(Outcome.Status.ACKED, os.get(0).status(), mode + " " + ack + " " + os.get(0));
                        eq(b.localAddress(), os.get(0).destination(), mode + " destination");
                        eq(t.messageId(), os.get(0).messageId(), mode + " message id");
                    }
                    int idx = ack.ordinal() - 1;
                    waitFor(() -> got.size() > idx, mode + " delivery");
                    check(Arrays.equals(p, got.get(idx)), mode + " payload intact");
                }
                // compressed, acked after delivery
                byte[] big = new byte[64 * 1024];
                try (Ticket t = a.sendWithTicket(to(b), big, SendOptions.ack(SendOptions.Ack.DELIVERY).compress(true))) {
                    eq(Outcome.Status.ACKED, t.await(WAIT).get(0).status(), mode + " compressed");
                }
                waitFor(() -> got.size() == 3, mode + " compressed delivery");
                check(Arrays.equals(big, got.get(2)), mode + " compressed payload intact");
            }
        }
    }

    static void everyModeFails() throws Exception {
        for (String mode : MODES) {
            List<byte[]> got = new CopyOnWriteArrayList<>();
            try (Channel b = receiver(mode, got); Channel a = Channel.builder(plain(mode)).start()) {
                try (Ticket t = a.sendWithTicket(to(b), "bad message".getBytes(StandardCharsets.UTF_8),
                        SendOptions.ack(SendOptions.Ack.DELIVERY))) {
                    Outcome o = t.await(WAIT).get(0);
                    eq(Outcome.Status.FAILED, o.status(), mode + " " + o);
                    eq("SR_REMOTE_FAILURE", o.result(), mode + " result");
                    check(o.detail().contains("refused by test listener"), mode + " reason carried: " + o.detail());
                }
                // the connection survives: the next message is delivered
                try (Ticket t = a.sendWithTicket(to(b), kib(9), SendOptions.ack(SendOptions.Ack.DELIVERY))) {
                    eq(Outcome.Status.ACKED, t.await(WAIT).get(0).status(), mode + " after fail");
                }
                eq(1, got.size(), mode + " only the good message was accepted");
            }
        }
    }

    static void syncSendThrows() throws Exception {
        for (String mode : new String[] {"synchronous", "pooled"}) {
            List<byte[]> got = new CopyOnWriteArrayList<>();
            try (Channel b = receiver(mode, got); Channel a = Channel.builder(plain(mode)).start()) {
                long id = a.send(to(b), kib(1), SendOptions.ack(SendOptions.Ack.DELIVERY));
                check(id > 0, "message id");
                eq(1, got.size(), mode + " delivered before send returned");
                SessionReplException e = expect("SR_REMOTE_FAILURE",
                    () -> a.send(to(b), "bad".getBytes(StandardCharsets.UTF_8), SendOptions.ack(SendOptions.Ack.DELIVERY)));
                check(e.detail().contains("refused by test listener"), "reason: " + e.detail());
            }
        }
    }

    static void asyncOutcomeListener() throws Exception {
        for (String mode : new String[] {"asynchronous", "fastasyncqueue"}) {
            List<byte[]> got = new CopyOnWriteArrayList<>();
            List<Outcome> outs = new CopyOnWriteArrayList<>();
            try (Channel b = receiver(mode, got);
                 Channel a = Channel.builder(plain(mode)).onOutcome(outs::add).start()) {
                long ok = a.send(to(b), kib(2), SendOptions.ack(SendOptions.Ack.DELIVERY));
                long bad = a.send(to(b), "bad!".getBytes(StandardCharsets.UTF_8), SendOptions.ack(SendOptions.Ack.DELIVERY));
                a.flush(WAIT);
                waitFor(() -> outs.size() == 2, mode + " two outcomes");
                for (Outcome o : outs) {
                    if (o.messageId() == ok) {
                        eq(Outcome.Status.ACKED, o.status(), mode + " good " + o);
                    } else {
                        eq(bad, o.messageId(), mode + " ids");
                        eq("SR_REMOTE_FAILURE", o.result(), mode + " bad " + o);
                    }
                }
            }
        }
    }

    static void noAckSent() throws Exception {
        for (String mode : MODES) {
            List<byte[]> got = new CopyOnWriteArrayList<>();
            try (Channel b = receiver(mode, got); Channel a = Channel.builder(plain(mode)).start()) {
                try (Ticket t = a.sendWithTicket(to(b), kib(3), SendOptions.ack(SendOptions.Ack.NONE))) {
                    eq(Outcome.Status.SENT, t.await(WAIT).get(0).status(), mode + " no ack");
                }
                waitFor(() -> got.size() == 1, mode + " delivered");
            }
        }
    }

    static void directBuffer() throws Exception {
        List<byte[]> got = new CopyOnWriteArrayList<>();
        try (Channel b = receiver("synchronous", got); Channel a = Channel.builder(plain("synchronous")).start()) {
            ByteBuffer d = ByteBuffer.allocateDirect(100);
            for (int i = 0; i < 100; i++) {
                d.put((byte) i);
            }
            d.position(10).limit(30);
            a.send(to(b), d, SendOptions.ack(SendOptions.Ack.DELIVERY));
            eq(10, d.position(), "position unchanged");
            byte[] want = new byte[20];
            for (int i = 0; i < 20; i++) {
                want[i] = (byte) (10 + i);
            }
            check(Arrays.equals(want, got.get(0)), "direct slice");
            a.send(to(b), kib(5), 100, 50, SendOptions.ack(SendOptions.Ack.DELIVERY));
            check(Arrays.equals(Arrays.copyOfRange(kib(5), 100, 150), got.get(1)), "array slice");
            try (Ticket t = a.sendWithTicket(to(b), d, SendOptions.ack(SendOptions.Ack.DELIVERY))) {
                eq(Outcome.Status.ACKED, t.await(WAIT).get(0).status(), "direct with ticket");
            }
            expect("SR_INVALID_ARGUMENT", () -> a.send(to(b), ByteBuffer.allocate(4), SendOptions.DEFAULT));
            expect("SR_INVALID_ARGUMENT", () -> a.send(to(b), kib(5), 1000, 100, SendOptions.DEFAULT));
            expect("SR_INVALID_ARGUMENT", () -> a.send(to(b), kib(5), -1, 10, SendOptions.DEFAULT));
            expect("SR_NULL_PARAMETER", () -> a.send(to(b), (byte[]) null, SendOptions.DEFAULT));
            expect("SR_INVALID_ARGUMENT", () -> a.send(new InetSocketAddress[0], kib(5), SendOptions.DEFAULT));
        }
    }

    static int closedPort() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
            return s.getLocalPort();
        }
    }

    static void unreachable() throws Exception {
        InetSocketAddress[] nowhere = {new InetSocketAddress("127.0.0.1", closedPort())};
        for (String mode : MODES) {
            try (Channel a = Channel.builder(plain(mode).set("ackTimeout", "2000").set("connectTimeout", "1000")
                    .set("maxRetryAttempts", "0")).start();
                 Ticket t = a.sendWithTicket(nowhere, kib(4), SendOptions.ack(SendOptions.Ack.DELIVERY))) {
                Outcome o = t.await(WAIT).get(0);
                eq(Outcome.Status.FAILED, o.status(), mode + " " + o);
                check(o.result().equals("SR_UNREACHABLE") || o.result().equals("SR_TIMEOUT"), mode + " result " + o);
            }
        }
    }

    static void stats() throws Exception {
        List<byte[]> got = new CopyOnWriteArrayList<>();
        try (Channel b = receiver("fastasyncqueue", got); Channel a = Channel.builder(plain("fastasyncqueue")).start()) {
            for (int i = 0; i < 50; i++) {
                a.send(to(b), kib(i), SendOptions.ack(SendOptions.Ack.RECEIPT));
            }
            a.flush(WAIT);
            waitFor(() -> got.size() == 50, "50 delivered");
            eq(50L, a.stats().get("msgs_sent"), "msgs_sent");
            eq(50L, a.stats().get("acks_received"), "acks_received");
            eq(50L, b.stats().get("msgs_received"), "msgs_received");
            String p = b.prometheus();
            check(p.contains("# TYPE sessionrepl_msgs_received counter"), "prometheus type line");
            check(p.contains("\nsessionrepl_msgs_received 50\n"), "prometheus value line");
        }
    }

    static void members() throws Exception {
        Config c = cluster("fastasyncqueue");
        List<MemberEvent> evs = new CopyOnWriteArrayList<>();
        try (Channel a = Channel.builder(c).onMember(evs::add).start()) {
            InetSocketAddress bAddr;
            try (Channel b = Channel.builder(c).start()) {
                bAddr = b.localAddress();
                waitFor(() -> a.members().size() == 1, "a sees b");
                eq(bAddr, a.members().get(0).address(), "member address");
                check(a.members().get(0).isSessionrepl(), "b is a sessionrepl node");
                check(Arrays.equals(b.memberId(), a.members().get(0).id()), "member id");
                waitFor(() -> !evs.isEmpty(), "added event");
                eq(MemberEvent.Kind.ADDED, evs.get(0).kind(), "first event");
                // sending to members: empty destination list
                try (Ticket t = a.sendWithTicket(null, kib(6), SendOptions.ack(SendOptions.Ack.RECEIPT))) {
                    eq(Outcome.Status.ACKED, t.await(WAIT).get(0).status(), "send to members");
                }
            }
            waitFor(() -> evs.stream().anyMatch(e -> e.kind() == MemberEvent.Kind.REMOVED), "removed event");
            check(a.members().isEmpty(), "b gone");
        }
    }

    static void useAfterClose() throws Exception {
        List<byte[]> got = new CopyOnWriteArrayList<>();
        Channel b = receiver("synchronous", got);
        Channel a = Channel.builder(plain("synchronous")).start();
        a.send(to(b), kib(1), SendOptions.DEFAULT);
        Ticket t = a.sendWithTicket(to(b), kib(1), SendOptions.DEFAULT);
        a.stop();
        expect("SR_NOT_RUNNING", () -> a.send(to(b), kib(1), SendOptions.DEFAULT));
        a.stop();
        a.close();
        a.close();
        expect("SR_NOT_RUNNING", () -> a.send(to(b), kib(1), SendOptions.DEFAULT));
        expect("SR_NOT_RUNNING", a::prometheus);
        expect("SR_NOT_RUNNING", a::members);
        expect("SR_NOT_RUNNING", () -> a.flush(10));
        a.stop();
        eq(1, t.await(WAIT).size(), "a ticket outlives its channel");
        t.close();
        expect("SR_INVALID_ARGUMENT", () -> t.await(10));
        b.close();
    }

    static void panicBoundary() throws Exception {
        SessionReplException e = expect("SR_PANIC", Native::checkPanicBoundary);
        check(e.detail().contains("deliberate panic"), "panic text: " + e.detail());
        // the JVM and the library still work
        List<byte[]> got = new CopyOnWriteArrayList<>();
        try (Channel b = receiver("synchronous", got); Channel a = Channel.builder(plain("synchronous")).start()) {
            a.send(to(b), kib(1), SendOptions.ack(SendOptions.Ack.DELIVERY));
            eq(1, got.size(), "works after a panic");
        }
    }

    static void inCallback() throws Exception {
        List<String> seen = new CopyOnWriteArrayList<>();
        Channel[] self = new Channel[1];
        try (Channel b = Channel.builder(plain("synchronous")).onMessage(m -> {
                try {
                    self[0].close();
                    seen.add("closed");
                } catch (SessionReplException e) {
                    seen.add(e.result());
                }
            }).start();
             Channel a = Channel.builder(plain("synchronous")).start()) {
            self[0] = b;
            a.send(to(b), kib(1), SendOptions.ack(SendOptions.Ack.DELIVERY));
            eq(List.of("SR_IN_CALLBACK"), seen, "close from the channel's own listener");
            a.send(to(b), kib(1), SendOptions.ack(SendOptions.Ack.DELIVERY));
            eq(2, seen.size(), "the channel still works");
        }
        List<String> st = new CopyOnWriteArrayList<>();
        java.util.concurrent.atomic.AtomicReference<SessionStore> store =
            new java.util.concurrent.atomic.AtomicReference<>();
        try (SessionStore s = SessionStore.open(plain("fastasyncqueue"), e -> {
                if (e.kind() == SessionEvent.Kind.READY || e.kind() == SessionEvent.Kind.COMMIT_ACKED) {
                    // A lone store may be ready before open() has returned:
                    // wait (bounded) until the test holds its handle.
                    long until = System.nanoTime() + 5_000_000_000L;
                    while (store.get() == null && System.nanoTime() < until) {
                        Thread.onSpinWait();
                    }
                    try {
                        store.get().drain(10);
                        st.add("drained");
                    } catch (SessionReplException x) {
                        st.add(x.result());
                    }
                }
            })) {
            store.set(s);
            s.waitReady(WAIT);
            try (Commit k = s.create(s.begin("cb").set("a", new byte[] {1}))) {
                k.await(WAIT);
            }
            waitFor(() -> !st.isEmpty(), "a store event");
            check(st.stream().allMatch("SR_IN_CALLBACK"::equals), "drain from the store's listener refused: " + st);
        }
    }

    static void threadsDetach() throws Exception {
        waitFor(() -> Native.attachedThreads() == 0, "no engine thread attached before");
        List<byte[]> got = new CopyOnWriteArrayList<>();
        List<Outcome> outs = new CopyOnWriteArrayList<>();
        try (Channel b = receiver("fastasyncqueue", got);
             Channel a = Channel.builder(plain("fastasyncqueue")).onOutcome(outs::add).start()) {
            for (int i = 0; i < 20; i++) {
                a.send(to(b), kib(i), SendOptions.ack(SendOptions.Ack.RECEIPT));
            }
            a.flush(WAIT);
            waitFor(() -> outs.size() == 20 && got.size() == 20, "deliveries and outcomes");
            int n = Native.attachedThreads();
            check(n >= 2 && n <= 4, "receiver and I/O threads attached once each, got " + n);
        }
        waitFor(() -> Native.attachedThreads() == 0, "threads detached after close (now "
            + Native.attachedThreads() + ")");
    }

    /**
     * Txn.basedOn: of two commits based on the same read, from two stores,
     * the first applies and the second fails with SR_CONFLICT, changing
     * nothing (the jvmRoute takeover's claim relies on it).
     */
    static void storeBasedOn() throws Exception {
        Config c = cluster("fastasyncqueue").set("sessionMode", "delta");
        try (SessionStore a = SessionStore.open(c, null); SessionStore b = SessionStore.open(c, null)) {
            a.waitReady(WAIT);
            b.waitReady(WAIT);
            waitFor(() -> a.members().size() == 1 && b.members().size() == 1, "stores see each other");
            try (Commit k = a.create(a.begin("occ").set("v", new byte[] {0}))) {
                eq(2, k.await(WAIT), "two copies");
            }
            waitFor(() -> b.get("occ").status() == Lookup.Status.FOUND, "b has occ");
            Session readA = a.get("occ").session();
            Session readB = b.get("occ").session();
            eq(readA.version(), readB.version(), "both read one version");
            eq(2, a.commit(a.begin("occ").basedOn(readA).set("v", new byte[] {1}), WAIT), "first based commit applies");
            SessionReplException e = expect("SR_CONFLICT",
                () -> b.commit(b.begin("occ").basedOn(readB).set("v", new byte[] {2}), WAIT));
            check(!e.detail().isEmpty(), "conflict detail: " + e.detail());
            waitFor(() -> Arrays.equals(new byte[] {1}, b.get("occ").session().attribute("v")), "b sees a's value");
            check(Arrays.equals(new byte[] {1}, a.get("occ").session().attribute("v")), "the stale commit changed nothing");
            // based on a fresh read it applies
            Session fresh = b.get("occ").session();
            eq(2, b.commit(b.begin("occ").basedOn(fresh).set("v", new byte[] {3}), WAIT), "fresh based commit applies");
        }
    }

    static void storeCycle() throws Exception {
        Config c = cluster("fastasyncqueue").set("sessionMode", "delta");
        List<SessionEvent> evA = new CopyOnWriteArrayList<>();
        List<SessionEvent> evB = new CopyOnWriteArrayList<>();
        try (SessionStore a = SessionStore.open(c, evA::add)) {
            a.waitReady(WAIT);
            check(a.isReady(), "a ready");
            try (SessionStore b = SessionStore.open(c, evB::add)) {
                b.waitReady(WAIT);
                waitFor(() -> a.members().size() == 1 && b.members().size() == 1, "stores see each other");
                eq(b.localAddress(), a.members().get(0), "a's member is b");
                try (Commit k = a.create(a.begin("s1").set("count", new byte[] {1}).setMaxInactive(600))) {
                    eq(2, k.await(WAIT), "two copies");
                    check(k.isDone(), "done");
                }
                Lookup l = b.get("s1");
                eq(Lookup.Status.FOUND, l.status(), "b finds s1");
                check(Arrays.equals(new byte[] {1}, l.session().attribute("count")), "value replicated");
                eq(600L, l.session().maxInactiveSecs(), "max inactive");
                eq(2, b.commit(b.begin("s1").set("count", new byte[] {2}).set("user", "ann".getBytes()), WAIT),
                    "b's commit acked by both");
                Session s = a.get("s1").session();
                check(Arrays.equals(new byte[] {2}, s.attribute("count")), "update replicated back");
                eq(2, s.attributes().size(), "two attributes");
                a.access("s1");
                eq(1, a.commit(a.begin("s1"), WAIT), "empty commit is an access");
                try (Commit k = a.changeId("s1", "s2")) {
                    k.await(WAIT);
                }
                waitFor(() -> b.get("s2").status() == Lookup.Status.FOUND, "renamed on b");
                eq(Lookup.Status.NOT_FOUND, b.get("s1").status(), "old id gone on b");
                try (Commit k = b.invalidate("s2")) {
                    k.await(WAIT);
                }
                waitFor(() -> a.get("s2").status() == Lookup.Status.NOT_FOUND, "invalidated on a");
                waitFor(() -> evB.stream().anyMatch(e -> e.kind() == SessionEvent.Kind.ID_CHANGED
                    && e.id().equals("s1") && e.newId().equals("s2")), "b told of the id change");
                check(evA.stream().anyMatch(e -> e.kind() == SessionEvent.Kind.READY), "a got READY");
                // the event may follow the state it reports by a moment
                waitFor(() -> evA.stream().anyMatch(e -> e.kind() == SessionEvent.Kind.INVALIDATED
                    && e.id().equals("s2") && b.localAddress().equals(e.member())), "a told of the invalidation by b");
                check(a.stats().get("commits") >= 2, "stats count commits: " + a.stats());
                expect("SR_NOT_FOUND", () -> a.commit(a.begin("nope").set("x", new byte[0])));
                expect("SR_CONFLICT", () -> {
                    try (Commit k = a.create(a.begin("s3"))) {
                        k.await(WAIT);
                    }
                    a.create(a.begin("s3")).close();
                });
            }
        }
    }

    static void storeBackupDrain() throws Exception {
        Config c = cluster("fastasyncqueue").set("sessionMode", "backup").set("backupCount", "1");
        List<SessionEvent> evA = new CopyOnWriteArrayList<>();
        try (SessionStore a = SessionStore.open(c, evA::add);
             SessionStore b = SessionStore.open(c, null);
             SessionStore x = SessionStore.open(c, null)) {
            for (SessionStore s : new SessionStore[] {a, b, x}) {
                s.waitReady(WAIT);
            }
            waitFor(() -> a.members().size() == 2 && b.members().size() == 2 && x.members().size() == 2, "three members");
            // ids whose primary is a
            List<String> ids = new ArrayList<>();
            for (int i = 0; ids.size() < 5; i++) {
                if (a.isPrimaryFor("id-" + i)) {
                    ids.add("id-" + i);
                }
            }
            for (String id : ids) {
                try (Commit k = a.create(a.begin(id).set("v", id.getBytes()))) {
                    eq(2, k.await(WAIT), "primary plus one backup");
                }
            }
            for (String id : ids) {
                Lookup l = x.get(id, WAIT);
                eq(Lookup.Status.FOUND, l.status(), "fetched or held on x: " + id);
                check(Arrays.equals(id.getBytes(), l.session().attribute("v")), "value of " + id);
            }
            a.drain(WAIT);
            waitFor(() -> evA.stream().anyMatch(e -> e.kind() == SessionEvent.Kind.DRAINED), "DRAINED event");
            Lookup moved = a.get(ids.get(0));
            eq(Lookup.Status.MOVED, moved.status(), "after drain a answers moved");
            check(moved.movedTo().equals(b.localAddress()) || moved.movedTo().equals(x.localAddress()), "moved to a member");
            a.close(); // idempotent: try-with-resources closes it again
            for (String id : ids) {
                Lookup l = b.get(id, WAIT);
                eq(Lookup.Status.FOUND, l.status(), "b still has " + id + " after a drained and closed");
            }
        }
    }

    static void storeMisuse() throws Exception {
        SessionStore s = SessionStore.open(plain("fastasyncqueue"), e -> {});
        s.waitReady(WAIT);
        Commit k = s.create(s.begin("m1").set("a", new byte[] {1}));
        eq(1, k.await(WAIT), "one copy alone");
        s.close();
        s.close();
        expect("SR_SHUTDOWN", () -> s.get("m1"));
        expect("SR_SHUTDOWN", () -> s.commit(s.begin("m1")));
        expect("SR_SHUTDOWN", () -> s.waitReady(10));
        expect("SR_SHUTDOWN", s::stats);
        eq(1, k.await(10), "a completed commit outlives its store");
        k.close();
        expect("SR_INVALID_ARGUMENT", () -> k.await(10));
    }
}
