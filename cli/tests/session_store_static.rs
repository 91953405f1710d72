//! The session store over static membership (`membershipType=static`): the
//! members are the `staticMembers` list, reached over the native protocol.
//! In-process stores replicate and serve reads on every node; real processes lose no
//! acknowledged commit when one is killed with SIGKILL.

#[path = "../../tests/proc_util/mod.rs"]
mod proc_util;
#[path = "../../tests/store_util/mod.rs"]
mod store_util;

use proc_util::{field, Proc};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use store_util::{cluster_settings, create, open, value, wait_members};

/// `n` free loopback ports (bound to port 0, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Settings of node `i` of a static cluster on `ports`: the shared
/// settings of a fresh cluster with the multicast keys left out.
fn static_settings(ports: &[u16], i: usize, extra: &[&str]) -> Vec<String> {
    let list: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut v: Vec<String> = cluster_settings(extra)
        .into_iter()
        .filter(|s| !s.starts_with("mcast") && !s.starts_with("membershipType"))
        .collect();
    v.push("membershipType=static".into());
    v.push(format!("staticMembers={}", list.join(",")));
    v.push(format!("tcpListenPort={}", ports[i]));
    v.push("tcpPingInterval=200".into());
    v
}

#[test]
fn stores_over_static_membership_replicate_and_serve_reads_on_every_node() {
    let ports = free_ports(3);
    let shared = cluster_settings(&["backupCount=1"]);
    let domain = shared.iter().find(|s| s.starts_with("domain=")).unwrap();
    let nodes: Vec<_> = (0..3)
        .map(|i| {
            let mut s = static_settings(&ports, i, &["backupCount=1"]);
            s.retain(|x| !x.starts_with("domain="));
            s.push(domain.clone());
            open(&s)
        })
        .collect();
    for n in &nodes {
        wait_members(&n.store, 2);
        // Static members are session stores, not Tribes peers.
        for m in n.store.members() {
            assert!(ports.contains(&m.port()), "unexpected member {m}");
        }
    }
    for i in 0..20 {
        let copies = create(&nodes[i % 3].store, &format!("s{i}"), "v", "1");
        // Primary and backup at least (the creating node may keep a copy too).
        assert!(copies >= 2, "s{i}: only {copies} copies acknowledged");
    }
    for n in &nodes {
        for i in 0..20 {
            assert_eq!(
                value(&n.store, &format!("s{i}"), "v").as_deref(),
                Some(&b"1"[..]),
                "s{i} from {}",
                n.store.local_addr()
            );
        }
    }
}

#[test]
fn sigkill_of_a_static_member_loses_no_acknowledged_commit() {
    let n = 3;
    let ports = free_ports(n);
    let shared = cluster_settings(&[]);
    let domain = shared.iter().find(|s| s.starts_with("domain=")).unwrap();
    let mut procs: Vec<Proc> = (0..n)
        .map(|i| {
            let mut s = static_settings(&ports, i, &["backupCount=1"]);
            s.retain(|x| !x.starts_with("domain="));
            s.push(domain.clone());
            Proc::store_node(&s)
        })
        .collect();
    for p in procs.iter_mut() {
        let m = p.ask(&format!("waitmembers {} 20000", n - 1));
        assert_eq!(field(&m, "n"), (n - 1) as u64, "{m}");
    }
    let per = 100;
    for (i, p) in procs.iter_mut().enumerate() {
        for (what, v) in [("create", "1"), ("set", "2")] {
            let r = p.ask(&format!("bulk {what} p{i}- 0 {per} v {v} 512"));
            assert_eq!(field(&r, "acked"), per as u64, "{r}");
        }
    }
    let dead = procs.remove(1);
    drop(dead); // SIGKILL and reap
    for p in procs.iter_mut() {
        let m = p.ask("waitmembers 1 20000");
        assert_eq!(field(&m, "n"), 1, "the killed member is dropped: {m}");
    }
    for i in 0..n {
        let r = procs[0].ask(&format!("check p{i}- 0 {per} v 2"));
        assert_eq!(field(&r, "ok"), per as u64, "sessions of node {i}: {r}");
    }
    // The survivors take over and keep committing with each other.
    let r = procs[0].ask(&format!("bulk set p1- 0 {per} v 3 512"));
    assert_eq!(field(&r, "acked"), per as u64, "{r}");
    let r = procs[1].ask(&format!("check p1- 0 {per} v 3"));
    assert_eq!(field(&r, "ok"), per as u64, "{r}");
}

/// A member whose state request reached a node that had found it down
/// (its first ping came before the member started), and that is killed
/// before the node's next ping, leaves that node's session view anyway:
/// the membership layer never reports it again (it is already down), so
/// the store drops it once membership has not listed it for its grace
/// (2 × tcpPingInterval + failureConnectTimeout here). Before, the node
/// kept it for good, and `waitmembers` in the test above failed now and
/// then with `n=2`.
#[test]
fn a_member_known_only_from_its_join_is_dropped_when_it_dies() {
    let ports = free_ports(2);
    let shared = cluster_settings(&[]);
    let domain = shared.iter().find(|s| s.starts_with("domain=")).unwrap();
    let settings = |i: usize| {
        let mut s = static_settings(&ports, i, &["backupCount=1"]);
        s.retain(|x| !x.starts_with("tcpPingInterval") && !x.starts_with("domain="));
        s.push("tcpPingInterval=3000".into());
        s.push(domain.clone());
        s
    };
    let mut a = Proc::store_node(&settings(0));
    // A's first ping (3 s after its start) finds B down.
    std::thread::sleep(Duration::from_millis(3500));
    let b = Proc::store_node(&settings(1));
    // B's join reaches A's node well before A's next ping (at 6 s).
    let m = a.ask("waitmembers 1 2000");
    assert_eq!(field(&m, "n"), 1, "B's state request added it: {m}");
    drop(b); // SIGKILL and reap
    let t0 = Instant::now();
    let m = a.ask("waitmembers 0 20000");
    assert_eq!(field(&m, "n"), 0, "the dead member stays in the view: {m}");
    // The grace is 2 × 3 s + 1 s after it was first missed.
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
}
