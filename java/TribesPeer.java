/*
 * sessionrepl's own Tribes test peer: one Apache Tribes GroupChannel with
 * McastService on loopback, printing membership events on stdout.
 *
 * Usage: java -Djava.net.preferIPv4Stack=true -cp <dir>:tomcat10-tribes.jar:tomcat10-juli.jar \
 *            TribesPeer <mcastAddr> <mcastPort> <tcpPort> [domain]
 * Stdin commands: "stop" (orderly stop: Tribes sends BABY-ALEX), "members".
 *
 * Output lines (one event per line, flushed):
 *   started port=<p> id=<hex> blob=<hex of the local member blob>
 *   member-added host=<ip> port=<p> id=<hex> domain=<s> payload=<hex> command=<s>
 *   member-disappeared host=<ip> port=<p> id=<hex> domain=<s> payload=<hex> command=<s>
 *   members count=<n>
 *   stopped
 */
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;

import org.apache.catalina.tribes.Channel;
import org.apache.catalina.tribes.Member;
import org.apache.catalina.tribes.MembershipListener;
import org.apache.catalina.tribes.group.GroupChannel;
import org.apache.catalina.tribes.membership.McastService;
import org.apache.catalina.tribes.membership.MemberImpl;
import org.apache.catalina.tribes.transport.nio.NioReceiver;

public class TribesPeer {

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }

    static synchronized void out(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static String describe(Member m) {
        String host;
        try {
            host = InetAddress.getByAddress(m.getHost()).getHostAddress();
        } catch (Exception e) {
            host = "?";
        }
        return "host=" + host + " port=" + m.getPort() + " id=" + hex(m.getUniqueId())
                + " domain=" + new String(m.getDomain(), StandardCharsets.ISO_8859_1)
                + " payload=" + hex(m.getPayload())
                + " command=" + new String(m.getCommand(), StandardCharsets.ISO_8859_1);
    }

    public static void main(String[] args) throws Exception {
        String group = args[0];
        int mcastPort = Integer.parseInt(args[1]);
        int tcpPort = Integer.parseInt(args[2]);
        String domain = args.length > 3 ? args[3] : "";

        GroupChannel channel = new GroupChannel();
        McastService mcast = (McastService) channel.getMembershipService();
        mcast.setAddress(group);
        mcast.setPort(mcastPort);
        mcast.setBind("127.0.0.1");
        mcast.setTtl(1);
        mcast.setFrequency(100);
        mcast.setDropTime(1500);
        if (!domain.isEmpty()) {
            mcast.setDomain(domain);
        }
        NioReceiver receiver = (NioReceiver) channel.getChannelReceiver();
        receiver.setAddress("127.0.0.1");
        receiver.setPort(tcpPort);
        receiver.setAutoBind(1);

        channel.addMembershipListener(new MembershipListener() {
            @Override
            public void memberAdded(Member m) {
                out("member-added " + describe(m));
            }

            @Override
            public void memberDisappeared(Member m) {
                out("member-disappeared " + describe(m));
            }
        });
        channel.start(Channel.DEFAULT);
        MemberImpl local = (MemberImpl) channel.getLocalMember(true);
        out("started port=" + local.getPort() + " id=" + hex(local.getUniqueId())
                + " blob=" + hex(local.getData(true, true)));

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            line = line.trim();
            if (line.equals("stop")) {
                break;
            } else if (line.equals("members")) {
                out("members count=" + channel.getMembers().length);
            }
        }
        channel.stop(Channel.DEFAULT);
        out("stopped");
        System.exit(0);
    }
}
