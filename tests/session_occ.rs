//! Optimistic concurrency of the session store (per-session base version),
//! in the deterministic simulated cluster.

use sessionrepl::session::sim::{sim_key, SimCluster, SimConfig};
use sessionrepl::session::{SessionConfig, SessionEvent, SessionMode, Txn};
use sessionrepl::Error;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn backup() -> SessionConfig {
    SessionConfig {
        mode: SessionMode::Backup,
        ..SessionConfig::default()
    }
}

fn index_of(c: &SimCluster, key: sessionrepl::session::MemberKey) -> usize {
    (0..c.len()).find(|i| sim_key(*i) == key).unwrap()
}

#[test]
fn commit_on_a_stale_base_conflicts_and_changes_nothing() {
    let mut c = SimCluster::started(SimConfig::default(), backup(), 3);
    let p = index_of(&c, c.node(0).placement_of(b"s").primary().unwrap());
    let mut t = Txn::new("s");
    t.set("k", "v0");
    c.with(p, |n, now| n.create(t, 1, now)).unwrap();
    c.run_for(ms(50));
    let read = c.node(p).peek(b"s").unwrap().clone();
    // First writer on the read version wins.
    let mut a = Txn::on(&read);
    a.set("k", "a");
    assert_eq!(a.base(), Some(read.version()));
    c.with(p, |n, now| n.commit(a, now)).unwrap().unwrap();
    // Second writer read the same version: conflict, nothing applied.
    let mut b = Txn::new("s");
    b.set_base(read.version()).set("k", "b");
    let r = c.with(p, |n, now| n.commit(b, now));
    assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    c.run_for(ms(50));
    for h in c.holders_of(b"s") {
        assert_eq!(&c.value(h, b"s", b"k").unwrap()[..], b"a", "node {h}");
    }
    assert!(c.node(p).stats().conflicts >= 1);
    // A commit on the current version applies.
    let cur = c.node(p).peek(b"s").unwrap().version();
    let mut d = Txn::new("s");
    d.set_base(cur).set("k", "d");
    let tk = c.with(p, |n, now| n.commit(d, now)).unwrap().unwrap();
    c.run_for(ms(50));
    assert!(c.events(p).iter().any(
        |e| matches!(e, SessionEvent::CommitAcked { ticket, copies: 2, .. } if *ticket == tk)
    ));
}
