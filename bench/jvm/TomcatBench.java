package io.sessionrepl.tomcat;

import java.net.CookieManager;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * S8's Tomcat end-to-end figure: a two-node cluster (DeltaManager,
 * channelSendOptions=6 so every request waits for its replication to be
 * acknowledged after delivery) serving the counter servlet, driven by the
 * same load generator (CLIENTS threads, each its own session, on node a),
 * once with stock Tribes and once with the native transport classes, in
 * one run; then the same servlet and load on two nodes whose context uses
 * NativeSessionManager (phase 2, backup mode, one backup, a commit per
 * request acknowledged by the backup). Prints one line per implementation
 * in the format of bench/SCENARIOS.md.
 *
 * Usage (from make bench-tomcat): java -cp testclasses:benchclasses
 * io.sessionrepl.tomcat.TomcatBench JAR LIBDIR TOMCAT_CP TESTCLASSES WORKDIR [REQUESTS] [CLIENTS]
 */
public final class TomcatBench {
    public static void main(String[] args) throws Exception {
        TomcatTest.jar = args[0];
        TomcatTest.libDir = args[1];
        TomcatTest.tomcatCp = args[2];
        TomcatTest.testClasses = args[3];
        TomcatTest.work = Path.of(args[4]).toAbsolutePath();
        int requests = args.length > 5 ? Integer.parseInt(args[5]) : 20_000;
        int clients = args.length > 6 ? Integer.parseInt(args[6]) : 4;
        for (String impl : new String[] {"tribes", "sessionrepl-jni", "sessionrepl-store"}) {
            run(impl, requests, clients);
        }
        System.exit(0);
    }

    /**
     * One implementation: "tribes" (stock SimpleTcpCluster, DeltaManager),
     * "sessionrepl-jni" (the same with the native transport classes) or
     * "sessionrepl-store" (NativeSessionManager, backup mode, one backup;
     * -Dbench.nsm.attrs adds Manager attributes).
     */
    static void run(String impl, int requests, int clients) throws Exception {
        boolean stock = impl.equals("tribes");
        boolean store = impl.equals("sessionrepl-store");
        String name = "bench-" + impl;
        int c = ++TomcatTest.clusterNo + 100;
        long pid = ProcessHandle.current().pid();
        String mcast = "239.251." + (pid % 250) + "." + (c % 250 + 1);
        int mport = 40_000 + (int) ((pid * 11 + c * 173) % 9_000);
        String domain = "tomcat-bench-" + pid + "-" + c;
        Path dir = TomcatTest.work.resolve(name);
        TomcatTest.deleteTree(dir);
        Path app = TomcatTest.writeApp(dir.resolve("app"));
        String mgr = store ? "NSM:|" + System.getProperty("bench.nsm.attrs", "")
            : "org.apache.catalina.ha.session.DeltaManager";
        List<TomcatTest.Node> nodes = new ArrayList<>();
        try {
            TomcatTest.Node a = TomcatTest.start(dir, "a", mgr, mcast, mport, domain, app, stock);
            nodes.add(a);
            TomcatTest.awaitUp(a);
            TomcatTest.Node b = TomcatTest.start(dir, "b", mgr, mcast, mport, domain, app, stock);
            nodes.add(b);
            TomcatTest.awaitUp(b);
            Thread.sleep(1000);
            URI uri = URI.create("http://127.0.0.1:" + a.httpPort + "/count");
            int warm = Math.max(100, requests / 10);
            long[][] lat = new long[clients][];
            Thread[] ts = new Thread[clients];
            long[] t0 = new long[1];
            java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(clients,
                () -> t0[0] = System.nanoTime());
            Throwable[] err = new Throwable[1];
            for (int i = 0; i < clients; i++) {
                int share = requests / clients + (i < requests % clients ? 1 : 0);
                int me = i;
                ts[i] = new Thread(() -> {
                    try {
                        HttpClient http = HttpClient.newBuilder().cookieHandler(new CookieManager())
                            .connectTimeout(Duration.ofSeconds(10)).build();
                        HttpRequest req = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(30)).build();
                        for (int k = 0; k < warm / clients; k++) {
                            http.send(req, HttpResponse.BodyHandlers.ofString());
                        }
                        start.await();
                        long[] mine = new long[share];
                        for (int k = 0; k < share; k++) {
                            long s = System.nanoTime();
                            HttpResponse<String> r = http.send(req, HttpResponse.BodyHandlers.ofString());
                            mine[k] = System.nanoTime() - s;
                            if (r.statusCode() != 200) {
                                throw new IllegalStateException("HTTP " + r.statusCode());
                            }
                        }
                        lat[me] = mine;
                    } catch (Throwable e) {
                        err[0] = e;
                    }
                });
                ts[i].start();
            }
            for (Thread t : ts) {
                t.join();
            }
            if (err[0] != null) {
                throw new IllegalStateException(err[0]);
            }
            double secs = (System.nanoTime() - t0[0]) / 1e9;
            long[] all = Arrays.stream(lat).flatMapToLong(Arrays::stream).sorted().toArray();
            System.out.printf(Locale.ROOT,
                "S8 %s impl=%s count=%d size=0 secs=%.3f msgs_per_s=%.0f MB_per_s=0.0 p50_us=%.1f p99_us=%.1f threads=%d nodes=2%n",
                store ? "tomcat-store-e2e" : "tomcat-delta-e2e", impl, all.length, secs, all.length / secs,
                all[all.length / 2] / 1000.0, all[(int) Math.min(all.length - 1, Math.ceil(all.length * 0.99) - 1)] / 1000.0,
                clients);
            System.out.flush();
        } finally {
            for (TomcatTest.Node n : nodes) {
                n.kill();
            }
        }
    }
}
