//! Helpers shared by the simulated-cluster tests of the session store
//! (`session_sim.rs`, `session_sim_faults.rs`, `session_occ.rs`,
//! `session_terms.rs`): outcomes, reads as a request
//! makes them, cuts and views.

#![allow(dead_code)]

use sessionrepl::session::sim::{sim_key, SimCluster, SimConfig};
use sessionrepl::session::{
    CommitFailure, CommitTicket, Lookup, MemberKey, Placement, Session, SessionConfig,
    SessionEvent, SessionMode, Txn,
};
use std::time::Duration;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn backup() -> SessionConfig {
    SessionConfig {
        mode: SessionMode::Backup,
        ..SessionConfig::default()
    }
}

pub fn index_of(c: &SimCluster, key: MemberKey) -> usize {
    (0..c.len()).find(|i| sim_key(*i) == key).unwrap()
}

pub fn primary_of(c: &SimCluster, id: &str) -> usize {
    let any = c.alive()[0];
    index_of(
        c,
        c.node(any).placement_of(id.as_bytes()).primary().unwrap(),
    )
}

/// How a commit ended, from node `i`'s events.
pub fn outcome(c: &SimCluster, i: usize, t: CommitTicket) -> Option<Result<usize, CommitFailure>> {
    c.events(i).iter().find_map(|e| match e {
        SessionEvent::CommitAcked { ticket, copies, .. } if *ticket == t => Some(Ok(*copies)),
        SessionEvent::CommitFailed { ticket, reason, .. } if *ticket == t => Some(Err(*reason)),
        _ => None,
    })
}

/// Reads `id` through node `i` as a request would: locally on the
/// primary, else from the primary; `None` if absent.
pub fn read(c: &mut SimCluster, i: usize, id: &str) -> Option<Session> {
    for _ in 0..50 {
        let r = c.with(i, |n, now| match n.get(id.as_bytes(), now) {
            Lookup::Local(s) => Ok(Some(s.clone())),
            Lookup::NotFound => Ok(None),
            _ => Err(()),
        });
        if let Ok(s) = r {
            return s;
        }
        c.run_for(ms(20));
        if let Some(s) = c.node_mut(i).take_fetched(id.as_bytes()) {
            return s;
        }
    }
    panic!("read of {id} through node {i} never answered");
}

/// The first member of `c` that holds no copy of `id`.
pub fn without_copy(c: &SimCluster, id: &str) -> usize {
    (0..c.len())
        .find(|i| c.node(*i).peek(id.as_bytes()).is_none())
        .unwrap()
}

pub fn value(s: &Session) -> String {
    String::from_utf8(s.attribute(b"k").unwrap().to_vec()).unwrap()
}
pub fn five_members() -> SimCluster {
    let session = SessionConfig {
        primary_settle_time: ms(200),
        min_commit_copies: 2,
        ..backup()
    };
    SimCluster::started(SimConfig::default(), session, 5)
}

/// The members of `c` in the rank order of session `id` (its primary
/// first, then whoever takes over from it, and so on).
pub fn rank_of(c: &SimCluster, id: &str) -> Vec<usize> {
    let all: Vec<MemberKey> = (0..c.len()).map(sim_key).collect();
    let rank = Placement::holders(id.as_bytes(), &all, c.len());
    rank.as_slice().iter().map(|m| index_of(c, *m)).collect()
}

/// Cuts member `p` off from every other member (nobody notices yet).
pub fn cut_off(c: &mut SimCluster, p: usize) {
    for x in (0..c.len()).filter(|x| *x != p) {
        c.partition(p, x);
    }
}

/// Membership on both sides of `p`: every other live member and `p` see
/// each other come back (`seen`) or leave.
pub fn set_view(c: &mut SimCluster, p: usize, seen: bool) {
    for x in c.alive().into_iter().filter(|x| *x != p) {
        if seen {
            c.with(x, |nd, now| nd.member_added(sim_key(p), now));
            c.with(p, |nd, now| nd.member_added(sim_key(x), now));
        } else {
            c.with(x, |nd, now| nd.member_removed(sim_key(p), now));
            c.with(p, |nd, now| nd.member_removed(sim_key(x), now));
        }
    }
}

/// Creates `id` with `k = first` on member `p`, acknowledged by 2 copies.
pub fn create_first(c: &mut SimCluster, p: usize, id: &str) {
    let mut t = Txn::new(id.to_string());
    t.set("k", "first");
    let tk = c.with(p, |nd, now| nd.create(t, 1, now)).unwrap();
    c.run_for(ms(50));
    assert!(matches!(outcome(c, p, tk), Some(Ok(2))), "create");
}

/// Reads `id` through `p`, sets `k = v` on what it read, commits there,
/// and reports how the commit ended 300 ms later.
pub fn commit_value(
    c: &mut SimCluster,
    p: usize,
    id: &str,
    v: &'static str,
) -> Option<Result<usize, CommitFailure>> {
    let s = read(c, p, id).unwrap();
    let mut t = Txn::on(&s);
    t.set("k", v);
    let tk = c.with(p, |nd, now| nd.commit(t, now)).unwrap().unwrap();
    c.run_for(ms(300));
    outcome(c, p, tk)
}

/// Heals every cut, lets every live member see every other, and checks
/// that a read of `id` through each of them returns `k = acked`.
pub fn heal_and_read_acked(c: &mut SimCluster, id: &str) {
    c.heal();
    let alive = c.alive();
    for p in &alive {
        set_view(c, *p, true);
    }
    c.run_for(ms(3000));
    for reader in alive {
        let s = read(c, reader, id).unwrap();
        assert_eq!(value(&s), "acked", "read through node {reader}");
    }
}

/// The default session config in `mode`.
pub fn cfg(mode: SessionMode) -> SessionConfig {
    SessionConfig {
        mode,
        ..SessionConfig::default()
    }
}

/// Creates session `id` on its primary (as seen by node 0) with `k = v`.
pub fn create_on_primary(c: &mut SimCluster, id: &str, v: &str) -> usize {
    let p = c
        .node(c.alive()[0])
        .placement_of(id.as_bytes())
        .primary()
        .unwrap();
    let i = (0..c.len()).find(|i| sim_key(*i) == p).unwrap();
    let mut t = Txn::new(id.to_string());
    t.set("k", v.to_string());
    c.with(i, |n, now| n.create(t, 1, now)).unwrap();
    i
}

/// Commits `k = v` to `id` on node `i`; its ticket.
pub fn commit(c: &mut SimCluster, i: usize, id: &str, v: &str) -> CommitTicket {
    let mut t = Txn::new(id.to_string());
    t.set("k", v.to_string());
    c.with(i, |n, now| n.commit(t, now)).unwrap().unwrap()
}

/// The copies of an acknowledged commit (see [`outcome`]).
pub fn acked(c: &SimCluster, i: usize, ticket: CommitTicket) -> Option<usize> {
    outcome(c, i, ticket)?.ok()
}

/// Why a commit failed (see [`outcome`]).
pub fn failed(c: &SimCluster, i: usize, ticket: CommitTicket) -> Option<CommitFailure> {
    outcome(c, i, ticket)?.err()
}

/// Node `i`'s value of `k` in `id`.
pub fn val(c: &SimCluster, i: usize, id: &str) -> Option<bytes::Bytes> {
    c.value(i, id.as_bytes(), b"k")
}
