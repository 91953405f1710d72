//! Backup mode: the primary of a session orders its commits and answers
//! its reads.
//!
//! A commit made on any other node is handed to the primary
//! ([`Message::Forward`]); the primary checks the transaction's base version
//! (optimistic concurrency), applies it, replicates it to the backups and
//! answers with a [`Message::CommitResult`] once every backup acknowledged
//! (or the commit failed). A read on any other node asks the primary
//! (a fetch). The primary answers a read only with acknowledged state: while
//! a commit of the session is in flight, reads of it wait until it settles.
//! So every read sees every acknowledged commit, and never a change that
//! could still be lost.

use super::outcome::Purpose;
use super::reroute::Again;
use super::{CommitFailure, CommitTicket, NodeState, SendOutcome, SessionEvent, SessionNode};
use crate::error::{Error, Result};
use crate::session::codec::{self, Delta, ForwardOutcome, Message};
use crate::session::hash::HashSet;
use crate::session::model::{MemberKey, Session, SessionId, Txn, Version};
use crate::session::placement::Placement;
use bytes::Bytes;
use std::time::Instant;

/// Most reads waiting for in-flight commits, over all sessions.
const MAX_DEFERRED: usize = 4096;
/// Most read results kept for the host to take.
const MAX_FETCHED: usize = 4096;
/// Forwards remembered to run each once (per node, over all members).
const MAX_SEEN_FORWARDS: usize = 1 << 16;

/// A commit handed to the session's primary, waiting for its result;
/// keyed by its request number (a new one per attempt).
#[derive(Debug)]
pub(crate) struct Forwarded {
    pub(crate) id: SessionId,
    pub(crate) primary: MemberKey,
    pub(crate) deadline: Instant,
    /// The host's ticket (the first attempt's request number).
    pub(crate) ticket: u64,
    /// The change, to route it again (see `reroute.rs`).
    pub(crate) again: Option<Again>,
    /// Answered "not applied": routed again at this time.
    pub(crate) retry_at: Option<Instant>,
    /// Attempts routed again so far.
    pub(crate) attempts: u32,
}

/// A commit waiting for the session's unacknowledged commits to settle.
#[derive(Debug)]
pub(crate) struct Queued {
    ticket: u64,
    txn: Txn,
    /// `Some(creation time)` for a create.
    create: Option<u64>,
    origin: Option<(MemberKey, u64)>,
    pub(crate) deadline: Instant,
}

/// Most commits queued behind unacknowledged ones, over all sessions.
const MAX_QUEUED: usize = 4096;

/// Who waits for a read of a session whose commits are in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reader {
    /// This node's host (`get`).
    Local,
    /// Another member's fetch.
    Remote { to: MemberKey, fetch: u64 },
}

fn outcome_of(f: CommitFailure) -> ForwardOutcome {
    match f {
        CommitFailure::Conflict => ForwardOutcome::Conflict,
        CommitFailure::Unacknowledged => ForwardOutcome::Unacknowledged,
        CommitFailure::Unavailable => ForwardOutcome::Unavailable,
        CommitFailure::NotFound => ForwardOutcome::NotFound,
    }
}

impl SessionNode {
    /// Hands a commit (or create) of `txn` to the session's primary.
    pub(crate) fn forward_commit(
        &mut self,
        txn: Txn,
        create: bool,
        creation_time: u64,
        now: Instant,
    ) -> Result<CommitTicket> {
        let id = txn.id.clone();
        let again = Again::Commit {
            txn,
            create,
            creation_time,
        };
        self.forward(&id, id.clone(), again, now)
    }

    /// Hands a rename of `old` (not held here) to the session's primary.
    pub(crate) fn forward_change_id(
        &mut self,
        old: &[u8],
        new: SessionId,
        now: Instant,
    ) -> Result<CommitTicket> {
        let again = Again::ChangeId {
            old: SessionId::copy_from_slice(old),
            new: new.clone(),
        };
        self.forward(old, new, again, now)
    }

    /// Sends `again` to the primary of `key`; the ticket (for session `id`)
    /// ends with its [`Message::CommitResult`] (routed again while that
    /// says "not applied" and the deadline allows), or unacknowledged.
    fn forward(
        &mut self,
        key: &[u8],
        id: SessionId,
        again: Again,
        now: Instant,
    ) -> Result<CommitTicket> {
        let Some(primary) = self.placement_of(key).primary().filter(|p| *p != self.me) else {
            return Err(Error::Unreachable("no primary for this session".into()));
        };
        let t = self.next_ticket();
        self.stats.commits += 1;
        self.stats.forwarded += 1;
        let msg = again.message(t).encode();
        self.forwards.insert(
            t,
            Forwarded {
                id,
                primary,
                // The primary's own replication may take its retries.
                deadline: now + self.cfg.access_timeout * 2,
                ticket: t,
                again: Some(again),
                retry_at: None,
                attempts: 0,
            },
        );
        self.send(vec![primary], msg, Some(Purpose::Forward { ticket: t }));
        Ok(CommitTicket(t))
    }

    /// A rename forwarded by `from`: run here if this node is the ready
    /// primary of `old`; the result goes back when it settles.
    pub(crate) fn on_forward_change_id(
        &mut self,
        from: MemberKey,
        req: u64,
        old: SessionId,
        new: SessionId,
        now: Instant,
    ) {
        // `new` is no longer than `max_id_len`: the decoder checked it.
        self.serve_forward(from, req, &old, |n| {
            n.change_id_at(&old, new, now, Some((from, req)))
        });
    }

    /// The delivery outcome of forward `req`: without an ack the primary
    /// may or may not have applied it (unless it answered already that it
    /// did not).
    pub(crate) fn forward_outcome(&mut self, req: u64, outcome: SendOutcome) {
        if outcome != SendOutcome::Acked && !self.retrying(req) {
            self.finish_forward(req, Err(CommitFailure::Unacknowledged));
        }
    }

    /// True if forward `req` was answered "not applied" and waits to be
    /// routed again.
    fn retrying(&self, req: u64) -> bool {
        self.forwards
            .get(&req)
            .is_some_and(|f| f.retry_at.is_some())
    }

    fn finish_forward(&mut self, req: u64, r: std::result::Result<usize, CommitFailure>) {
        if let Some(f) = self.forwards.remove(&req) {
            self.resolve(f.ticket, f.id, r);
        }
    }

    /// The primary's answer to a forward.
    pub(crate) fn on_commit_result(
        &mut self,
        from: MemberKey,
        req: u64,
        outcome: ForwardOutcome,
        copies: u32,
    ) {
        if self
            .forwards
            .get(&req)
            .is_none_or(|f| f.primary != from || f.retry_at.is_some())
        {
            return;
        }
        let r = match outcome {
            ForwardOutcome::Acked => Ok(copies as usize),
            ForwardOutcome::Conflict => Err(CommitFailure::Conflict),
            ForwardOutcome::Unacknowledged => Err(CommitFailure::Unacknowledged),
            ForwardOutcome::Unavailable => Err(CommitFailure::Unavailable),
            ForwardOutcome::NotFound => Err(CommitFailure::NotFound),
        };
        if r == Err(CommitFailure::Conflict) {
            self.stats.conflicts += 1;
        }
        if r == Err(CommitFailure::Unavailable) && self.retry_later(req) {
            return;
        }
        self.finish_forward(req, r);
    }

    /// The primary `m` of forwarded commits is gone: their fate is unknown
    /// (those it answered "not applied" are routed again as planned).
    pub(crate) fn forwards_lost(&mut self, m: &MemberKey) {
        let lost: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.primary == *m && f.retry_at.is_none())
            .map(|(t, _)| *t)
            .collect();
        for t in lost {
            self.finish_forward(t, Err(CommitFailure::Unacknowledged));
        }
    }

    pub(crate) fn check_forward_timeouts(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| now >= f.deadline && f.retry_at.is_none())
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            self.finish_forward(t, Err(CommitFailure::Unacknowledged));
        }
    }

    /// Reports how commit `ticket` ended: to the member it was forwarded
    /// from, or as an event to this node's host.
    pub(crate) fn resolve(
        &mut self,
        ticket: u64,
        id: SessionId,
        r: std::result::Result<usize, CommitFailure>,
    ) {
        if let Some((to, req)) = self.served.remove(&ticket) {
            let (outcome, copies) = match r {
                Ok(n) => (ForwardOutcome::Acked, n as u32),
                Err(f) => (outcome_of(f), 0),
            };
            let msg = Message::CommitResult {
                req,
                outcome,
                copies,
            };
            self.send(vec![to], msg.encode(), None);
            return;
        }
        match r {
            Ok(copies) => {
                self.stats.commits_acked += 1;
                self.push_event(SessionEvent::CommitAcked {
                    ticket: CommitTicket(ticket),
                    id,
                    copies,
                });
            }
            Err(reason) => {
                self.stats.commits_failed += 1;
                self.push_event(SessionEvent::CommitFailed {
                    ticket: CommitTicket(ticket),
                    id,
                    reason,
                });
            }
        }
    }

    /// A commit forwarded by `from`: run it here if this node is the
    /// session's ready primary; the result goes back when it settles.
    #[allow(clippy::too_many_arguments)] // the fields of one message
    pub(crate) fn on_forward(
        &mut self,
        from: MemberKey,
        req: u64,
        create: bool,
        check_base: bool,
        creation_time: u64,
        d: Delta,
        now: Instant,
    ) {
        self.serve_forward(from, req, &d.id.clone(), |n| {
            let txn = Txn {
                id: d.id,
                ops: d.ops,
                meta: d.meta,
                base: check_base.then_some(d.base),
            };
            if create {
                n.create_at(txn, creation_time, now, Some((from, req)))
            } else if txn.is_empty() {
                Err(Error::InvalidArgument("empty forwarded commit".into()))
            } else {
                n.commit_at(txn, now, Some((from, req)))
            }
        });
    }

    /// Serves forward `req` of `from` (for session `id`) once: a forward
    /// delivered twice (a duplicate, a resend) runs once. `run` applies it
    /// if this node is the session's ready primary; a forward refused, or
    /// failed before it was applied, is answered at once.
    fn serve_forward(
        &mut self,
        from: MemberKey,
        req: u64,
        id: &[u8],
        run: impl FnOnce(&mut Self) -> Result<CommitTicket>,
    ) {
        if !self.seen_forwards.insert((from, req)) {
            return;
        }
        self.seen_order.push_back((from, req));
        while self.seen_order.len() > MAX_SEEN_FORWARDS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen_forwards.remove(&old);
            }
        }
        let r = if self.state != NodeState::Ready || !self.is_primary_for(id) {
            Err(Error::Unreachable("not the session's ready primary".into()))
        } else {
            run(self)
        };
        let Err(e) = r else {
            return;
        };
        let outcome = match e {
            Error::Conflict(_) => ForwardOutcome::Conflict,
            Error::NotFound => ForwardOutcome::NotFound,
            _ => ForwardOutcome::Unavailable,
        };
        let msg = Message::CommitResult {
            req,
            outcome,
            copies: 0,
        };
        self.send(vec![from], msg.encode(), None);
    }

    /// True while a commit of `id` made here is unacknowledged, or failed
    /// after it was applied and is not repaired yet: its state may vanish.
    pub(crate) fn unsettled(&self, id: &[u8]) -> bool {
        self.pending_ids.contains_key(id) || self.dirty.contains(id)
    }

    /// Queues a commit whose outcome depends on unacknowledged state.
    pub(crate) fn queue_commit(
        &mut self,
        txn: Txn,
        create: Option<u64>,
        origin: Option<(MemberKey, u64)>,
        now: Instant,
    ) -> Result<CommitTicket> {
        let n: usize = self.queued.values().map(|q| q.len()).sum();
        if n >= MAX_QUEUED {
            return Err(Error::Unreachable("too many commits waiting".into()));
        }
        let ticket = match self.reuse_ticket.take() {
            Some(t) => t,
            None => {
                let t = self.next_ticket();
                if origin.is_none() {
                    self.stats.commits += 1;
                }
                t
            }
        };
        if let Some(o) = origin {
            self.served.insert(ticket, o);
        }
        self.queued
            .entry(txn.id.clone())
            .or_default()
            .push_back(Queued {
                ticket,
                txn,
                create,
                origin,
                deadline: now + self.cfg.access_timeout * 2,
            });
        Ok(CommitTicket(ticket))
    }

    /// When the newest placement change stops blocking: the next time a
    /// queued commit may become runnable.
    pub(crate) fn settle_deadline(&self) -> Option<Instant> {
        if self.queued.is_empty() {
            return None;
        }
        let settle = self.cfg.primary_settle_time;
        self.recent_views
            .iter()
            .map(|(t, _)| *t + settle)
            .chain(self.ready_at.map(|t| t + settle))
            .filter(|t| *t > self.clock)
            .min()
    }

    /// Runs the commits queued on sessions that settled meanwhile.
    pub(crate) fn run_settled(&mut self, now: Instant) {
        let ids: Vec<SessionId> = self.queued.keys().cloned().collect();
        for id in ids {
            self.run_queued(&id, now);
        }
    }

    /// Runs the commits queued on `id` once nothing of it is unsettled and
    /// this node may answer for it.
    pub(crate) fn run_queued(&mut self, id: &[u8], now: Instant) {
        while !self.unsettled(id) && (!self.is_primary_for(id) || self.authoritative(id, now)) {
            let Some(q) = self.queued.get_mut(id).and_then(|q| q.pop_front()) else {
                self.queued.remove(id);
                return;
            };
            let (ticket, sid) = (q.ticket, q.txn.id.clone());
            let primary = self.state == NodeState::Ready && self.is_primary_for(id);
            if !primary && q.origin.is_none() && self.forwards_to_primary(id) {
                // This node's own commit, and placement moved: to the
                // session's primary now, under the same ticket.
                let f = Forwarded {
                    id: sid,
                    primary: self.me,
                    deadline: q.deadline,
                    ticket,
                    again: Some(Again::Commit {
                        txn: q.txn,
                        create: q.create.is_some(),
                        creation_time: q.create.unwrap_or(0),
                    }),
                    retry_at: None,
                    attempts: 0,
                };
                self.route_again(f, now);
                continue;
            }
            let r = if primary {
                self.rerun(ticket, q.txn, q.create, q.origin, now)
            } else {
                Err(Error::Unreachable("not the primary any more".into()))
            };
            if let Err(e) = r {
                let f = match e {
                    Error::Conflict(_) => CommitFailure::Conflict,
                    Error::NotFound => CommitFailure::NotFound,
                    _ => CommitFailure::Unavailable,
                };
                self.resolve(ticket, sid, Err(f));
            }
        }
    }

    /// Queued commits that waited too long fail, not applied.
    pub(crate) fn check_queue_timeouts(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for q in self.queued.values_mut() {
            while q.front().is_some_and(|x| now >= x.deadline) {
                if let Some(x) = q.pop_front() {
                    expired.push((x.ticket, x.txn.id));
                }
            }
        }
        self.queued.retain(|_, q| !q.is_empty());
        for (t, id) in expired {
            self.resolve(t, id, Err(CommitFailure::Unavailable));
        }
    }

    /// True if this node may answer for `id` as its primary (read it,
    /// commit to it, or say it does not exist): it is ready, and it was the
    /// primary of `id` under every placement of the last `accessTimeout`
    /// (and ready that long, after a join), so no newer copy, and no commit
    /// of a former primary, can still be on its way here.
    pub(crate) fn authoritative(&self, id: &[u8], now: Instant) -> bool {
        self.settled_primary(id, now, self.placement_of(id).primary())
    }

    /// [`SessionNode::authoritative`] with `id`'s primary computed already.
    pub(crate) fn settled_primary(
        &self,
        id: &[u8],
        now: Instant,
        primary: Option<MemberKey>,
    ) -> bool {
        if self.state != NodeState::Ready
            || self.join.is_some()
            || self.live.len() < self.cfg.min_commit_copies
            || primary != Some(self.me)
        {
            // Not ready, still catching up with a member, or on the minority
            // side of a partition (fewer members than minCommitCopies).
            return false;
        }
        let settle = self.cfg.primary_settle_time;
        if self
            .ready_at
            .is_some_and(|t| now.saturating_duration_since(t) < settle)
        {
            return false;
        }
        let copies = self.copies();
        self.recent_views
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) < settle)
            .all(|(_, live)| Placement::holders(id, live, copies).primary() == Some(self.me))
    }

    /// Queues a read of `id` until its pending commits settle; false if
    /// too many reads wait already.
    pub(crate) fn defer_read(&mut self, id: SessionId, r: Reader) -> bool {
        let waiting: usize = self.deferred.values().map(Vec::len).sum();
        if waiting >= MAX_DEFERRED {
            return false;
        }
        self.deferred.entry(id).or_default().push(r);
        true
    }

    /// One commit of `id` settled: when none is left, answer the reads
    /// that waited for them.
    pub(crate) fn pending_done(&mut self, id: &SessionId, now: Instant) {
        let Some(n) = self.pending_ids.get_mut(id) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        self.pending_ids.remove(id);
        if self.deferred.is_empty() && self.queued.is_empty() {
            return; // the common case: nobody waits for this session
        }
        let readers = self.deferred.remove(id).unwrap_or_default();
        let primary = self.state == NodeState::Ready
            && self.is_primary_for(id)
            && !self.dirty.contains(id)
            && self.authoritative(id, now);
        for r in readers {
            match r {
                Reader::Local if primary => {
                    let s = self.table.get(id).cloned();
                    self.deliver_read(id.clone(), s);
                }
                Reader::Local => self.push_event(SessionEvent::FetchFailed { id: id.clone() }),
                Reader::Remote { to, fetch } if primary => {
                    let reply = codec::encode_fetch_reply(fetch, id, self.table.get(id), now);
                    self.send(vec![to], reply, None);
                }
                // Not the primary any more: the reader times out and asks the new one.
                Reader::Remote { .. } => {}
            }
        }
        // After the readers: they must not see what a queued commit applies.
        self.run_queued(id, now);
    }

    /// Hands a read's result to the host.
    pub(crate) fn deliver_read(&mut self, id: SessionId, s: Option<Session>) {
        if self.fetched.len() >= MAX_FETCHED {
            // Results nobody took: drop them rather than grow.
            self.fetched.clear();
        }
        let found = s.is_some();
        self.fetched.insert(id.clone(), s);
        self.push_event(SessionEvent::Fetched { id, found });
    }

    /// A fetch from `from`. Backup mode: answered by the session's ready
    /// primary only, with acknowledged state (after pending commits
    /// settle); any other node refuses, and the fetcher asks again.
    pub(crate) fn on_fetch_request(
        &mut self,
        from: MemberKey,
        fetch: u64,
        id: Bytes,
        now: Instant,
    ) -> std::result::Result<(), super::Reject> {
        if self.cfg.mode == crate::session::config::SessionMode::Backup {
            if self.state != NodeState::Ready || !self.is_primary_for(&id) {
                return Err(super::Reject::NotPrimary);
            }
            if self.pending_ids.contains_key(&id[..]) {
                return match self.defer_read(id, Reader::Remote { to: from, fetch }) {
                    true => Ok(()),
                    false => Err(super::Reject::NotPrimary),
                };
            }
            if self.dirty.contains(&id[..]) || !self.authoritative(&id, now) {
                return Err(super::Reject::NotPrimary);
            }
        }
        let reply = codec::encode_fetch_reply(fetch, &id, self.table.get(&id), now);
        self.send(vec![from], reply, None);
        Ok(())
    }

    /// A commit of `id` made here as primary was applied but not
    /// acknowledged by every holder: reads of `id` wait for a repair.
    pub(crate) fn mark_dirty(&mut self, id: &SessionId) {
        if self.cfg.mode == crate::session::config::SessionMode::Backup
            && self.table.get(id).is_some()
        {
            self.dirty.insert(id.clone());
        }
    }

    /// Sends every dirty session whole to its holders (one copy in flight
    /// per session); acknowledged by all, it is clean again.
    pub(crate) fn repair_dirty(&mut self, now: Instant) {
        let ids: Vec<SessionId> = self.dirty.iter().cloned().collect();
        for id in ids {
            if self.table.get(&id).is_none() || !self.is_primary_for(&id) {
                self.dirty.remove(&id);
                continue;
            }
            if self.pending_ids.contains_key(&id) || self.repairing.contains(&id) {
                continue;
            }
            let to = self.required(&id);
            let Some(s) = self.table.get(&id) else {
                continue;
            };
            if to.is_empty() {
                self.dirty.remove(&id);
                continue;
            }
            let (version, lost) = (s.version, s.lost);
            let payload = codec::encode_copy(codec::CopyReason::Repair, s, now);
            self.stats.copies_sent += 1;
            self.repairing.insert(id.clone());
            self.send(to, payload, Some(Purpose::Repair { id, version, lost }));
        }
    }

    /// One holder's answer to a repair copy of `version` that carried the
    /// count of departed primaries `lost`.
    pub(crate) fn repair_outcome(
        &mut self,
        id: SessionId,
        (version, lost): (Version, u8),
        ok: bool,
        last: bool,
        now: Instant,
    ) {
        if !ok {
            self.failed_repairs.insert(id.clone());
        }
        if last {
            self.repairing.remove(&id);
            let failed = self.failed_repairs.remove(&id);
            let current = match self.table.get_mut(&id) {
                Some(s) if s.version == version => {
                    if !failed {
                        // Every holder has this version, counting at least `lost`.
                        s.lost_on_holders = s.lost_on_holders.max(lost);
                    }
                    true
                }
                _ => false,
            };
            if !failed && current {
                self.dirty.remove(&id);
                self.run_queued(&id, now);
            }
        }
    }

    /// Sessions held here with fewer copies confirmed than configured.
    pub(crate) fn under_replicated(&self) -> usize {
        if self.cfg.mode != crate::session::config::SessionMode::Backup {
            return 0;
        }
        if self.live.len() < self.copies() {
            return self.table.len();
        }
        let mut ids: HashSet<&SessionId> = self.lagging.iter().map(|(id, _)| id).collect();
        for i in self.inflight.values() {
            if let Purpose::Rebalance { id, .. } = &i.purpose {
                ids.insert(id);
            }
        }
        ids.len()
    }

    /// Sends the re-replication copies that failed every quick retry once
    /// more (one per session and member, from the sweep); a member that no
    /// longer holds the session by placement, or a session gone from
    /// here, needs none.
    pub(crate) fn retry_lagging(&mut self, now: Instant) {
        if self.lagging.is_empty() {
            return;
        }
        let lagging: Vec<(SessionId, MemberKey)> = self.lagging.drain().collect();
        for (id, m) in lagging {
            if self.table.get(&id).is_some() && self.required(&id).contains(&m) {
                self.send_rebalance(id, vec![m], 0, now);
            }
        }
    }
}
