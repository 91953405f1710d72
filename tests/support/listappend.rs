//! A list-append history checker in the manner of Jepsen's `elle`
//! list-append workload, for the session store's guarantee (docs/SESSIONS.md):
//! per session, acknowledged commits form one order that every later read
//! reflects.
//!
//! The workload: each session holds a list of unique elements. A client
//! appends by read-modify-write: it reads the session (its `base`), commits
//! `base ++ [elem]` with the base version, and records the result. A client
//! reads by `get`. Times are nanoseconds on one monotonic clock (virtual in
//! the simulation, the test process's clock with real processes); an
//! operation happened somewhere in `[invoke, complete]`.
//!
//! Rules checked per session (a violation is an anomaly with its evidence):
//! - **one order**: every observed list (reads and the bases of appends) is a
//!   prefix of the longest one; no element appears twice;
//! - **no phantom**: every element seen was appended to this session by an
//!   append that did not fail or conflict;
//! - **no lost update**: an acknowledged append is in every list observed by
//!   an operation invoked after the append completed;
//! - **no going back in time**: an observation that starts after another
//!   completed is at least as long;
//! - **right place**: an applied append's element sits right after its base
//!   (the base was current when it committed);
//! - **genuine conflicts**: a `Conflict` append's base was overtaken: the
//!   element at position `len(base)` was appended by another operation that
//!   was invoked before the conflict was reported.
//!
//! Each test file includes this with `#[path = "support/listappend.rs"]`.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

/// One appended element; unique over the whole history.
pub type Elem = u64;

/// What the store answered to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendResult {
    /// Acknowledged: must never be lost.
    Ok,
    /// Refused because its base was stale: definitely not applied.
    Conflict,
    /// Failed in a way that guarantees it was not applied.
    Fail,
    /// Unknown (timeout, crash of the client's node): may or may not be applied.
    Info,
}

/// One operation of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Read-modify-write: the client read `base` (`None`: the session was
    /// absent) and committed `base ++ [elem]` on top of it.
    Append {
        /// The session.
        session: String,
        /// The unique element appended.
        elem: Elem,
        /// The list the client read, on which the commit was based; `None`
        /// when the client did not get that far (then `result` is not `Ok`).
        base: Option<Vec<Elem>>,
        /// The outcome.
        result: AppendResult,
    },
    /// A successful read. `None` means not found (an empty list).
    Read {
        /// The session.
        session: String,
        /// The list read.
        value: Option<Vec<Elem>>,
    },
}

/// One completed operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The client that ran it.
    pub process: u32,
    /// When the client started it (ns).
    pub invoke: u64,
    /// When the client saw its result (ns).
    pub complete: u64,
    /// What it was and what it returned.
    pub op: OpKind,
}

/// What a successful check covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Sessions with at least one operation.
    pub sessions: usize,
    /// Acknowledged appends.
    pub appends_ok: usize,
    /// Appends refused with a (genuine) conflict.
    pub appends_conflict: usize,
    /// Appends that definitely failed.
    pub appends_fail: usize,
    /// Appends with an unknown outcome.
    pub appends_info: usize,
    /// Info appends that turned out applied.
    pub info_applied: usize,
    /// Reads.
    pub reads: usize,
    /// Acknowledged appends that a later observation confirmed.
    pub ok_confirmed: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sessions={} appends_ok={} ok_confirmed={} conflicts={} fails={} info={} (applied {}) reads={}",
            self.sessions,
            self.appends_ok,
            self.ok_confirmed,
            self.appends_conflict,
            self.appends_fail,
            self.appends_info,
            self.info_applied,
            self.reads
        )
    }
}

/// An observed list: a read, or the base an append read.
struct Obs<'a> {
    ev: &'a Event,
    list: &'a [Elem],
}

struct Append<'a> {
    ev: &'a Event,
    elem: Elem,
    base: Option<&'a [Elem]>,
    result: AppendResult,
}

/// Every session named in `history`, sorted, each once.
pub fn sessions_of(history: &[Event]) -> Vec<String> {
    let mut v: Vec<String> = history
        .iter()
        .map(|e| match &e.op {
            OpKind::Append { session, .. } | OpKind::Read { session, .. } => session.clone(),
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Checks a history. `Err` lists every anomaly found, each naming the
/// session, the operations and the lists involved.
pub fn check(history: &[Event]) -> Result<Report, Vec<String>> {
    let mut by_session: HashMap<&str, (Vec<Append<'_>>, Vec<Obs<'_>>)> = HashMap::new();
    let mut report = Report::default();
    let mut errors = Vec::new();
    let mut seen_elems: HashMap<Elem, &str> = HashMap::new();
    for ev in history {
        if ev.complete < ev.invoke {
            errors.push(format!("harness: event completes before it starts: {ev:?}"));
        }
        match &ev.op {
            OpKind::Append {
                session,
                elem,
                base,
                result,
            } => {
                if let Some(prev) = seen_elems.insert(*elem, session) {
                    errors.push(format!(
                        "harness: element {elem} appended twice (sessions {prev} and {session})"
                    ));
                }
                let entry = by_session.entry(session).or_default();
                entry.0.push(Append {
                    ev,
                    elem: *elem,
                    base: base.as_deref(),
                    result: *result,
                });
                if let Some(b) = base {
                    entry.1.push(Obs { ev, list: b });
                }
                match result {
                    AppendResult::Ok => report.appends_ok += 1,
                    AppendResult::Conflict => report.appends_conflict += 1,
                    AppendResult::Fail => report.appends_fail += 1,
                    AppendResult::Info => report.appends_info += 1,
                }
                if *result == AppendResult::Ok && base.is_none() {
                    errors.push(format!(
                        "harness: acknowledged append {elem} without a base"
                    ));
                }
            }
            OpKind::Read { session, value } => {
                report.reads += 1;
                let entry = by_session.entry(session).or_default();
                entry.1.push(Obs {
                    ev,
                    list: value.as_deref().unwrap_or(&[]),
                });
            }
        }
    }
    report.sessions = by_session.len();
    let mut sessions: Vec<_> = by_session.into_iter().collect();
    sessions.sort_by(|a, b| a.0.cmp(b.0));
    for (session, (appends, obs)) in &sessions {
        check_session(session, appends, obs, &mut report, &mut errors);
    }
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(errors)
    }
}

fn fmt_list(l: &[Elem]) -> String {
    let v: Vec<String> = l.iter().map(|e| e.to_string()).collect();
    format!("[{}]", v.join(","))
}

fn check_session(
    session: &str,
    appends: &[Append<'_>],
    obs: &[Obs<'_>],
    report: &mut Report,
    errors: &mut Vec<String>,
) {
    let by_elem: HashMap<Elem, &Append<'_>> = appends.iter().map(|a| (a.elem, a)).collect();
    // One order: the longest observation, which every other must prefix.
    let longest: &[Elem] = obs
        .iter()
        .map(|o| o.list)
        .max_by_key(|l| l.len())
        .unwrap_or(&[]);
    for o in obs {
        if !longest.starts_with(o.list) {
            errors.push(format!(
                "session {session}: divergent histories: {} (process {} at {}..{}) is not a prefix of {}",
                fmt_list(o.list),
                o.ev.process,
                o.ev.invoke,
                o.ev.complete,
                fmt_list(longest)
            ));
        }
        let mut dup = HashSet::new();
        for e in o.list {
            if !dup.insert(*e) {
                errors.push(format!(
                    "session {session}: element {e} twice in {} (process {})",
                    fmt_list(o.list),
                    o.ev.process
                ));
            }
        }
    }
    // No phantom, no failed append applied, right place.
    for (i, e) in longest.iter().enumerate() {
        match by_elem.get(e) {
            None => errors.push(format!(
                "session {session}: phantom element {e} at {i} (never appended to this session)"
            )),
            Some(a) => match a.result {
                AppendResult::Conflict | AppendResult::Fail => errors.push(format!(
                    "session {session}: element {e} of an append answered {:?} is visible at {i}",
                    a.result
                )),
                AppendResult::Ok | AppendResult::Info => {
                    if a.result == AppendResult::Info {
                        report.info_applied += 1;
                    }
                    if let Some(b) = a.base {
                        if b.len() != i || !longest.starts_with(b) {
                            errors.push(format!(
                                "session {session}: element {e} (process {}, {:?}) sits at {i} of {} but its base was {}: committed on a stale base",
                                a.ev.process,
                                a.result,
                                fmt_list(longest),
                                fmt_list(b)
                            ));
                        }
                    }
                }
            },
        }
    }
    // No lost update.
    for a in appends.iter().filter(|a| a.result == AppendResult::Ok) {
        let mut confirmed = false;
        for o in obs.iter().filter(|o| o.ev.invoke > a.ev.complete) {
            if o.list.contains(&a.elem) {
                confirmed = true;
            } else {
                errors.push(format!(
                    "session {session}: lost update: acknowledged append {} (process {}, done at {}) missing from {} observed by process {} at {}..{}",
                    a.elem,
                    a.ev.process,
                    a.ev.complete,
                    fmt_list(o.list),
                    o.ev.process,
                    o.ev.invoke,
                    o.ev.complete
                ));
            }
        }
        if confirmed {
            report.ok_confirmed += 1;
        }
    }
    // No going back in time: sort by completion, and compare each
    // observation with the longest one that completed before it started.
    let mut done: Vec<&Obs<'_>> = obs.iter().collect();
    done.sort_by_key(|o| o.ev.complete);
    let mut by_invoke: Vec<&Obs<'_>> = obs.iter().collect();
    by_invoke.sort_by_key(|o| o.ev.invoke);
    let mut best: Option<&Obs<'_>> = None;
    let mut j = 0;
    for o in by_invoke {
        while j < done.len() && done[j].ev.complete < o.ev.invoke {
            if best.is_none_or(|b| done[j].list.len() > b.list.len()) {
                best = Some(done[j]);
            }
            j += 1;
        }
        if let Some(b) = best {
            if o.list.len() < b.list.len() {
                errors.push(format!(
                    "session {session}: stale read: {} (process {} at {}..{}) is older than {} seen by process {} which completed at {}",
                    fmt_list(o.list),
                    o.ev.process,
                    o.ev.invoke,
                    o.ev.complete,
                    fmt_list(b.list),
                    b.ev.process,
                    b.ev.complete
                ));
            }
        }
    }
    // Genuine conflicts.
    for a in appends
        .iter()
        .filter(|a| a.result == AppendResult::Conflict)
    {
        let Some(b) = a.base else { continue };
        let winner = longest.get(b.len()).filter(|_| longest.starts_with(b));
        let genuine = winner.is_some_and(|w| {
            *w != a.elem && by_elem.get(w).is_some_and(|x| x.ev.invoke < a.ev.complete)
        });
        if !genuine {
            errors.push(format!(
                "session {session}: spurious conflict: append {} (process {} at {}..{}) on base {} conflicted, but nothing overtook that base ({})",
                a.elem,
                a.ev.process,
                a.ev.invoke,
                a.ev.complete,
                fmt_list(b),
                fmt_list(longest)
            ));
        }
    }
}
