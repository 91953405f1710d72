//! S6 (session-commit) and S7 (state-transfer): two [`SessionStore`]s on
//! loopback, multicast membership on 127.0.0.1 (TTL 1, a group and port of
//! this run's own).

use super::{payload, BenchLine, LatencyRecorder, Scenario};
use bytes::Bytes;
use sessionrepl::session::{CommitHandle, SessionStore};
use sessionrepl::Config;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
/// Commits in flight (a server's concurrent requests) in the throughput runs.
const WINDOW: usize = 256;
/// Sessions the commits cycle over.
const SESSIONS: usize = 100;
/// Copies of each session: the primary and `backupCount` = 1.
const COPIES: usize = 2;

fn config(io: &str, run: u32) -> sessionrepl::Result<Config> {
    let pid = std::process::id();
    let mut c = super::run::bench_config()?;
    for (k, v) in [
        ("membershipType", "multicast".to_string()),
        (
            "mcastAddr",
            format!("239.253.{}.{}", pid % 250, run % 250 + 1),
        ),
        (
            "mcastPort",
            format!("{}", 30_000 + (pid * 7 + run * 11) % 20_000),
        ),
        ("mcastBindAddress", "127.0.0.1".into()),
        ("mcastTTL", "1".into()),
        ("mcastFrequency", "50".into()),
        ("mcastDropTime", "2000".into()),
        ("domain", format!("bench-{pid}-{run}")),
        ("replicationMode", "fastasyncqueue".into()),
        ("sessionMode", "backup".into()),
        ("backupCount", "1".into()),
        ("ioBackend", io.into()),
    ] {
        c.set(k, &v)?;
    }
    Ok(c)
}

fn pair(io: &str, run: u32) -> sessionrepl::Result<(SessionStore, SessionStore)> {
    let a = SessionStore::open(config(io, run)?)?;
    a.wait_ready(WAIT)?;
    let b = SessionStore::open(config(io, run)?)?;
    b.wait_ready(WAIT)?;
    let deadline = Instant::now() + WAIT;
    while a.members().is_empty() || b.members().is_empty() {
        if Instant::now() > deadline {
            return Err(sessionrepl::Error::Timeout);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((a, b))
}

/// One S6 workload: `attrs` attributes of `size` bytes changed per commit.
fn commits(
    a: &SessionStore,
    name: &str,
    count: u64,
    attrs: usize,
    size: usize,
    window: usize,
) -> sessionrepl::Result<BenchLine> {
    let value = Bytes::from(payload(size));
    let names: Vec<Bytes> = (0..attrs)
        .map(|i| Bytes::from(format!("attr{i}")))
        .collect();
    // Sessions whose primary is the committing node, as a sticky load
    // balancer would arrange.
    let mut ids = Vec::new();
    let mut k = 0u64;
    while ids.len() < SESSIONS {
        let id = Bytes::from(format!("{name}-w{window}-{k}"));
        k += 1;
        if a.is_primary_for(&id) {
            let mut t = a.begin(id.clone());
            t.set(names[0].clone(), value.clone());
            expect_copies(a.create(t)?.wait(WAIT)?)?;
            ids.push(id);
        }
    }
    let run = |n: u64, lat: &mut LatencyRecorder| -> sessionrepl::Result<Duration> {
        let mut inflight: VecDeque<CommitHandle> = VecDeque::with_capacity(window);
        let t0 = Instant::now();
        for i in 0..n {
            let mut t = a.begin(ids[i as usize % ids.len()].clone());
            for nm in &names {
                t.set(nm.clone(), value.clone());
            }
            inflight.push_back(a.commit(t)?);
            if inflight.len() >= window {
                let h = inflight.pop_front().expect("non-empty");
                expect_copies(h.wait(WAIT)?)?;
                lat.record(h.latency().unwrap_or_default());
            }
        }
        for h in inflight {
            expect_copies(h.wait(WAIT)?)?;
            lat.record(h.latency().unwrap_or_default());
        }
        Ok(t0.elapsed())
    };
    let mut warm = LatencyRecorder::with_capacity(1024);
    run((count / 10).max(100), &mut warm)?;
    let mut lat = LatencyRecorder::with_capacity(count as usize);
    let el = run(count, &mut lat)?;
    Ok(BenchLine::measured(
        Scenario::S6,
        "sessionrepl",
        count,
        (attrs * size) as u64,
        el,
    )
    .with_latency(lat.percentiles())
    .with_extra("workload", name)
    .with_extra("window", window))
}

/// Every commit must reach the primary and its one backup.
fn expect_copies(copies: usize) -> sessionrepl::Result<()> {
    if copies != COPIES {
        return Err(sessionrepl::Error::Protocol(format!(
            "a commit reached {copies} copies, not {COPIES}"
        )));
    }
    Ok(())
}

/// S6: 1 KiB deltas (`count` × 10, the ≥100k commits/s goal) with 256
/// commits in flight, and one at a time (latency without queueing); 100
/// attributes × 1 KiB; one 100 KiB attribute; one backup.
///
/// # Errors
/// Whatever failed in the stores.
pub fn s6(count: u64, io: &str) -> sessionrepl::Result<Vec<BenchLine>> {
    let (a, b) = pair(io, 6)?;
    let lines = vec![
        commits(&a, "delta-1k", count * 10, 1, 1024, WINDOW)?,
        commits(&a, "delta-1k", count, 1, 1024, 1)?,
        commits(&a, "attrs-100x1k", count, 100, 1024, WINDOW)?,
        commits(&a, "attr-100k", count, 1, 100 * 1024, WINDOW)?,
    ];
    a.close();
    b.close();
    Ok(lines)
}

/// S7: a node holding `count` sessions of `size` bytes; a second node
/// joins; seconds from the joiner's `open` until it is ready (member
/// discovery included).
///
/// # Errors
/// Whatever failed in the stores.
pub fn s7(count: u64, size: usize, io: &str) -> sessionrepl::Result<BenchLine> {
    let a = SessionStore::open(config(io, 7)?)?;
    a.wait_ready(WAIT)?;
    let value = Bytes::from(payload(size));
    let mut last = None;
    for i in 0..count {
        let mut t = a.begin(Bytes::from(format!("s7-{i}")));
        t.set(Bytes::from_static(b"data"), value.clone());
        last = Some(a.create(t)?);
    }
    if let Some(h) = last {
        h.wait(WAIT)?;
    }
    let t0 = Instant::now();
    let b = SessionStore::open(config(io, 7)?)?;
    b.wait_ready(WAIT)?;
    let took = t0.elapsed();
    let got = b.stats().sessions_transferred;
    a.close();
    b.close();
    if got < count {
        return Err(sessionrepl::Error::Protocol(format!(
            "joiner received {got} of {count} sessions"
        )));
    }
    Ok(BenchLine::measured(
        Scenario::S7,
        "sessionrepl",
        count,
        size as u64,
        took,
    ))
}
