//! Releasing a copy this node no longer holds by placement (hand-off
//! before release) when two members' placements differ for a while (a
//! view change one of them has not seen yet): the copy is dropped only
//! once no member counts it. The nemesis seeds 61470 and 80985 lost
//! acknowledged appends this way (`tests/support/nemesis_model.rs`); these
//! tests take the two rules apart on a simulated cluster.

mod sim_util;

use bytes::Bytes;
use sessionrepl::session::sim::{sim_key, SimCluster, SimConfig};
use sessionrepl::session::{CopyReason, Message, Reject, Session, SessionImage};
use sim_util::*;
use std::time::Instant;

/// A session-store `Copy` message of `s`, as a member would send it.
fn copy_message(reason: CopyReason, s: &Session, now: Instant) -> Bytes {
    Message::Copy {
        reason,
        session: SessionImage::of(s, now),
    }
    .encode()
}

fn three() -> SimCluster {
    SimCluster::started(SimConfig::default(), backup(), 3)
}

/// A holder refuses a release from a member that its own placement still
/// has as a holder of the session (it may already count that copy): the
/// sender keeps the copy. From a member that is no holder, the release is
/// taken as before.
#[test]
fn a_release_from_a_member_this_placement_counts_as_holder_is_refused() {
    let mut c = three();
    let p = create_on_primary(&mut c, "s", "v1");
    c.run_for(ms(300));
    let h = c.node(0).placement_of(b"s");
    let backup_i = (0..3)
        .find(|i| *i != p && h.contains(&sim_key(*i)))
        .unwrap();
    let out = without_copy(&c, "s");
    let s = c.node(p).peek(b"s").unwrap().clone();

    let from_holder = copy_message(CopyReason::Release, &s, c.now());
    let r = c.with(p, |n, now| {
        n.handle_message(sim_key(backup_i), from_holder, now)
    });
    assert_eq!(r, Err(Reject::StillHolder));

    let from_outsider = copy_message(CopyReason::Release, &s, c.now());
    let r = c.with(p, |n, now| {
        n.handle_message(sim_key(out), from_outsider, now)
    });
    assert_eq!(
        r,
        Ok(()),
        "a release from a member that holds nothing by placement"
    );
}

/// A member releasing a copy that another member sends it (a copy or a
/// delta, acknowledged: that member now counts the copy here) stops the
/// release and keeps the copy, even when the release's holders then
/// acknowledge it.
#[test]
fn a_copy_counted_by_another_member_during_its_release_is_kept() {
    let mut c = three();
    let p = create_on_primary(&mut c, "s", "v1");
    c.run_for(ms(300));
    let out = without_copy(&c, "s");
    let s = c.node(p).peek(b"s").unwrap().clone();
    // The outsider gets a copy (as a member whose view placed it there
    // would send it), then holds one it does not hold by placement.
    let copy = copy_message(CopyReason::Rebalance, &s, c.now());
    c.with(out, |n, now| n.handle_message(sim_key(p), copy, now))
        .unwrap();
    assert!(c.node(out).peek(b"s").is_some());
    // Its sweeps start the release (two sweeps without holding it); the
    // holders are paused so that their acknowledgements wait.
    let holders: Vec<usize> = (0..3).filter(|i| *i != out).collect();
    let mut waited = ms(0);
    while c.node(out).stats().handoffs_in_progress == 0 {
        assert!(waited < ms(10_000), "the release never started");
        c.run_for(ms(10));
        waited += ms(10);
    }
    for &i in &holders {
        c.pause(i, ms(200));
    }
    // Meanwhile a member sends it the session again: it counts this copy.
    let again = copy_message(CopyReason::Rebalance, &s, c.now());
    c.with(out, |n, now| n.handle_message(sim_key(p), again, now))
        .unwrap();
    c.run_for(ms(500));
    assert_eq!(c.node(out).stats().handoffs_in_progress, 0);
    assert!(
        c.node(out).peek(b"s").is_some(),
        "the copy another member counts was dropped when the release's holders acknowledged"
    );
}
