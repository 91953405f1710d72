//! Routing a forwarded commit again.
//!
//! A commit made on a node that is not the session's primary goes to the
//! primary (`forward.rs`). The primary may answer "not applied, no ready
//! primary" (`ForwardOutcome::Unavailable`): it began to drain, it is not
//! ready yet, placement moved while the commit was on its way, or a commit
//! it queued behind unsettled state found it no longer primary. None of
//! these applied the commit, and each (sender, request) pair runs at most
//! once on the one member it was sent to (`serve_forward` remembers it),
//! so sending the same change again, under a new request number, to the
//! session's current primary cannot apply it twice. The node does so
//! after a short, doubling delay (the view has time to change) while the
//! commit's deadline (`2 × accessTimeout` from the host's call) allows;
//! the host's ticket is kept, and it ends once, with the last attempt's
//! outcome. A commit of this node that it queued as primary and that found
//! it primary no more is routed the same way.

use super::forward::Forwarded;
use super::outcome::Purpose;
use super::{CommitFailure, NodeState, SessionNode};
use crate::error::Error;
use crate::session::codec::{Delta, Message};
use crate::session::model::{SessionId, Txn, Version};
use std::time::{Duration, Instant};

/// The first delay before a commit answered "not applied" is sent again;
/// it doubles with each attempt.
const FIRST_DELAY: Duration = Duration::from_millis(5);
/// The longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_millis(200);

/// What a forwarded change needs to be sent (or run) again.
#[derive(Debug, Clone)]
pub(crate) enum Again {
    /// A commit, or a create.
    Commit {
        txn: Txn,
        create: bool,
        creation_time: u64,
    },
    /// A rename of a session not held here.
    ChangeId { old: SessionId, new: SessionId },
}

impl Again {
    /// The session whose primary takes it.
    fn key(&self) -> &[u8] {
        match self {
            Again::Commit { txn, .. } => &txn.id,
            Again::ChangeId { old, .. } => old,
        }
    }

    /// The forward message under request number `req`.
    pub(crate) fn message(&self, req: u64) -> Message {
        match self.clone() {
            Again::Commit {
                txn,
                create,
                creation_time,
            } => Message::Forward {
                req,
                create,
                check_base: txn.base.is_some(),
                creation_time,
                txn: Delta {
                    id: txn.id,
                    base: txn.base.unwrap_or_default(),
                    version: Version::default(),
                    ops: txn.ops,
                    meta: txn.meta,
                },
            },
            Again::ChangeId { old, new } => Message::ForwardChangeId { req, old, new },
        }
    }
}

impl SessionNode {
    /// Forward `req` was answered "not applied, no ready primary": true if
    /// it will be routed again (its deadline leaves room), false if that
    /// answer is final.
    pub(crate) fn retry_later(&mut self, req: u64) -> bool {
        let now = self.clock;
        let Some(f) = self.forwards.get_mut(&req) else {
            return false;
        };
        if f.again.is_none() || f.retry_at.is_some() {
            return false;
        }
        let delay = FIRST_DELAY
            .saturating_mul(1 << f.attempts.min(16))
            .min(MAX_DELAY);
        if now + delay >= f.deadline {
            return false;
        }
        f.retry_at = Some(now + delay);
        f.attempts += 1;
        true
    }

    /// Routes again every forward whose delay is over.
    pub(crate) fn run_retries(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.retry_at.is_some_and(|t| now >= t))
            .map(|(r, _)| *r)
            .collect();
        for req in due {
            if let Some(f) = self.forwards.remove(&req) {
                self.route_again(f, now);
            }
        }
    }

    /// Sends `f`'s change to the session's current primary under a new
    /// request number, or runs it here if this node is that primary; the
    /// host's ticket ends with that attempt's outcome.
    pub(crate) fn route_again(&mut self, mut f: Forwarded, now: Instant) {
        let Some(again) = f.again.take() else {
            return self.resolve(f.ticket, f.id, Err(CommitFailure::Unavailable));
        };
        if self.check_writable().is_err() || now >= f.deadline {
            return self.resolve(f.ticket, f.id, Err(CommitFailure::Unavailable));
        }
        let key = again.key();
        let rename_held =
            matches!(&again, Again::ChangeId { old, .. } if self.table.get(old).is_some());
        if self.forwards_to_primary(key) && !rename_held {
            let Some(primary) = self.placement_of(key).primary().filter(|p| *p != self.me) else {
                return self.resolve(f.ticket, f.id, Err(CommitFailure::Unavailable));
            };
            self.stats.forwarded += 1;
            let req = self.next_ticket();
            let msg = again.message(req).encode();
            f.primary = primary;
            f.retry_at = None;
            f.again = Some(again);
            self.forwards.insert(req, f);
            self.send(vec![primary], msg, Some(Purpose::Forward { ticket: req }));
            return;
        }
        if self.state != NodeState::Ready {
            // Primary here by placement but not ready: nobody can take it.
            return self.resolve(f.ticket, f.id, Err(CommitFailure::Unavailable));
        }
        self.reuse_ticket = Some(f.ticket);
        let r = match again {
            Again::Commit {
                txn,
                create: true,
                creation_time,
            } => self.create_at(txn, creation_time, now, None),
            Again::Commit { txn, .. } => self.commit_at(txn, now, None),
            Again::ChangeId { old, new } => self.change_id_at(&old, new, now, None),
        };
        self.reuse_ticket = None;
        if let Err(e) = r {
            let reason = match e {
                Error::Conflict(_) => CommitFailure::Conflict,
                Error::NotFound => CommitFailure::NotFound,
                _ => CommitFailure::Unavailable,
            };
            self.resolve(f.ticket, f.id, Err(reason));
        }
    }
}
