// sessionrepl's own harness for the Apache Tribes peer (the transport inside
// Tomcat's cluster), driven by `sessionrepl bench` through src/bench/tribes.rs.
//
// Two GroupChannels in one JVM on 127.0.0.1: NioReceiver, PooledParallelSender,
// StaticMembershipInterceptor (no multicast), ByteMessage payloads.
//
//   java -Djava.net.preferIPv4Stack=true -cp tribes.jar:juli.jar:DIR \
//        TribesHarness ID NAME MODE COUNT SIZE THREADS TIMEOUT_SECS [KEYHEX]
//
//   KEYHEX: adds a stock EncryptInterceptor (AES/GCM/NoPadding, this
//        encryptionKey) to both channels; the line then says impl=tribes-encrypt.
//
//   MODE async : MessageDispatchInterceptor (fastasyncqueue), no ack
//        ack   : USE_ACK|SYNCHRONIZED_ACK, THREADS senders, each send timed
//        gzip  : async + GzipInterceptor on both channels
//
// Prints exactly one line on stdout, in the format of bench/SCENARIOS.md:
//   ID NAME impl=tribes count=.. size=.. secs=.. msgs_per_s=.. MB_per_s=..
//   p50_us=.. p99_us=.. threads=..
// Exit codes: 0 ok, 2 usage or send failure, 3 receiver timed out.
import java.io.Serializable;
import java.net.ServerSocket;
import java.util.Arrays;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;

import org.apache.catalina.tribes.ByteMessage;
import org.apache.catalina.tribes.Channel;
import org.apache.catalina.tribes.ChannelListener;
import org.apache.catalina.tribes.Member;
import org.apache.catalina.tribes.group.GroupChannel;
import org.apache.catalina.tribes.group.interceptors.EncryptInterceptor;
import org.apache.catalina.tribes.group.interceptors.GzipInterceptor;
import org.apache.catalina.tribes.group.interceptors.MessageDispatchInterceptor;
import org.apache.catalina.tribes.group.interceptors.StaticMembershipInterceptor;
import org.apache.catalina.tribes.membership.StaticMember;
import org.apache.catalina.tribes.transport.ReplicationTransmitter;
import org.apache.catalina.tribes.transport.nio.NioReceiver;
import org.apache.catalina.tribes.transport.nio.PooledParallelSender;

public final class TribesHarness {
    // Held so the level set below is not lost when the logger is collected.
    private static final Logger ROOT_LOG = Logger.getLogger("");

    /** Counts deliveries; releases `done` when `target` messages have arrived. */
    static final class Counter implements ChannelListener {
        final AtomicLong received = new AtomicLong();
        volatile long target = Long.MAX_VALUE;
        final CountDownLatch done = new CountDownLatch(1);

        @Override
        public void messageReceived(Serializable msg, Member sender) {
            if (received.incrementAndGet() == target) {
                done.countDown();
            }
        }

        @Override
        public boolean accept(Serializable msg, Member sender) {
            return msg instanceof ByteMessage;
        }
    }

    /**
     * The payloads a sender cycles through: each cycles through
     * "session-attribute-"; with {@code session} (S5) each also starts with
     * its own session id ("sid=", 16 hex digits, ";") and 64 pseudo-random
     * bytes, the same xorshift64 sequence as the Rust bench's
     * session_payloads, so both compress the same bytes.
     */
    static byte[][] payloads(int n, int size, boolean session) throws Exception {
        final byte[] pattern = "session-attribute-".getBytes("US-ASCII");
        byte[][] out = new byte[n][];
        long x = 0x9E3779B97F4A7C15L;
        for (int m = 0; m < n; m++) {
            byte[] p = new byte[size];
            for (int i = 0; i < size; i++) {
                p[i] = pattern[i % pattern.length];
            }
            if (session) {
                java.io.ByteArrayOutputStream head = new java.io.ByteArrayOutputStream();
                head.write(String.format("sid=%016x;", m).getBytes("US-ASCII"));
                for (int k = 0; k < 8; k++) {
                    x ^= x << 13;
                    x ^= x >>> 7;
                    x ^= x << 17;
                    for (int b = 0; b < 8; b++) {
                        head.write((int) (x >>> (8 * b)) & 0xff);
                    }
                }
                byte[] h = head.toByteArray();
                System.arraycopy(h, 0, p, 0, Math.min(h.length, size));
            }
            out[m] = p;
        }
        return out;
    }

    static GroupChannel channel(int port, boolean dispatch, boolean gzip, String key, Member peer) {
        GroupChannel ch = new GroupChannel();
        NioReceiver rx = new NioReceiver();
        rx.setAddress("127.0.0.1");
        rx.setPort(port);
        rx.setAutoBind(100);
        ch.setChannelReceiver(rx);
        ReplicationTransmitter tx = new ReplicationTransmitter();
        tx.setTransport(new PooledParallelSender());
        ch.setChannelSender(tx);
        // First added sits nearest the application: dispatch, then gzip (so
        // compression runs on the dispatch threads), then membership.
        if (dispatch) {
            ch.addInterceptor(new MessageDispatchInterceptor());
        }
        if (gzip) {
            ch.addInterceptor(new GzipInterceptor());
        }
        if (key != null) {
            EncryptInterceptor enc = new EncryptInterceptor();
            enc.setEncryptionAlgorithm("AES/GCM/NoPadding");
            enc.setEncryptionKey(key);
            ch.addInterceptor(enc);
        }
        StaticMembershipInterceptor members = new StaticMembershipInterceptor();
        if (peer != null) {
            members.addStaticMember(peer);
        }
        ch.addInterceptor(members);
        return ch;
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
            return s.getLocalPort();
        }
    }

    static void die(int code, String why) {
        System.err.println("TribesHarness: " + why);
        System.exit(code);
    }

    static void awaitCount(AtomicLong received, long want, long deadlineNanos) throws InterruptedException {
        while (received.get() < want) {
            if (System.nanoTime() > deadlineNanos) {
                die(3, "warm-up timed out: " + received.get() + " of " + want + " delivered");
            }
            Thread.sleep(1);
        }
    }

    /** Latency of rank p (nearest-rank) in µs; one decimal, like the Rust side. */
    static String percentile(long[] sortedNanos, double p) {
        if (sortedNanos.length == 0) {
            return "0";
        }
        int rank = (int) Math.ceil(p * sortedNanos.length);
        int idx = Math.max(0, Math.min(sortedNanos.length - 1, rank - 1));
        return String.format(Locale.ROOT, "%.1f", sortedNanos[idx] / 1000.0);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 7 && args.length != 8) {
            die(2, "usage: TribesHarness ID NAME async|ack|gzip COUNT SIZE THREADS TIMEOUT_SECS [KEYHEX]");
        }
        final String key = args.length == 8 ? args[7] : null;
        final String impl = key == null ? "tribes" : "tribes-encrypt";
        ROOT_LOG.setLevel(Level.SEVERE);
        final String id = args[0];
        final String name = args[1];
        final String mode = args[2];
        final int count = Integer.parseInt(args[3]);
        final int size = Integer.parseInt(args[4]);
        final int threads = Integer.parseInt(args[5]);
        final long timeoutNanos = Long.parseLong(args[6]) * 1_000_000_000L;
        if (!mode.equals("async") && !mode.equals("ack") && !mode.equals("gzip")) {
            die(2, "unknown mode " + mode);
        }
        if (count < 1 || size < 1 || threads < 1) {
            die(2, "COUNT, SIZE and THREADS must be positive");
        }
        final long deadline = System.nanoTime() + timeoutNanos;
        final boolean ack = mode.equals("ack");
        final boolean gzip = mode.equals("gzip");

        // Receiving node B.
        Counter counter = new Counter();
        GroupChannel b = channel(freePort(), false, gzip, key, null);
        b.addChannelListener(counter);
        b.start(Channel.SND_RX_SEQ | Channel.SND_TX_SEQ);
        int portB = ((NioReceiver) b.getChannelReceiver()).getPort();
        StaticMember memberB = new StaticMember("127.0.0.1", portB, 0);
        memberB.setUniqueId("{0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,66}");

        // Sending node A, which knows B as its one static member.
        GroupChannel a = channel(freePort(), !ack, gzip, key, memberB);
        a.start(Channel.SND_RX_SEQ | Channel.SND_TX_SEQ);

        final Member[] dest = {memberB};
        final byte[][] payloads = payloads(gzip ? 4096 : 1, size, gzip);
        final int options = Channel.SEND_OPTIONS_BYTE_MESSAGE
            | (ack ? Channel.SEND_OPTIONS_USE_ACK | Channel.SEND_OPTIONS_SYNCHRONIZED_ACK
                   : Channel.SEND_OPTIONS_ASYNCHRONOUS);

        // Warm-up: JIT, connections, pools; fully delivered before timing.
        final int warm = Math.max(1, Math.min(count / 10, 5000));
        for (int i = 0; i < warm; i++) {
            a.send(dest, new ByteMessage(payloads[i % payloads.length]), options);
        }
        awaitCount(counter.received, warm, deadline);
        counter.target = warm + (long) count;
        if (counter.received.get() >= counter.target) {
            die(2, "more deliveries than sends");
        }

        final long[][] lat = new long[threads][];
        final Thread[] senders = new Thread[threads];
        final long t0 = System.nanoTime();
        for (int t = 0; t < threads; t++) {
            final int share = count / threads + (t < count % threads ? 1 : 0);
            final long[] mine = new long[ack ? share : 0];
            lat[t] = mine;
            senders[t] = new Thread(() -> {
                try {
                    for (int i = 0; i < share; i++) {
                        long s = System.nanoTime();
                        a.send(dest, new ByteMessage(payloads[i % payloads.length]), options);
                        if (ack) {
                            mine[i] = System.nanoTime() - s;
                        }
                    }
                } catch (Exception e) {
                    e.printStackTrace();
                    die(2, "send failed: " + e);
                }
            }, "sender-" + t);
            senders[t].start();
        }
        for (Thread t : senders) {
            t.join(Math.max(1, (deadline - System.nanoTime()) / 1_000_000));
            if (t.isAlive()) {
                die(3, "senders timed out: " + counter.received.get() + " delivered");
            }
        }
        long left = deadline - System.nanoTime();
        if (left <= 0 || !counter.done.await(left, TimeUnit.NANOSECONDS)) {
            die(3, "delivery timed out: " + (counter.received.get() - warm) + " of " + count);
        }
        final double secs = (System.nanoTime() - t0) / 1e9;

        long[] all = new long[0];
        if (ack) {
            all = new long[count];
            int at = 0;
            for (long[] l : lat) {
                System.arraycopy(l, 0, all, at, l.length);
                at += l.length;
            }
            Arrays.sort(all);
        }
        System.out.printf(Locale.ROOT,
            "%s %s impl=%s count=%d size=%d secs=%.3f msgs_per_s=%.0f MB_per_s=%.1f p50_us=%s p99_us=%s threads=%d%n",
            id, name, impl, count, size, secs, count / secs, count * (double) size / secs / 1e6,
            percentile(all, 0.50), percentile(all, 0.99), threads);
        System.out.flush();
        // Exit without stopping the channels: the figures are out, and a
        // stop can linger on sender pools for seconds.
        System.exit(0);
    }
}
