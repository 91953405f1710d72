package io.sessionrepl.tomcat;

import java.io.File;
import java.io.IOException;
import java.io.Serializable;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.apache.catalina.tribes.Channel;
import org.apache.catalina.tribes.ChannelException;
import org.apache.catalina.tribes.ChannelListener;
import org.apache.catalina.tribes.Member;
import org.apache.catalina.tribes.RemoteProcessException;
import org.apache.catalina.tribes.group.GroupChannel;

/**
 * The Tomcat drop-in, end to end: real Tomcat processes (Debian's jars,
 * {@code org.apache.catalina.startup.Tomcat --await --catalina -config
 * server.xml}) with a {@code SimpleTcpCluster} whose receiver, sender and
 * membership are the native classes, a counter servlet, and curl with a
 * cookie jar. All on 127.0.0.1; each cluster has its own multicast group
 * and port (TTL 1, bound to 127.0.0.1).
 *
 * <p>Per manager (DeltaManager, BackupManager): the counter is incremented
 * alternately on two nodes; a third node started late reads it (state
 * transfer / map membership); one node is SIGKILLed and the others carry
 * on with the value. Prints "N passed, N failed".
 *
 * <p>Usage: java -cp testclasses io.sessionrepl.tomcat.TomcatTest
 * &lt;sessionrepl.jar&gt; &lt;native lib dir&gt; &lt;tomcat classpath&gt;
 * &lt;test classes dir&gt; &lt;work dir&gt; [name-filter]
 */
public final class TomcatTest {
    static final long START_TIMEOUT_MS = 120_000;
    static final long WAIT_MS = 30_000;

    static String jar;
    static String libDir;
    static String tomcatCp;
    static String testClasses;
    static Path work;
    static int clusterNo;

    public static void main(String[] args) throws Exception {
        jar = args[0];
        libDir = args[1];
        tomcatCp = args[2];
        testClasses = args[3];
        work = Path.of(args[4]).toAbsolutePath();
        String filter = args.length > 5 ? args[5] : "";
        String[][] tests = {
            {"tomcat_deltamanager_native_transport", "org.apache.catalina.ha.session.DeltaManager"},
            {"tomcat_backupmanager_native_transport", "org.apache.catalina.ha.session.BackupManager"},
            {"tomcat_mixed_stock_and_native_deltamanager", "org.apache.catalina.ha.session.DeltaManager"},
            {"tomcat_native_session_manager_backup", "io.sessionrepl.tomcat.NativeSessionManager"},
            {"tomcat_native_session_manager_replica_listeners_off", "io.sessionrepl.tomcat.NativeSessionManager"},
        };
        int passed = 0;
        int failed = 0;
        Object[][] unit = {
            {"tribes_channel_envelope_sync_ack_and_fail_ack", (Body) TomcatTest::envelope},
            {"tribes_attributes_checked_and_bad_value_named", (Body) TomcatTest::attributes},
            {"tribes_sender_to_a_view_listener", (Body) TribesViewTest::tribesSenderToViewListener},
            {"route_binder_second_claimant_follows_the_first", (Body) RouteBinderTest::secondClaimantFollowsTheFirst},
            {"route_binder_dead_claimants_claim_is_taken_over", (Body) RouteBinderTest::deadClaimantsClaimIsTakenOver},
            {"route_binder_claim_overtaken_by_a_rename_follows_it", (Body) RouteBinderTest::claimOvertakenByARenameFollowsIt},
            {"route_binder_two_requests_on_one_node_rename_once", (Body) RouteBinderTest::twoRequestsOnOneNodeRenameOnce},
            {"route_binder_refused_rename_withdraws_the_claim", (Body) RouteBinderTest::refusedRenameWithdrawsTheClaim},
        };
        for (Object[] t : unit) {
            if (!((String) t[0]).contains(filter)) {
                continue;
            }
            long t0 = System.nanoTime();
            try {
                ((Body) t[1]).run();
                passed++;
                System.out.printf("test %s ... ok (%d ms)%n", t[0], (System.nanoTime() - t0) / 1_000_000);
            } catch (Throwable e) {
                failed++;
                System.out.printf("test %s ... FAILED: %s%n", t[0], e);
                e.printStackTrace(System.out);
            }
        }
        for (String[] t : tests) {
            if (!t[0].contains(filter)) {
                continue;
            }
            long t0 = System.nanoTime();
            List<Node> nodes = new ArrayList<>();
            try {
                if (t[0].endsWith("listeners_off")) {
                    listenersOffScenario(t[0], nodes);
                } else if (t[1].endsWith("NativeSessionManager")) {
                    managerScenario(t[0], nodes);
                } else if (t[0].contains("mixed")) {
                    mixedScenario(t[0], t[1], nodes);
                } else {
                    counterScenario(t[0], t[1], nodes);
                }
                passed++;
                System.out.printf("test %s ... ok (%d ms)%n", t[0], (System.nanoTime() - t0) / 1_000_000);
            } catch (Throwable e) {
                failed++;
                System.out.printf("test %s ... FAILED: %s%n", t[0], e);
                e.printStackTrace(System.out);
                for (Node n : nodes) {
                    System.out.println("---- log of " + n.name + " (" + n.log + "), last lines:");
                    List<String> lines = Files.readAllLines(n.log);
                    for (String l : lines.subList(Math.max(0, lines.size() - 40), lines.size())) {
                        System.out.println(l);
                    }
                }
            } finally {
                for (Node n : nodes) {
                    n.kill();
                }
            }
        }
        System.out.printf("tomcat: %d passed, %d failed%n", passed, failed);
        System.exit(failed == 0 && passed > 0 ? 0 : 1);
    }

    interface Body {
        void run() throws Exception;
    }

    /** A Tribes GroupChannel whose receiver, sender and membership are the native classes. */
    static GroupChannel nativeChannel(String mcast, int mport, String domain, ChannelListener l) throws Exception {
        GroupChannel ch = new GroupChannel();
        NativeMembershipService m = new NativeMembershipService();
        m.setProperty("address", mcast);
        m.setProperty("port", String.valueOf(mport));
        m.setProperty("bind", "127.0.0.1");
        m.setProperty("ttl", "1");
        m.setProperty("frequency", "100");
        m.setProperty("dropTime", "1500");
        m.setProperty("domain", domain);
        NativeReceiver r = new NativeReceiver();
        r.setProperty("address", "127.0.0.1");
        r.setProperty("port", String.valueOf(freePort()));
        NativeSender s = new NativeSender();
        s.setProperty("ackTimeout", "10000");
        ch.setMembershipService(m);
        ch.setChannelReceiver(r);
        ch.setChannelSender(s);
        if (l != null) {
            ch.addChannelListener(l);
        }
        ch.start(Channel.DEFAULT);
        return ch;
    }

    static void waitFor(java.util.function.BooleanSupplier c, String what) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WAIT_MS);
        while (!c.getAsBoolean()) {
            check(System.nanoTime() < end, "timed out waiting for " + what);
            Thread.sleep(20);
        }
    }

    /** Records messages; refuses (throws) "refuse". */
    static final class Recorder implements ChannelListener {
        final List<Object[]> got = new java.util.concurrent.CopyOnWriteArrayList<>();

        @Override
        public void messageReceived(Serializable msg, Member sender) {
            if ("refuse".equals(msg)) {
                throw new IllegalStateException("refused by the test listener");
            }
            got.add(new Object[] {msg, sender});
        }

        @Override
        public boolean accept(Serializable msg, Member sender) {
            return true;
        }
    }

    static void envelope() throws Exception {
        int c = ++clusterNo;
        long pid = ProcessHandle.current().pid();
        String mcast = "239.252." + (pid % 250) + "." + (c % 250 + 1);
        int mport = 40_000 + (int) ((pid * 11 + c * 173) % 9_000);
        String domain = "tribes-unit-" + pid + "-" + c;
        Recorder rb = new Recorder();
        GroupChannel a = nativeChannel(mcast, mport, domain, null);
        GroupChannel b = nativeChannel(mcast, mport, domain, rb);
        try {
            waitFor(() -> a.getMembers().length == 1 && b.getMembers().length == 1, "members");
            Member mb = a.getMembers()[0];
            check(mb.equals(b.getLocalMember(false)), "a's member " + mb + " is b's local member "
                + b.getLocalMember(false));
            int sync = Channel.SEND_OPTIONS_USE_ACK | Channel.SEND_OPTIONS_SYNCHRONIZED_ACK;
            a.send(new Member[] {mb}, "hello", sync);
            // synchronized ack: delivered before send returned
            check(rb.got.size() == 1, "delivered before the sync ack: " + rb.got.size());
            check("hello".equals(rb.got.get(0)[0]), "payload " + rb.got.get(0)[0]);
            check(a.getLocalMember(false).equals(rb.got.get(0)[1]), "sender member carried in the envelope: "
                + rb.got.get(0)[1]);
            a.send(new Member[] {mb}, "receipt", Channel.SEND_OPTIONS_USE_ACK);
            a.send(new Member[] {mb}, "no-ack", 0);
            waitFor(() -> rb.got.size() == 3, "receipt-acked and unacked messages");
            try {
                a.send(new Member[] {mb}, "refuse", sync);
                throw new AssertionError("listener exception did not reach the sender");
            } catch (ChannelException e) {
                ChannelException.FaultyMember[] f = e.getFaultyMembers();
                check(f.length == 1 && f[0].getMember().equals(mb), "faulty member is b: " + e);
                check(f[0].getCause() instanceof RemoteProcessException, "FAIL_ACK cause: " + f[0].getCause());
            }
            check(rb.got.size() == 3, "refused message not recorded");
            b.stop(Channel.DEFAULT);
            try {
                a.send(new Member[] {mb}, "to the dead", sync);
                throw new AssertionError("send to a stopped member succeeded");
            } catch (ChannelException e) {
                check(e.getFaultyMembers().length == 1, "dead member faulty: " + e);
            }
        } finally {
            a.stop(Channel.DEFAULT);
            b.stop(Channel.DEFAULT);
        }
    }

    static void attributes() throws Exception {
        NativeReceiver r = new NativeReceiver();
        check(r.setProperty("selectorTimeout", "5000"), "stock NioReceiver attribute accepted");
        check(r.setProperty("replicationMode", "pooled"), "sessionrepl key accepted");
        check(!r.setProperty("noSuchAttribute", "1"), "unknown attribute refused");
        NativeSender s = new NativeSender();
        check(s.setProperty("maxRetryAttempts", "2") && s.setProperty("throwOnFailedAck", "true"),
            "stock sender attributes accepted");
        NativeMembershipService m = new NativeMembershipService();
        check(m.setProperty("recoveryEnabled", "true") && m.setProperty("dropTime", "3000"),
            "stock McastService attributes accepted");
        check("0".equals(NativeCluster.config(r, s, m).get("idleSpinMicros")),
            "the Tomcat classes do not poll by default");
        check(s.setProperty("idleSpinMicros", "20")
                && "20".equals(NativeCluster.config(r, s, m).get("idleSpinMicros")),
            "an idleSpinMicros attribute wins over the Tomcat default");
        NativeSessionManager nsm = new NativeSessionManager();
        check("0".equals(nsm.config().get("idleSpinMicros")), "NativeSessionManager does not poll by default");
        check(nsm.setProperty("idleSpinMicros", "20") && "20".equals(nsm.config().get("idleSpinMicros")),
            "an idleSpinMicros attribute wins over NativeSessionManager's default");
        String[][] bad = {
            {"receiver", "selectorTimeout", "soon"},
            {"receiver", "replicationMode", "carrier-pigeon"},
            {"sender", "timeout", "-x"},
            {"membership", "ttl", "lots"},
        };
        for (String[] b : bad) {
            GroupChannel ch = new GroupChannel();
            NativeMembershipService mm = new NativeMembershipService();
            mm.setProperty("membershipType", "none");
            NativeReceiver rr = new NativeReceiver();
            rr.setProperty("address", "127.0.0.1");
            rr.setProperty("port", "0");
            NativeSender ss = new NativeSender();
            (b[0].equals("receiver") ? (java.util.function.BiFunction<String, String, Boolean>) rr::setProperty
                : b[0].equals("sender") ? (java.util.function.BiFunction<String, String, Boolean>) ss::setProperty
                : (java.util.function.BiFunction<String, String, Boolean>) mm::setProperty).apply(b[1], b[2]);
            ch.setMembershipService(mm);
            ch.setChannelReceiver(rr);
            ch.setChannelSender(ss);
            try {
                ch.start(Channel.DEFAULT);
                ch.stop(Channel.DEFAULT);
                throw new AssertionError("start accepted " + b[1] + "=" + b[2]);
            } catch (ChannelException e) {
                StringBuilder all = new StringBuilder();
                for (Throwable t = e; t != null; t = t.getCause()) {
                    all.append(t.getMessage()).append(" | ");
                }
                check(all.toString().contains("'" + b[1] + "'"), "error names " + b[1] + ": " + all);
            }
        }
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            return s.getLocalPort();
        }
    }

    /** One Tomcat process. */
    static final class Node {
        final String name;
        final int httpPort;
        final Path log;
        final Process proc;

        Node(String name, int httpPort, Path log, Process proc) {
            this.name = name;
            this.httpPort = httpPort;
            this.log = log;
            this.proc = proc;
        }

        void kill() throws InterruptedException {
            if (proc.isAlive()) {
                proc.destroyForcibly(); // SIGKILL
                proc.waitFor(30, TimeUnit.SECONDS);
            }
        }
    }

    static void counterScenario(String name, String manager, List<Node> nodes) throws Exception {
        Site site = new Site(name);
        Path dir = site.dir;
        Path jarFile = site.dir.resolve("cookies.txt");

        // one after the other, as operators do: two DeltaManagers starting at
        // the same instant each drop the other's state request (stock Tomcat
        // behaviour) and wait out stateTransferTimeout
        Node a = site.start("a", manager);
        nodes.add(a);
        awaitUp(a);
        Node b = site.start("b", manager);
        nodes.add(b);
        awaitUp(b);

        // alternate increments
        int want = 0;
        for (int i = 0; i < 6; i++) {
            Node n = i % 2 == 0 ? a : b;
            want++;
            String body = eventually(n, jarFile, "", "count=" + want + " ");
            check(body.startsWith("count=" + want + " node=" + n.name), n.name + " answered " + body);
        }

        // a third node joins late and reads the counter
        Node x = site.start("x", manager);
        nodes.add(x);
        awaitUp(x);
        String late = eventually(x, jarFile, "?op=read", "count=" + want + " ");
        check(late.startsWith("count=" + want + " node=x"), "late node answered " + late);

        // SIGKILL one node; the others carry on with the value
        a.kill();
        // let membership notice (dropTime 2000 ms); a request before that may
        // still be routed to the dead node's copy (BackupManager's primary)
        Thread.sleep(4000);
        want++;
        String after = eventually(b, jarFile, "", "count=" + want + " ");
        check(after.startsWith("count=" + want + " node=b"), "after kill b answered " + after);
        String onX = eventually(x, jarFile, "?op=read", "count=" + want + " ");
        check(onX.startsWith("count=" + want + " node=x"), "after kill x answered " + onX);
        want++;
        String incX = eventually(x, jarFile, "", "count=" + want + " ");
        check(incX.startsWith("count=" + want + " node=x"), "x increments to " + incX);
        String back = eventually(b, jarFile, "?op=read", "count=" + want + " ");
        check(back.startsWith("count=" + want), "b reads x's increment: " + back);
        check(b.proc.isAlive() && x.proc.isAlive(), "survivors alive");
    }

    /**
     * Phase 2: three nodes whose contexts use NativeSessionManager (no
     * Tomcat cluster): the counter goes round the nodes, the session's
     * primary (the node that created it) is SIGKILLed and the counter
     * continues, then a node is stopped with SIGTERM (it drains) and the
     * counter still continues.
     */
    static void managerScenario(String name, List<Node> nodes) throws Exception {
        Site site = new Site(name);
        Path dir = site.dir;
        Path jarFile = site.dir.resolve("cookies.txt");
        String mgr = "NSM:";
        Node a = site.start("a", mgr);
        nodes.add(a);
        awaitUp(a);
        Node b = site.start("b", mgr);
        nodes.add(b);
        awaitUp(b);
        Node x = site.start("x", mgr);
        nodes.add(x);
        awaitUp(x);
        Thread.sleep(1000);
        // listeners on other nodes: the session's copy fires them where it arrives
        int want = 0;
        for (int i = 0; i < 2; i++) {
            want++;
            String body = eventually(a, jarFile, "", "count=" + want + " ");
            check(body.startsWith("count=" + want + " node=a"), "a answered " + body);
        }
        waitFor(() -> replicaEvents(b, x).equals("created=1 destroyed=0 added=1 replaced=1 removed=0 idchanged=0"),
            "listener events on the backup: b " + events(b) + ", x " + events(x) + "; a (local) " + events(a));
        String id = sessionId(jarFile);
        check(id.endsWith(".a"), "a's id carries its jvmRoute: " + id);
        // round-robin between live nodes: the session keeps its id
        Node[] order = {b, x, a, b};
        for (Node n : order) {
            want++;
            String body = eventually(n, jarFile, "", "count=" + want + " ");
            check(body.startsWith("count=" + want + " node=" + n.name), n.name + " answered " + body);
            check(sessionId(jarFile).equals(id), "no rename while a is alive: " + sessionId(jarFile) + " on " + n.name);
        }
        Path oldJar = dir.resolve("cookies-old.txt");
        Files.copy(jarFile, oldJar);
        a.kill(); // the session's primary: it was created there
        Thread.sleep(4000);
        // both survivors get a's cookie at the same moment: one renames the
        // session to its route, the other follows, and both answer that id
        Path jarB = dir.resolve("cookies-b.txt");
        Path jarX = dir.resolve("cookies-x.txt");
        Files.copy(jarFile, jarB);
        Files.copy(jarFile, jarX);
        String[] raced = new String[2];
        Thread onB = new Thread(() -> raced[0] = curlOrError(b, jarB, "?op=read"));
        Thread onX = new Thread(() -> raced[1] = curlOrError(x, jarX, "?op=read"));
        onB.start();
        onX.start();
        onB.join(60_000);
        onX.join(60_000);
        String winner = sessionId(jarB);
        String base = id.substring(0, id.length() - 1);
        check(winner.equals(base + "b") || winner.equals(base + "x"), "renamed to a survivor's route: " + winner);
        check(winner.equals(sessionId(jarX)), "b and x converged: " + winner + " vs " + sessionId(jarX));
        check(raced[0].startsWith("count=" + want + " node=b"), "racing b answered " + raced[0]);
        check(raced[1].startsWith("count=" + want + " node=x"), "racing x answered " + raced[1]);
        for (Node n : new Node[] {b, x, b}) {
            want++;
            String body = eventually(n, jarFile, "", "count=" + want + " ");
            check(body.startsWith("count=" + want + " node=" + n.name), "after SIGKILL " + n.name + " answered " + body);
            String now = sessionId(jarFile);
            check(now.equals(winner), "id after SIGKILL on " + n.name + ": " + now);
        }
        // the id listeners: the winner renamed it, the other survivor holds a copy
        waitFor(() -> replicaEvents(b).endsWith(" idchanged=1") && replicaEvents(x).endsWith(" idchanged=1"),
            "sessionIdChanged for the takeover: b " + replicaEvents(b) + ", x " + replicaEvents(x));
        // a client still holding a's id reaches x: x follows b's rename
        String stale = eventually(x, oldJar, "?op=read", "count=" + want + " ");
        check(stale.startsWith("count=" + want + " node=x"), "x with the old cookie answered " + stale);
        check(sessionId(oldJar).equals(sessionId(jarFile)), "old cookie replaced by " + sessionId(oldJar));
        // session-fixation protection: a new id on b, the counter follows it to x
        String rot = curl(b, jarFile, "?op=rotate");
        check(rot.startsWith("rotated=") && rot.endsWith("node=b"), "rotate answered " + rot);
        check(Files.readString(jarFile).contains(rot.substring("rotated=".length(), rot.indexOf(' '))),
            "the cookie jar holds the new id");
        want++;
        String afterRot = eventually(x, jarFile, "", "count=" + want + " ");
        check(afterRot.startsWith("count=" + want + " node=x"), "after rotate x answered " + afterRot);
        x.proc.destroy(); // SIGTERM: Tomcat stops, the manager drains first
        check(x.proc.waitFor(60, TimeUnit.SECONDS), "x stopped after SIGTERM");
        check(Files.readString(x.log).contains("NativeSessionManager: drained at JVM shutdown"),
            "x drained before it exited");
        want++;
        String body = eventually(b, jarFile, "", "count=" + want + " ");
        check(body.startsWith("count=" + want + " node=b"), "after SIGTERM b answered " + body);
        // logout invalidates cluster-wide
        check(curl(b, jarFile, "?op=logout").startsWith("logout"), "logout");
        String gone = curl(b, jarFile, "?op=read");
        check(gone.startsWith("count=null"), "after logout b answered " + gone);
    }

    /** A test cluster of its own: multicast group and port, domain, work directory and webapp. */
    static final class Site {
        final String mcast;
        final int mport;
        final String domain;
        final Path dir;
        final Path app;

        Site(String name) throws IOException {
            int c = ++clusterNo;
            long pid = ProcessHandle.current().pid();
            mcast = "239.252." + (pid % 250) + "." + (c % 250 + 1);
            mport = 40_000 + (int) ((pid * 11 + c * 173) % 9_000);
            domain = "tomcat-test-" + pid + "-" + c;
            dir = work.resolve(name);
            deleteTree(dir);
            app = writeApp(dir.resolve("app"));
        }

        /** Starts Tomcat node {@code name} of this site with the native transport (or NSM). */
        Node start(String name, String manager) throws Exception {
            return start(name, manager, false);
        }

        /** Starts Tomcat node {@code name}; {@code stock}: with the stock Tribes transport. */
        Node start(String name, String manager, boolean stock) throws Exception {
            return TomcatTest.start(dir, name, manager, mcast, mport, domain, app, stock);
        }
    }

    /**
     * notifyListenersOnReplication="false": three NativeSessionManager
     * nodes, each holding a copy (backupCount 2); on b, where the attribute
     * listeners are off on replication, a session created and changed on a
     * fires sessionCreated (its session listeners stay on) and no attribute
     * listener, while x (defaults) fires both.
     */
    static void listenersOffScenario(String name, List<Node> nodes) throws Exception {
        Site site = new Site(name);
        Path jarFile = site.dir.resolve("cookies.txt");
        String mgr = "NSM:|backupCount=\"2\"";
        Node a = site.start("a", mgr);
        nodes.add(a);
        Node b = site.start("b", mgr + " notifyListenersOnReplication=\"false\"");
        nodes.add(b);
        Node x = site.start("x", mgr);
        nodes.add(x);
        for (Node n : nodes) {
            awaitUp(n);
        }
        Thread.sleep(1000);
        for (int want = 1; want <= 2; want++) {
            String body = eventually(a, jarFile, "", "count=" + want + " ");
            check(body.startsWith("count=" + want + " node=a"), "a answered " + body);
        }
        String on = "created=1 destroyed=0 added=1 replaced=1 removed=0 idchanged=0";
        waitFor(() -> replicaEvents(x).equals(on), "x (listeners on) fired them: " + replicaEvents(x));
        waitFor(() -> replicaEvents(b).startsWith("created=1 "), "b got the session: " + replicaEvents(b));
        Thread.sleep(1000); // b's listener thread had as long as x's
        check(replicaEvents(b).equals("created=1 destroyed=0 added=0 replaced=0 removed=0 idchanged=0"),
            "b fired no attribute listener on replication: " + replicaEvents(b));
    }

    /**
     * A stock Tribes node (McastService, NioReceiver, ReplicationTransmitter)
     * and native nodes in one cluster: increments alternate between the
     * stock node and a native one, a native node joining late reads the
     * counter (state transfer from either), and after the stock node is
     * SIGKILLed the native ones carry on.
     */
    static void mixedScenario(String name, String manager, List<Node> nodes) throws Exception {
        Site site = new Site(name);
        Path dir = site.dir;
        Path jarFile = site.dir.resolve("cookies.txt");
        Node a = site.start("a", manager, true);
        nodes.add(a);
        awaitUp(a);
        Node b = site.start("b", manager, false);
        nodes.add(b);
        awaitUp(b);
        int want = 0;
        for (int i = 0; i < 6; i++) {
            Node n = i % 2 == 0 ? a : b;
            want++;
            String body = eventually(n, jarFile, "", "count=" + want + " ");
            check(body.startsWith("count=" + want + " node=" + n.name), n.name + " answered " + body);
        }
        Node x = site.start("x", manager, false);
        nodes.add(x);
        awaitUp(x);
        String late = eventually(x, jarFile, "?op=read", "count=" + want + " ");
        check(late.startsWith("count=" + want + " node=x"), "late node answered " + late);
        a.kill();
        Thread.sleep(4000);
        want++;
        String after = eventually(b, jarFile, "", "count=" + want + " ");
        check(after.startsWith("count=" + want + " node=b"), "after kill b answered " + after);
        String onX = eventually(x, jarFile, "?op=read", "count=" + want + " ");
        check(onX.startsWith("count=" + want + " node=x"), "after kill x answered " + onX);
    }

    static String curlOrError(Node n, Path cookies, String query) {
        try {
            return curl(n, cookies, query);
        } catch (Exception e) {
            return "curl failed: " + e;
        }
    }

    /** This node's listener counts. */
    static String events(Node n) throws Exception {
        String e = curl(n, n.log.resolveSibling(n.name + "-nocookie.txt"), "?op=events");
        return e.substring(0, Math.max(0, e.indexOf(" node=")));
    }

    /** Listener counts summed over nodes, as {@code created=N destroyed=N ...}. */
    static String replicaEvents(Node... nodes) {
        String[] names = {"created", "destroyed", "added", "replaced", "removed", "idchanged"};
        int[] sum = new int[names.length];
        try {
            for (Node n : nodes) {
                String[] parts = events(n).split(" ");
                for (int i = 0; i < names.length; i++) {
                    sum[i] += Integer.parseInt(parts[i].substring(names[i].length() + 1));
                }
            }
        } catch (Exception e) {
            return "unreadable: " + e;
        }
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < names.length; i++) {
            out.append(i == 0 ? "" : " ").append(names[i]).append('=').append(sum[i]);
        }
        return out.toString();
    }

    /** The JSESSIONID in a curl cookie jar (empty if none). */
    static String sessionId(Path jarFile) throws IOException {
        String id = "";
        for (String line : Files.readAllLines(jarFile)) {
            String[] f = line.split("\t");
            if (f.length >= 7 && f[5].equals("JSESSIONID")) {
                id = f[6];
            }
        }
        return id;
    }

    /**
     * GETs {@code /count + query} until the answer starts with
     * {@code want}, at most WAIT_MS; an increment is sent once and then
     * only read again (so a retry never increments twice).
     */
    static String eventually(Node n, Path cookies, String query, String want) throws Exception {
        String body = curl(n, cookies, query);
        long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WAIT_MS);
        while (!body.startsWith(want) && System.nanoTime() < end) {
            Thread.sleep(200);
            body = curl(n, cookies, "?op=read");
        }
        return body;
    }

    static String curl(Node n, Path cookies, String query) throws Exception {
        Process p = new ProcessBuilder("curl", "-s", "-S", "--max-time", "20", "-b", cookies.toString(), "-c",
            cookies.toString(), "http://127.0.0.1:" + n.httpPort + "/count" + query)
            .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        p.waitFor(30, TimeUnit.SECONDS);
        return out.trim();
    }

    static void awaitUp(Node n) throws Exception {
        long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(START_TIMEOUT_MS);
        Path probe = n.log.resolveSibling(n.name + "-probe.txt");
        while (System.nanoTime() < end) {
            check(n.proc.isAlive(), n.name + " exited with " + (n.proc.isAlive() ? "" : n.proc.exitValue()));
            Process p = new ProcessBuilder("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                "-c", probe.toString(), "http://127.0.0.1:" + n.httpPort + "/count?op=read").start();
            String code = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
            p.waitFor(10, TimeUnit.SECONDS);
            if (code.equals("200")) {
                return;
            }
            Thread.sleep(300);
        }
        throw new AssertionError(n.name + " did not serve within " + START_TIMEOUT_MS + " ms");
    }

    static Node start(Path dir, String name, String manager, String mcast, int mport, String domain, Path app,
            boolean stock) throws Exception {
        Path base = dir.resolve(name);
        Files.createDirectories(base.resolve("conf"));
        Files.createDirectories(base.resolve("webapps"));
        Files.createDirectories(base.resolve("logs"));
        int http = freePort();
        int tcp = freePort();
        boolean nsm = manager.startsWith("NSM:");
        // "NSM:...|attrs": more attributes of the NativeSessionManager
        String nsmExtra = nsm && manager.contains("|") ? " " + manager.substring(manager.indexOf('|') + 1) : "";
        String mgr = manager.endsWith("BackupManager")
            ? "<Manager className=\"" + manager + "\" mapSendOptions=\"6\" rpcTimeout=\"15000\"/>"
            : "<Manager className=\"" + manager + "\" expireSessionsOnShutdown=\"false\""
                + " notifyListenersOnReplication=\"true\" stateTransferTimeout=\"60\"/>";
        String xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + "<Server port=\"-1\" shutdown=\"SHUTDOWN\">\n"
            + "  <Service name=\"Catalina\">\n"
            + "    <Connector port=\"" + http + "\" address=\"127.0.0.1\" protocol=\"HTTP/1.1\"/>\n"
            + "    <Engine name=\"Catalina\" defaultHost=\"localhost\"" + (nsm ? " jvmRoute=\"" + name + "\"" : "") + ">\n"
            + (nsm ? "" : "      <Cluster className=\"org.apache.catalina.ha.tcp.SimpleTcpCluster\" channelSendOptions=\"6\">\n"
            + "        " + mgr + "\n"
            + "        <Channel className=\"org.apache.catalina.tribes.group.GroupChannel\">\n"
            + (stock ? stockTransport(mcast, mport, domain, tcp) : nativeTransport(mcast, mport, domain, tcp))
            + "          <Interceptor className=\"org.apache.catalina.tribes.group.interceptors.TcpFailureDetector\"/>\n"
            + "          <Interceptor className=\"org.apache.catalina.tribes.group.interceptors.MessageDispatchInterceptor\"/>\n"
            + "        </Channel>\n"
            + "        <Valve className=\"org.apache.catalina.ha.tcp.ReplicationValve\" filter=\"\"/>\n"
            + "        <ClusterListener className=\"org.apache.catalina.ha.session.ClusterSessionListener\"/>\n"
            + "      </Cluster>\n")
            + "      <Host name=\"localhost\" appBase=\"webapps\" unpackWARs=\"false\" autoDeploy=\"false\">\n"
            + (nsm ? "        <Context path=\"\" docBase=\"" + app + "\">\n"
                + "          <Manager className=\"io.sessionrepl.tomcat.NativeSessionManager\" sessionMode=\"backup\""
                + (nsmExtra.contains("backupCount") ? "" : " backupCount=\"1\"") + nsmExtra + " membershipType=\"multicast\" mcastAddr=\"" + mcast + "\" mcastPort=\"" + mport
                + "\" mcastBindAddress=\"127.0.0.1\" mcastTTL=\"1\" mcastFrequency=\"200\" mcastDropTime=\"2000\""
                + " mcastClusterDomain=\"" + domain + "\" tcpListenAddress=\"127.0.0.1\" tcpListenPort=\"" + tcp
                + "\" stateTransferTimeout=\"30\" commitTimeout=\"10000\" drainTimeout=\"20000\"/>\n"
                + "        </Context>\n"
                : "        <Context path=\"\" docBase=\"" + app + "\"/>\n")
            + "      </Host>\n"
            + "    </Engine>\n"
            + "  </Service>\n"
            + "</Server>\n";
        Path serverXml = base.resolve("conf/server.xml");
        Files.writeString(serverXml, xml);
        Path log = base.resolve("node.log");
        List<String> cmd = new ArrayList<>();
        cmd.add(System.getProperty("java.home") + "/bin/java");
        cmd.add("-Djava.net.preferIPv4Stack=true");
        cmd.add("-Xmx128m");
        cmd.add("-Xss512k");
        cmd.add("-XX:+UseSerialGC");
        cmd.add("-XX:TieredStopAtLevel=1");
        cmd.add("-Djava.library.path=" + libDir);
        cmd.add("-Dcatalina.base=" + base);
        cmd.add("-Dcatalina.home=" + base);
        cmd.add("-Dsessionrepl.test.node=" + name);
        cmd.add("-cp");
        cmd.add(tomcatCp + File.pathSeparator + jar);
        cmd.add("org.apache.catalina.startup.Tomcat");
        cmd.add("--await");
        cmd.add("--catalina");
        cmd.add("-config");
        cmd.add(serverXml.toString());
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        return new Node(name, http, log, p);
    }

    static String nativeTransport(String mcast, int mport, String domain, int tcp) {
        return ""
            + "          <Membership className=\"io.sessionrepl.tomcat.NativeMembershipService\" address=\"" + mcast
            + "\" port=\"" + mport + "\" frequency=\"200\" dropTime=\"2000\" bind=\"127.0.0.1\" ttl=\"1\""
            + " domain=\"" + domain + "\" soTimeout=\"500\"/>\n"
            + "          <Receiver className=\"io.sessionrepl.tomcat.NativeReceiver\" address=\"127.0.0.1\""
            + " port=\"" + tcp + "\" autoBind=\"100\" selectorTimeout=\"5000\" maxThreads=\"6\"/>\n"
            + "          <Sender className=\"io.sessionrepl.tomcat.NativeSender\" ackTimeout=\"10000\">\n"
            + "            <Transport className=\"org.apache.catalina.tribes.transport.nio.PooledParallelSender\"/>\n"
            + "          </Sender>\n";
    }

    /** Stock Tribes classes with the same settings (for the mixed cluster). */
    static String stockTransport(String mcast, int mport, String domain, int tcp) {
        return ""
            + "          <Membership className=\"org.apache.catalina.tribes.membership.McastService\" address=\"" + mcast
            + "\" port=\"" + mport + "\" frequency=\"200\" dropTime=\"2000\" bind=\"127.0.0.1\" ttl=\"1\""
            + " domain=\"" + domain + "\"/>\n"
            + "          <Receiver className=\"org.apache.catalina.tribes.transport.nio.NioReceiver\" address=\"127.0.0.1\""
            + " port=\"" + tcp + "\" autoBind=\"100\" selectorTimeout=\"5000\" maxThreads=\"6\"/>\n"
            + "          <Sender className=\"org.apache.catalina.tribes.transport.ReplicationTransmitter\">\n"
            + "            <Transport className=\"org.apache.catalina.tribes.transport.nio.PooledParallelSender\" timeout=\"10000\"/>\n"
            + "          </Sender>\n";
    }

    static Path writeApp(Path app) throws IOException {
        Path classes = app.resolve("WEB-INF/classes/io/sessionrepl/tomcat");
        Files.createDirectories(classes);
        for (String c : new String[] {"CounterServlet.class", "CountingListener.class"}) {
            Files.copy(Path.of(testClasses, "io/sessionrepl/tomcat", c), classes.resolve(c));
        }
        Files.writeString(app.resolve("WEB-INF/web.xml"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + "<web-app xmlns=\"https://jakarta.ee/xml/ns/jakartaee\" version=\"6.0\">\n"
            + "  <distributable/>\n"
            + "  <listener><listener-class>io.sessionrepl.tomcat.CountingListener</listener-class></listener>\n"
            + "  <servlet><servlet-name>count</servlet-name>"
            + "<servlet-class>io.sessionrepl.tomcat.CounterServlet</servlet-class></servlet>\n"
            + "  <servlet-mapping><servlet-name>count</servlet-name><url-pattern>/count</url-pattern></servlet-mapping>\n"
            + "</web-app>\n");
        return app;
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        try (var s = Files.walk(p)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
    }
}
