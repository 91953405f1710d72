//! Optimistic concurrency (per-session base version), and the three losses
//! of issue 11 as named regression tests, in the deterministic simulated
//! cluster.

use bytes::Bytes;
use sessionrepl::session::sim::{sim_key, SimCluster, SimConfig};
use sessionrepl::session::{
    CommitFailure, CommitTicket, Lookup, MemberKey, Placement, Session, SessionConfig,
    SessionEvent, SessionMode, Txn,
};
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

fn index_of(c: &SimCluster, key: MemberKey) -> usize {
    (0..c.len()).find(|i| sim_key(*i) == key).unwrap()
}

fn primary_of(c: &SimCluster, id: &str) -> usize {
    let any = c.alive()[0];
    index_of(
        c,
        c.node(any).placement_of(id.as_bytes()).primary().unwrap(),
    )
}

/// How a commit ended, from node `i`'s events.
fn outcome(c: &SimCluster, i: usize, t: CommitTicket) -> Option<Result<usize, CommitFailure>> {
    c.events(i).iter().find_map(|e| match e {
        SessionEvent::CommitAcked { ticket, copies, .. } if *ticket == t => Some(Ok(*copies)),
        SessionEvent::CommitFailed { ticket, reason, .. } if *ticket == t => Some(Err(*reason)),
        _ => None,
    })
}

/// Reads `id` through node `i` as a request would: locally on the
/// primary, else from the primary; `None` if absent.
fn read(c: &mut SimCluster, i: usize, id: &str) -> Option<Session> {
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

fn value(s: &Session) -> String {
    String::from_utf8(s.attribute(b"k").unwrap().to_vec()).unwrap()
}

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

/// Real-process finding (netns jepsen seed 1796055969353167509, 2026-11-30):
/// a member restarted and became the primary of sessions another member had
/// written, so its first commit of one started a new term; a partition cut
/// it off before anyone noticed, and that commit failed as unknown. The
/// majority's new primary started a term on the same base: the same
/// counter, and the restarted member's id ordered after its own, so after
/// the heal the unknown commit replaced the acknowledged one on every
/// holder. A primary that takes over from a lost one now starts its term
/// two ahead, so it outranks a term the lost one may have started.
#[test]
fn a_primary_after_a_loss_outranks_the_lost_primarys_unknown_new_term() {
    let session = SessionConfig {
        primary_settle_time: ms(200),
        min_commit_copies: 2,
        ..backup()
    };
    let mut c = SimCluster::started(SimConfig::default(), session, 3);
    let ids: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    for id in &ids {
        let p = primary_of(&c, id);
        let mut t = Txn::new(id.clone());
        t.set("k", "first");
        let tk = c.with(p, |n, now| n.create(t, 1, now)).unwrap();
        c.run_for(ms(20));
        assert!(matches!(outcome(&c, p, tk), Some(Ok(2))), "{id}");
    }
    // A fourth member joins (its id orders after the others') and becomes
    // the primary of some of these sessions.
    let j = c.add_node();
    assert!(c.run_until(ms(3000), |c| c.node(j).is_ready()), "joiner");
    c.run_for(ms(500));
    let id = ids
        .iter()
        .find(|id| c.node(j).is_primary_for(id.as_bytes()))
        .expect("the joiner is the primary of one of 40 sessions")
        .clone();
    // Cut off before anyone notices: its commit is applied there, unknown.
    for x in 0..3 {
        c.partition(j, x);
    }
    let s = read(&mut c, j, &id).unwrap();
    let mut t = Txn::on(&s);
    t.set("k", "cut-off");
    let tj = c.with(j, |n, now| n.commit(t, now)).unwrap().unwrap();
    c.run_for(ms(300));
    assert!(
        !matches!(outcome(&c, j, tj), Some(Ok(_))),
        "cut-off commit acked"
    );
    // Membership notices on both sides; the majority's new primary commits.
    for x in 0..3 {
        c.with(x, |n, now| n.member_removed(sim_key(j), now));
        c.with(j, |n, now| n.member_removed(sim_key(x), now));
    }
    c.run_for(ms(500));
    let q = (0..3)
        .find(|i| c.node(*i).is_primary_for(id.as_bytes()))
        .unwrap();
    let s = read(&mut c, q, &id).unwrap();
    assert_eq!(value(&s), "first");
    let mut t = Txn::on(&s);
    t.set("k", "acked");
    let tq = c.with(q, |n, now| n.commit(t, now)).unwrap().unwrap();
    c.run_for(ms(100));
    assert!(
        matches!(outcome(&c, q, tq), Some(Ok(2))),
        "{:?}",
        outcome(&c, q, tq)
    );
    // Healed: everyone sees everyone again.
    c.heal();
    for x in 0..3 {
        c.with(x, |n, now| n.member_added(sim_key(j), now));
        c.with(j, |n, now| n.member_added(sim_key(x), now));
    }
    c.run_for(ms(3000));
    for reader in 0..4 {
        let s = read(&mut c, reader, &id).unwrap();
        assert_eq!(value(&s), "acked", "read through node {reader}");
    }
}

/// Two primaries lost in a row, each with an unknown commit only on itself
/// (P1's; then P2's, in the term it started); P3 takes over from the same
/// base. With one fixed jump per takeover P3's term equalled P2's and the
/// tie went to P2's id: after the heal P2's commit replaced P3's
/// acknowledged one. P3 counts both departures: 2^2 ahead, above P2's 2^1.
#[test]
fn a_primary_after_two_losses_outranks_both_lost_primaries_unknown_terms() {
    two_primaries_lost_in_a_row(false);
}

/// As above, but P3 gets its copy only when P2's first backup crashes,
/// long after P1's loss (past the window in which a copy's receiver adds
/// the departures it saw): only the count the copy carries tells P3 that
/// P1 departed too.
#[test]
fn a_copy_made_long_after_a_loss_carries_the_count_of_departed_primaries() {
    two_primaries_lost_in_a_row(true);
}

/// Five members, `minCommitCopies` 2, a short settle time: the cluster of
/// the takeover scenarios below.
fn five_members() -> SimCluster {
    let session = SessionConfig {
        primary_settle_time: ms(200),
        min_commit_copies: 2,
        ..backup()
    };
    SimCluster::started(SimConfig::default(), session, 5)
}

/// The members of `c` in the rank order of session `id` (its primary
/// first, then whoever takes over from it, and so on).
fn rank_of(c: &SimCluster, id: &str) -> Vec<usize> {
    let all: Vec<MemberKey> = (0..c.len()).map(sim_key).collect();
    let rank = Placement::holders(id.as_bytes(), &all, c.len());
    rank.as_slice().iter().map(|m| index_of(c, *m)).collect()
}

/// Cuts member `p` off from every other member (nobody notices yet).
fn cut_off(c: &mut SimCluster, p: usize) {
    for x in (0..c.len()).filter(|x| *x != p) {
        c.partition(p, x);
    }
}

/// Membership on both sides of `p`: every other live member and `p` see
/// each other come back (`seen`) or leave.
fn set_view(c: &mut SimCluster, p: usize, seen: bool) {
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
fn create_first(c: &mut SimCluster, p: usize, id: &str) {
    let mut t = Txn::new(id.to_string());
    t.set("k", "first");
    let tk = c.with(p, |nd, now| nd.create(t, 1, now)).unwrap();
    c.run_for(ms(50));
    assert!(matches!(outcome(c, p, tk), Some(Ok(2))), "create");
}

/// Reads `id` through `p`, sets `k = v` on what it read, commits there,
/// and reports how the commit ended 300 ms later.
fn commit_value(
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
fn heal_and_read_acked(c: &mut SimCluster, id: &str) {
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

/// The scenario of the two tests above; `late_copy`: P3 becomes a holder
/// only when P2's first backup crashes, 6 s after P1's loss.
fn two_primaries_lost_in_a_row(late_copy: bool) {
    let mut c = five_members();
    // A session whose members in rank order are P1, P2, (X,) P3 with P2's
    // id ordering after P3's (so a tie between their terms goes to P2).
    let skip = usize::from(late_copy);
    let (id, p1, p2, p3, x) = (0..1000)
        .find_map(|k| {
            let id = format!("two{k}");
            let r = rank_of(&c, &id);
            (r[1] > r[2 + skip]).then(|| (id, r[0], r[1], r[2 + skip], r[2]))
        })
        .expect("a session id with the rank order needed");
    create_first(&mut c, p1, &id);
    // P1 cut off before anyone notices: its commit stays on P1, unknown.
    cut_off(&mut c, p1);
    let r1 = commit_value(&mut c, p1, &id, "p1");
    assert!(!matches!(r1, Some(Ok(_))), "P1's commit acked");
    set_view(&mut c, p1, false);
    c.run_for(ms(500));
    assert!(c.node(p2).is_primary_for(id.as_bytes()), "P2 took over");
    if late_copy {
        assert!(
            c.node(p3).peek(id.as_bytes()).is_none(),
            "P3 holds no copy yet"
        );
        c.run_for(ms(6000));
        c.kill(x);
        c.run_for(ms(500));
    }
    assert!(c.node(p3).peek(id.as_bytes()).is_some(), "P3 holds a copy");
    // P2 cut off in turn: its commit (its new term) stays on P2, unknown.
    assert_eq!(value(&read(&mut c, p2, &id).unwrap()), "first");
    cut_off(&mut c, p2);
    let r2 = commit_value(&mut c, p2, &id, "p2");
    assert!(!matches!(r2, Some(Ok(_))), "P2's commit acked");
    let p2_version = c.node(p2).peek(id.as_bytes()).unwrap().version();
    assert_eq!(p2_version.writer, sim_key(p2).id, "P2 applied its commit");
    set_view(&mut c, p2, false);
    c.run_for(ms(500));
    // P3, the majority's primary now, commits; acknowledged by two copies.
    assert!(c.node(p3).is_primary_for(id.as_bytes()), "P3 took over");
    assert_eq!(value(&read(&mut c, p3, &id).unwrap()), "first");
    let r3 = commit_value(&mut c, p3, &id, "acked");
    assert!(matches!(r3, Some(Ok(2))), "{r3:?}");
    let p3_version = c.node(p3).peek(id.as_bytes()).unwrap().version();
    assert!(
        p3_version > p2_version,
        "P3's term {:#x} not above P2's {:#x}",
        p3_version.counter,
        p2_version.counter
    );
    // Healed: the acknowledged commit stands everywhere.
    heal_and_read_acked(&mut c, &id);
}

/// A new primary that missed a former primary's commit must not start its
/// term on the older base: a holder with a newer version another member
/// wrote refuses its repair copy (not acknowledged, so the commit waiting
/// for it keeps waiting) and sends it the newer copy. A resend of the
/// primary's own older version (overtaken by its next commit) is acked.
#[test]
fn a_repair_older_than_a_holders_copy_from_another_writer_is_refused_and_answered() {
    use sessionrepl::session::{CodecLimits, CopyReason, Dest, Message, Reject, SessionImage};
    let mut c = SimCluster::started(SimConfig::default(), backup(), 3);
    let id = "rep";
    let p = primary_of(&c, id);
    let mut t = Txn::new(id);
    t.set("k", "v0");
    let tk = c.with(p, |n, now| n.create(t, 1, now)).unwrap();
    c.run_for(ms(50));
    assert!(matches!(outcome(&c, p, tk), Some(Ok(2))));
    let b = index_of(&c, c.node(p).placement_of(id.as_bytes()).as_slice()[1]);
    let x = (0..3).find(|i| *i != p && *i != b).unwrap();
    let held = c.node(b).peek(id.as_bytes()).unwrap().version();
    assert_eq!(held.writer, sim_key(p).id);
    let meta = c.node(b).peek(id.as_bytes()).unwrap().meta().clone();
    let older = |writer: usize| {
        Message::Copy {
            reason: CopyReason::Repair,
            session: SessionImage {
                id: Bytes::from_static(b"rep"),
                version: sessionrepl::session::Version {
                    counter: held.counter - 1,
                    writer: sim_key(writer).id,
                },
                meta: meta.clone(),
                idle_ms: 0,
                lost: 1,
                attrs: vec![(Bytes::from_static(b"k"), Bytes::from_static(b"old"))],
            },
        }
        .encode()
    };
    // From another member (as a new primary that missed P's commit).
    let msg = older(x);
    let (r, sent) = c.with(b, |n, now| {
        let r = n.handle_message(sim_key(x), msg, now);
        (
            r,
            std::iter::from_fn(|| n.poll_transmit()).collect::<Vec<_>>(),
        )
    });
    assert_eq!(r, Err(Reject::Conflict));
    let back = sent
        .iter()
        .find_map(
            |t| match (&t.to, Message::decode(&t.payload, &CodecLimits::default())) {
                (Dest::One(to), Ok(Message::Copy { session, .. })) if *to == sim_key(x) => {
                    Some(session)
                }
                _ => None,
            },
        )
        .expect("the newer copy sent back to the repairing member");
    assert_eq!(back.version, held);
    assert_eq!(value(c.node(b).peek(id.as_bytes()).unwrap()), "v0");
    // From the writer of the held version itself: a resend overtaken.
    let msg = older(p);
    let r = c.with(b, |n, now| n.handle_message(sim_key(p), msg, now));
    assert_eq!(r, Ok(()));
    assert_eq!(c.node(b).peek(id.as_bytes()).unwrap().version(), held);
}

/// Q cut off with an unknown commit, then its successor R with one in R's
/// new term; Q comes back as primary. Primary all along in its own view, it
/// continued its old term, below R's: when R came back, R's commit replaced
/// Q's acknowledged one. Q's catch-up copy now carries the departures the
/// others counted (Q's and R's), so Q starts a term above R's.
#[test]
fn a_primary_back_from_a_partition_outranks_the_terms_started_while_it_was_away() {
    let mut c = five_members();
    let id = "back";
    let r = rank_of(&c, id);
    let (q, rr, h) = (r[0], r[1], r[2]);
    create_first(&mut c, q, id);
    // Q cut off with an unknown commit; R takes over.
    cut_off(&mut c, q);
    assert!(!matches!(commit_value(&mut c, q, id, "q"), Some(Ok(_))));
    set_view(&mut c, q, false);
    c.run_for(ms(500));
    assert!(c.node(rr).is_primary_for(id.as_bytes()), "R took over");
    // R cut off with an unknown commit in its new term; H takes over.
    cut_off(&mut c, rr);
    assert!(!matches!(commit_value(&mut c, rr, id, "r"), Some(Ok(_))));
    set_view(&mut c, rr, false);
    c.run_for(ms(500));
    assert!(c.node(h).is_primary_for(id.as_bytes()), "H took over");
    // Q comes back (R stays cut off) and is the primary again.
    c.heal();
    cut_off(&mut c, rr);
    for x in (0..c.len()).filter(|x| *x != q && *x != rr) {
        c.with(x, |nd, now| nd.member_added(sim_key(q), now));
        c.with(q, |nd, now| nd.member_added(sim_key(x), now));
    }
    c.run_for(ms(1000));
    assert!(c.node(q).is_primary_for(id.as_bytes()), "Q primary again");
    let acked = commit_value(&mut c, q, id, "acked");
    assert!(matches!(acked, Some(Ok(2))), "{acked:?}");
    // R comes back too: the acknowledged commit stands everywhere.
    heal_and_read_acked(&mut c, id);
}

/// The last member standing after its session's primary was lost counts
/// that departure, and has no other holder to announce the count to: its
/// commit starts the new term at once (it must not wait for a repair
/// nobody can acknowledge).
#[test]
fn a_primary_without_other_holders_starts_its_term_at_once() {
    let mut c = SimCluster::started(SimConfig::default(), backup(), 2);
    let id = "alone";
    let p = primary_of(&c, id);
    let b = 1 - p;
    let mut t = Txn::new(id);
    t.set("k", "v0");
    let tk = c.with(p, |n, now| n.create(t, 1, now)).unwrap();
    c.run_for(ms(50));
    assert!(matches!(outcome(&c, p, tk), Some(Ok(2))));
    c.kill(p);
    c.run_for(ms(1500));
    let s = read(&mut c, b, id).unwrap();
    let base = s.version();
    let mut t = Txn::on(&s);
    t.set("k", "v1");
    let tk = c.with(b, |n, now| n.commit(t, now)).unwrap().unwrap();
    c.run_for(ms(50));
    assert_eq!(outcome(&c, b, tk), Some(Ok(1)));
    let v = c.node(b).peek(id.as_bytes()).unwrap().version();
    assert_eq!(
        v.counter >> 32,
        (base.counter >> 32) + 2,
        "one departure: 2^1"
    );
}
