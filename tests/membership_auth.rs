//! Authenticated multicast heartbeats (`encryptionKey`) over loopback
//! multicast (IP_MULTICAST_IF 127.0.0.1, TTL 1, a private 239.x group and
//! port per test): members with the key see each other; a node with another
//! key, a forged heartbeat and a replayed one add no member.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sessionrepl::__internal::wire::tribes::TribesMember;
use sessionrepl::membership::{
    LocalMemberInfo, MemberEvent, MembershipConfig, MembershipService, RemoveReason,
};
use sessionrepl::Config;
use socket2::{Domain, Protocol, Socket, Type};

const WAIT: Duration = Duration::from_secs(20);
const K1: &str = "00112233445566778899aabbccddeeff";
const K2: &str = "ffeeddccbbaa99887766554433221100";

#[derive(Default)]
struct Log {
    events: Mutex<Vec<MemberEvent>>,
    cv: Condvar,
}

impl Log {
    fn listener(self: &Arc<Self>) -> Arc<dyn Fn(&MemberEvent) + Send + Sync> {
        let me = self.clone();
        Arc::new(move |e: &MemberEvent| {
            me.events.lock().unwrap().push(e.clone());
            me.cv.notify_all();
        })
    }
    fn wait(&self, what: &str, f: impl Fn(&MemberEvent) -> bool) {
        let deadline = Instant::now() + WAIT;
        let mut g = self.events.lock().unwrap();
        while !g.iter().any(&f) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; saw {:?}",
                *g
            );
            g = self.cv.wait_timeout(g, left).unwrap().0;
        }
    }
    fn count(&self, f: impl Fn(&MemberEvent) -> bool) -> usize {
        self.events.lock().unwrap().iter().filter(|e| f(e)).count()
    }
}

static SEQ: AtomicU32 = AtomicU32::new(1);

/// A group and port of this test's own, fast timers, and `key` (if any)
/// set through the channel config as an operator would.
fn config(group_of: Option<&MembershipConfig>, key: Option<&str>) -> MembershipConfig {
    let mut c = Config::default();
    if let Some(k) = key {
        c.set("encryptionKey", k).unwrap();
        c.set("heartbeatAuthWindow", "1000").unwrap();
    }
    let mut m = c.membership;
    m.set("membershipType", "multicast").unwrap();
    match group_of {
        Some(g) => {
            m.mcast_addr = g.mcast_addr;
            m.mcast_port = g.mcast_port;
        }
        None => {
            let seq = SEQ.fetch_add(1, Ordering::SeqCst);
            let pid = std::process::id();
            let port = UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let group = format!(
                "239.{}.{}.{}",
                120 + (pid % 100),
                (pid >> 8) % 256,
                seq % 250 + 1
            );
            m.set("mcastAddr", &group).unwrap();
            m.set("mcastPort", &port.to_string()).unwrap();
        }
    }
    m.set("mcastBindAddress", "127.0.0.1").unwrap();
    m.set("mcastTTL", "1").unwrap();
    m.set("mcastFrequency", "100").unwrap();
    m.set("mcastDropTime", "800").unwrap();
    m.set("failureDetection", "false").unwrap();
    m
}

struct Node {
    svc: Option<MembershipService>,
    log: Arc<Log>,
    _listener: TcpListener,
    addr: SocketAddr,
}

fn node(cfg: &MembershipConfig, n: u8) -> Node {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut id = [n; 16];
    id[..4].copy_from_slice(&std::process::id().to_be_bytes());
    let log = Arc::new(Log::default());
    let svc =
        MembershipService::start(cfg, LocalMemberInfo::new(addr, id, ""), log.listener()).unwrap();
    Node {
        svc: Some(svc),
        log,
        _listener: l,
        addr,
    }
}

fn added(addr: SocketAddr) -> impl Fn(&MemberEvent) -> bool {
    move |e| matches!(e, MemberEvent::Added(m) if m.addr == addr)
}

/// A raw socket in the test's group: captures and injects datagrams.
fn raw_socket(cfg: &MembershipConfig) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&SocketAddrV4::new(cfg.mcast_addr, cfg.mcast_port).into())
        .unwrap();
    s.join_multicast_v4(&cfg.mcast_addr, &Ipv4Addr::LOCALHOST)
        .unwrap();
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_ttl_v4(1).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    let _ = s.set_multicast_all_v4(false);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.into()
}

fn unauthenticated(n: &Node) -> u64 {
    n.svc.as_ref().unwrap().stats().unauthenticated
}

#[test]
fn members_with_the_key_join_and_a_node_with_another_key_does_not() {
    let cfg = config(None, Some(K1));
    let other = config(Some(&cfg), Some(K2));
    let a = node(&cfg, 1);
    let b = node(&cfg, 2);
    let c = node(&other, 3);
    a.log.wait("a sees b", added(b.addr));
    b.log.wait("b sees a", added(a.addr));
    // c heartbeats 10 times a second; give it time to be (not) heard.
    let t = Instant::now();
    while unauthenticated(&a) < 5 {
        assert!(t.elapsed() < WAIT, "a never heard c's heartbeats");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        a.log.count(added(c.addr)),
        0,
        "a added the node with another key"
    );
    assert_eq!(
        c.log.count(added(a.addr)),
        0,
        "c added a member with another key"
    );
    assert_eq!(a.svc.as_ref().unwrap().members().len(), 1);
}

#[test]
fn forged_and_replayed_heartbeats_add_no_member() {
    let cfg = config(None, Some(K1));
    let raw = raw_socket(&cfg);
    let group = SocketAddrV4::new(cfg.mcast_addr, cfg.mcast_port);
    let a = node(&cfg, 1);
    let mut b = node(&cfg, 2);
    a.log.wait("a sees b", added(b.addr));
    // Capture one of b's genuine heartbeats.
    let b_port = b.addr.port() as i32;
    let mut buf = vec![0u8; 65536];
    let captured = loop {
        let (n, _) = raw.recv_from(&mut buf).expect("no heartbeat captured");
        if let Ok(m) = TribesMember::decode(&buf[..n]) {
            if m.port == b_port {
                break buf[..n].to_vec();
            }
        }
    };
    b.svc.take().unwrap().stop_silently();
    a.log.wait(
        "a drops b",
        |e| matches!(e, MemberEvent::Removed(m, RemoveReason::Timeout) if m.addr == b.addr),
    );
    let before = unauthenticated(&a);
    // Replay b's heartbeat (several times), and forge one for a new member
    // the way a plain Tribes node would announce itself (no trailer).
    let fake: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut forged = TribesMember::new(fake.ip(), fake.port(), [0x66; 16]);
    forged.payload = b"SRPL\x00\x01\x00\x00\x00\x07".to_vec();
    let forged = forged.to_bytes().unwrap();
    // And one whose trailer is there but made with another key.
    let wrong_cfg = config(Some(&cfg), Some(K2));
    let wrong = node(&wrong_cfg, 4);
    for _ in 0..5 {
        raw.send_to(&captured, group).unwrap();
        raw.send_to(&forged, group).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    while unauthenticated(&a) < before + 10 {
        assert!(t.elapsed() < WAIT, "a did not see the injected datagrams");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.log.count(added(b.addr)), 1, "the replay re-added b");
    assert_eq!(
        a.log.count(added(fake)),
        0,
        "the forged heartbeat added a member"
    );
    assert_eq!(
        a.log.count(added(wrong.addr)),
        0,
        "a node with another key was added"
    );
    assert!(a.svc.as_ref().unwrap().members().is_empty());
}
