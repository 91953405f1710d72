package io.sessionrepl;

import static io.sessionrepl.ApiTest.WAIT;
import static io.sessionrepl.ApiTest.check;
import static io.sessionrepl.ApiTest.eq;
import static io.sessionrepl.ApiTest.expect;
import static io.sessionrepl.ApiTest.waitFor;

import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * {@code memberPayload} and the store's member events from Java (what the
 * C API has as {@code sr_session_store_member_payload} and the store's
 * member callback), run by {@link ApiTest}'s runner.
 */
final class MemberPayloadTest {
    private MemberPayloadTest() {}

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /**
     * Two stores announcing their HTTP addresses: a's member listener is
     * told b joined, with b's payload; a.memberPayload gives b's and its
     * own, null for an address no member has; a Channel's members carry
     * the payload too; b's close reaches a's listener as REMOVED.
     */
    static void storeMembersCarryPayload() throws Exception {
        Config c = ApiTest.cluster("fastasyncqueue").set("sessionMode", "backup");
        List<MemberEvent> evs = new CopyOnWriteArrayList<>();
        try (SessionStore a = SessionStore.open(new Config().setAll(c.values()).set("memberPayload", "http://127.0.0.1:8081/a"),
                null, evs::add)) {
            SessionStore b = SessionStore.open(new Config().setAll(c.values()).set("memberPayload", "http://127.0.0.1:8082/b"), null);
            try {
                a.waitReady(WAIT);
                b.waitReady(WAIT);
                InetSocketAddress bAddr = b.localAddress();
                waitFor(() -> evs.stream().anyMatch(e -> e.kind() == MemberEvent.Kind.ADDED
                    && e.member().address().equals(bAddr)), "a told b joined: " + evs);
                MemberEvent added = evs.stream().filter(e -> e.kind() == MemberEvent.Kind.ADDED).findFirst().get();
                check(Arrays.equals(utf8("http://127.0.0.1:8082/b"), added.member().payload()),
                    "event carries b's payload: " + new String(added.member().payload(), StandardCharsets.UTF_8));
                check(added.member().isSessionrepl(), "b is a sessionrepl member");
                check(Arrays.equals(utf8("http://127.0.0.1:8082/b"), a.memberPayload(bAddr)), "a.memberPayload(b)");
                check(Arrays.equals(utf8("http://127.0.0.1:8081/a"), a.memberPayload(a.localAddress())),
                    "a.memberPayload(a) is its own");
                eq(null, a.memberPayload(new InetSocketAddress("127.0.0.1", 1)), "no member at port 1");
                // a plain channel in the same cluster sees b's payload in its members
                try (Channel ch = Channel.builder(new Config().setAll(c.values())).start()) {
                    waitFor(() -> ch.members().stream().anyMatch(m -> m.address().equals(bAddr)
                        && Arrays.equals(utf8("http://127.0.0.1:8082/b"), m.payload())), "channel member payload");
                }
            } finally {
                b.close();
            }
            waitFor(() -> evs.stream().anyMatch(e -> e.kind() == MemberEvent.Kind.REMOVED
                && e.member().address().equals(b.localAddress())), "a told b left: " + evs);
            SessionStore closed = b;
            expect("SR_SHUTDOWN", () -> closed.memberPayload(a.localAddress()));
        }
    }

    /** The tests, for ApiTest's runner. */
    static List<Object[]> tests() {
        List<Object[]> t = new ArrayList<>();
        t.add(new Object[] {"store_member_events_and_member_payload", (ApiTest.Body) MemberPayloadTest::storeMembersCarryPayload});
        return t;
    }
}
