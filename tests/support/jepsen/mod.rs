//! A Jepsen-style harness for the session store with real processes: store
//! nodes (`sessionrepl store-node`) on 127.0.0.1 or in network namespaces,
//! concurrent list-append clients, a seeded nemesis (SIGKILL, SIGSTOP,
//! join right after a kill, drain, partition), and a history checked by
//! `tests/support/listappend.rs`.
//!
//! The tests that use it live in `cli/tests/` (the `sessionrepl` binary is
//! the cli crate's) and include it with `#[path]`, next to
//! `tests/support/listappend.rs` as `mod listappend` at their root.
#![allow(dead_code)]

pub mod nemesis;
pub mod netns;
pub mod node;
pub mod report;
pub mod workload;

use node::NodeProc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A small seeded generator (splitmix64, like the simulation's, which is
/// behind the `sim` feature): schedules replay from the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The seed of this run: `JEPSEN_SEED`, else drawn from the clock.
pub fn seed() -> u64 {
    std::env::var("JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// Seconds of workload under the nemesis: `JEPSEN_SECS`, else `default`.
pub fn secs(default: u64) -> u64 {
    std::env::var("JEPSEN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// How to start the node of one slot (every incarnation alike).
#[derive(Debug, Clone)]
pub struct SlotSpec {
    /// Command prefix: empty, or `ip netns exec <ns>`.
    pub prefix: Vec<String>,
    /// `key=value` settings passed as `--set`.
    pub settings: Vec<String>,
}

/// The nodes of a test, one slot each; a slot is empty while its node is
/// down, and a restart puts a new incarnation in it.
pub struct Cluster {
    specs: Vec<SlotSpec>,
    nodes: Vec<RwLock<Option<Arc<NodeProc>>>>,
    incarnation: Vec<AtomicU32>,
    t0: Instant,
    log: Mutex<Vec<String>>,
}

/// How long a starting node may take to say `ready` (a joiner's state
/// transfer included), generous for a loaded 2-core machine.
pub const READY_WAIT: Duration = Duration::from_secs(90);

impl Cluster {
    /// An empty cluster; `t0` is the history's clock origin.
    pub fn new(specs: Vec<SlotSpec>, t0: Instant) -> Cluster {
        let n = specs.len();
        Cluster {
            specs,
            nodes: (0..n).map(|_| RwLock::new(None)).collect(),
            incarnation: (0..n).map(|_| AtomicU32::new(0)).collect(),
            t0,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Milliseconds since `t0`.
    pub fn ms(&self) -> u128 {
        self.t0.elapsed().as_millis()
    }

    /// Records (and prints) one line of what the harness did.
    pub fn note(&self, what: String) {
        let line = format!("[{:>7} ms] {what}", self.ms());
        eprintln!("jepsen: {line}");
        self.log.lock().unwrap().push(line);
    }

    /// Everything noted so far.
    pub fn notes(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The node in slot `i`, if it is up.
    pub fn node(&self, i: usize) -> Option<Arc<NodeProc>> {
        self.nodes[i].read().unwrap().clone()
    }

    /// Slots whose node is up.
    pub fn live(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.node(i).is_some())
            .collect()
    }

    /// Starts a new incarnation in slot `i` and waits for it to be ready.
    ///
    /// # Errors
    /// The node did not become ready.
    pub fn spawn(&self, i: usize) -> Result<(), String> {
        let inc = self.incarnation[i].fetch_add(1, Ordering::Relaxed);
        let name = format!("n{i}.{inc}");
        let t = Instant::now();
        let spec = &self.specs[i];
        let node = NodeProc::start(name.clone(), &spec.prefix, &spec.settings, READY_WAIT)?;
        self.note(format!(
            "{name} ready at {} after {} ms",
            node.addr,
            t.elapsed().as_millis()
        ));
        *self.nodes[i].write().unwrap() = Some(Arc::new(node));
        Ok(())
    }

    /// Empties slot `i` (clients stop choosing it) and returns its node.
    pub fn take(&self, i: usize) -> Option<Arc<NodeProc>> {
        self.nodes[i].write().unwrap().take()
    }

    /// Waits until every live node sees all the other live nodes.
    ///
    /// # Errors
    /// Names the nodes that did not within `timeout`.
    pub fn converge(&self, timeout: Duration) -> Result<(), String> {
        let live = self.live();
        let want = live.len().saturating_sub(1);
        let ms = timeout.as_millis();
        let mut bad = Vec::new();
        for i in &live {
            let Some(n) = self.node(*i) else { continue };
            let r = n.call(
                &format!("waitmembers {want} {ms}"),
                timeout + Duration::from_secs(30),
            );
            match r {
                Ok(a) if a == format!("members n={want}") => {}
                other => bad.push(format!("{}: {other:?} (want {want})", n.name)),
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }

    /// Stops every node (SIGKILL).
    pub fn kill_all(&self) {
        for i in 0..self.len() {
            if let Some(n) = self.take(i) {
                n.sigkill();
            }
        }
    }
}
