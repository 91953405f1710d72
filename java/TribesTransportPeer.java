/*
 * sessionrepl's own Tribes transport test peer: one Apache Tribes
 * GroupChannel (NioReceiver on 127.0.0.1, no membership service traffic
 * beyond loopback), optionally with GzipInterceptor and/or a stock
 * EncryptInterceptor (encryptionAlgorithm="AES/GCM/NoPadding", key in hex),
 * that sends and receives ByteMessages on command. With a key, messages
 * that do not decrypt, or replays, are dropped by the interceptor (it logs
 * an error on stderr) and never printed.
 *
 * Usage: java -Djava.net.preferIPv4Stack=true -cp <dir>:tomcat10-tribes.jar:tomcat10-juli.jar \
 *            TribesTransportPeer <tcpPort> <gzip: true|false> [encryptionKey hex]
 * Stdin commands:
 *   send <host> <port> <idhex32> <options> <text>   send text as a ByteMessage with these options
 *   stop
 * Output lines (flushed):
 *   started port=<p> id=<hex>
 *   received bytes=<n> text=<text> from=<host>:<port>
 *   sent ok | sent error <exception class>: <message>
 *   stopped
 * A received message whose text is "please fail" makes the listener throw.
 */
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.Serializable;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;

import org.apache.catalina.tribes.ByteMessage;
import org.apache.catalina.tribes.Channel;
import org.apache.catalina.tribes.ChannelListener;
import org.apache.catalina.tribes.Member;
import org.apache.catalina.tribes.group.GroupChannel;
import org.apache.catalina.tribes.group.interceptors.EncryptInterceptor;
import org.apache.catalina.tribes.group.interceptors.GzipInterceptor;
import org.apache.catalina.tribes.membership.MemberImpl;
import org.apache.catalina.tribes.membership.StaticMember;
import org.apache.catalina.tribes.transport.nio.NioReceiver;

public class TribesTransportPeer {
    static synchronized void out(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }

    public static void main(String[] args) throws Exception {
        int tcpPort = Integer.parseInt(args[0]);
        boolean gzip = Boolean.parseBoolean(args[1]);
        GroupChannel channel = new GroupChannel();
        NioReceiver receiver = (NioReceiver) channel.getChannelReceiver();
        receiver.setAddress("127.0.0.1");
        receiver.setPort(tcpPort);
        receiver.setAutoBind(1);
        if (gzip) {
            channel.addInterceptor(new GzipInterceptor());
        }
        if (args.length > 2) {
            EncryptInterceptor enc = new EncryptInterceptor();
            enc.setEncryptionAlgorithm("AES/GCM/NoPadding");
            enc.setEncryptionKey(args[2]);
            channel.addInterceptor(enc);
        }
        channel.addChannelListener(new ChannelListener() {
            @Override
            public boolean accept(Serializable msg, Member sender) {
                return msg instanceof ByteMessage;
            }

            @Override
            public void messageReceived(Serializable msg, Member sender) {
                byte[] b = ((ByteMessage) msg).getMessage();
                String text = new String(b, StandardCharsets.UTF_8);
                String from;
                try {
                    from = InetAddress.getByAddress(sender.getHost()).getHostAddress() + ":" + sender.getPort();
                } catch (Exception e) {
                    from = "?";
                }
                out("received bytes=" + b.length + " text=" + text + " from=" + from);
                if (text.equals("please fail")) {
                    throw new IllegalStateException("listener refused it");
                }
            }
        });
        // Receiver and sender only: no multicast membership traffic at all.
        channel.start(Channel.SND_RX_SEQ | Channel.SND_TX_SEQ);
        MemberImpl local = (MemberImpl) channel.getLocalMember(true);
        out("started port=" + local.getPort() + " id=" + hex(local.getUniqueId()));

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] p = line.trim().split(" ", 6);
            if (p[0].equals("stop")) {
                break;
            }
            if (p[0].equals("send") && p.length == 6) {
                StaticMember m = new StaticMember(p[1], Integer.parseInt(p[2]), 0);
                byte[] id = new byte[16];
                for (int i = 0; i < 16; i++) {
                    id[i] = (byte) Integer.parseInt(p[3].substring(2 * i, 2 * i + 2), 16);
                }
                m.setUniqueId(id);
                int options = Integer.parseInt(p[4]);
                try {
                    channel.send(new Member[] {m}, new ByteMessage(p[5].getBytes(StandardCharsets.UTF_8)), options);
                    out("sent ok");
                } catch (Exception e) {
                    Throwable c = e;
                    out("sent error " + c.getClass().getSimpleName() + ": " + String.valueOf(c.getMessage()).replace('\n', ' '));
                }
            }
        }
        channel.stop(Channel.SND_RX_SEQ | Channel.SND_TX_SEQ);
        out("stopped");
        System.exit(0);
    }
}
