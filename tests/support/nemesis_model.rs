//! The model of the deterministic nemesis simulation
//! (`tests/session_nemesis.rs`): a schedule's knobs, a client's state, the
//! list codec of the list-append workload, and the seeds it runs.

use super::listappend::Elem;
use bytes::Bytes;
use sessionrepl::session::{CommitTicket, Session};
use std::time::{Duration, Instant};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub const ATTR: &[u8] = b"l";

/// The list stored in a session's attribute `l`: elements, comma-separated.
pub fn list_of(s: &Session) -> Vec<Elem> {
    match s.attribute(ATTR) {
        None => Vec::new(),
        Some(b) if b.is_empty() => Vec::new(),
        Some(b) => std::str::from_utf8(b)
            .expect("utf-8 list")
            .split(',')
            .map(|x| x.parse().expect("element"))
            .collect(),
    }
}

pub fn encode(l: &[Elem]) -> Bytes {
    let v: Vec<String> = l.iter().map(|e| e.to_string()).collect();
    Bytes::from(v.join(","))
}

/// One nemesis schedule's knobs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub nodes: usize,
    pub backups: usize,
    pub sessions: usize,
    pub clients: usize,
    pub chaos: Duration,
    /// `minCommitCopies=2`, and the nemesis also cuts one member off with
    /// membership noticing on both sides (a minority of one).
    pub isolate: bool,
}

impl Plan {
    pub fn of(seed: u64) -> Plan {
        let mut r = sessionrepl::session::sim::SimRng::new(seed ^ 0x5eed);
        Plan {
            seed,
            nodes: 3 + r.below(3) as usize,
            backups: 1 + r.below(2) as usize,
            sessions: 3 + r.below(6) as usize,
            clients: 3 + r.below(6) as usize,
            chaos: ms(1500 + r.below(1500)),
            isolate: r.chance(0.5),
        }
    }
}

#[derive(Debug)]
pub enum Step {
    /// Waiting until `at` to start the next operation.
    Idle { at: Instant },
    /// A read (for an append: `elem`) waiting for the node's answer.
    Reading {
        session: String,
        elem: Option<Elem>,
        invoke: u64,
    },
    /// A commit waiting for its ticket's outcome.
    Committing {
        session: String,
        elem: Elem,
        base: Vec<Elem>,
        ticket: CommitTicket,
        invoke: u64,
    },
}

pub struct Client {
    pub process: u32,
    pub node: usize,
    pub step: Step,
}

/// The seeds to run besides the fixed ones: `SIM_SEEDS=N` (N random
/// seeds from 1000) or `SIM_SEEDS=A-B`.
pub fn seeds_from_env(default: u64) -> Vec<u64> {
    match std::env::var("SIM_SEEDS") {
        Ok(v) => match v.split_once('-') {
            Some((a, b)) => (a.trim().parse().unwrap()..=b.trim().parse().unwrap()).collect(),
            None => (1000..1000 + v.trim().parse::<u64>().unwrap()).collect(),
        },
        Err(_) => (1000..1000 + default).collect(),
    }
}

/// Seeds that found a bug, each run on every `make test`. (A seed's
/// schedule shifts when the code changes; each bug also has a named test
/// in `tests/session_occ.rs` / `tests/session_terms.rs` or a rule in
/// `docs/SESSIONS.md`.)
pub const FIXED_SEEDS: &[(u64, &str)] = &[
    (1000, "stale copy taken over as primary: divergent lists; a forward delivered twice ran twice and answered Conflict"),
    (1004, "append invoke recorded at commit instead of read: checker saw a stale read (harness bug)"),
    (1005, "conflict decided against an unacknowledged commit that later vanished: spurious conflict"),
    (2000, "a read joining a fetch already in flight got an answer older than itself: stale read"),
    (2112, "drain notice lost and never resent: a member kept placing sessions on a drained node"),
    (2379, "drain raced a forwarded commit: the new primary started a term on an older base, an acked append lost"),
    (2385, "primary promoted after a crash served a state another holder lacked; a later drain lost it"),
    (9390, "a member primary again after a drain reused its old term: a holder kept the drained primary's unknown commit over a later acknowledged one"),
    (14832, "a re-replication copy to a cut-off new holder was dropped after its retries and under_replicated fell to 0: the nemesis crashed the last holder, an acked session lost"),
    (10703, "a donor gave up on a joiner cut off mid-transfer: the joiner stayed Joining until stateTransferTimeout, a final read never answered"),
    (16467, "the same as 14832 (a dropped re-replication copy, under_replicated 0 with one copy left): acked appends lost"),
    (2249, "a primary cut off (membership noticed) created a session nobody acknowledged; the majority's create of the same id was in the same term and lost the tie after the heal: an acked append lost"),
    (2391, "a member joined while another drained and never heard its leaving notice: it released its copy to the draining member and the primary counted it as a holder; the next drain lost the session"),
    (61470, "a member released its copy while the new primary, whose placement had it as a holder again, sent it a re-replication copy: the member acknowledged that copy, the primary acknowledged the release, and the member dropped a copy the primary counted; the primary crashed and acked appends were lost"),
    (80985, "a holder acknowledged the release of a copy by a member its own placement still counted as a holder (views one drain apart): the copy was dropped, the member that held the other copy drained, and the new primary had none: acked appends lost"),
];
