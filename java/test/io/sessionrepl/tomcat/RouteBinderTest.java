package io.sessionrepl.tomcat;

import io.sessionrepl.Commit;
import io.sessionrepl.Config;
import io.sessionrepl.Lookup;
import io.sessionrepl.SessionStore;

import java.net.InetSocketAddress;
import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

/**
 * {@link RouteBinder}'s takeover protocol against a real three-store
 * cluster in one JVM (backup mode, one backup, multicast membership on
 * 127.0.0.1), with the interleavings that raced in the Tomcat test forced
 * through the binder's {@code afterClaim} seam: the session's primary
 * {@code a} dies, and {@code b} and {@code x} both get a request carrying
 * its id.
 */
final class RouteBinderTest {
    private static final long WAIT_MS = 30_000;
    /** The binder's per-step wait (NativeSessionManager's commitTimeout). */
    private static final long STEP_MS = 10_000;
    private static final byte[] COUNT = {7};

    private RouteBinderTest() {
    }

    /**
     * b claims; x reads after b's claim applied and before b renamed. Only
     * b's claim may apply: x follows b's rename (no second id), and a
     * later request on x with the old id follows it at once.
     */
    static void secondClaimantFollowsTheFirst() throws Exception {
        try (Cluster c = new Cluster()) {
            String id = c.sessionOfDeadPrimary();
            AtomicInteger claims = new AtomicInteger();
            CountDownLatch bClaimed = new CountDownLatch(1);
            // if x claims too, both rename at once (as in the Tomcat run)
            CyclicBarrier bothClaimed = new CyclicBarrier(2);
            c.rb.afterClaim = () -> {
                claims.incrementAndGet();
                bClaimed.countDown();
                awaitQuietly(bothClaimed, 3_000);
            };
            c.rx.afterClaim = () -> {
                claims.incrementAndGet();
                awaitQuietly(bothClaimed, 3_000);
            };
            Request onB = new Request(c.rb, id, c.b);
            TomcatTest.check(bClaimed.await(WAIT_MS, TimeUnit.MILLISECONDS), "b claimed the session");
            // b's claim is applied and b has not renamed yet: x reads now
            Request onX = new Request(c.rx, id, c.x);
            String gotB = onB.result();
            String gotX = onX.result();
            String base = id.substring(0, id.length() - 1);
            TomcatTest.check(claims.get() == 1, "exactly one claim applied, not " + claims.get()
                + " (b -> " + gotB + ", x -> " + gotX + ")");
            TomcatTest.check((base + "b").equals(gotB), "b renamed it to its route: " + gotB);
            TomcatTest.check(gotB.equals(gotX), "x followed b's rename: " + gotX);
            c.checkOnlyHolder(id, base + "b", base + "x");
            TomcatTest.check(gotB.equals(c.rx.bind(id, c.x, STEP_MS, 600)), "a later request on x follows at once");
        }
    }

    /**
     * b claims and dies before its rename. While b is a member x waits for
     * b's rename; once b is gone x takes b's claim over and renames the
     * session to its own route.
     */
    static void deadClaimantsClaimIsTakenOver() throws Exception {
        try (Cluster c = new Cluster()) {
            String id = c.sessionOfDeadPrimary();
            InetSocketAddress bAddr = c.b.localAddress();
            CountDownLatch bClaimed = new CountDownLatch(1);
            CountDownLatch xStarted = new CountDownLatch(1);
            AtomicBoolean xClaimedWhileBAlive = new AtomicBoolean();
            AtomicInteger xClaims = new AtomicInteger();
            c.rb.afterClaim = () -> {
                bClaimed.countDown();
                try {
                    xStarted.await(WAIT_MS, TimeUnit.MILLISECONDS);
                    Thread.sleep(1_000); // x reads b's claim while b is alive
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                c.b.close(); // b dies between its claim and its rename
            };
            c.rx.afterClaim = () -> {
                xClaims.incrementAndGet();
                if (c.x.members().contains(bAddr)) {
                    xClaimedWhileBAlive.set(true);
                }
            };
            Request onB = new Request(c.rb, id, c.b);
            TomcatTest.check(bClaimed.await(WAIT_MS, TimeUnit.MILLISECONDS), "b claimed the session");
            Request onX = new Request(c.rx, id, c.x);
            xStarted.countDown();
            String gotX = onX.result();
            String gotB = onB.result();
            String base = id.substring(0, id.length() - 1);
            TomcatTest.check(!xClaimedWhileBAlive.get(), "x claimed only after b left its view");
            TomcatTest.check(xClaims.get() == 1, "x claimed once: " + xClaims.get());
            TomcatTest.check((base + "x").equals(gotX), "x took the session over: " + gotX);
            TomcatTest.check(gotB == null || gotB.equals(gotX), "b, closed before its rename, names no other id: "
                + gotB);
            c.checkOnlyHolder(id, base + "x", base + "b");
        }
    }

    /**
     * Two requests with the old id on one node at once: the second reads
     * the first one's claim (this node's attempt in progress), waits for
     * its rename and follows it; one claim, one rename.
     */
    static void twoRequestsOnOneNodeRenameOnce() throws Exception {
        try (Cluster c = new Cluster()) {
            String id = c.sessionOfDeadPrimary();
            String base = id.substring(0, id.length() - 1);
            AtomicInteger claims = new AtomicInteger();
            CountDownLatch claimed = new CountDownLatch(1);
            c.rx.afterClaim = () -> {
                claims.incrementAndGet();
                claimed.countDown();
                try {
                    Thread.sleep(1_000); // the second request reads the claim meanwhile
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            };
            Request first = new Request(c.rx, id, c.x);
            TomcatTest.check(claimed.await(WAIT_MS, TimeUnit.MILLISECONDS), "the first request claimed");
            Request second = new Request(c.rx, id, c.x);
            String got1 = first.result();
            String got2 = second.result();
            TomcatTest.check(claims.get() == 1, "one claim: " + claims.get());
            TomcatTest.check((base + "x").equals(got1) && got1.equals(got2), "both on x's id: " + got1 + ", " + got2);
            c.checkOnlyHolder(id, base + "x", base + "b");
        }
    }

    /**
     * x reads the session, then b claims and renames it, then x's claim
     * (based on its read) arrives: it is refused, and x follows b's rename
     * instead of keeping the old id.
     */
    static void claimOvertakenByARenameFollowsIt() throws Exception {
        try (Cluster c = new Cluster()) {
            String id = c.sessionOfDeadPrimary();
            String base = id.substring(0, id.length() - 1);
            CountDownLatch xRead = new CountDownLatch(1);
            CountDownLatch bDone = new CountDownLatch(1);
            AtomicInteger claims = new AtomicInteger();
            c.rx.beforeClaim = () -> {
                xRead.countDown();
                try {
                    bDone.await(WAIT_MS, TimeUnit.MILLISECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            };
            c.rb.afterClaim = claims::incrementAndGet;
            c.rx.afterClaim = claims::incrementAndGet;
            Request onX = new Request(c.rx, id, c.x);
            TomcatTest.check(xRead.await(WAIT_MS, TimeUnit.MILLISECONDS), "x read the session");
            String gotB = c.rb.bind(id, c.b, STEP_MS, 600);
            bDone.countDown();
            String gotX = onX.result();
            TomcatTest.check((base + "b").equals(gotB), "b renamed it: " + gotB);
            TomcatTest.check(claims.get() == 1, "only b's claim applied: " + claims.get());
            TomcatTest.check(gotB.equals(gotX), "x, its claim overtaken, followed b: " + gotX);
            c.checkOnlyHolder(id, base + "b", base + "x");
        }
    }

    /**
     * b wins the claim but the store refuses its rename at once (its new
     * id is in use): b withdraws its claim, so x, next, claims and renames
     * the session instead of waiting out a rename that never comes.
     */
    static void refusedRenameWithdrawsTheClaim() throws Exception {
        try (Cluster c = new Cluster()) {
            String id = c.sessionOfDeadPrimary();
            String base = id.substring(0, id.length() - 1);
            try (Commit k = c.b.create(c.b.begin(base + "b").set("other", COUNT))) {
                k.await(WAIT_MS);
            }
            TomcatTest.waitFor(() -> Cluster.found(c.b, base + "b"), "the blocking session on b");
            AtomicInteger bClaims = new AtomicInteger();
            c.rb.afterClaim = bClaims::incrementAndGet;
            String gotB = c.rb.bind(id, c.b, STEP_MS, 600);
            TomcatTest.check(bClaims.get() == 1, "b claimed: " + bClaims.get());
            TomcatTest.check(gotB == null, "b, refused, keeps the id: " + gotB);
            long t0 = System.nanoTime();
            String gotX = c.rx.bind(id, c.x, STEP_MS, 600);
            long ms = (System.nanoTime() - t0) / 1_000_000;
            TomcatTest.check((base + "x").equals(gotX), "x renamed it after b withdrew (" + ms + " ms): " + gotX);
            Lookup l = c.x.get(base + "x", WAIT_MS);
            TomcatTest.check(l.status() == Lookup.Status.FOUND
                && Arrays.equals(COUNT, l.session().attribute("count")), "the count moved to " + gotX);
            TomcatTest.check(c.x.get(id, WAIT_MS).status() == Lookup.Status.NOT_FOUND, "the old id is gone");
        }
    }

    private static void awaitQuietly(CyclicBarrier barrier, long ms) {
        try {
            barrier.await(ms, TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            // the other node never claimed: the protocol as it should be
        }
    }

    /** One binder's bind() on a thread of its own (a request). */
    private static final class Request {
        private final Thread thread;
        private final AtomicReference<String> result = new AtomicReference<>();
        private final AtomicReference<Throwable> failure = new AtomicReference<>();

        Request(RouteBinder binder, String id, SessionStore s) {
            thread = new Thread(() -> {
                try {
                    result.set(binder.bind(id, s, STEP_MS, 600));
                } catch (Throwable t) {
                    failure.set(t);
                }
            }, "request-" + id);
            thread.start();
        }

        String result() throws InterruptedException {
            thread.join(WAIT_MS * 2);
            TomcatTest.check(!thread.isAlive(), "bind returned within " + WAIT_MS * 2 + " ms");
            if (failure.get() != null) {
                throw new AssertionError("bind threw", failure.get());
            }
            return result.get();
        }
    }

    /** Stores a, b, x with binders for routes a, b, x; a cluster of its own. */
    private static final class Cluster implements AutoCloseable {
        final SessionStore a;
        final SessionStore b;
        final SessionStore x;
        final RouteBinder ra = new RouteBinder("a", (o, n) -> { });
        final RouteBinder rb = new RouteBinder("b", (o, n) -> { });
        final RouteBinder rx = new RouteBinder("x", (o, n) -> { });

        Cluster() throws Exception {
            Config cfg = io.sessionrepl.ApiTest.cluster("fastasyncqueue")
                .set("sessionMode", "backup")
                .set("backupCount", "1");
            a = SessionStore.open(cfg, null);
            SessionStore bs = null;
            SessionStore xs = null;
            try {
                bs = SessionStore.open(cfg, rb::event);
                xs = SessionStore.open(cfg, rx::event);
            } catch (RuntimeException e) {
                a.close();
                if (bs != null) {
                    bs.close();
                }
                throw e;
            }
            b = bs;
            x = xs;
        }

        /**
         * A session created on its primary a (id ending in ".a", attribute
         * "count"), with every route published; then a is closed without a
         * drain (dead) and the session is readable on b and x.
         */
        String sessionOfDeadPrimary() throws Exception {
            for (SessionStore s : new SessionStore[] {a, b, x}) {
                s.waitReady(WAIT_MS);
            }
            TomcatTest.waitFor(() -> a.members().size() == 2 && b.members().size() == 2
                && x.members().size() == 2, "three members");
            ra.publish(a, STEP_MS);
            rb.publish(b, STEP_MS);
            rx.publish(x, STEP_MS);
            String id = null;
            for (int i = 0; id == null; i++) {
                String candidate = String.format("%032X", i * 7919L + 1) + ".a";
                if (a.isPrimaryFor(candidate)) {
                    id = candidate;
                }
            }
            try (Commit k = a.create(a.begin(id).set("count", COUNT).setMaxInactive(600))) {
                k.await(WAIT_MS);
            }
            String routeA = RouteBinder.RECORD + "route.a";
            TomcatTest.waitFor(() -> found(b, routeA) && found(x, routeA), "a's route record on b and x");
            a.close();
            TomcatTest.waitFor(() -> b.members().size() == 1 && x.members().size() == 1, "a gone from b's and x's view");
            String sid = id;
            TomcatTest.waitFor(() -> found(b, sid) && found(x, sid), "the session readable on b and x");
            return id;
        }

        /** {@code winner} holds the session (count kept), {@code oldId} and {@code loser} exist nowhere. */
        void checkOnlyHolder(String oldId, String winner, String loser) {
            SessionStore s = x; // alive in every test
            Lookup l = s.get(winner, WAIT_MS);
            TomcatTest.check(l.status() == Lookup.Status.FOUND, winner + " exists: " + l.status());
            TomcatTest.check(Arrays.equals(COUNT, l.session().attribute("count")), "the count moved with the session");
            TomcatTest.check(s.get(loser, WAIT_MS).status() == Lookup.Status.NOT_FOUND, "no second rename to " + loser);
            TomcatTest.check(s.get(oldId, WAIT_MS).status() == Lookup.Status.NOT_FOUND, "the old id is gone");
        }

        static boolean found(SessionStore s, String id) {
            try {
                return s.get(id, 1_000).status() == Lookup.Status.FOUND;
            } catch (io.sessionrepl.SessionReplException e) {
                return false;
            }
        }

        @Override
        public void close() {
            x.close();
            b.close();
            a.close();
        }
    }
}
