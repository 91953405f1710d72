//! Membership changes: re-replication after a member is lost (promotion of
//! surviving copies, new copies until `backupCount + 1` exist again), and
//! drain before shutdown.

use super::outcome::Purpose;
use super::{NodeState, SessionEvent, SessionNode};
use crate::session::codec::{self, CopyReason, Message};
use crate::session::config::SessionMode;
use crate::session::model::{MemberKey, SessionId};
use crate::session::placement::Placement;
use std::time::Instant;

impl SessionNode {
    /// A member joined (or was already known: then nothing happens). While
    /// this node is joining in backup mode it asks the new member for its
    /// share too.
    pub fn member_added(&mut self, m: MemberKey, now: Instant) {
        self.clock = self.clock.max(now);
        if m == self.me || !self.add_member(m, now) {
            return;
        }
        self.view_changed = Some(now);
        if self.cfg.mode == SessionMode::Backup {
            match self.state {
                NodeState::Joining => self.request_from(m, now),
                // A member back from a partition (or one this node had not
                // seen) may hold sessions placement now gives this node, and
                // nobody else sends them: ask it, as a joiner would. Until it
                // answered, this node answers for no session.
                NodeState::Ready => self.catch_up_from(m, now),
                // A member that joined after the leaving notice went out
                // would place sessions here (and release its copies of
                // them to this node) after this node is gone: tell it too.
                NodeState::Draining | NodeState::Drained => self.tell_leaving(m),
                NodeState::Idle | NodeState::TransferFailed => {}
            }
        }
        self.health_changed();
    }

    /// Member `m` announced that it drains: it leaves the placement set.
    pub(crate) fn member_leaving(&mut self, m: MemberKey, now: Instant) {
        if self.members.binary_search(&m).is_ok() && self.leaving.insert(m) {
            self.recompute_live(now);
            self.view_changed = Some(now);
            self.repair_dirty(now);
            self.health_changed();
        }
    }

    /// Sends the leaving notice of this node's drain to `m` (resent until
    /// it acknowledged, or left).
    fn tell_leaving(&mut self, m: MemberKey) {
        let Some(d) = &mut self.drain else {
            return;
        };
        if !d.notice.contains(&m) {
            d.notice.push(m);
        }
        self.send(vec![m], Message::Leaving.encode(), Some(Purpose::Leaving));
    }

    /// Reports the cluster's health after a change, and logs the first
    /// moment data is at risk (fewer copies than configured).
    pub(crate) fn health_changed(&mut self) {
        let under = self.under_replicated();
        let members = self.live.len();
        let risk = under > 0;
        if risk && !self.at_risk {
            crate::sr_log!(
                Warn,
                "{}: {under} session(s) have fewer than {} copies ({members} member(s) in placement): \
                 losing another node now can lose acknowledged commits",
                self.me.addr,
                self.copies()
            );
        }
        self.at_risk = risk;
        self.push_event(SessionEvent::Health {
            members,
            under_replicated: under,
        });
    }

    /// Adds a member to the view; false if it was known.
    pub(crate) fn add_member(&mut self, m: MemberKey, now: Instant) -> bool {
        match self.members.binary_search(&m) {
            Ok(_) => false,
            Err(pos) => {
                self.members.insert(pos, m);
                self.recompute_live(now);
                self.view_changed = Some(now);
                true
            }
        }
    }

    /// A member left or failed. In backup mode, for every session the lost
    /// member held, the highest-ranked surviving holder (the new primary if
    /// the primary was lost) sends the session to the members that the new
    /// placement adds, and pending commits are re-targeted so that an
    /// acknowledged commit always has its full set of copies.
    pub fn member_removed(&mut self, m: MemberKey, now: Instant) {
        self.clock = self.clock.max(now);
        let Ok(pos) = self.members.binary_search(&m) else {
            return;
        };
        let old_live = self.live.clone();
        self.members.remove(pos);
        self.leaving.remove(&m);
        self.recompute_live(now);
        self.view_changed = Some(now);
        let waiting = self.forget_outcomes_of(&m);
        self.forwards_lost(&m);
        self.donations.retain(|(to, _), _| *to != m);
        self.forward.remove(&m);
        let lost_fetches: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.target == m)
            .map(|(k, _)| *k)
            .collect();
        for f in lost_fetches {
            self.retry_fetch(f, now);
        }
        if self.cfg.mode == SessionMode::Backup {
            self.rebalance(&old_live, m, now);
            // Before any commit counts as acked without the lost copy, the
            // member that replaces it must have it too.
            let tickets: Vec<u64> = self.commits.keys().copied().collect();
            for t in tickets {
                self.retarget(t, now);
            }
        }
        for t in waiting {
            self.finish_if_done(t, now);
        }
        self.donor_lost(m, now);
        if let Some(d) = &mut self.drain {
            d.notice.retain(|x| *x != m);
            let affected: Vec<SessionId> = d
                .pending
                .iter_mut()
                .filter_map(|(id, w)| {
                    let before = w.len();
                    w.retain(|x| *x != m);
                    (w.len() != before).then(|| id.clone())
                })
                .collect();
            for id in affected {
                self.hand_off(&id, now);
            }
            if let Some(d) = &mut self.drain {
                let done: Vec<SessionId> = d
                    .pending
                    .iter()
                    .filter(|(_, w)| w.is_empty())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in done {
                    d.pending.remove(&id);
                    d.handed.insert(id);
                }
            }
        }
        self.check_drained();
        self.repair_dirty(now);
        self.health_changed();
    }

    /// Sends copy `id`, which this node holds but no longer by placement,
    /// to its holders; it is dropped only once every one of them
    /// acknowledged (hand-off before release).
    pub(crate) fn release(&mut self, id: SessionId, now: Instant) {
        if self.releasing.contains_key(&id) {
            return;
        }
        let to = self.placement_of(&id).others(&self.me);
        let Some(s) = self.table.get(&id) else {
            return;
        };
        if to.is_empty() {
            return; // nobody to hand it to: keep it
        }
        let payload = codec::encode_copy(CopyReason::Release, s, now);
        self.stats.copies_sent += 1;
        self.releasing.insert(id.clone(), to.clone());
        self.send(to, payload, Some(Purpose::Release { id }));
    }

    pub(crate) fn release_outcome(&mut self, id: SessionId, member: MemberKey, ok: bool) {
        let Some(w) = self.releasing.get_mut(&id) else {
            return;
        };
        if !ok {
            // Kept; the next sweep tries again.
            self.releasing.remove(&id);
            return;
        }
        w.retain(|m| *m != member);
        if w.is_empty() {
            self.releasing.remove(&id);
            if !self.placement_of(&id).contains(&self.me) {
                self.table.forget(&id);
            }
        }
    }

    /// Re-replication after `removed` left the placement set `old_live`.
    fn rebalance(&mut self, old_live: &[MemberKey], removed: MemberKey, now: Instant) {
        if matches!(self.state, NodeState::Draining | NodeState::Drained) {
            return;
        }
        let copies = self.copies();
        let mut plan: Vec<(SessionId, Vec<MemberKey>)> = Vec::new();
        for s in self.table.iter() {
            let old_h = Placement::holders(&s.id, old_live, copies);
            if !old_h.contains(&removed) {
                continue; // rendezvous: nothing moves for this session
            }
            if !old_h.contains(&self.me) {
                continue; // a copy this node does not hold by placement
            }
            let responsible = old_h.as_slice().iter().find(|x| **x != removed) == Some(&self.me);
            let new_h = Placement::holders(&s.id, &self.live, copies);
            if old_h.primary() == Some(removed) && new_h.primary() == Some(self.me) {
                self.stats.promotions += 1;
            }
            // The responsible holder fills the new holders; every surviving
            // holder also sends its copy to the new primary, which keeps the
            // newest: a commit the lost primary had sent to only some
            // backups must not be overtaken by an older copy.
            let mut to: Vec<MemberKey> = if responsible {
                new_h
                    .as_slice()
                    .iter()
                    .filter(|x| **x != self.me && !old_h.contains(x))
                    .copied()
                    .collect()
            } else {
                Vec::new()
            };
            if let Some(p) = new_h.primary() {
                if p != self.me && old_h.contains(&p) && !to.contains(&p) {
                    to.push(p);
                }
            }
            if !to.is_empty() {
                plan.push((s.id.clone(), to));
            }
        }
        for (id, to) in plan {
            self.send_rebalance(id, to, 0, now);
        }
    }

    pub(crate) fn send_rebalance(
        &mut self,
        id: SessionId,
        to: Vec<MemberKey>,
        attempt: u32,
        now: Instant,
    ) {
        let Some(s) = self.table.get(&id) else {
            return;
        };
        let payload = codec::encode_copy(CopyReason::Rebalance, s, now);
        self.stats.rereplications += 1;
        self.stats.copies_sent += 1;
        self.send(to, payload, Some(Purpose::Rebalance { id, attempt }));
    }

    /// Sends session `id` whole to the members that hold it once this
    /// (draining) node is gone and did not hold it before.
    pub(crate) fn hand_off(&mut self, id: &SessionId, now: Instant) {
        if self.cfg.mode == SessionMode::Delta {
            return;
        }
        let Some(s) = self.table.get(id) else {
            return;
        };
        let copies = self.copies();
        let mut with_me = self.live.clone();
        with_me.push(self.me);
        with_me.sort();
        let old_h = Placement::holders(id, &with_me, copies);
        if !old_h.contains(&self.me) {
            return; // a fetched or stale copy: not ours to hand over
        }
        let new_h = Placement::holders(id, &self.live, copies);
        let to: Vec<MemberKey> = new_h
            .as_slice()
            .iter()
            .filter(|x| !old_h.contains(x))
            .copied()
            .collect();
        let Some(d) = &mut self.drain else {
            return;
        };
        if to.is_empty() {
            if !d.pending.contains_key(id) {
                d.handed.insert(id.clone());
            }
            return;
        }
        d.pending
            .entry(id.clone())
            .or_default()
            .extend(to.iter().copied());
        let payload = codec::encode_copy(CopyReason::Handoff, s, now);
        self.stats.handoffs += 1;
        self.stats.copies_sent += 1;
        self.send(to, payload, Some(Purpose::Handoff { id: id.clone() }));
    }

    pub(crate) fn handoff_outcome(
        &mut self,
        id: SessionId,
        member: MemberKey,
        ok: bool,
        now: Instant,
    ) {
        let Some(d) = &mut self.drain else {
            return;
        };
        let Some(w) = d.pending.get_mut(&id) else {
            return;
        };
        let Some(pos) = w.iter().position(|x| *x == member) else {
            return;
        };
        w.swap_remove(pos);
        let empty = w.is_empty();
        if !ok && self.live.contains(&member) {
            // Not acknowledged: try again while the member is alive.
            if let Some(s) = self.table.get(&id) {
                let payload = codec::encode_copy(CopyReason::Handoff, s, now);
                if let Some(d) = &mut self.drain {
                    d.pending.entry(id.clone()).or_default().push(member);
                }
                self.send(vec![member], payload, Some(Purpose::Handoff { id }));
                return;
            }
        }
        if empty {
            if let Some(d) = &mut self.drain {
                d.pending.remove(&id);
                d.handed.insert(id);
            }
        }
        self.check_drained();
    }

    pub(crate) fn check_drained(&mut self) {
        if self.state != NodeState::Draining {
            return;
        }
        let Some(d) = &self.drain else {
            return;
        };
        if d.pending.is_empty() && d.notice.is_empty() && self.commits.is_empty() {
            self.state = NodeState::Drained;
            self.push_event(SessionEvent::Drained);
        }
    }
}
