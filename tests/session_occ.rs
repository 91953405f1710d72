//! Optimistic concurrency (per-session base version), and the three losses
//! of issue 11 as named regression tests, in the deterministic simulated
//! cluster.

mod sim_util;

use bytes::Bytes;
use sessionrepl::session::sim::{sim_key, SimCluster, SimConfig};
use sessionrepl::session::{CommitFailure, SessionConfig, SessionEvent, Txn};
use sessionrepl::Error;
use sim_util::*;
use std::time::Duration;

#[test]
fn commit_on_a_stale_base_conflicts_and_changes_nothing() {
    let mut c = SimCluster::started(SimConfig::default(), backup(), 3);
    let p = primary_of(&c, "s");
    let mut t = Txn::new("s");
    t.set("k", "v0");
    c.with(p, |n, now| n.create(t, 1, now)).unwrap();
    c.run_for(ms(50));
    let read0 = read(&mut c, p, "s").unwrap();
    let mut a = Txn::on(&read0);
    a.set("k", "a");
    assert_eq!(a.base(), Some(read0.version()));
    let ta = c.with(p, |n, now| n.commit(a, now)).unwrap().unwrap();
    c.run_for(ms(50));
    assert_eq!(outcome(&c, p, ta), Some(Ok(2)));
    // A second writer read the same version: conflict, nothing applied.
    let mut b = Txn::new("s");
    b.set_base(read0.version()).set("k", "b");
    let r = c.with(p, |n, now| n.commit(b, now));
    assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    c.run_for(ms(50));
    for h in c.holders_of(b"s") {
        assert_eq!(&c.value(h, b"s", b"k").unwrap()[..], b"a", "node {h}");
    }
    assert!(c.node(p).stats().conflicts >= 1);
    // A commit on the current version applies.
    let cur = read(&mut c, p, "s").unwrap();
    let mut d = Txn::on(&cur);
    d.set("k", "d");
    let td = c.with(p, |n, now| n.commit(d, now)).unwrap().unwrap();
    c.run_for(ms(50));
    assert_eq!(outcome(&c, p, td), Some(Ok(2)));
}

/// Issue 11, loss 3: 20 parallel read-modify-write appends to one cart,
/// spread over the nodes. Before: all answered OK, some lost. Now every
/// loser gets Conflict and every winner's change is in the final cart.
#[test]
fn concurrent_appends_to_one_session_lose_nothing_losers_conflict() {
    let mut c = SimCluster::started(SimConfig::default(), backup(), 4);
    let p = primary_of(&c, "cart");
    let mut t = Txn::new("cart");
    t.set("k", "");
    c.with(p, |n, now| n.create(t, 1, now)).unwrap();
    c.run_for(ms(50));
    // Everyone reads the same cart, then all commit at once.
    let mut pending = Vec::new();
    for k in 0..20usize {
        let node = k % 4;
        let s = read(&mut c, node, "cart").unwrap();
        let mut tx = Txn::on(&s);
        tx.set("k", format!("{}{k};", value(&s)));
        pending.push((node, k, tx));
    }
    let mut tickets = Vec::new();
    for (node, k, tx) in pending {
        match c.with(node, |n, now| n.commit(tx, now)) {
            Ok(Some(t)) => tickets.push((node, k, Some(t))),
            Err(Error::Conflict(_)) => tickets.push((node, k, None)),
            other => panic!("append {k}: {other:?}"),
        }
    }
    c.run_for(ms(300));
    let mut won = Vec::new();
    let mut conflicts = 0;
    for (node, k, t) in tickets {
        match t.map(|t| outcome(&c, node, t)) {
            None | Some(Some(Err(CommitFailure::Conflict))) => conflicts += 1,
            Some(Some(Ok(_))) => won.push(k),
            other => panic!("append {k}: {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "one base, one winner: {won:?}");
    assert_eq!(conflicts, 19);
    let fin = read(&mut c, 3, "cart").unwrap();
    assert_eq!(value(&fin), format!("{};", won[0]));
    // Retrying on the fresh version, one at a time, every append lands.
    for k in 100..105 {
        let s = read(&mut c, k % 4, "cart").unwrap();
        let mut tx = Txn::on(&s);
        tx.set("k", format!("{}{k};", value(&s)));
        let t = c.with(k % 4, |n, now| n.commit(tx, now)).unwrap().unwrap();
        c.run_for(ms(50));
        assert!(matches!(outcome(&c, k % 4, t), Some(Ok(2))), "append {k}");
    }
    let fin = read(&mut c, 0, "cart").unwrap();
    assert_eq!(value(&fin), format!("{};100;101;102;103;104;", won[0]));
}

/// Issue 11, loss 2: a non-holder served a cached copy (v2 while the
/// holders had v5) and a commit built on it returned OK. Now a read always
/// asks the primary, and a commit on an old base conflicts.
#[test]
fn non_holder_never_reads_a_stale_copy_and_stale_based_commits_conflict() {
    let mut c = SimCluster::started(SimConfig::default(), backup(), 4);
    let p = primary_of(&c, "s");
    let outsider = (0..4)
        .find(|i| !c.node(0).placement_of(b"s").contains(&sim_key(*i)))
        .unwrap();
    let mut t = Txn::new("s");
    t.set("k", "v1");
    c.with(p, |n, now| n.create(t, 1, now)).unwrap();
    c.run_for(ms(50));
    let old = read(&mut c, outsider, "s").unwrap();
    assert_eq!(value(&old), "v1");
    // The holders move on.
    for v in 2..=5 {
        let s = read(&mut c, p, "s").unwrap();
        let mut tx = Txn::on(&s);
        tx.set("k", format!("v{v}"));
        c.with(p, |n, now| n.commit(tx, now)).unwrap().unwrap();
        c.run_for(ms(20));
    }
    let fresh = read(&mut c, outsider, "s").unwrap();
    assert_eq!(value(&fresh), "v5", "the outsider read a stale copy");
    let mut stale = Txn::on(&old);
    stale.set("k", "built-on-v1");
    let ticket = c
        .with(outsider, |n, now| n.commit(stale, now))
        .unwrap()
        .unwrap();
    c.run_for(ms(50));
    assert_eq!(
        outcome(&c, outsider, ticket),
        Some(Err(CommitFailure::Conflict))
    );
    assert_eq!(value(&read(&mut c, 0, "s").unwrap()), "v5");
}

/// Issue 11, loss 1: a node joins while the cluster has not yet noticed a
/// SIGKILLed primary. Before: the joiner was ready with 0 sessions and the
/// surviving backup then dropped its copy: 15 of 100 acked sessions lost.
#[test]
fn join_inside_the_failure_detection_window_loses_no_acked_session() {
    for seed in 1..=4u64 {
        let net = SimConfig {
            seed,
            detect_delay: ms(3000),
            ..SimConfig::default()
        };
        let session = SessionConfig {
            expire_check_interval: ms(100),
            access_timeout: ms(500),
            ..backup()
        };
        let mut c = SimCluster::started(net, session, 3);
        let ids: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        let mut tickets = Vec::new();
        for id in &ids {
            let p = primary_of(&c, id);
            let mut t = Txn::new(id.clone());
            t.set("k", id.clone());
            tickets.push((p, c.with(p, |n, now| n.create(t, 1, now)).unwrap()));
        }
        c.run_for(ms(100));
        for (p, t) in &tickets {
            assert_eq!(outcome(&c, *p, *t), Some(Ok(2)), "seed {seed}");
        }
        // SIGKILL one node; a fourth joins at once, long before detection.
        c.kill(0);
        let j = c.add_node();
        assert!(
            c.run_until(ms(2000), |c| c.node(j).is_ready()),
            "seed {seed}: joiner not ready"
        );
        // Every session placement gives the joiner is there when it is ready.
        for id in &ids {
            if c.node(j).placement_of(id.as_bytes()).contains(&sim_key(j)) {
                assert!(
                    c.node(j).peek(id.as_bytes()).is_some(),
                    "seed {seed}: joiner ready without {id}"
                );
            }
        }
        // Sweeps run many times before the crash is detected: no copy dropped.
        c.run_for(ms(2500));
        for id in &ids {
            assert!(
                !c.holders_of(id.as_bytes()).is_empty(),
                "seed {seed}: {id} lost before detection"
            );
        }
        c.run_for(ms(3000));
        for id in &ids {
            let s = read(&mut c, 1, id).unwrap_or_else(|| panic!("seed {seed}: {id} lost"));
            assert_eq!(value(&s), *id);
            assert!(c.holders_of(id.as_bytes()).len() >= 2, "seed {seed}: {id}");
        }
    }
}

/// `minCommitCopies`: a commit that cannot reach that many holders fails
/// clearly, instead of OK with one copy.
#[test]
fn min_commit_copies_refuses_a_commit_with_too_few_holders() {
    let session = SessionConfig {
        min_commit_copies: 2,
        ..backup()
    };
    let mut c = SimCluster::started(SimConfig::default(), session, 2);
    let mut t = Txn::new("s");
    t.set("k", "v");
    let t0 = c.with(0, |n, now| n.create(t, 1, now)).unwrap();
    c.run_for(ms(50));
    assert_eq!(outcome(&c, 0, t0), Some(Ok(2)));
    c.kill(1);
    c.run_for(ms(100));
    let s = c.node(0).peek(b"s").unwrap().clone();
    let mut tx = Txn::on(&s);
    tx.set("k", "alone");
    let r = c.with(0, |n, now| n.commit(tx, now));
    assert!(matches!(r, Err(Error::Unreachable(_))), "{r:?}");
    assert_eq!(
        c.node(0).peek(b"s").unwrap().attribute(b"k"),
        Some(&Bytes::from("v"))
    );
    assert!(c.node(0).stats().under_replicated > 0);
    assert!(c.events(0).iter().any(|e| matches!(
        e,
        SessionEvent::Health { members: 1, under_replicated } if *under_replicated > 0
    )));
}

/// Real-process finding (jepsen helper, 07:55): `handoffs_in_progress`
/// stayed up forever when the channel never reported an outcome. A node
/// now counts an outcome overdue after 4 × `accessTimeout` as timed out,
/// so every hand-off, repair and commit ends.
#[test]
fn an_outcome_that_never_comes_times_out_instead_of_waiting_forever() {
    use sessionrepl::session::{SessionNode, Txn};
    let session = SessionConfig {
        access_timeout: ms(100),
        expire_check_interval: ms(50),
        commit_retries: 1,
        state_transfer_timeout: Some(ms(300)),
        ..backup()
    };
    let t0 = std::time::Instant::now();
    let mut a = SessionNode::new(session, sim_key(0), t0);
    a.member_added(sim_key(1), t0);
    a.start(t0);
    // The peer never answers: its state request times out as well.
    let mut now = t0;
    while !a.is_ready() && now < t0 + Duration::from_secs(120) {
        now += ms(50);
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
        // A peer that never answers counts as gone once membership says so.
        if now > t0 + ms(100) {
            a.member_removed(sim_key(1), now);
        }
    }
    assert!(a.is_ready());
    a.member_added(sim_key(1), now);
    // A session node 0 is the primary of: its commit waits for node 1's ack.
    let id = (0..)
        .map(|i| format!("s{i}"))
        .find(|id| a.is_primary_for(id.as_bytes()))
        .unwrap();
    now += ms(2000); // past primarySettleTime
    a.handle_timeout(now);
    let mut t = Txn::new(id);
    t.set("k", "v");
    let ticket = a.create(t, 1, now).unwrap();
    assert!(a.pending_commits() > 0, "the create waits for the backup");
    let mut ended = false;
    let deadline = now + Duration::from_secs(30);
    while !ended && now < deadline {
        now += ms(50);
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {} // dropped: no outcome ever comes
        while let Some(e) = a.poll_event() {
            if let SessionEvent::CommitFailed {
                ticket: tk, reason, ..
            } = e
            {
                if tk == ticket {
                    assert_eq!(reason, CommitFailure::Unacknowledged);
                    ended = true;
                }
            }
        }
    }
    assert!(ended, "the commit waited forever for an outcome");
    assert_eq!(a.stats().handoffs_in_progress, 0);
}

/// Real-process finding (jepsen helper, netns seed 8): a member cut off
/// long enough to be removed, then back, became a holder of sessions
/// created meanwhile that nobody sent it; as primary it answered NotFound
/// and a create replaced an acknowledged session. A ready node now asks
/// every member that (re)appears for its share, and answers for no session
/// until it has it.
#[test]
fn a_member_back_from_a_partition_gets_the_sessions_created_meanwhile() {
    let session = SessionConfig {
        primary_settle_time: ms(200),
        ..backup()
    };
    let mut c = SimCluster::started(SimConfig::default(), session, 3);
    // Node 2 is cut off, and membership on both sides says so.
    c.partition(0, 2);
    c.partition(1, 2);
    for (a, b) in [(0, 2), (1, 2), (2, 0), (2, 1)] {
        c.with(a, |n, now| n.member_removed(sim_key(b), now));
    }
    c.run_for(ms(300));
    // Sessions created on the majority side meanwhile.
    let ids: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    for id in &ids {
        let p = (0..2)
            .find(|i| c.node(*i).is_primary_for(id.as_bytes()))
            .unwrap();
        let mut t = Txn::new(id.clone());
        t.set("k", id.clone());
        let tk = c.with(p, |n, now| n.create(t, 1, now)).unwrap();
        c.run_for(ms(20));
        assert!(matches!(outcome(&c, p, tk), Some(Ok(_))), "{id}");
    }
    // Healed: node 2 is back in every view.
    c.heal();
    for (a, b) in [(0, 2), (1, 2), (2, 0), (2, 1)] {
        c.with(a, |n, now| n.member_added(sim_key(b), now));
    }
    // Past primarySettleTime, before the sweeps hand orphaned copies over.
    c.run_for(ms(300));
    // A create of an existing id conflicts, whoever is its primary now.
    let mut tickets = Vec::new();
    for id in &ids {
        let mut t = Txn::new(id.clone());
        t.set("k", "again");
        match c.with(2, |n, now| n.create(t, 1, now)) {
            Err(Error::Conflict(_)) => {}
            Ok(tk) => tickets.push((id.clone(), tk)),
            Err(e) => panic!("{id}: {e:?}"),
        }
    }
    c.run_for(ms(300));
    for (id, tk) in tickets {
        assert_eq!(
            outcome(&c, 2, tk),
            Some(Err(CommitFailure::Conflict)),
            "{id}: a create replaced an existing session"
        );
    }
    for id in &ids {
        for reader in 0..3 {
            let s = read(&mut c, reader, id)
                .unwrap_or_else(|| panic!("{id} not found through node {reader}"));
            assert_eq!(value(&s), *id);
        }
    }
}
