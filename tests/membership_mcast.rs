//! MembershipService over loopback multicast (IP_MULTICAST_IF 127.0.0.1,
//! TTL 1, a private 239.x group and port per test): join, orderly leave,
//! crash detected by timeout, suspects, static and DNS membership.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sessionrepl::membership::{
    LocalMemberInfo, MemberEvent, MembershipConfig, MembershipService, RemoveReason,
};

const WAIT: Duration = Duration::from_secs(15);

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

    /// Waits until an event matches `f`; returns it.
    fn wait(&self, what: &str, f: impl Fn(&MemberEvent) -> bool) -> MemberEvent {
        let deadline = Instant::now() + WAIT;
        let mut g = self.events.lock().unwrap();
        loop {
            if let Some(e) = g.iter().find(|e| f(e)) {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; saw {:?}",
                *g
            );
            g = self.cv.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Waits until `n` events match `f`.
    fn wait_n(&self, what: &str, n: usize, f: impl Fn(&MemberEvent) -> bool) {
        let deadline = Instant::now() + WAIT;
        let mut g = self.events.lock().unwrap();
        while g.iter().filter(|e| f(e)).count() < n {
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

/// A config with a group and port of its own, fast timers.
fn config() -> MembershipConfig {
    let seq = SEQ.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = MembershipConfig::default();
    c.set("membershipType", "multicast").unwrap();
    let group = format!(
        "239.{}.{}.{}",
        100 + (pid % 100),
        (pid >> 8) % 256,
        seq % 250 + 1
    );
    c.set("mcastAddr", &group).unwrap();
    c.set("mcastPort", &port.to_string()).unwrap();
    c.set("mcastBindAddress", "127.0.0.1").unwrap();
    c.set("mcastTTL", "1").unwrap();
    c.set("mcastFrequency", "100").unwrap();
    c.set("mcastDropTime", "800").unwrap();
    c.set("failureDetectorConnectTimeout", "300").unwrap();
    c
}

struct Node {
    svc: Option<MembershipService>,
    log: Arc<Log>,
    listener: Option<TcpListener>,
    addr: SocketAddr,
    id: [u8; 16],
}

fn node(cfg: &MembershipConfig, n: u8, domain: &str) -> Node {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut id = [n; 16];
    id[..4].copy_from_slice(&std::process::id().to_be_bytes());
    let log = Arc::new(Log::default());
    let svc = MembershipService::start(cfg, LocalMemberInfo::new(addr, id, domain), log.listener())
        .unwrap();
    Node {
        svc: Some(svc),
        log,
        listener: Some(l),
        addr,
        id,
    }
}

fn added(addr: SocketAddr) -> impl Fn(&MemberEvent) -> bool {
    move |e| matches!(e, MemberEvent::Added(m) if m.addr == addr)
}

fn removed(addr: SocketAddr, r: RemoveReason) -> impl Fn(&MemberEvent) -> bool {
    move |e| matches!(e, MemberEvent::Removed(m, why) if m.addr == addr && *why == r)
}

#[test]
fn three_nodes_join_leave_by_shutdown_and_drop_on_crash() {
    let cfg = config();
    let a = node(&cfg, 1, "");
    let mut b = node(&cfg, 2, "");
    let mut c = node(&cfg, 3, "");
    for (x, others) in [(&a, [&b, &c]), (&b, [&a, &c]), (&c, [&a, &b])] {
        for o in others {
            let e = x.log.wait("join", added(o.addr));
            assert_eq!(e.member().id, o.id);
            assert!(e.member().is_sessionrepl(), "facts announced");
        }
    }
    assert_eq!(a.svc.as_ref().unwrap().members().len(), 2);
    assert_eq!(
        a.log.count(|e| matches!(e, MemberEvent::Added(_))),
        2,
        "no duplicates"
    );

    // Orderly leave: removed at once (well before the drop time).
    let t0 = Instant::now();
    b.svc.take().unwrap().stop();
    a.log
        .wait("shutdown", removed(b.addr, RemoveReason::Shutdown));
    c.log
        .wait("shutdown", removed(b.addr, RemoveReason::Shutdown));
    assert!(
        t0.elapsed() < Duration::from_millis(800),
        "{:?}",
        t0.elapsed()
    );

    // Crash: no notice, listener gone -> dropped after the drop time.
    let t1 = Instant::now();
    c.svc.take().unwrap().stop_silently();
    c.listener.take();
    a.log.wait("crash", removed(c.addr, RemoveReason::Timeout));
    assert!(
        t1.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t1.elapsed()
    );
    assert!(a.svc.as_ref().unwrap().members().is_empty());
    assert!(
        a.svc.as_ref().unwrap().stats().own > 0,
        "own heartbeats loop back"
    );
}

#[test]
fn silent_but_reachable_member_is_suspect_not_removed() {
    let cfg = config();
    let a = node(&cfg, 1, "");
    let mut b = node(&cfg, 2, "");
    a.log.wait("join", added(b.addr));
    b.svc.take().unwrap().stop_silently(); // its TCP listener stays open
    a.log.wait(
        "suspect",
        |e| matches!(e, MemberEvent::Suspect(m) if m.addr == b.addr),
    );
    let svc = a.svc.as_ref().unwrap();
    assert_eq!(svc.members().len(), 1);
    assert!(svc.is_suspect(b.addr));
    // The listener goes away: the next re-check removes it.
    b.listener.take();
    a.log
        .wait("removal", removed(b.addr, RemoveReason::Timeout));
}

#[test]
fn send_failure_to_dead_member_removes_it_with_failure() {
    let mut cfg = config();
    cfg.set("mcastDropTime", "60000").unwrap();
    let a = node(&cfg, 1, "");
    let mut b = node(&cfg, 2, "");
    a.log.wait("join", added(b.addr));
    b.svc.take().unwrap().stop_silently();
    b.listener.take();
    a.svc.as_ref().unwrap().report_send_failure(b.addr);
    a.log
        .wait("failure", removed(b.addr, RemoveReason::Failure));
}

#[test]
fn other_domains_are_ignored() {
    let cfg = config();
    let a = node(&cfg, 1, "shop");
    let b = node(&cfg, 2, "blog");
    let c = node(&cfg, 3, "shop");
    a.log.wait("same domain", added(c.addr));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.log.count(added(b.addr)), 0);
    assert!(a.svc.as_ref().unwrap().stats().foreign_domain > 0);
    assert_eq!(b.svc.as_ref().unwrap().members().len(), 0);
}

#[test]
fn static_members_are_pinged_down_and_up() {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let paddr = peer.local_addr().unwrap();
    let mut cfg = MembershipConfig::default();
    cfg.set("membershipType", "static").unwrap();
    cfg.set("staticMembers", &format!("{paddr}")).unwrap();
    cfg.set("tcpPingInterval", "100").unwrap();
    cfg.set("failureDetectorConnectTimeout", "300").unwrap();
    let me = TcpListener::bind("127.0.0.1:0").unwrap();
    let log = Arc::new(Log::default());
    let local = LocalMemberInfo::new(me.local_addr().unwrap(), [9; 16], "");
    let svc = MembershipService::start(&cfg, local, log.listener()).unwrap();
    log.wait("static add", added(paddr));
    drop(peer);
    log.wait("ping failure", removed(paddr, RemoveReason::Failure));
    assert!(svc.members().is_empty());
    let _back = TcpListener::bind(paddr).unwrap();
    log.wait_n("second add", 2, added(paddr));
    assert_eq!(svc.members().len(), 1);
    svc.stop();
}

#[test]
fn dns_membership_lists_every_address_of_the_name() {
    let mut cfg = MembershipConfig::default();
    cfg.set("membershipType", "dns").unwrap();
    cfg.set("dnsMembershipName", "localhost").unwrap();
    cfg.set("dnsMembershipPort", "4999").unwrap();
    cfg.set("tcpPingInterval", "0").unwrap();
    let log = Arc::new(Log::default());
    let local = LocalMemberInfo::new("127.0.0.1:4998".parse().unwrap(), [8; 16], "");
    let svc = MembershipService::start(&cfg, local, log.listener()).unwrap();
    log.wait("dns member", added("127.0.0.1:4999".parse().unwrap()));
    assert!(svc.members().iter().all(|m| m.addr.port() == 4999));
    svc.stop();
}

#[test]
fn membership_none_starts_nothing() {
    let log = Arc::new(Log::default());
    let local = LocalMemberInfo::new("127.0.0.1:4997".parse().unwrap(), [7; 16], "");
    let svc =
        MembershipService::start(&MembershipConfig::default(), local, log.listener()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(svc.members().is_empty());
    svc.stop();
    assert_eq!(log.count(|_| true), 0);
}
