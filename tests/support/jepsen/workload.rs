//! List-append clients and the history they record. Each client is a
//! thread bound to one slot (another live one while its node is down); it
//! appends unique elements to a few shared ("hot") sessions, where commits
//! contend, and to many others, and reads now and then.

use super::node::CallError;
use super::{Cluster, Rng};
use crate::listappend::{AppendResult, Elem, Event, OpKind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An append waits this long for its answer (the node's own bounds are
/// `accessTimeout` 5 s for the read plus 10 s for the ack).
pub const APPEND_WAIT: Duration = Duration::from_secs(25);
/// A read waits this long.
pub const READ_WAIT: Duration = Duration::from_secs(15);

/// The recorded operations, on one monotonic clock (ns since `t0`).
pub struct History {
    t0: Instant,
    events: Mutex<Vec<Event>>,
    /// Answers the harness could not interpret (each one a failure).
    pub harness_errors: Mutex<Vec<String>>,
    /// The node's words for every append not acknowledged: `(elem, node, answer)`.
    pub not_ok: Mutex<Vec<(Elem, String, String)>>,
    next_elem: AtomicU64,
}

impl History {
    /// An empty history whose clock starts at `t0`.
    pub fn new(t0: Instant) -> Arc<History> {
        Arc::new(History {
            t0,
            events: Mutex::new(Vec::new()),
            harness_errors: Mutex::new(Vec::new()),
            not_ok: Mutex::new(Vec::new()),
            next_elem: AtomicU64::new(1),
        })
    }

    /// Nanoseconds since `t0`.
    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// A fresh element, unique in this history.
    pub fn elem(&self) -> Elem {
        self.next_elem.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds one completed operation.
    pub fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Every session named in the history, sorted.
    pub fn sessions(&self) -> Vec<String> {
        crate::listappend::sessions_of(&self.events.lock().unwrap())
    }
}

/// Parses `[1,2,3]`.
pub fn parse_list(s: &str) -> Option<Vec<Elem>> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner.split(',').map(|e| e.parse().ok()).collect()
}

/// The outcome of one append as a client saw it.
pub fn append_outcome(
    answer: Result<String, CallError>,
) -> Result<(AppendResult, Option<Vec<Elem>>), String> {
    let a = match answer {
        Ok(a) => a,
        // The node died or stalled with the append in flight: unknown.
        Err(_) => return Ok((AppendResult::Info, None)),
    };
    let mut w = a.split_whitespace();
    let result = match w.next() {
        Some("ok") => AppendResult::Ok,
        Some("conflict") => AppendResult::Conflict,
        Some("fail") => AppendResult::Fail,
        Some("info") => AppendResult::Info,
        _ => return Err(format!("unexpected answer to append: {a}")),
    };
    let base = match w.next().and_then(|b| b.strip_prefix("base=")) {
        Some("-") => None,
        Some(l) => Some(parse_list(l).ok_or_else(|| format!("bad base in {a}"))?),
        None => return Err(format!("no base in {a}")),
    };
    Ok((result, base))
}

/// Appends `elem` to `session` through slot `slot`'s node and records it.
/// Returns the result (or the harness error).
pub fn append(
    cluster: &Cluster,
    hist: &History,
    process: u32,
    slot: usize,
    session: &str,
) -> Option<AppendResult> {
    let node = cluster.node(slot)?;
    let elem = hist.elem();
    let invoke = hist.now();
    let answer = node.call(&format!("append {session} {elem}"), APPEND_WAIT);
    let complete = hist.now();
    let words = match &answer {
        Ok(a) if a.starts_with("ok ") => None,
        Ok(a) => Some(
            a.split_whitespace()
                .filter(|w| !w.starts_with("base="))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Err(e) => Some(format!("{e:?}")),
    };
    if let Some(w) = words {
        hist.not_ok
            .lock()
            .unwrap()
            .push((elem, node.name.clone(), w));
    }
    match append_outcome(answer) {
        Ok((result, base)) => {
            hist.push(Event {
                process,
                invoke,
                complete,
                op: OpKind::Append {
                    session: session.to_string(),
                    elem,
                    base,
                    result,
                },
            });
            Some(result)
        }
        Err(e) => {
            hist.harness_errors
                .lock()
                .unwrap()
                .push(format!("{}: {e}", node.name));
            None
        }
    }
}

/// Reads `session` through slot `slot`'s node and records a successful
/// read. `Err` carries why the read failed (the node's answer).
pub fn read(
    cluster: &Cluster,
    hist: &History,
    process: u32,
    slot: usize,
    session: &str,
) -> Result<Vec<Elem>, String> {
    let node = cluster.node(slot).ok_or("slot down")?;
    let invoke = hist.now();
    let answer = node.call(&format!("read {session}"), READ_WAIT);
    let complete = hist.now();
    let value = match answer.as_deref() {
        Ok("notfound") => None,
        Ok(a) if a.starts_with("list ") => match parse_list(&a[5..]) {
            Some(l) => Some(l),
            None => {
                let e = format!("{}: bad read answer {a}", node.name);
                hist.harness_errors.lock().unwrap().push(e.clone());
                return Err(e);
            }
        },
        Ok(a) if a.starts_with("err corrupt") => {
            let e = format!("{}: {a}", node.name);
            hist.harness_errors.lock().unwrap().push(e.clone());
            return Err(e);
        }
        other => return Err(format!("{}: {other:?}", node.name)),
    };
    hist.push(Event {
        process,
        invoke,
        complete,
        op: OpKind::Read {
            session: session.to_string(),
            value: value.clone(),
        },
    });
    Ok(value.unwrap_or_default())
}

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Client threads per slot.
    pub clients_per_slot: usize,
    /// Shared sessions (`hot0`...) every client appends to.
    pub hot: usize,
    /// Other sessions (`s0`...), drawn at random.
    pub cold: usize,
    /// Share of operations that go to a hot session.
    pub hot_share: f64,
    /// Share of operations that are reads.
    pub read_share: f64,
    /// Pause between a client's operations (keeps the 2 cores usable).
    pub think: Duration,
    /// Every `epoch` the clients move on to new sessions, so that lists
    /// (and the history, which copies them) stay short in long runs.
    pub epoch: Duration,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            clients_per_slot: 3,
            hot: 3,
            cold: 150,
            hot_share: 0.4,
            read_share: 0.2,
            think: Duration::from_millis(5),
            epoch: Duration::from_secs(10),
        }
    }
}

/// Counts of what the clients got.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Appends per result: ok, conflict, fail, info.
    pub appends: [u64; 4],
    /// Successful reads.
    pub reads: u64,
    /// Reads that got no answer or an error.
    pub read_errors: u64,
}

/// Runs the clients until `stop`; returns what they got.
pub fn run_clients(
    cluster: Arc<Cluster>,
    hist: Arc<History>,
    mix: Mix,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut threads = Vec::new();
        for slot in 0..cluster.len() {
            for k in 0..mix.clients_per_slot {
                let id = slot * mix.clients_per_slot + k;
                let (cluster, hist, mix, stop) =
                    (cluster.clone(), hist.clone(), mix.clone(), stop.clone());
                let mut rng = Rng::new(seed.wrapping_add(1 + id as u64));
                threads.push(std::thread::spawn(move || {
                    let mut tally = Tally::default();
                    let mut gen = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let live = cluster.live();
                        if live.is_empty() {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                        let at = if live.contains(&slot) {
                            slot
                        } else {
                            live[rng.below(live.len() as u64) as usize]
                        };
                        let epoch = hist.now() / mix.epoch.as_nanos().max(1) as u64;
                        let session = if rng.chance(mix.hot_share) {
                            format!("e{epoch}hot{}", rng.below(mix.hot as u64))
                        } else {
                            format!("e{epoch}s{}", rng.below(mix.cold as u64))
                        };
                        // A client whose last op is unknown may still be in
                        // flight: it continues as a new process.
                        let process = (id as u32) * 1000 + gen;
                        if rng.chance(mix.read_share) {
                            match read(&cluster, &hist, process, at, &session) {
                                Ok(_) => tally.reads += 1,
                                Err(_) => tally.read_errors += 1,
                            }
                        } else if let Some(r) = append(&cluster, &hist, process, at, &session) {
                            let i = match r {
                                AppendResult::Ok => 0,
                                AppendResult::Conflict => 1,
                                AppendResult::Fail => 2,
                                AppendResult::Info => {
                                    gen += 1;
                                    3
                                }
                            };
                            tally.appends[i] += 1;
                        }
                        std::thread::sleep(mix.think);
                    }
                    tally
                }));
            }
        }
        let mut total = Tally::default();
        for t in threads {
            let t = t.join().expect("client thread");
            for i in 0..4 {
                total.appends[i] += t.appends[i];
            }
            total.reads += t.reads;
            total.read_errors += t.read_errors;
        }
        total
    })
}

/// After the nemesis: reads every session in the history on every live
/// node (retrying a failed read a few times). Returns the reads that never
/// succeeded.
pub fn final_reads(cluster: &Cluster, hist: &History) -> Vec<String> {
    let sessions = hist.sessions();
    let mut failed = Vec::new();
    for slot in cluster.live() {
        let process = 900_000 + slot as u32;
        for s in &sessions {
            let mut last = String::new();
            let ok = (0..5).any(|attempt| {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(500));
                }
                match read(cluster, hist, process, slot, s) {
                    Ok(_) => true,
                    Err(e) => {
                        last = e;
                        false
                    }
                }
            });
            if !ok {
                failed.push(format!("final read of {s} on slot {slot}: {last}"));
            }
        }
    }
    failed
}
