package io.sessionrepl.tomcat;

import static io.sessionrepl.tomcat.Attributes.Type.ADDR;
import static io.sessionrepl.tomcat.Attributes.Type.BOOL;
import static io.sessionrepl.tomcat.Attributes.Type.INT;
import static io.sessionrepl.tomcat.Attributes.Type.LONG;
import static io.sessionrepl.tomcat.Attributes.Type.STRING;

import io.sessionrepl.MemberEvent;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.catalina.tribes.Channel;
import org.apache.catalina.tribes.ChannelException;
import org.apache.catalina.tribes.ChannelMessage;
import org.apache.catalina.tribes.Member;
import org.apache.catalina.tribes.MembershipListener;
import org.apache.catalina.tribes.MembershipProvider;
import org.apache.catalina.tribes.MembershipService;
import org.apache.catalina.tribes.membership.MemberImpl;
import org.apache.juli.logging.Log;
import org.apache.juli.logging.LogFactory;

/**
 * A Tribes {@link MembershipService} backed by sessionrepl's native
 * multicast membership (Tribes-compatible heartbeats):
 * {@code <Membership className="io.sessionrepl.tomcat.NativeMembershipService"
 * address="228.0.0.4" port="45564" frequency="500" dropTime="3000" bind="127.0.0.1" ttl="1"/>}.
 *
 * <p>Attributes of Tomcat's {@code McastService} are mapped:
 * {@code address} ({@code mcastAddr}), {@code port} ({@code mcastPort}),
 * {@code frequency}, {@code dropTime}/{@code mcastDropTime},
 * {@code bind}/{@code mcastBindAddress}, {@code ttl}, {@code domain} ({@code mcastClusterDomain}); the
 * rest ({@code soTimeout}, {@code recovery*}, {@code localLoopbackDisabled})
 * are checked and logged once as not applicable; any sessionrepl key
 * ({@code membershipType=static}, {@code staticMembers}, ...) is accepted
 * too. Membership runs inside the native channel, which
 * {@link NativeReceiver} starts; this class turns its events into Tribes
 * members ({@link MemberImpl} with the member's native id as unique id).
 * Native heartbeats carry no member payload or command.
 */
public class NativeMembershipService implements MembershipService {
    private static final Log log = LogFactory.getLog(NativeMembershipService.class);

    static final Map<String, Attributes.Known> KNOWN = Attributes.table(
        "address", ADDR, "mcastAddr",
        "mcastAddress", ADDR, "mcastAddr",
        "port", INT, "mcastPort",
        "mcastPort", INT, "mcastPort",
        "frequency", LONG, "mcastFrequency",
        "mcastFrequency", LONG, "mcastFrequency",
        "dropTime", LONG, "mcastDropTime",
        "memberDropTime", LONG, "mcastDropTime",
        "bind", ADDR, "mcastBindAddress",
        "ttl", INT, "mcastTTL",
        "domain", STRING, "mcastClusterDomain",
        "soTimeout", INT, null,
        "recoveryCounter", INT, null,
        "recoveryEnabled", BOOL, null,
        "recoverySleepTime", LONG, null,
        "localLoopbackDisabled", BOOL, null);

    private final Attributes attrs = new Attributes("NativeMembershipService", KNOWN);
    private final Properties properties = new Properties();
    private final Map<String, MemberImpl> members = new LinkedHashMap<>();
    private final List<MemberEvent> early = new ArrayList<>();
    private volatile MembershipListener listener;
    private volatile Channel channel;
    private volatile NativeCluster cluster;
    private volatile MemberImpl local;
    private byte[] payload = new byte[0];
    private byte[] domain;
    private boolean started;
    private final long startTime = System.currentTimeMillis();

    /** A membership service with McastService's defaults (228.0.0.4:45564, 500 ms, 3000 ms). */
    public NativeMembershipService() {
        attrs.set("address", "228.0.0.4");
        attrs.set("port", "45564");
        attrs.set("frequency", "500");
        attrs.set("dropTime", "3000");
    }

    /**
     * Sets a {@code server.xml} attribute.
     *
     * @param name a Tomcat membership attribute or a sessionrepl key
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

    Attributes attributes() {
        return attrs;
    }

    /** Called by the receiver once the native channel runs. */
    synchronized void bind(NativeCluster c) {
        cluster = c;
    }

    /**
     * Takes McastService-style properties ({@code mcastAddress},
     * {@code mcastPort}, {@code mcastFrequency}, {@code memberDropTime}, ...).
     *
     * @param props the properties
     */
    @Override
    public void setProperties(Properties props) {
        for (String k : props.stringPropertyNames()) {
            properties.setProperty(k, props.getProperty(k));
            if (!attrs.set(k, props.getProperty(k))) {
                log.debug("NativeMembershipService: property '" + k + "' not used");
            }
        }
    }

    /** @return the properties set */
    @Override
    public Properties getProperties() {
        return properties;
    }

    /**
     * Starts both directions. Membership itself starts with the native
     * channel; from here on its events reach the listener.
     *
     * @throws Exception never
     */
    @Override
    public void start() throws Exception {
        start(MBR_RX | MBR_TX);
    }

    /**
     * Starts delivering membership events (level {@code MBR_RX}); {@code MBR_TX}
     * is the native channel's own heartbeat, running since the receiver started.
     *
     * @param level {@code MBR_RX} and/or {@code MBR_TX}
     * @throws Exception never
     */
    @Override
    public void start(int level) throws Exception {
        List<MemberEvent> replay;
        synchronized (this) {
            if ((level & MBR_RX) == 0 || started) {
                return;
            }
            if (cluster == null) {
                throw new IOException("NativeMembershipService needs io.sessionrepl.tomcat.NativeReceiver as the <Receiver>");
            }
            started = true;
            replay = new ArrayList<>(early);
            early.clear();
        }
        for (MemberEvent e : replay) {
            nativeEvent(e);
        }
    }

    /**
     * Stops delivering events at {@code MBR_RX}; the heartbeat ends when the
     * receiver stops the native channel.
     *
     * @param level {@code MBR_RX} and/or {@code MBR_TX}
     */
    @Override
    public void stop(int level) {
        if ((level & MBR_RX) != 0) {
            synchronized (this) {
                started = false;
                members.clear();
            }
        }
    }

    /** From the native channel's membership thread. */
    void nativeEvent(MemberEvent e) {
        MembershipListener l;
        MemberImpl m;
        synchronized (this) {
            if (!started) {
                early.add(e);
                return;
            }
            String key = e.member().address().toString();
            if (e.kind() == MemberEvent.Kind.SUSPECT) {
                return;
            }
            if (e.kind() == MemberEvent.Kind.ADDED) {
                try {
                    m = new MemberImpl(e.member().address().getAddress().getHostAddress(),
                        e.member().address().getPort(), e.member().aliveMs());
                } catch (IOException x) {
                    log.warn("NativeMembershipService: bad member " + e.member(), x);
                    return;
                }
                m.setUniqueId(e.member().id());
                m.setDomain(e.member().domain());
                members.put(key, m);
            } else {
                m = members.remove(key);
                if (m == null) {
                    return;
                }
            }
            l = listener;
        }
        if (l == null) {
            return;
        }
        if (e.kind() == MemberEvent.Kind.ADDED) {
            l.memberAdded(m);
        } else {
            l.memberDisappeared(m);
        }
    }

    /** @return true if any member is known */
    @Override
    public synchronized boolean hasMembers() {
        return !members.isEmpty();
    }

    /**
     * @param mbr a member
     * @return the known member equal to it, or null
     */
    @Override
    public synchronized Member getMember(Member mbr) {
        for (MemberImpl m : members.values()) {
            if (m.equals(mbr)) {
                return m;
            }
        }
        return null;
    }

    /** @return the known members, in the order they joined */
    @Override
    public synchronized Member[] getMembers() {
        return members.values().toArray(new Member[0]);
    }

    /**
     * @param incAliveTime update the local member's alive time first
     * @return this node as a Tribes member (its native member id as unique id), or null before start
     */
    @Override
    public Member getLocalMember(boolean incAliveTime) {
        MemberImpl m = local;
        if (m != null && incAliveTime) {
            m.setMemberAliveTime(System.currentTimeMillis() - startTime);
        }
        return m;
    }

    /** @return the members' names */
    @Override
    public synchronized String[] getMembersByName() {
        List<String> n = new ArrayList<>();
        for (MemberImpl m : members.values()) {
            n.add(m.getName());
        }
        return n.toArray(new String[0]);
    }

    /**
     * @param name a member name
     * @return the member with that name, or null
     */
    @Override
    public synchronized Member findMemberByName(String name) {
        for (MemberImpl m : members.values()) {
            if (m.getName().equals(name)) {
                return m;
            }
        }
        return null;
    }

    /**
     * Called by Tomcat after the receiver started: builds the local member.
     *
     * @param listenHost the receiver's address
     * @param listenPort the receiver's port
     * @param securePort unused
     * @param udpPort unused
     */
    @Override
    public void setLocalMemberProperties(String listenHost, int listenPort, int securePort, int udpPort) {
        try {
            MemberImpl m = new MemberImpl(listenHost, listenPort, 0);
            NativeCluster c = cluster;
            if (c != null) {
                m.setUniqueId(c.channel.memberId());
            }
            m.setPayload(payload);
            String d = attrs.get("domain");
            m.setDomain(domain != null ? domain : d != null ? d.getBytes(StandardCharsets.UTF_8) : new byte[0]);
            m.setLocal(true);
            local = m;
        } catch (IOException e) {
            throw new IllegalArgumentException("NativeMembershipService: local member " + listenHost + ":" + listenPort, e);
        }
    }

    /** @param listener told members added and gone (Tomcat's channel coordinator) */
    @Override
    public void setMembershipListener(MembershipListener listener) {
        this.listener = listener;
    }

    /** Removes the listener. */
    @Override
    public void removeMembershipListener() {
        this.listener = null;
    }

    /**
     * Sets the local member's payload (kept locally: native heartbeats carry none).
     *
     * @param payload the payload
     */
    @Override
    public void setPayload(byte[] payload) {
        this.payload = payload == null ? new byte[0] : payload.clone();
        MemberImpl m = local;
        if (m != null) {
            m.setPayload(this.payload);
        }
    }

    /**
     * Sets the local member's domain (the native channel's domain is the
     * {@code domain} attribute).
     *
     * @param domain the domain bytes
     */
    @Override
    public void setDomain(byte[] domain) {
        this.domain = domain == null ? null : domain.clone();
        MemberImpl m = local;
        if (m != null && domain != null) {
            m.setDomain(this.domain);
        }
    }

    /**
     * Multicast messages are not supported by the native membership.
     *
     * @param message the message
     * @throws ChannelException always
     */
    @Override
    public void broadcast(ChannelMessage message) throws ChannelException {
        throw new ChannelException("NativeMembershipService does not send multicast messages "
            + "(SEND_OPTIONS_MULTICAST); send to members instead");
    }

    /** @return the Tribes channel */
    @Override
    public Channel getChannel() {
        return channel;
    }

    /** @param channel the Tribes channel this service belongs to */
    @Override
    public void setChannel(Channel channel) {
        this.channel = channel;
    }

    /** @return null: membership is provided natively */
    @Override
    public MembershipProvider getMembershipProvider() {
        return null;
    }
}
