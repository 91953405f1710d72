//! Jepsen-style nemesis tests of the session store with real processes
//! (issue 11: nothing acknowledged is ever lost).
//!
//! Store nodes run as `sessionrepl store-node` processes; concurrent
//! list-append clients drive them while a seeded nemesis kills (SIGKILL),
//! pauses (SIGSTOP/SIGCONT), restarts right after a kill (inside failure
//! detection), drains, and — in network namespaces — partitions them. After
//! healing, every session is read on every node and the whole history goes
//! through the list-append checker (`tests/support/listappend.rs`).
//!
//! Knobs: `JEPSEN_SEED` replays a schedule (every run prints its seed),
//! `JEPSEN_SECS` sets how long the nemesis runs (CI: a short default),
//! `JEPSEN_SET="k=v k=v"` adds store settings to every node.
//! On failure (or with `JEPSEN_DUMP=1`) the nemesis log and the history are
//! written to a file whose path is printed.

#[path = "../../tests/support/listappend.rs"]
mod listappend;

#[path = "../../tests/support/jepsen/mod.rs"]
mod jepsen;

#[path = "../../tests/store_util/mod.rs"]
mod store_util;

use jepsen::nemesis::{self, Faults, Partitioner};
use jepsen::report;
use jepsen::workload::{self, History, Mix};
use jepsen::{Cluster, SlotSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Store settings from `JEPSEN_SET`.
fn extra_settings() -> Vec<String> {
    std::env::var("JEPSEN_SET")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// One run's shape.
struct Plan {
    name: &'static str,
    seed: u64,
    secs: u64,
    backups: usize,
    specs: Vec<SlotSpec>,
    faults: Faults,
    mix: Mix,
}

/// Runs the workload under the nemesis, heals, reads everything back and
/// checks the history; panics with the anomalies (and the seed) if any.
fn run(plan: Plan, partition: Option<Partitioner<'_>>) {
    // One nemesis run at a time: on 2 cores, two at once would mostly test
    // the scheduler (nodes starved past the 1 s failure detection).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let n = plan.specs.len();
    let steps = nemesis::schedule(plan.seed, n, plan.backups, plan.faults, 500);
    eprintln!(
        "jepsen {}: seed={} (replay: JEPSEN_SEED={}) nodes={n} backupCount={} secs={} settings={:?}",
        plan.name, plan.seed, plan.seed, plan.backups, plan.secs, plan.specs[0].settings
    );
    let preview: Vec<String> = steps.iter().take(8).map(|s| s.fault.to_string()).collect();
    eprintln!(
        "jepsen {}: schedule begins: {}",
        plan.name,
        preview.join("; ")
    );
    let cluster = Arc::new(Cluster::new(plan.specs, t0));
    for i in 0..n {
        cluster.spawn(i).expect("initial node");
    }
    cluster
        .converge(nemesis::CONVERGE)
        .expect("initial membership");
    let hist = History::new(t0);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = workload::run_clients(
        cluster.clone(),
        hist.clone(),
        plan.mix,
        plan.seed,
        stop.clone(),
    );
    let until = Instant::now() + Duration::from_secs(plan.secs);
    let mut problems = nemesis::run(&cluster, &steps, until, partition);
    // Heal: every slot up (a failed restart is retried once), all seen.
    for i in 0..n {
        if cluster.node(i).is_none() {
            if let Err(e) = cluster.spawn(i) {
                problems.push(format!("final restart of n{i}: {e}"));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let tally = clients.join().expect("clients");
    nemesis::settle(&cluster, &mut problems);
    let unread = workload::final_reads(&cluster, &hist);
    eprintln!(
        "jepsen {}: seed={} appends ok/conflict/fail/info={:?} reads={} read_errors={}",
        plan.name, plan.seed, tally.appends, tally.reads, tally.read_errors
    );
    let replay = format!("seed={} (replay with JEPSEN_SEED={})", plan.seed, plan.seed);
    report::judge(plan.name, &replay, &cluster, &hist, problems, unread);
    assert!(tally.appends[0] > 0, "no append was acknowledged at all");
}

/// 4 nodes with 1 backup, or 5 with 2 (by seed), on 127.0.0.1: SIGKILL,
/// kill-and-rejoin inside failure detection, SIGSTOP pauses, drains.
#[test]
fn loopback_nemesis_loses_no_acknowledged_append() {
    let seed = jepsen::seed();
    let (n, backups) = if seed % 2 == 0 { (4, 1) } else { (5, 2) };
    let mut settings = store_util::cluster_settings(&[&format!("backupCount={backups}")]);
    settings.extend(extra_settings());
    let specs = (0..n)
        .map(|_| SlotSpec {
            prefix: Vec::new(),
            settings: settings.clone(),
        })
        .collect();
    run(
        Plan {
            name: "loopback",
            seed,
            secs: jepsen::secs(20),
            backups,
            specs,
            faults: Faults {
                kill: true,
                pause: true,
                drain: true,
                partition: false,
            },
            mix: Mix {
                clients_per_slot: if n == 4 { 3 } else { 2 },
                think: Duration::from_millis(15),
                ..Mix::default()
            },
        },
        None,
    );
}

/// 3 nodes with 1 backup, each in its own network namespace: partitions
/// (one node cut off from the others, then healed), kills and pauses.
#[test]
fn netns_partition_nemesis_loses_no_acknowledged_append() {
    if let Some(why) = jepsen::netns::unavailable() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "netns partition test cannot run under CI: {why}"
        );
        eprintln!("SKIP netns_partition_nemesis: {why}");
        return;
    }
    let n = 3;
    let lab = match jepsen::netns::Lab::build(n) {
        Ok(l) => l,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "netns partition test cannot build its namespaces under CI: {e}"
            );
            eprintln!("SKIP netns_partition_nemesis: {e}");
            return;
        }
    };
    let seed = jepsen::seed();
    let pid = std::process::id();
    let specs = (0..n)
        .map(|i| {
            let ip = lab.host_ip(i);
            let mut settings: Vec<String> = vec![
                "membershipType=multicast".into(),
                format!("mcastAddr=239.215.{}.1", pid % 250),
                "mcastPort=45566".into(),
                format!("mcastBindAddress={ip}"),
                "mcastTTL=1".into(),
                "mcastFrequency=100".into(),
                "mcastDropTime=1000".into(),
                format!("domain=jepsen-netns-{pid}"),
                format!("tcpListenAddress={ip}"),
                "tcpListenPort=4000".into(),
                "replicationMode=fastasyncqueue".into(),
                "backupCount=1".into(),
                // The side a partition cuts off must refuse commits rather
                // than acknowledge them with one copy.
                "minCommitCopies=2".into(),
            ];
            settings.extend(extra_settings());
            SlotSpec {
                prefix: lab.prefix(i),
                settings,
            }
        })
        .collect();
    let cut = |slot: usize, up: bool| lab.link(slot, up);
    run(
        Plan {
            name: "netns",
            seed,
            secs: jepsen::secs(15),
            backups: 1,
            specs,
            faults: Faults {
                kill: true,
                pause: true,
                drain: false,
                partition: true,
            },
            mix: Mix {
                think: Duration::from_millis(15),
                ..Mix::default()
            },
        },
        Some(&cut),
    );
    drop(lab);
}
