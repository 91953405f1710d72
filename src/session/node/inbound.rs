//! Messages from other members: decode, apply by the version rules, answer.

use super::{NodeState, SessionEvent, SessionNode};
use crate::session::codec::{
    self, CopyReason, DecodeError, Delta, Message, RemoveReason, SessionImage,
};
use crate::session::config::SessionMode;
use crate::session::model::{MemberKey, Session, SessionId, Version};
use crate::session::table::Apply;
use bytes::Bytes;
use std::fmt;
use std::time::Instant;

/// Why [`SessionNode::handle_message`] refused a message. With delivery
/// acks the channel turns a refusal into a FAIL ack, which the sender's
/// node sees as a failed outcome and repairs (by sending the session whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// The message could not be decoded.
    Malformed(DecodeError),
    /// A delta on a version this node does not hold: send the session whole.
    Gap,
    /// A concurrent newer version of the session is held here.
    Conflict,
    /// This node has drained; it holds nothing any more.
    Moved,
    /// Not the session's ready primary: ask the primary.
    NotPrimary,
    /// A release of a copy whose sender this node's placement still has
    /// as a holder: the sender keeps it.
    StillHolder,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Malformed(e) => write!(f, "malformed session message: {e}"),
            Reject::Gap => write!(f, "delta on a missing base version"),
            Reject::Conflict => write!(f, "concurrent newer version held"),
            Reject::Moved => write!(f, "node has drained"),
            Reject::NotPrimary => write!(f, "not the session's ready primary"),
            Reject::StillHolder => write!(
                f,
                "the sender still holds the session by this member's placement"
            ),
        }
    }
}

impl std::error::Error for Reject {}

impl SessionNode {
    /// Handles one message from member `from`. Return the result to the
    /// channel as the delivery ack (`Err` = FAIL).
    ///
    /// # Errors
    /// [`Reject`]: malformed input, a delta this node cannot apply, a
    /// losing concurrent version, or a drained node.
    pub fn handle_message(
        &mut self,
        from: MemberKey,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), Reject> {
        self.clock = self.clock.max(now);
        let msg = match Message::decode(&payload, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                self.stats.decode_errors += 1;
                return Err(Reject::Malformed(e));
            }
        };
        if self.state == NodeState::Drained
            && matches!(
                msg,
                Message::Delta(_)
                    | Message::Copy { .. }
                    | Message::ChangeId { .. }
                    | Message::StateChunk { .. }
            )
        {
            return Err(Reject::Moved);
        }
        match msg {
            Message::Delta(d) => self.on_delta(from, d, now),
            Message::Access { id } => {
                if let Some(s) = self.table.get_mut(&id) {
                    s.last_access = now;
                }
                Ok(())
            }
            Message::Copy { reason, session } => self.on_copy(from, reason, session, now),
            Message::Remove {
                id,
                version,
                reason,
            } => {
                self.on_remove(from, id, version, reason, now);
                Ok(())
            }
            Message::ChangeId { old, session } => self.on_change_id(from, old, session, now),
            Message::StateRequest {
                transfer,
                view,
                departures,
            } => {
                self.on_state_request(from, transfer, view, departures, now);
                Ok(())
            }
            Message::StateChunk {
                transfer,
                seq,
                sessions,
            } => {
                self.on_chunk(from, transfer, seq, sessions, now);
                Ok(())
            }
            Message::StateComplete {
                transfer,
                chunks,
                departures,
                leaving,
                ..
            } => {
                self.on_complete(from, transfer, chunks, departures, leaving, now);
                Ok(())
            }
            Message::ChunkAck { transfer, seq } => {
                self.chunk_outcome(from, transfer, seq, true, now);
                Ok(())
            }
            Message::FetchRequest { fetch, id } => self.on_fetch_request(from, fetch, id, now),
            Message::FetchReply { fetch, id, session } => {
                self.on_fetch_reply(fetch, id, session, now);
                Ok(())
            }
            Message::Forward {
                req,
                create,
                check_base,
                creation_time,
                txn,
            } => {
                self.on_forward(from, req, create, check_base, creation_time, txn, now);
                Ok(())
            }
            Message::ForwardChangeId { req, old, new } => {
                self.on_forward_change_id(from, req, old, new, now);
                Ok(())
            }
            Message::CommitResult {
                req,
                outcome,
                copies,
            } => {
                self.on_commit_result(from, req, outcome, copies);
                Ok(())
            }
            Message::Leaving => {
                self.member_leaving(from, now);
                Ok(())
            }
        }
    }

    fn on_delta(&mut self, from: MemberKey, d: Delta, now: Instant) -> Result<(), Reject> {
        let r = self.table.apply_delta(&d, now);
        self.after_apply(from, &d.id, d.version, r, now)
    }

    fn on_copy(
        &mut self,
        from: MemberKey,
        reason: CopyReason,
        img: SessionImage,
        now: Instant,
    ) -> Result<(), Reject> {
        let (id, version) = (img.id.clone(), img.version);
        if reason == CopyReason::Release && self.placement_of(&id).contains(&from) {
            // The two placements differ (a view change one of the two has
            // not seen yet). This node may already count the sender's copy
            // (it sent it a copy or a delta that was acknowledged): the
            // copy stays until both agree (nemesis seed 80985: the copy
            // was dropped, the member that counted it drained, and the
            // session was gone).
            return Err(Reject::StillHolder);
        }
        let recent = self.recent_departures(&id, now);
        let r = self.table.apply_image(img, recent, now);
        if reason == CopyReason::Repair && matches!(r, Apply::Stale | Apply::Lost { .. }) {
            let newer = |s: &&Session| s.version > version && s.version.writer != from.id;
            if let Some(s) = self.table.get(&id).filter(newer) {
                // The primary repairs from an older base than this copy, which
                // another member wrote (a commit of a former primary it
                // missed): refuse, so that it starts no term on that base,
                // and send it this copy. (A newer version it wrote itself
                // only overtook a resend of its own.)
                let payload = codec::encode_copy(CopyReason::Rebalance, s, now);
                self.stats.copies_sent += 1;
                self.send(vec![from], payload, None);
                return Err(Reject::Conflict);
            }
        }
        self.after_apply(from, &id, version, r, now)
    }

    fn after_apply(
        &mut self,
        from: MemberKey,
        id: &SessionId,
        version: Version,
        r: Apply,
        now: Instant,
    ) -> Result<(), Reject> {
        if matches!(r, Apply::Done { .. } | Apply::Stale) {
            self.keep_released(id);
        }
        match r {
            Apply::Done { created, displaced } => {
                self.stats.applied += 1;
                if let Some(old) = displaced {
                    self.stats.conflicts += 1;
                    if old.writer == self.me.id {
                        self.fail_overwritten(id, old, now);
                    }
                    self.push_event(SessionEvent::Conflict {
                        id: id.clone(),
                        kept: version,
                        discarded: old,
                    });
                }
                if created {
                    self.notify(SessionEvent::Created {
                        id: id.clone(),
                        by: from,
                    });
                } else {
                    self.notify(SessionEvent::Updated {
                        id: id.clone(),
                        version,
                        by: from,
                    });
                }
                self.forward_to_joiners(from, id, now);
                if self.state == NodeState::Draining {
                    // Whoever committed may not know yet that this node is
                    // leaving: pass the new state on to the next holders.
                    self.hand_off(id, now);
                }
                Ok(())
            }
            Apply::Stale => {
                self.stats.stale += 1;
                Ok(())
            }
            Apply::Gap => {
                self.stats.gaps += 1;
                Err(Reject::Gap)
            }
            Apply::Lost { kept } => {
                self.stats.conflicts += 1;
                self.push_event(SessionEvent::Conflict {
                    id: id.clone(),
                    kept,
                    discarded: version,
                });
                Err(Reject::Conflict)
            }
        }
    }

    /// A member just counted this node's copy of `id` (it sent a copy or
    /// a delta, which the ack confirms): a release of `id` in progress here
    /// stops and the copy stays. Its placement, unlike this node's, has
    /// this node as a holder (a view change one of the two has not seen
    /// yet); dropping the copy once the release's holders acknowledge would
    /// leave that member counting a copy that no longer exists (nemesis
    /// seed 61470: the primary then crashed and the session was gone). The
    /// sweep releases the copy again if it still should.
    fn keep_released(&mut self, id: &SessionId) {
        if self.releasing.remove(id).is_some() {
            self.orphans.remove(id);
        }
    }

    fn on_remove(
        &mut self,
        from: MemberKey,
        id: SessionId,
        _version: Version,
        reason: RemoveReason,
        now: Instant,
    ) {
        let had = self.table.remove(&id, now).is_some();
        self.forward.retain(|_, until| *until > now);
        let joiners: Vec<MemberKey> = self
            .forward
            .keys()
            .filter(|j| **j != from)
            .copied()
            .collect();
        if had && !joiners.is_empty() {
            let msg = Message::Remove {
                id: id.clone(),
                version: _version,
                reason,
            };
            self.send(joiners, msg.encode(), None);
        }
        if had {
            match reason {
                RemoveReason::Expired => self.notify(SessionEvent::Expired { id, local: false }),
                RemoveReason::Invalidated => {
                    self.notify(SessionEvent::Invalidated { id, by: from })
                }
            }
        }
    }

    fn on_change_id(
        &mut self,
        from: MemberKey,
        old: SessionId,
        img: SessionImage,
        now: Instant,
    ) -> Result<(), Reject> {
        // One step: the old id dies (tombstoned, so late copies of it are
        // ignored) and the new one appears, or neither if the message fails
        // to decode.
        let had_old = self.table.remove(&old, now).is_some();
        let new = img.id.clone();
        let holds_new =
            self.cfg.mode == SessionMode::Delta || self.placement_of(&new).contains(&self.me);
        let mut result = Ok(());
        if holds_new {
            let version = img.version;
            let recent = self.recent_departures(&new, now);
            match self.table.apply_image(img, recent, now) {
                Apply::Lost { kept } => {
                    self.stats.conflicts += 1;
                    self.push_event(SessionEvent::Conflict {
                        id: new.clone(),
                        kept,
                        discarded: version,
                    });
                    result = Err(Reject::Conflict);
                }
                Apply::Done { .. } => self.stats.applied += 1,
                _ => self.stats.stale += 1,
            }
        }
        if had_old || holds_new {
            self.notify(SessionEvent::IdChanged { old, new, by: from });
        }
        result
    }
}
