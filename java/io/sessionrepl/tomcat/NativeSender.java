package io.sessionrepl.tomcat;

import static io.sessionrepl.tomcat.Attributes.Type.BOOL;
import static io.sessionrepl.tomcat.Attributes.Type.INT;
import static io.sessionrepl.tomcat.Attributes.Type.LONG;

import io.sessionrepl.Outcome;
import io.sessionrepl.SendOptions;
import io.sessionrepl.SessionReplException;
import io.sessionrepl.Ticket;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.Map;

import org.apache.catalina.tribes.Channel;
import org.apache.catalina.tribes.ChannelException;
import org.apache.catalina.tribes.ChannelMessage;
import org.apache.catalina.tribes.ChannelSender;
import org.apache.catalina.tribes.Member;
import org.apache.catalina.tribes.RemoteProcessException;
import org.apache.catalina.tribes.io.ChannelData;
import org.apache.catalina.tribes.transport.AbstractSender;
import org.apache.catalina.tribes.transport.MultiPointSender;
import org.apache.catalina.tribes.transport.PooledSender;

/**
 * A Tribes {@link ChannelSender} backed by sessionrepl's native engine:
 * {@code <Sender className="io.sessionrepl.tomcat.NativeSender" replicationMode="fastasyncqueue"/>}.
 * Each Tribes message travels as its whole {@code ChannelData}; the ack
 * asked for follows its option bits ({@code USE_ACK}: ack on receipt;
 * with {@code SYNCHRONIZED_ACK}: after the receiving listener returned, a
 * listener exception coming back as a failure). A send returns when every
 * destination's outcome is known; failures reach Tomcat as a
 * {@link ChannelException} with the faulty members, so
 * {@code TcpFailureDetector} keeps working.
 *
 * <p>Attributes: any sessionrepl key ({@code replicationMode},
 * {@code ackTimeout}, {@code compress}, {@code ioBackend}, ...) and those of
 * Tomcat's senders: {@code timeout} (ack timeout, ms),
 * {@code maxRetryAttempts}, {@code keepAliveCount}, {@code keepAliveTime},
 * {@code poolSize}, {@code maxWait}, {@code tcpNoDelay}, {@code rxBufSize},
 * {@code txBufSize} are mapped; the rest are checked and logged once as not
 * applicable. A nested {@code <Transport className="...PooledParallelSender" .../>}
 * is accepted and its settings are mapped the same way.
 */
public class NativeSender implements ChannelSender {
    static final Map<String, Attributes.Known> KNOWN = Attributes.table(
        "timeout", LONG, "ackTimeout",
        "maxRetryAttempts", INT, "maxRetryAttempts",
        "keepAliveCount", INT, "keepAliveCount",
        "keepAliveTime", LONG, "keepAliveTimeout",
        "poolSize", INT, "maxPoolSocketLimit",
        "maxWait", LONG, "queueAddWaitTimeout",
        "tcpNoDelay", BOOL, "tcpNoDelay",
        "rxBufSize", INT, "rxBufSize",
        "txBufSize", INT, "txBufSize",
        "directBuffer", BOOL, null,
        "soKeepAlive", BOOL, null,
        "ooBInline", BOOL, null,
        "soReuseAddress", BOOL, null,
        "soLingerOn", BOOL, null,
        "soLingerTime", INT, null,
        "soTrafficClass", INT, null,
        "throwOnFailedAck", BOOL, null,
        "udpBased", BOOL, null,
        "udpPort", INT, null,
        "udpRxBufSize", INT, null,
        "udpTxBufSize", INT, null,
        "requestCount", INT, null);

    /** A backstop on waiting for outcomes; the engine's ackTimeout ends them first. */
    private static final long OUTCOME_BACKSTOP_MS = 120_000;

    private final Attributes attrs = new Attributes("NativeSender", KNOWN);
    private volatile Channel channel;
    private volatile NativeCluster cluster;
    private MultiPointSender transport;

    /** A sender with every attribute at its default. */
    public NativeSender() {
    }

    /**
     * Sets a {@code server.xml} attribute.
     *
     * @param name a Tomcat sender attribute or a sessionrepl key
     * @param value its value (checked when the receiver starts the channel)
     * @return false for an unknown name (Tomcat then warns)
     */
    public boolean setProperty(String name, String value) {
        return attrs.set(name, value);
    }

    /**
     * @param name an attribute name
     * @return the value set for it, or null
     */
    public String getProperty(String name) {
        return attrs.get(name);
    }

    /**
     * Takes the settings of a nested {@code <Transport>} (as
     * {@code ReplicationTransmitter} does); its own connections are never used.
     *
     * @param transport the configured transport
     */
    public void setTransport(MultiPointSender transport) {
        this.transport = transport;
        if (transport instanceof AbstractSender) {
            AbstractSender a = (AbstractSender) transport;
            putIfAbsent("timeout", String.valueOf(a.getTimeout()));
            putIfAbsent("maxRetryAttempts", String.valueOf(a.getMaxRetryAttempts()));
            if (a.getKeepAliveCount() >= 0) {
                putIfAbsent("keepAliveCount", String.valueOf(a.getKeepAliveCount()));
            }
            if (a.getKeepAliveTime() >= 0) {
                putIfAbsent("keepAliveTime", String.valueOf(a.getKeepAliveTime()));
            }
        }
        if (transport instanceof PooledSender) {
            putIfAbsent("poolSize", String.valueOf(((PooledSender) transport).getPoolSize()));
        }
    }

    /** @return the nested transport, or null */
    public MultiPointSender getTransport() {
        return transport;
    }

    private void putIfAbsent(String k, String v) {
        if (attrs.get(k) == null) {
            attrs.set(k, v);
        }
    }

    Attributes attributes() {
        return attrs;
    }

    void bind(NativeCluster c) {
        cluster = c;
    }

    /**
     * Sends a Tribes message to {@code destination} over the native
     * channel, as a whole {@code ChannelData}, and waits for every outcome.
     *
     * @param message the message (a {@code ChannelData})
     * @param destination the members to send to
     * @throws ChannelException with every member it failed for
     */
    @Override
    public void sendMessage(ChannelMessage message, Member[] destination) throws ChannelException {
        if (destination == null || destination.length == 0) {
            return;
        }
        NativeCluster c = cluster;
        if (c == null) {
            throw new ChannelException("NativeSender is not started");
        }
        byte[] pkg = ((ChannelData) message).getDataPackage();
        int o = message.getOptions();
        SendOptions.Ack ack = (o & Channel.SEND_OPTIONS_USE_ACK) == 0 ? SendOptions.Ack.NONE
            : (o & Channel.SEND_OPTIONS_SYNCHRONIZED_ACK) != 0 ? SendOptions.Ack.DELIVERY : SendOptions.Ack.RECEIPT;
        InetSocketAddress[] to = new InetSocketAddress[destination.length];
        ChannelException cx = null;
        try {
            for (int i = 0; i < to.length; i++) {
                to[i] = new InetSocketAddress(InetAddress.getByAddress(destination[i].getHost()), destination[i].getPort());
            }
            try (Ticket t = c.channel.sendWithTicket(to, pkg, SendOptions.ack(ack))) {
                List<Outcome> outs = t.await(OUTCOME_BACKSTOP_MS);
                for (Outcome out : outs) {
                    if (out.ok()) {
                        continue;
                    }
                    if (cx == null) {
                        cx = new ChannelException("sessionrepl send failed");
                    }
                    Exception why = "SR_REMOTE_FAILURE".equals(out.result())
                        ? new RemoteProcessException(out.result() + ": " + out.detail())
                        : new IOException(out.result() + ": " + out.detail());
                    cx.addFaultyMember(memberAt(destination, to, out.destination()), why);
                }
            }
        } catch (SessionReplException | IOException e) {
            cx = new ChannelException("sessionrepl send failed: " + e.getMessage(), e);
            for (Member m : destination) {
                cx.addFaultyMember(m, e);
            }
        }
        if (cx != null) {
            throw cx;
        }
    }

    private static Member memberAt(Member[] ms, InetSocketAddress[] to, InetSocketAddress a) {
        for (int i = 0; i < to.length; i++) {
            if (to[i].equals(a)) {
                return ms[i];
            }
        }
        return ms[0];
    }

    /** Nothing to do: connections are the native engine's (one per member, made on first send). */
    @Override
    public void add(Member member) {
    }

    /** Nothing to do: the native engine closes a gone member's connections. */
    @Override
    public void remove(Member member) {
    }

    /** Nothing to start: the receiver starts the one native channel. */
    @Override
    public void start() throws IOException {
    }

    /** Stops sending; the receiver stops the native channel. */
    @Override
    public void stop() {
        cluster = null;
    }

    /** Nothing to do: the native engine keeps its own time. */
    @Override
    public void heartbeat() {
    }

    /** @return the Tribes channel */
    @Override
    public Channel getChannel() {
        return channel;
    }

    /** @param channel the Tribes channel this sender belongs to */
    @Override
    public void setChannel(Channel channel) {
        this.channel = channel;
    }
}
