package io.sessionrepl.tomcat;

import static io.sessionrepl.tomcat.TomcatTest.check;
import static io.sessionrepl.tomcat.TomcatTest.waitFor;

import io.sessionrepl.Config;

import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import org.apache.catalina.tribes.ByteMessage;
import org.apache.catalina.tribes.Channel;
import org.apache.catalina.tribes.ChannelException;
import org.apache.catalina.tribes.RemoteProcessException;
import org.apache.catalina.tribes.group.GroupChannel;
import org.apache.catalina.tribes.group.interceptors.StaticMembershipInterceptor;
import org.apache.catalina.tribes.membership.StaticMember;
import org.apache.catalina.tribes.transport.ReplicationTransmitter;
import org.apache.catalina.tribes.transport.nio.NioReceiver;
import org.apache.catalina.tribes.transport.nio.PooledParallelSender;

/**
 * A {@link io.sessionrepl.MessageViewListener} fed by a stock Tribes sender
 * (messages from Tribes connections go one at a time, as a heap view).
 */
final class TribesViewTest {
    private TribesViewTest() {}

    /**
     * A stock GroupChannel sends ByteMessages with a synchronized ack to a
     * native channel whose listener is a view listener: the payloads arrive
     * exactly, as read-only views; the listener's exception reaches the
     * Tribes sender as a FAIL_ACK (a ChannelException with a
     * RemoteProcessException), and the next message is delivered.
     */
    static void tribesSenderToViewListener() throws Exception {
        List<String> got = new CopyOnWriteArrayList<>();
        List<String> bad = new CopyOnWriteArrayList<>();
        Config cfg = new Config().set("tcpListenAddress", "127.0.0.1").set("membershipType", "none")
            .set("replicationMode", "synchronous");
        try (io.sessionrepl.Channel b = io.sessionrepl.Channel.builder(cfg).onMessageView((h, p) -> {
            if (!p.isReadOnly() || p.isDirect()) {
                bad.add("not a read-only heap view (Tribes messages come one at a time)");
            }
            byte[] c = new byte[p.remaining()];
            p.get(c);
            String s = new String(c, StandardCharsets.UTF_8);
            if (s.startsWith("refuse")) {
                throw new IllegalStateException("view listener refused " + s);
            }
            if (!s.contains("StaticMember Notification")) {
                // (the interceptor's own membership notice comes first)
                got.add(s);
            }
        }).start()) {
            InetSocketAddress at = b.localAddress();
            GroupChannel a = new GroupChannel();
            NioReceiver rx = new NioReceiver();
            rx.setAddress("127.0.0.1");
            rx.setAutoBind(100);
            a.setChannelReceiver(rx);
            ReplicationTransmitter tx = new ReplicationTransmitter();
            tx.setTransport(new PooledParallelSender());
            a.setChannelSender(tx);
            StaticMember mb = new StaticMember("127.0.0.1", at.getPort(), 0);
            mb.setUniqueId("{0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,77}");
            StaticMembershipInterceptor members = new StaticMembershipInterceptor();
            members.addStaticMember(mb);
            a.addInterceptor(members);
            a.start(Channel.SND_RX_SEQ | Channel.SND_TX_SEQ);
            try {
                int sync = Channel.SEND_OPTIONS_BYTE_MESSAGE | Channel.SEND_OPTIONS_USE_ACK
                    | Channel.SEND_OPTIONS_SYNCHRONIZED_ACK;
                org.apache.catalina.tribes.Member[] to = {mb};
                a.send(to, new ByteMessage("one".getBytes(StandardCharsets.UTF_8)), sync);
                check(got.contains("one"), "delivered before the sync ack: " + got);
                try {
                    a.send(to, new ByteMessage("refuse-two".getBytes(StandardCharsets.UTF_8)), sync);
                    throw new AssertionError("the view listener's exception did not reach the Tribes sender");
                } catch (ChannelException e) {
                    ChannelException.FaultyMember[] f = e.getFaultyMembers();
                    check(f.length == 1 && f[0].getCause() instanceof RemoteProcessException,
                        "FAIL_ACK cause: " + (f.length == 1 ? f[0].getCause() : e));
                }
                a.send(to, new ByteMessage("three".getBytes(StandardCharsets.UTF_8)), sync);
                waitFor(() -> got.size() >= 2, "the message after the refused one");
                check(List.of("one", "three").equals(got), "accepted payloads: " + got);
                check(bad.isEmpty(), "listener checks: " + bad);
            } finally {
                a.stop(Channel.DEFAULT);
            }
        }
    }
}
