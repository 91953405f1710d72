//! New terms after departed primaries (docs/SESSIONS.md): a commit or a
//! create that follows the loss of a session's primary outranks whatever
//! that primary left behind unacknowledged, in the deterministic
//! simulated cluster.

mod sim_util;

use bytes::Bytes;
use sessionrepl::session::sim::{sim_key, SimCluster, SimConfig};
use sessionrepl::session::{SessionConfig, Txn};
use sim_util::*;

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

/// Real-process finding (netns jepsen seed 1796087407452046020,
/// 2026-12-01): a session's primary, cut off before anyone noticed, created
/// it (nobody acknowledged that, so the client heard "unknown"); the
/// majority's new primary, holding no copy, created the same id and had it
/// acknowledged by two copies. Both creates were the first version of term
/// 0, so after the heal the tie went to the cut-off member's id and the
/// acknowledged create vanished. A create now starts in the term of the
/// departures its member has counted (every member counts each one, and a
/// joiner or a member back from a partition takes the highest count it
/// hears), above every create made before the departure.
#[test]
fn a_create_after_its_primary_departed_outranks_the_departed_primarys_unknown_create() {
    let session = SessionConfig {
        primary_settle_time: ms(200),
        min_commit_copies: 2,
        ..backup()
    };
    let mut c = SimCluster::started(SimConfig::default(), session, 3);
    // A session whose primary's id orders after its successor's (so a tie
    // between their creates goes to the departed primary).
    let (id, p, q) = (0..1000)
        .find_map(|k| {
            let id = format!("new{k}");
            let r = rank_of(&c, &id);
            (r[0] > r[1]).then(|| (id, r[0], r[1]))
        })
        .expect("a session id with the rank order needed");
    // P cut off before anyone notices: its create stays on P, unknown.
    cut_off(&mut c, p);
    let mut t = Txn::new(id.clone());
    t.set("k", "cut-off");
    let tp = c.with(p, |nd, now| nd.create(t, 1, now)).unwrap();
    c.run_for(ms(300));
    assert!(
        !matches!(outcome(&c, p, tp), Some(Ok(_))),
        "P's create acked"
    );
    set_view(&mut c, p, false);
    c.run_for(ms(500));
    // Q, the majority's primary now, holds no copy and creates the id.
    assert!(c.node(q).is_primary_for(id.as_bytes()), "Q took over");
    assert!(c.node(q).peek(id.as_bytes()).is_none(), "Q holds no copy");
    let mut t = Txn::new(id.clone());
    t.set("k", "acked");
    let tq = c.with(q, |nd, now| nd.create(t, 1, now)).unwrap();
    c.run_for(ms(300));
    assert!(
        matches!(outcome(&c, q, tq), Some(Ok(2))),
        "{:?}",
        outcome(&c, q, tq)
    );
    // Healed: the acknowledged create stands everywhere.
    heal_and_read_acked(&mut c, &id);
}
