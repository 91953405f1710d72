//! The three losses of issue 11, reproduced with real `store-node`
//! processes on 127.0.0.1 and judged by the list-append checker:
//!
//! 1. a node joins while the others have not yet noticed a SIGKILLed
//!    primary (inside failure detection);
//! 2. a non-holder's cached copy, stale after the primary died, must not be
//!    served or committed on;
//! 3. twenty concurrent appends to one cart, on one node and across nodes:
//!    each is applied or refused with a conflict, none lost.

#[path = "../../tests/support/listappend.rs"]
mod listappend;

#[path = "../../tests/support/jepsen/mod.rs"]
mod jepsen;

#[path = "../../tests/store_util/mod.rs"]
mod store_util;

use jepsen::workload::{self, History};
use jepsen::{nemesis, report, Cluster, SlotSpec};
use listappend::AppendResult;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A cluster of `slots` slots (all alike, `backupCount=1`), the first
/// `start` of them started and seeing each other.
fn cluster(slots: usize, start: usize, extra: &[&str]) -> (Arc<Cluster>, Arc<History>) {
    let t0 = Instant::now();
    let mut settings = store_util::cluster_settings(&["backupCount=1"]);
    settings.extend(extra.iter().map(|s| s.to_string()));
    settings.extend(
        std::env::var("JEPSEN_SET")
            .map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    let specs = (0..slots)
        .map(|_| SlotSpec {
            prefix: Vec::new(),
            settings: settings.clone(),
        })
        .collect();
    let c = Arc::new(Cluster::new(specs, t0));
    for i in 0..start {
        c.spawn(i).expect("node starts");
    }
    c.converge(nemesis::CONVERGE).expect("initial membership");
    (c, History::new(t0))
}

/// Heals nothing (the test did), waits for the cluster to settle, reads
/// every session on every live node and judges the history.
fn finish(name: &str, c: &Cluster, h: &History) -> listappend::Report {
    let mut problems = Vec::new();
    nemesis::settle(c, &mut problems);
    let unread = workload::final_reads(c, h);
    report::judge(name, "(a fixed schedule)", c, h, problems, unread)
}

/// Appends once to each session through `slot`, one thread per session,
/// all at once; returns the results.
fn append_all(
    c: &Arc<Cluster>,
    h: &Arc<History>,
    process: u32,
    slot: usize,
    sessions: &[String],
) -> Vec<Option<AppendResult>> {
    let threads: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let (c, h, s) = (c.clone(), h.clone(), s.clone());
            std::thread::spawn(move || workload::append(&c, &h, process + k as u32, slot, &s))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Finding 1: 100 sessions acknowledged on 3 nodes (1 backup); one node is
/// SIGKILLed and a fourth joins at once, before failure detection (the
/// default drop time, 3 s) removed the dead one. Every session must survive
/// on every node.
#[test]
fn join_inside_failure_detection_after_sigkill_loses_no_session() {
    let (c, h) = cluster(4, 3, &["mcastFrequency=500", "mcastDropTime=3000"]);
    let sessions: Vec<String> = (0..100).map(|i| format!("j{i}")).collect();
    for (i, chunk) in sessions.chunks(20).enumerate() {
        let r = append_all(&c, &h, 100 * i as u32, i % 3, chunk);
        assert!(
            r.iter().all(|r| *r == Some(AppendResult::Ok)),
            "setup appends: {r:?}"
        );
    }
    let victim = c.take(1).unwrap();
    victim.sigkill();
    c.note(format!("{} SIGKILLed", victim.name));
    c.spawn(3).expect("joiner ready"); // ~1.3 s: inside the 3 s drop time
    let r = finish("join-after-kill", &c, &h);
    assert_eq!(r.appends_ok, 100, "{r}");
}

/// Finding 2: sessions held by A (primary) and B, read once by C (which
/// caches that version); A then commits three more times and is SIGKILLed
/// (or SIGSTOPped for 2.5 s: no RST, its fetches time out instead). C keeps
/// appending for 3.5 s, through failure detection (1 s) and the moment
/// placement makes C a holder: it must never commit on its stale copy (an
/// OK on that base loses A's three commits).
fn stale_cache(name: &str, pause: bool) {
    let (c, h) = cluster(3, 3, &["accessTimeout=1000"]);
    let (a, b, cc) = (0, 1, 2);
    let addr = |i: usize| c.node(i).unwrap().addr.clone();
    let want = format!("holders {} {}", addr(a), addr(b));
    let ask = c.node(cc).unwrap();
    let sessions: Vec<String> = (0..5000)
        .map(|k| format!("st{k}"))
        .filter(|s| {
            ask.call(&format!("holders {s}"), Duration::from_secs(10))
                .as_deref()
                == Ok(&want)
        })
        .take(20)
        .collect();
    assert_eq!(sessions.len(), 20, "sessions placed on A then B");
    for round in 0..2 {
        append_all(&c, &h, 1000 + 100 * round, a, &sessions);
    }
    for (k, s) in sessions.iter().enumerate() {
        workload::read(&c, &h, 3000 + k as u32, cc, s).expect("C caches a copy");
    }
    for round in 0..3 {
        let r = append_all(&c, &h, 4000 + 100 * round, a, &sessions);
        assert!(r.iter().all(|r| *r == Some(AppendResult::Ok)), "{r:?}");
    }
    let victim = if pause {
        let v = c.node(a).unwrap();
        v.pause();
        c.note(format!("{} (primary) SIGSTOPped", v.name));
        Some(v)
    } else {
        let v = c.take(a).unwrap();
        v.sigkill();
        c.note(format!("{} (primary) SIGKILLed", v.name));
        None
    };
    let until = Instant::now() + Duration::from_millis(3500);
    if let Some(v) = victim {
        std::thread::sleep(Duration::from_millis(2500));
        v.resume();
        c.note(format!("{} SIGCONTinued", v.name));
    }
    let threads: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let (c, h, s) = (c.clone(), h.clone(), s.clone());
            std::thread::spawn(move || {
                let mut process = 10_000 + 100 * k as u32;
                while Instant::now() < until {
                    let r = workload::append(&c, &h, process, cc, &s);
                    if r == Some(AppendResult::Info) {
                        process += 1;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = finish(name, &c, &h);
    assert!(r.appends_ok >= 100, "{r}");
}

#[test]
fn stale_cached_copy_after_primary_sigkill_is_never_committed_on() {
    stale_cache("stale-cache-kill", false);
}

#[test]
fn stale_cached_copy_while_primary_paused_is_never_committed_on() {
    stale_cache("stale-cache-pause", true);
}

/// Finding 3: 20 appends to one cart at once, sent through `nodes` (one
/// node, or spread over three). Each is acknowledged or refused with a
/// conflict, never failed, and none acknowledged is lost.
fn twenty_concurrent_appends(name: &str, spread: bool) {
    let (c, h) = cluster(3, 3, &[]);
    let first = workload::append(&c, &h, 1, 0, "cart");
    assert_eq!(first, Some(AppendResult::Ok));
    for slot in 0..3 {
        workload::read(&c, &h, 2 + slot as u32, slot, "cart").expect("read");
    }
    let go = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|k| {
            let (c, h, go) = (c.clone(), h.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                let slot = if spread { k % 3 } else { 0 };
                workload::append(&c, &h, 100 + k as u32, slot, "cart")
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    c.note(format!("{name}: {results:?}"));
    let r = finish(name, &c, &h);
    assert_eq!(
        (r.appends_fail, r.appends_info),
        (0, 0),
        "every append is acknowledged or a conflict: {results:?}"
    );
    assert!(r.appends_ok >= 2, "{r}");
}

#[test]
fn twenty_concurrent_appends_to_one_cart_on_one_node_lose_nothing() {
    twenty_concurrent_appends("cart-one-node", false);
}

#[test]
fn twenty_concurrent_appends_to_one_cart_across_nodes_lose_nothing() {
    twenty_concurrent_appends("cart-across-nodes", true);
}
