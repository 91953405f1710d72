//! [`CommitHandle`]: waits for one commit's acknowledged replication, and
//! the one-shot slot behind it (also used for fetches).

use crate::error::{Error, Result};
use crate::session::model::Session;
use crate::session::node::CommitFailure;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How a slot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotResult {
    /// Acknowledged by every required copy; copies that hold it now.
    Acked(usize),
    /// Not acknowledged.
    Failed(CommitFailure),
    /// A read finished: found or not.
    Fetched(bool),
    /// A read could not be answered now (no ready primary); retry.
    Unavailable,
    /// The store closed first.
    Closed,
}

#[derive(Debug, Default)]
struct SlotState {
    result: Option<(SlotResult, Instant)>,
    waiting: bool,
}

/// A one-shot result, completed by whoever holds the node's lock and waited
/// for by a host thread. The condvar is signalled only when someone waits,
/// so a commit nobody waits for costs no wake-up.
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
    /// The session a read found.
    session: Mutex<Option<Session>>,
    /// Called once, after the result is set (see [`Slot::on_complete`]).
    waker: Mutex<Option<Waker>>,
}

/// A completion notice: runs on the thread that completes the slot.
type Waker = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("state", &self.state).finish()
    }
}

impl Slot {
    pub(crate) fn new() -> Arc<Slot> {
        Arc::new(Slot::default())
    }

    pub(crate) fn done(r: SlotResult) -> Arc<Slot> {
        let s = Slot::new();
        s.complete(r);
        s
    }

    pub(crate) fn complete(&self, r: SlotResult) {
        {
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if g.result.is_some() {
                return;
            }
            g.result = Some((r, Instant::now()));
            if g.waiting {
                self.cv.notify_all();
            }
        }
        let w = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = w {
            w();
        }
    }

    /// Calls `f` once the slot completes: at once (on this thread) if it
    /// already has, else on the thread that completes it, which may hold the
    /// store's lock, so `f` must not call the store. A second waker
    /// replaces the first.
    pub(crate) fn on_complete(&self, f: Waker) {
        // The waker is set under the state lock, so `complete` either sees
        // it (its take happens after the result is set) or this sees the
        // result.
        let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if g.result.is_some() {
            drop(g);
            f();
            return;
        }
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// Completes a read with what it found.
    pub(crate) fn complete_read(&self, s: Option<Session>) {
        let found = s.is_some();
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = s;
        self.complete(SlotResult::Fetched(found));
    }

    /// The session a completed read found.
    pub(crate) fn take_session(&self) -> Option<Session> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub(crate) fn peek(&self) -> Option<(SlotResult, Instant)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).result
    }

    /// Waits until completed or `deadline`; `None` on timeout.
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<SlotResult> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((r, _)) = g.result {
                return Some(r);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g.waiting = true;
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// One commit (or create, invalidation, id change) on its way to the
/// members that must hold a copy. [`CommitHandle::wait`] returns once every
/// one of them acknowledged it: from then on the change survives the loss
/// of up to `backupCount` nodes.
#[derive(Debug, Clone)]
pub struct CommitHandle {
    slot: Arc<Slot>,
    started: Instant,
}

impl CommitHandle {
    pub(crate) fn new(slot: Arc<Slot>, started: Instant) -> Self {
        CommitHandle { slot, started }
    }

    /// Waits up to `timeout` for the acknowledgement; returns how many
    /// copies now hold the change, this node's included.
    ///
    /// # Errors
    /// [`Error::Timeout`] if still pending after `timeout` (it may still
    /// complete later); [`Error::RemoteFailure`] if a required copy refused
    /// or never answered after `commitRetries`, or the primary it was
    /// handed to was lost (the change may or may not survive);
    /// [`Error::Conflict`] if the session changed since the transaction's
    /// base version (not applied); [`Error::Unreachable`] if no ready
    /// primary took it or fewer than `minCommitCopies` holders are up (not
    /// applied); [`Error::NotFound`] if the session does not exist;
    /// [`Error::Shutdown`] if the store closed first.
    pub fn wait(&self, timeout: Duration) -> Result<usize> {
        match self.slot.wait_until(Instant::now() + timeout) {
            None => Err(Error::Timeout),
            Some(r) => result_of(r),
        }
    }

    /// The outcome if known: `None` while pending.
    pub fn try_result(&self) -> Option<Result<usize>> {
        self.slot.peek().map(|(r, _)| result_of(r))
    }

    /// True once acknowledged or failed.
    pub fn is_done(&self) -> bool {
        self.slot.peek().is_some()
    }

    /// Calls `f` once the outcome is known: at once, on this thread, if it
    /// already is; otherwise on the thread that learns it, which may hold
    /// the store's internal lock. So `f` must be short and must not call
    /// the store (hand the news to another thread instead); read the
    /// outcome with [`CommitHandle::try_result`]. A second call replaces
    /// the first `f` if it has not run yet.
    pub fn on_complete(&self, f: impl FnOnce() + Send + 'static) {
        self.slot.on_complete(Box::new(f));
    }

    /// Time from the commit call until its outcome was known (`None` while
    /// pending): the replication latency a benchmark reports.
    pub fn latency(&self) -> Option<Duration> {
        self.slot
            .peek()
            .map(|(_, at)| at.saturating_duration_since(self.started))
    }
}

fn result_of(r: SlotResult) -> Result<usize> {
    match r {
        SlotResult::Acked(n) => Ok(n),
        SlotResult::Fetched(_) => Ok(1),
        SlotResult::Unavailable => Err(Error::Timeout),
        SlotResult::Failed(CommitFailure::Conflict) => Err(Error::Conflict(
            "the session changed since the transaction's base version (not applied)".into(),
        )),
        SlotResult::Failed(CommitFailure::Unacknowledged) => Err(Error::RemoteFailure(
            "not acknowledged by every required copy: the change may or may not survive; \
             read the session to find out"
                .into(),
        )),
        SlotResult::Failed(CommitFailure::Unavailable) => Err(Error::Unreachable(
            "no ready primary took the commit, or fewer than minCommitCopies holders are up \
             (not applied)"
                .into(),
        )),
        SlotResult::Failed(CommitFailure::NotFound) => Err(Error::NotFound),
        SlotResult::Closed => Err(Error::Shutdown),
    }
}

/// One non-blocking step of a lookup ([`SessionStore::lookup_step`]).
///
/// [`SessionStore::lookup_step`]: super::SessionStore::lookup_step
#[derive(Debug)]
// `Done` carries the session by value, moved once per lookup step; boxing
// it would cost an allocation per read.
#[allow(clippy::large_enum_variant)]
pub enum LookupStep {
    /// The answer.
    Done(super::StoreLookup),
    /// Asked the session's primary: wait for the answer on the handle.
    Fetching(FetchHandle),
    /// No ready primary can answer now (lost and not yet replaced, still
    /// settling, or a concurrent read took the answer): try again shortly.
    Retry,
}

/// A read of a session held elsewhere, on its way from the primary.
#[derive(Debug, Clone)]
pub struct FetchHandle {
    slot: Arc<Slot>,
}

impl FetchHandle {
    pub(crate) fn new(slot: Arc<Slot>) -> Self {
        FetchHandle { slot }
    }

    /// Calls `f` once the answer is here, as [`CommitHandle::on_complete`]
    /// (same thread rules: `f` must not call the store).
    pub fn on_complete(&self, f: impl FnOnce() + Send + 'static) {
        self.slot.on_complete(Box::new(f));
    }

    /// The answer if it came: `None` while pending; then `Done` or `Retry`
    /// (a step of [`SessionStore::lookup_step`] again).
    ///
    /// # Errors
    /// [`Error::Shutdown`] if the store closed first.
    ///
    /// [`SessionStore::lookup_step`]: super::SessionStore::lookup_step
    pub fn outcome(&self) -> Option<Result<LookupStep>> {
        self.slot.peek().map(|(r, _)| self.step_of(r))
    }

    /// Waits until `deadline` for the answer; `None` on timeout.
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<Result<LookupStep>> {
        self.slot.wait_until(deadline).map(|r| self.step_of(r))
    }

    fn step_of(&self, r: SlotResult) -> Result<LookupStep> {
        Ok(match r {
            SlotResult::Fetched(found) => match self.slot.take_session() {
                Some(s) => LookupStep::Done(super::StoreLookup::Local(s)),
                None if !found => LookupStep::Done(super::StoreLookup::NotFound),
                None => LookupStep::Retry,
            },
            SlotResult::Closed => return Err(Error::Shutdown),
            _ => LookupStep::Retry,
        })
    }
}
