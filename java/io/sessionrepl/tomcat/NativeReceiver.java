package io.sessionrepl.tomcat;

import static io.sessionrepl.tomcat.Attributes.Type.ADDR;
import static io.sessionrepl.tomcat.Attributes.Type.BOOL;
import static io.sessionrepl.tomcat.Attributes.Type.INT;
import static io.sessionrepl.tomcat.Attributes.Type.LONG;

import java.io.IOException;
import java.util.Map;

import org.apache.catalina.tribes.Channel;
import org.apache.catalina.tribes.ChannelReceiver;
import org.apache.catalina.tribes.ManagedChannel;
import org.apache.catalina.tribes.MessageListener;

/**
 * A Tribes {@link ChannelReceiver} backed by sessionrepl's native engine:
 * {@code <Receiver className="io.sessionrepl.tomcat.NativeReceiver" address="127.0.0.1" port="4000"/>}
 * in a {@code SimpleTcpCluster}'s {@code <Channel>}, together with
 * {@link NativeSender} (required) and {@link NativeMembershipService}
 * (or Tomcat's own membership service).
 *
 * <p>It accepts every attribute of Tomcat's {@code NioReceiver}:
 * {@code address}/{@code host}/{@code bind} (listen address; {@code auto}:
 * this host's address), {@code port}, {@code autoBind} (how many ports
 * from {@code port} to try), {@code maxThreads} (worker threads that run
 * the listener, {@code tcpThreadCount}; default 6), {@code rxBufSize},
 * {@code txBufSize} and {@code tcpNoDelay} are mapped; the rest
 * ({@code selectorTimeout}, {@code minThreads}, ...) are checked and logged once
 * as not applicable. Any sessionrepl key ({@code replicationMode},
 * {@code ackTimeout}, {@code compress}, {@code ioBackend}, ...) is accepted
 * too. A bad value fails {@link #start()} with a message naming the
 * attribute.
 */
public class NativeReceiver implements ChannelReceiver {
    static final Map<String, Attributes.Known> KNOWN = Attributes.table(
        "address", ADDR, "tcpListenAddress",
        "host", ADDR, "tcpListenAddress",
        "bind", ADDR, "tcpListenAddress",
        "port", INT, Attributes.HANDLED,
        "autoBind", INT, Attributes.HANDLED,
        "rxBufSize", INT, "rxBufSize",
        "txBufSize", INT, "txBufSize",
        "tcpNoDelay", BOOL, "tcpNoDelay",
        "securePort", INT, null,
        "udpPort", INT, null,
        "selectorTimeout", LONG, null,
        "maxThreads", INT, "tcpThreadCount",
        "minThreads", INT, null,
        "maxIdleTime", LONG, null,
        "ooBInline", BOOL, null,
        "soKeepAlive", BOOL, null,
        "soLingerOn", BOOL, null,
        "soLingerTime", INT, null,
        "soReuseAddress", BOOL, null,
        "soTrafficClass", INT, null,
        "timeout", INT, null,
        "useBufferPool", BOOL, null,
        "direct", BOOL, null,
        "listen", BOOL, null,
        "daemon", BOOL, null,
        "minTasks", INT, null,
        "maxTasks", INT, null,
        "udpRxBufSize", INT, null,
        "udpTxBufSize", INT, null);

    private final Attributes attrs = new Attributes("NativeReceiver", KNOWN);
    private volatile MessageListener listener;
    private volatile Channel channel;
    private volatile NativeCluster cluster;

    /**
     * A receiver with every attribute at its default: port 4000, autoBind
     * 100, and 6 worker threads ({@code maxThreads}): like Tribes'
     * NioReceiver, a listener that blocks (an RPC waiting for its reply)
     * holds up only its own connection.
     */
    public NativeReceiver() {
        attrs.set("maxThreads", "6");
        attrs.set("port", "4000");
        attrs.set("autoBind", "100");
        attrs.set("address", "auto");
    }

    /**
     * Sets a {@code server.xml} attribute (Tomcat calls this for each one).
     *
     * @param name a Tomcat receiver attribute or a sessionrepl key
     * @param value its value (checked at {@link #start()})
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

    Attributes attributes() {
        return attrs;
    }

    int configuredPort() throws IOException {
        try {
            return Integer.parseInt(attrs.get("port").trim());
        } catch (NumberFormatException e) {
            throw new IOException("NativeReceiver attribute 'port'=\"" + attrs.get("port") + "\": not a number", e);
        }
    }

    int autoBind() throws IOException {
        try {
            return Integer.parseInt(attrs.get("autoBind").trim());
        } catch (NumberFormatException e) {
            throw new IOException("NativeReceiver attribute 'autoBind'=\"" + attrs.get("autoBind")
                + "\": not a number", e);
        }
    }

    NativeCluster cluster() {
        return cluster;
    }

    /**
     * Starts the native channel with the attributes of this receiver, the
     * {@link NativeSender} and the {@link NativeMembershipService} of the
     * same Tribes channel.
     *
     * @throws IOException a bad attribute (named), no free port, or a
     *     sender that is not a {@link NativeSender}
     */
    @Override
    public synchronized void start() throws IOException {
        if (cluster != null) {
            return;
        }
        if (!(channel instanceof ManagedChannel)) {
            throw new IOException("NativeReceiver needs a ManagedChannel (GroupChannel), got " + channel);
        }
        ManagedChannel mc = (ManagedChannel) channel;
        if (!(mc.getChannelSender() instanceof NativeSender)) {
            throw new IOException("NativeReceiver needs <Sender className=\"io.sessionrepl.tomcat.NativeSender\">, got "
                + mc.getChannelSender().getClass().getName());
        }
        NativeSender sender = (NativeSender) mc.getChannelSender();
        NativeCluster c = NativeCluster.start(this, sender, mc.getMembershipService());
        if (mc.getMembershipService() instanceof NativeMembershipService) {
            ((NativeMembershipService) mc.getMembershipService()).bind(c);
        }
        sender.bind(c);
        cluster = c;
    }

    /** Stops the native channel (receiver, senders and native membership). */
    @Override
    public synchronized void stop() {
        NativeCluster c = cluster;
        cluster = null;
        if (c != null) {
            c.stop();
        }
    }

    /** @return the address the receiver listens on */
    @Override
    public String getHost() {
        NativeCluster c = cluster;
        return c != null ? c.channel.localAddress().getAddress().getHostAddress() : attrs.get("address");
    }

    /** @return the port the receiver listens on (after autoBind) */
    @Override
    public int getPort() {
        NativeCluster c = cluster;
        if (c != null) {
            return c.channel.localAddress().getPort();
        }
        try {
            return configuredPort();
        } catch (IOException e) {
            return -1;
        }
    }

    /** @return -1: no separate secure port */
    @Override
    public int getSecurePort() {
        return -1;
    }

    /** @return -1: no UDP */
    @Override
    public int getUdpPort() {
        return -1;
    }

    /** @param listener receives every message (Tomcat's channel coordinator) */
    @Override
    public void setMessageListener(MessageListener listener) {
        this.listener = listener;
    }

    /** @return the message listener */
    @Override
    public MessageListener getMessageListener() {
        return listener;
    }

    /** @return the Tribes channel */
    @Override
    public Channel getChannel() {
        return channel;
    }

    /** @param channel the Tribes channel this receiver belongs to */
    @Override
    public void setChannel(Channel channel) {
        this.channel = channel;
    }

    /** Nothing to do: the native engine keeps its own time. */
    @Override
    public void heartbeat() {
    }
}
