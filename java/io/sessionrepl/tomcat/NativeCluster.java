package io.sessionrepl.tomcat;

import io.sessionrepl.Channel;
import io.sessionrepl.Config;
import io.sessionrepl.Message;
import io.sessionrepl.SessionReplException;

import java.io.IOException;

import org.apache.catalina.tribes.MembershipService;
import org.apache.catalina.tribes.MessageListener;
import org.apache.catalina.tribes.io.ChannelData;
import org.apache.juli.logging.Log;
import org.apache.juli.logging.LogFactory;

/**
 * The one native {@link Channel} behind a Tribes channel whose receiver,
 * sender and (optionally) membership are the native classes. Started by
 * {@link NativeReceiver#start()} (Tomcat starts the receiver first) with the
 * attributes of all three components; messages travel as whole Tribes
 * {@link ChannelData} envelopes.
 */
final class NativeCluster {
    private static final Log log = LogFactory.getLog(NativeCluster.class);

    final Channel channel;
    private final NativeReceiver receiver;

    private NativeCluster(Channel channel, NativeReceiver receiver) {
        this.channel = channel;
        this.receiver = receiver;
    }

    /**
     * The native channel's settings from the three components' attributes
     * (a component's explicit attribute wins over a default set here).
     *
     * @throws IOException an attribute with a bad value, named
     */
    static Config config(NativeReceiver r, NativeSender s, NativeMembershipService nm) throws IOException {
        Config cfg = new Config();
        // Payloads are Tomcat's whole ChannelData; to and from stock
        // Tribes members they travel in Tribes framing as is.
        cfg.set("tribesEnvelope", "true");
        // A Tomcat node's cores serve requests: no polling for acks or
        // input (an attribute idleSpinMicros still sets it). Measured
        // with make bench-tomcat (2 vCPUs): 4714-4949 requests/s
        // without it, 3609-3716 with the library's 50 us.
        cfg.set("idleSpinMicros", "0");
        if (nm != null) {
            cfg.set("membershipType", "multicast");
            nm.attributes().applyTo(cfg);
        } else {
            // membership is Tomcat's own service (e.g. McastService); it tells us the members
            cfg.set("membershipType", "none");
        }
        s.attributes().applyTo(cfg);
        r.attributes().applyTo(cfg);
        return cfg;
    }

    /** Builds the config from the components and starts the channel (trying autoBind ports). */
    static NativeCluster start(NativeReceiver r, NativeSender s, MembershipService m) throws IOException {
        NativeMembershipService nm = m instanceof NativeMembershipService ? (NativeMembershipService) m : null;
        int port = r.configuredPort();
        int tries = Math.max(1, r.autoBind());
        SessionReplException last = null;
        for (int i = 0; i < tries; i++) {
            Config cfg = config(r, s, nm);
            cfg.set("tcpListenPort", String.valueOf(port == 0 ? 0 : port + i));
            NativeCluster[] self = new NativeCluster[1];
            try {
                Channel.Builder b = Channel.builder(cfg).onMessage(msg -> self[0].deliver(msg));
                if (nm != null) {
                    b.onMember(nm::nativeEvent);
                }
                Channel ch = b.start();
                self[0] = new NativeCluster(ch, r);
                log.info("sessionrepl native channel listening on " + ch.localAddress() + " (" + cfg + ")");
                return self[0];
            } catch (SessionReplException e) {
                if (!"SR_IO".equals(e.result()) || port == 0) {
                    throw new IOException("sessionrepl channel: " + e.getMessage(), e);
                }
                last = e;
            }
        }
        throw new IOException("sessionrepl channel: no free port in " + port + ".." + (port + tries - 1)
            + " (autoBind=" + tries + "): " + last.getMessage(), last);
    }

    /**
     * A message from a member: the whole ChannelData, handed to Tomcat. Its
     * exception becomes the FAIL_ACK the sender sees when it asked for a
     * synchronized ack.
     */
    private void deliver(Message m) throws Exception {
        ChannelData data = ChannelData.getDataFromPackage(m.payload());
        MessageListener l = receiver.getMessageListener();
        if (l == null) {
            throw new IllegalStateException("receiver has no listener");
        }
        if (l.accept(data)) {
            l.messageReceived(data);
        }
    }

    void stop() {
        channel.close();
    }
}
