//! Durability of the session store in the deterministic simulated cluster:
//! acknowledged commits across crashes up to `backupCount`, and copies and
//! state transfers cut off mid-way that land after the heal. No sockets.

mod sim_util;

use bytes::Bytes;
use sessionrepl::session::sim::{sim_key, SimCluster, SimConfig};
use sessionrepl::session::{CommitTicket, NodeState, SessionConfig, SessionMode, Txn};
use sim_util::*;
use std::collections::HashMap;
use std::time::Duration;

/// The core promise: with N backups and at most N members lost at once, no
/// acknowledged commit is lost.
#[test]
fn acked_commits_survive_up_to_backup_count_failures() {
    for seed in 1..=6u64 {
        for backups in [1usize, 2] {
            run_durability(seed, backups);
        }
    }
}

fn run_durability(seed: u64, backups: usize) {
    let net = SimConfig {
        seed,
        latency_min: ms(0),
        latency_max: ms(4),
        loss: 0.01,
        ..SimConfig::default()
    };
    let session = SessionConfig {
        backup_count: backups,
        ..cfg(SessionMode::Backup)
    };
    let mut c = SimCluster::started(net, session, 6);
    // With loss, a state request may need a resend: creates wait for ready primaries.
    assert!(c.run_until(ms(2000), |c| (0..6).all(|i| c.node(i).is_ready())));
    let ids: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    for id in &ids {
        create_on_primary(&mut c, id, "0");
    }
    c.run_for(ms(300));
    // ticket -> (node, id, version)
    let mut pending: Vec<(usize, CommitTicket, String, u64)> = Vec::new();
    let mut kills = 0;
    for round in 0..60u64 {
        for _ in 0..8 {
            let k = c.rng().below(ids.len() as u64) as usize;
            let id = &ids[k];
            let alive = c.alive();
            let Some(&i) = alive.iter().find(|i| {
                c.node(**i).is_primary_for(id.as_bytes())
                    && c.node(**i).peek(id.as_bytes()).is_some()
            }) else {
                continue;
            };
            let mut t = Txn::new(id.clone());
            t.set("k", round.to_string());
            if let Ok(Some(ticket)) = c.with(i, |n, now| n.commit(t, now)) {
                let v = c.node(i).peek(id.as_bytes()).unwrap().version().counter;
                pending.push((i, ticket, id.clone(), v));
            }
        }
        c.run_for(ms(5));
        if round % 15 == 7 && kills + backups < 5 {
            // Up to `backups` members at once, then time to re-replicate.
            let n = 1 + c.rng().below(backups as u64) as usize;
            for _ in 0..n {
                let alive = c.alive();
                let v = alive[c.rng().below(alive.len() as u64) as usize];
                c.kill(v);
                kills += 1;
            }
        }
    }
    c.run_for(ms(3000));
    let mut best: HashMap<String, u64> = HashMap::new();
    let mut acked_count = 0;
    for (i, ticket, id, v) in &pending {
        if acked(&c, *i, *ticket).is_some() {
            acked_count += 1;
            let e = best.entry(id.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
    assert!(acked_count > 50, "seed {seed}: only {acked_count} acked");
    for (id, v) in best {
        let have = c
            .alive()
            .iter()
            .filter_map(|i| c.node(*i).peek(id.as_bytes()).map(|s| s.version().counter))
            .max();
        assert!(
            have.is_some_and(|h| h >= v),
            "seed {seed} backups {backups}: {id} acked at version {v}, survivors have {have:?}"
        );
    }
}

/// The nemesis' seeds 14832 and 16467: the primary of a session crashed
/// while the link between its backup and the member that placement picks
/// as the new second holder was cut. The backup's re-replication copy
/// timed out `commitRetries` times and was dropped; `under_replicated`
/// (copies in flight only) fell back to 0 with one copy left, so the
/// documented precondition let the next crash take the last holder and an
/// acknowledged session was lost. Now the session stays under-replicated
/// and each sweep resends the copy until the new holder acknowledges it.
#[test]
fn a_re_replication_copy_cut_off_stays_under_replicated_and_lands_after_the_heal() {
    let session = SessionConfig {
        backup_count: 1,
        expire_check_interval: ms(100),
        ..cfg(SessionMode::Backup)
    };
    let mut c = SimCluster::started(SimConfig::default(), session, 4);
    let p = create_on_primary(&mut c, "r", "acked");
    c.run_for(ms(50));
    let index = |k| (0..4).find(|i| sim_key(*i) == k).unwrap();
    let b = index(c.node(p).placement_of(b"r").others(&sim_key(p))[0]);
    assert_eq!(val(&c, b, "r").as_deref(), Some(&b"acked"[..]));
    // Every link of `b` but the one to `p` is cut, then `p` crashes.
    for x in (0..4).filter(|x| *x != p && *x != b) {
        c.partition(b, x);
    }
    c.kill(p);
    c.run_for(ms(1000));
    // `r`'s holders now: `b` and `n`, which has no copy.
    let n = index(c.node(b).placement_of(b"r").others(&sim_key(b))[0]);
    assert_eq!(c.holders_of(b"r"), vec![b], "only the backup holds it");
    assert!(
        c.node(b).stats().under_replicated >= 1,
        "one copy left, but under_replicated is {}",
        c.node(b).stats().under_replicated
    );
    // Healed: the next sweeps deliver the copy and the gauge returns to 0.
    c.heal();
    c.run_for(ms(1000));
    assert_eq!(val(&c, n, "r").as_deref(), Some(&b"acked"[..]));
    for i in c.alive() {
        assert_eq!(c.node(i).stats().under_replicated, 0, "node {i}");
    }
    // Now the precondition allows losing `b`: the session survives on `n`.
    c.kill(b);
    c.run_for(ms(1000));
    let holders = c.holders_of(b"r");
    assert!(holders.contains(&n) && holders.len() == 2, "{holders:?}");
    for h in holders {
        assert_eq!(val(&c, h, "r").as_deref(), Some(&b"acked"[..]));
    }
}

/// The nemesis' seed 10703: a joiner's link to one donor was cut in the
/// middle of its state transfer for longer than the donor retries a chunk,
/// so the donor gave up; the joiner waited for it until
/// `stateTransferTimeout` (30 s), in `Joining`, also after the heal. Now a
/// transfer that made no progress for a sweep interval asks the donors not
/// done again, and the joiner is ready soon after the heal.
#[test]
fn a_joiner_cut_off_from_a_donor_mid_transfer_asks_again_and_is_ready_after_the_heal() {
    let session = SessionConfig {
        expire_check_interval: ms(100),
        state_transfer_timeout: Some(Duration::from_secs(30)),
        state_transfer_window: 1,
        send_all_sessions_size: 1,
        ..cfg(SessionMode::Backup)
    };
    let (mut c, j) = joining_mid_transfer(session, "j");
    // Cut from donor 0 well past its chunk retries (8 × ackTimeout).
    c.partition(j, 0);
    c.run_for(ms(1500));
    assert_eq!(c.node(j).state(), NodeState::Joining);
    c.heal();
    assert!(
        c.run_until(ms(3000), |c| c.node(j).is_ready()),
        "joiner still {:?} 3 s after the heal",
        c.node(j).state()
    );
    for i in 0..300 {
        let id = format!("j{i}");
        if c.node(j).placement_of(id.as_bytes()).contains(&sim_key(j)) {
            assert_eq!(val(&c, j, &id), Some(Bytes::from(format!("v{i}"))), "{id}");
        }
    }
}

/// A donor that gives up serving a joiner (its chunks failed past their
/// retries) stops forwarding updates to that joiner `accessTimeout` later,
/// as after a transfer that completed. Before, the entry set "until further
/// notice" when the transfer started stayed until the joiner left the
/// cluster: every update the donor applied went to the joiner a second
/// time, for good.
#[test]
fn a_donor_that_gave_up_on_a_joiner_stops_forwarding_to_it() {
    let session = SessionConfig {
        expire_check_interval: ms(100),
        // The joiner gives up on the cut donor and serves without it.
        state_transfer_timeout: Some(ms(800)),
        state_transfer_window: 1,
        send_all_sessions_size: 1,
        access_timeout: ms(500),
        ..cfg(SessionMode::Delta)
    };
    let (mut c, j) = joining_mid_transfer(session, "f");
    // Cut from donor 0 past its chunk retries and the joiner's timeout.
    c.partition(j, 0);
    c.run_for(ms(2000));
    // It gave up on the transfer (TransferFailed, not Joining).
    assert_ne!(c.node(j).state(), NodeState::Joining);
    c.heal();
    // Well past accessTimeout, and settled.
    c.run_for(ms(3000));
    // Updates on node 1 reach node 0 and the joiner directly; node 0
    // sends nothing for them unless it forwards.
    let ids: Vec<String> = (0..300)
        .map(|i| format!("f{i}"))
        .filter(|id| c.node(0).placement_of(id.as_bytes()).primary() == Some(sim_key(1)))
        .take(20)
        .collect();
    assert!(!ids.is_empty(), "no session with node 1 as primary");
    let before = c.node(0).stats().copies_sent;
    for id in &ids {
        let _ = commit(&mut c, 1, id, "late");
    }
    c.run_for(ms(500));
    let sent = c.node(0).stats().copies_sent - before;
    assert_eq!(
        sent,
        0,
        "node 0 still forwards to the joiner it gave up on ({sent} copies for {} updates)",
        ids.len()
    );
    for id in &ids {
        assert_eq!(
            val(&c, j, id),
            Some(Bytes::from("late")),
            "{id} at the joiner"
        );
    }
}

/// Three members holding 300 sessions (`{prefix}0`.. with `v0`..), and a
/// fourth, returned, that has begun its state transfer and is joining.
fn joining_mid_transfer(session: SessionConfig, prefix: &str) -> (SimCluster, usize) {
    let mut c = SimCluster::started(SimConfig::default(), session, 3);
    for i in 0..300 {
        create_on_primary(&mut c, &format!("{prefix}{i}"), &format!("v{i}"));
    }
    c.run_for(ms(200));
    let j = c.add_node();
    c.run_for(ms(10));
    assert_eq!(c.node(j).state(), NodeState::Joining, "transfer too short");
    (c, j)
}
