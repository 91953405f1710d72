//! Send outcomes: which commit, chunk or hand-off a transmit belonged to,
//! when a commit counts as acknowledged, and the resends that repair a
//! refused or lost copy.

use super::{CommitFailure, NodeState, SendOutcome, SendToken, SessionNode};
use crate::session::codec::{self, CopyReason, Message, RemoveReason};
use crate::session::model::{MemberKey, SessionId, Version};
use bytes::Bytes;
use std::time::Instant;

/// What a tracked transmit was for.
#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    /// Nothing follows from its outcome.
    Other,
    /// Carries commit `ticket`.
    Commit { ticket: u64 },
    /// A state-transfer request to a donor.
    Request { transfer: u64 },
    /// A state-transfer chunk.
    Chunk {
        to: MemberKey,
        transfer: u64,
        seq: u32,
    },
    /// The end of a state transfer.
    Complete { to: MemberKey, transfer: u64 },
    /// A re-replication copy after a member was lost.
    Rebalance { id: SessionId, attempt: u32 },
    /// A drain hand-off of one session.
    Handoff { id: SessionId },
    /// The leaving notice of a drain.
    Leaving,
    /// A fetch request.
    Fetch { fetch: u64 },
    /// A commit handed to the session's primary.
    Forward { ticket: u64 },
    /// A copy released to the session's holders (hand-off before release).
    Release { id: SessionId },
    /// A whole copy of a dirty session (a commit failed after it was applied).
    Repair {
        id: SessionId,
        version: Version,
        /// The count of departed primaries the copy carried.
        lost: u8,
    },
}

/// A tracked transmit: its purpose and the members whose outcome is due.
#[derive(Debug)]
pub(crate) struct Inflight {
    pub(crate) purpose: Purpose,
    pub(crate) waiting: Vec<MemberKey>,
    /// About when it was sent (the node's clock).
    pub(crate) sent: Instant,
}

/// Outcomes older than this many `accessTimeout`s count as timed out: a
/// safety net should the channel never report one (a member it dropped
/// before the node did), so no hand-off, repair or commit waits forever.
const OUTCOME_GIVE_UP: u32 = 4;

/// What a commit did, so a refused copy can be resent.
#[derive(Debug, Clone)]
pub(crate) enum CommitKind {
    /// Attributes or metadata changed (or the session was created).
    Update,
    /// Expired or invalidated at this version.
    Remove(RemoveReason, Version),
    /// Renamed from `old` (the ticket's id is the new one).
    ChangeId { old: SessionId },
}

/// A commit waiting for its copies.
#[derive(Debug)]
pub(crate) struct PendingCommit {
    pub(crate) id: SessionId,
    pub(crate) kind: CommitKind,
    /// The version the commit produced here.
    pub(crate) version: Version,
    pub(crate) awaiting: Vec<MemberKey>,
    pub(crate) acked: Vec<MemberKey>,
    pub(crate) retries: u32,
}

pub(crate) fn remove_message(id: &SessionId, kind: &CommitKind) -> Bytes {
    let (reason, version) = match kind {
        CommitKind::Remove(r, v) => (*r, *v),
        _ => (RemoveReason::Invalidated, Version::default()),
    };
    Message::Remove {
        id: id.clone(),
        version,
        reason,
    }
    .encode()
}

impl SessionNode {
    /// Reports the outcome of transmit `token` for `member`.
    pub fn handle_send_outcome(
        &mut self,
        token: SendToken,
        member: MemberKey,
        outcome: SendOutcome,
        now: Instant,
    ) {
        self.clock = self.clock.max(now);
        let Some(inf) = self.inflight.get_mut(&token.0) else {
            return;
        };
        let Some(pos) = inf.waiting.iter().position(|m| *m == member) else {
            return;
        };
        inf.waiting.swap_remove(pos);
        let last = inf.waiting.is_empty();
        let purpose = if last {
            self.inflight.remove(&token.0).map(|i| i.purpose)
        } else {
            Some(inf.purpose.clone())
        };
        let ok = outcome == SendOutcome::Acked;
        match purpose {
            None | Some(Purpose::Other) => {}
            Some(Purpose::Commit { ticket }) => self.commit_outcome(ticket, member, ok, now),
            Some(Purpose::Request { transfer }) => {
                if !ok {
                    self.resend_request(member, transfer);
                }
            }
            Some(Purpose::Chunk { to, transfer, seq }) => {
                self.chunk_outcome(to, transfer, seq, ok, now)
            }
            Some(Purpose::Complete { to, transfer }) => {
                self.complete_outcome(to, transfer, ok, now)
            }
            Some(Purpose::Rebalance { id, attempt }) => {
                if !ok && self.required(&id).contains(&member) {
                    if attempt < self.cfg.commit_retries {
                        self.send_rebalance(id, vec![member], attempt + 1, now);
                    } else {
                        // Still one copy short: the next sweeps retry.
                        self.lagging.insert((id, member));
                    }
                }
            }
            Some(Purpose::Handoff { id }) => self.handoff_outcome(id, member, ok, now),
            Some(Purpose::Leaving) => {
                if !ok && self.members.binary_search(&member).is_ok() {
                    // Lost: a member that never hears it keeps placing
                    // sessions here after this node is gone.
                    self.send(
                        vec![member],
                        Message::Leaving.encode(),
                        Some(Purpose::Leaving),
                    );
                    return;
                }
                if let Some(d) = &mut self.drain {
                    d.notice.retain(|m| *m != member);
                }
                self.check_drained();
            }
            Some(Purpose::Fetch { fetch }) => {
                if !ok {
                    self.retry_fetch(fetch, now);
                }
            }
            Some(Purpose::Forward { ticket }) => self.forward_outcome(ticket, outcome),
            Some(Purpose::Release { id }) => self.release_outcome(id, member, ok),
            Some(Purpose::Repair { id, version, lost }) => {
                self.repair_outcome(id, (version, lost), ok, last, now)
            }
        }
    }

    fn commit_outcome(&mut self, ticket: u64, member: MemberKey, ok: bool, now: Instant) {
        let Some(pc) = self.commits.get_mut(&ticket) else {
            return;
        };
        let Some(pos) = pc.awaiting.iter().position(|m| *m == member) else {
            return;
        };
        if ok {
            pc.awaiting.swap_remove(pos);
            pc.acked.push(member);
            self.finish_if_done(ticket, now);
            return;
        }
        let id = pc.id.clone();
        let still_required = self.required(&id).contains(&member);
        let pc = self.commits.get_mut(&ticket).expect("present");
        if !still_required {
            // Placement moved on: whoever holds it now must get it instead.
            pc.awaiting.swap_remove(pos);
            self.retarget(ticket, now);
            self.finish_if_done(ticket, now);
            return;
        }
        if pc.retries >= self.cfg.commit_retries {
            let lost = self
                .table
                .get(&id)
                .is_some_and(|s| s.version > pc.version && s.version.writer != self.me.id);
            let reason = if lost {
                self.overwritten_failure()
            } else {
                CommitFailure::Unacknowledged
            };
            self.fail_commit(ticket, reason, now);
            return;
        }
        pc.retries += 1;
        if !self.resend_commit(ticket, vec![member], now) {
            // The session is gone here (removed or renamed since): the
            // commit was superseded, nothing left to repair.
            if let Some(pc) = self.commits.get_mut(&ticket) {
                pc.awaiting.retain(|m| *m != member);
            }
            self.finish_if_done(ticket, now);
        }
    }

    /// Sends the commit's current state whole to `to`; false if there is
    /// nothing to send any more.
    fn resend_commit(&mut self, ticket: u64, to: Vec<MemberKey>, now: Instant) -> bool {
        let Some(pc) = self.commits.get(&ticket) else {
            return false;
        };
        let payload = match &pc.kind {
            CommitKind::Update => match self.table.get(&pc.id) {
                Some(s) => codec::encode_copy(CopyReason::Repair, s, now),
                None => return false,
            },
            CommitKind::Remove(..) => remove_message(&pc.id, &pc.kind),
            CommitKind::ChangeId { old } => match self.table.get(&pc.id) {
                Some(s) => codec::encode_change_id(old, s, now),
                None => return false,
            },
        };
        if matches!(pc.kind, CommitKind::Update) {
            self.stats.copies_sent += 1;
        }
        self.send(to, payload, Some(Purpose::Commit { ticket }));
        true
    }

    /// Sends the session whole to every member that must now hold it and
    /// has neither acknowledged nor been sent this commit (placement moved).
    pub(crate) fn retarget(&mut self, ticket: u64, now: Instant) {
        let Some(pc) = self.commits.get(&ticket) else {
            return;
        };
        if !matches!(pc.kind, CommitKind::Update) {
            return;
        }
        let extra: Vec<MemberKey> = self
            .required(&pc.id)
            .into_iter()
            .filter(|m| !pc.awaiting.contains(m) && !pc.acked.contains(m))
            .collect();
        if !extra.is_empty() && self.resend_commit(ticket, extra.clone(), now) {
            if let Some(pc) = self.commits.get_mut(&ticket) {
                pc.awaiting.extend(extra);
            }
        }
    }

    pub(crate) fn finish_if_done(&mut self, ticket: u64, now: Instant) {
        if self
            .commits
            .get(&ticket)
            .is_some_and(|pc| pc.awaiting.is_empty())
        {
            let pc = self.commits.remove(&ticket).expect("present");
            let copies = pc.acked.len() + 1;
            if copies < self.cfg.min_commit_copies {
                // Members were lost meanwhile: too few copies to count as acknowledged.
                self.commits.insert(ticket, pc);
                self.fail_commit(ticket, CommitFailure::Unacknowledged, now);
                return;
            }
            if self
                .table
                .get(&pc.id)
                .is_some_and(|s| s.version == pc.version)
            {
                // Every holder has the newest state: nothing left to repair.
                self.dirty.remove(&pc.id);
            }
            self.resolve(ticket, pc.id.clone(), Ok(copies));
            self.pending_done(&pc.id, now);
            if self.state == NodeState::Draining {
                self.check_drained();
            }
        }
    }

    pub(crate) fn fail_commit(&mut self, ticket: u64, reason: CommitFailure, now: Instant) {
        if let Some(pc) = self.commits.remove(&ticket) {
            if matches!(pc.kind, CommitKind::Update) && pc.version.writer == self.me.id {
                self.mark_dirty(&pc.id);
            }
            self.resolve(ticket, pc.id.clone(), Err(reason));
            self.pending_done(&pc.id, now);
            if self.state == NodeState::Draining {
                self.check_drained();
            }
        }
    }

    /// Commits of session `id` made here at or below `lost` were overwritten
    /// by a concurrent winner: report them failed.
    pub(crate) fn fail_overwritten(&mut self, id: &SessionId, lost: Version, now: Instant) {
        let me = self.me.id;
        let tickets: Vec<u64> = self
            .commits
            .iter()
            .filter(|(_, pc)| {
                matches!(pc.kind, CommitKind::Update)
                    && pc.id == *id
                    && pc.version.writer == me
                    && pc.version.counter <= lost.counter
            })
            .map(|(t, _)| *t)
            .collect();
        for t in tickets {
            self.fail_commit(t, self.overwritten_failure(), now);
        }
    }

    /// How a commit overwritten by a concurrent winner is reported. Delta
    /// mode: a conflict (every member resolves to the higher version). In
    /// backup mode commits are ordered by the primary, so this only happens
    /// when views disagree; the change was applied and possibly read, so
    /// its fate counts as unknown, never as a clean conflict.
    fn overwritten_failure(&self) -> CommitFailure {
        match self.cfg.mode {
            crate::session::config::SessionMode::Delta => CommitFailure::Conflict,
            crate::session::config::SessionMode::Backup => CommitFailure::Unacknowledged,
        }
    }

    /// Transmits whose outcomes are overdue: report them timed out.
    pub(crate) fn expire_outcomes(&mut self, now: Instant) {
        let limit = self.cfg.access_timeout * OUTCOME_GIVE_UP;
        let overdue: Vec<(u64, MemberKey)> = self
            .inflight
            .iter()
            .filter(|(_, i)| now.saturating_duration_since(i.sent) > limit)
            .flat_map(|(t, i)| i.waiting.iter().map(move |m| (*t, *m)))
            .collect();
        for (t, m) in overdue {
            self.handle_send_outcome(SendToken(t), m, SendOutcome::TimedOut, now);
        }
    }

    /// Forgets a member that left: its outcomes will not come. Returns the
    /// commits that were waiting for it (the caller re-targets and finishes).
    pub(crate) fn forget_outcomes_of(&mut self, m: &MemberKey) -> Vec<u64> {
        let mut ended = Vec::new();
        self.inflight.retain(|_, inf| {
            inf.waiting.retain(|w| w != m);
            if inf.waiting.is_empty() {
                ended.push(inf.purpose.clone());
            }
            !inf.waiting.is_empty()
        });
        self.releasing.retain(|_, w| !w.contains(m));
        // Their last outcome will not come: let the next sweep try again.
        for p in ended {
            match p {
                Purpose::Repair { id, .. } => {
                    self.repairing.remove(&id);
                    self.failed_repairs.remove(&id);
                }
                Purpose::Release { id } => {
                    self.releasing.remove(&id);
                }
                _ => {}
            }
        }
        let tickets: Vec<u64> = self
            .commits
            .iter_mut()
            .filter_map(|(t, pc)| {
                let before = pc.awaiting.len();
                pc.awaiting.retain(|w| w != m);
                (pc.awaiting.len() != before).then_some(*t)
            })
            .collect();
        tickets
    }
}
