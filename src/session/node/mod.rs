//! [`SessionNode`]: the replicated session store of one node, as a sans-IO
//! state machine.
//!
//! Inputs: the host's calls (`create`, `commit`, `access`, `invalidate`,
//! `change_id`, `get`, `drain`), and the channel's: [`SessionNode::handle_message`],
//! [`SessionNode::handle_send_outcome`], [`SessionNode::member_added`],
//! [`SessionNode::member_removed`], [`SessionNode::handle_timeout`]. Every
//! input takes `now`; the node never reads a clock.
//!
//! Outputs, polled after each input in this order: [`SessionNode::poll_transmit`]
//! (messages to send), [`SessionNode::poll_event`] (what the host should know),
//! [`SessionNode::poll_timeout`] (when to call `handle_timeout` next).

mod commit;
mod forward;
mod inbound;
mod membership;
mod outcome;
mod reroute;
mod transfer;
mod types;

use super::codec::{CodecLimits, Message, RemoveReason};
use super::config::{SessionConfig, SessionMode};
use super::model::{MemberKey, Session, SessionId, Txn, MAX_LOST};
use super::placement::{Holders, Placement};
use super::table::SessionTable;
use crate::session::hash::{HashMap, HashSet};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use forward::{Forwarded, Reader};
pub use inbound::Reject;
use outcome::{CommitKind, Inflight, PendingCommit, Purpose};
use transfer::{Donation, Fetch, Join};
pub use types::*;

/// Replaced placement sets kept ([`SessionNode::recent_views`]).
const MAX_RECENT_VIEWS: usize = 64;

/// The state of a drain.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    /// Sessions whose hand-off is in flight, with the members still to ack.
    pending: HashMap<SessionId, Vec<MemberKey>>,
    /// Sessions handed over: `get` answers `Moved`.
    handed: HashSet<SessionId>,
    /// Members that have not yet acknowledged the leaving notice.
    notice: Vec<MemberKey>,
}

/// The replicated session store of one node (see the module docs).
#[derive(Debug)]
pub struct SessionNode {
    pub(crate) cfg: SessionConfig,
    pub(crate) limits: CodecLimits,
    pub(crate) me: MemberKey,
    /// Other members, sorted (including ones that announced leaving).
    pub(crate) members: Vec<MemberKey>,
    /// Members that announced they are draining.
    pub(crate) leaving: HashSet<MemberKey>,
    /// The placement set: members not leaving, plus this node unless it drains.
    pub(crate) live: Vec<MemberKey>,
    pub(crate) table: SessionTable,
    pub(crate) state: NodeState,
    next_token: u64,
    next_ticket: u64,
    nonce: u64,
    pub(crate) inflight: HashMap<u64, Inflight>,
    pub(crate) commits: HashMap<u64, PendingCommit>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    pub(crate) join: Option<Join>,
    pub(crate) donations: HashMap<(MemberKey, u64), Donation>,
    pub(crate) fetches: HashMap<u64, Fetch>,
    /// Joiners this node served, and until when remote updates are
    /// forwarded to them (members that did not know them yet skip them).
    pub(crate) forward: HashMap<MemberKey, Instant>,
    pub(crate) drain: Option<Drain>,
    /// Copies this node does not hold by placement, seen by the last sweep.
    pub(crate) orphans: HashSet<SessionId>,
    next_sweep: Instant,
    /// When the placement set last changed (join, loss, leaving notice):
    /// copies may be in flight to new holders for a while after.
    pub(crate) view_changed: Option<Instant>,
    /// Placement sets replaced within the last `accessTimeout`, with when
    /// they were replaced: copies made under them may still be in flight.
    pub(crate) recent_views: VecDeque<(Instant, Vec<MemberKey>)>,
    /// Members that left the placement set (lost, cut off or drained), as
    /// this node counted them, raised to the highest count a donor or a
    /// joiner reported. A create starts in this term, so that it outranks
    /// a create an earlier primary made before it departed, which nobody
    /// acknowledged ([`SessionNode::departures`]).
    pub(crate) departures: u32,
    /// Commits handed to their primary, by ticket.
    pub(crate) forwards: HashMap<u64, Forwarded>,
    /// Commits this node (as primary) runs for another member: ticket →
    /// (member, its request id).
    pub(crate) served: HashMap<u64, (MemberKey, u64)>,
    /// Sessions with commits not yet acknowledged, and how many.
    pub(crate) pending_ids: HashMap<SessionId, u32>,
    /// Reads waiting for a session's pending commits to settle.
    pub(crate) deferred: HashMap<SessionId, Vec<Reader>>,
    /// Results of reads (`get`) for the host to take.
    pub(crate) fetched: HashMap<SessionId, Option<Session>>,
    /// Copies this node no longer holds by placement, sent to their
    /// holders: dropped once every holder acknowledged (hand-off before
    /// release). Id → members still to acknowledge.
    pub(crate) releasing: HashMap<SessionId, Vec<MemberKey>>,
    /// Re-replication copies that failed every quick retry (the link to
    /// the new holder is cut, it refused): the session stays counted
    /// under-replicated and each sweep sends the copy again until the
    /// member acknowledges it or no longer holds the session by placement.
    pub(crate) lagging: HashSet<(SessionId, MemberKey)>,
    /// Whether the last [`SessionEvent::Health`] reported a risk.
    pub(crate) at_risk: bool,
    /// Forwards already run (member, request id), oldest first in
    /// `seen_order`: a duplicate must not run again.
    pub(crate) seen_forwards: HashSet<(MemberKey, u64)>,
    pub(crate) seen_order: VecDeque<(MemberKey, u64)>,
    /// Sessions whose last commit here failed after it was applied: their
    /// state may not be on every holder, so reads wait until a repair copy
    /// (or a later commit) is acknowledged by all of them.
    pub(crate) dirty: HashSet<SessionId>,
    /// Dirty sessions whose repair copy some holder refused.
    pub(crate) failed_repairs: HashSet<SessionId>,
    /// Dirty sessions with a repair copy in flight.
    pub(crate) repairing: HashSet<SessionId>,
    /// Sessions this node became the primary of again: its next commit
    /// starts a new term even if it wrote the last version itself (a
    /// primary in between may have left a higher version on some copy).
    /// The term starts `2^lost` ahead, `lost` being the copy's count of
    /// departed primaries ([`Session::lost`],
    /// [`Version::new_term`](crate::session::model::Version::new_term)).
    pub(crate) new_term: HashSet<SessionId>,
    /// Commits whose base is not the current version while an earlier
    /// commit of the session is unacknowledged: decided once it settles
    /// (a conflict with a change that may still vanish is no conflict).
    pub(crate) queued: HashMap<SessionId, VecDeque<forward::Queued>>,
    /// The ticket the next `new_ticket` takes (a queued commit's).
    reuse_ticket: Option<u64>,
    /// When this node became ready after a state transfer.
    pub(crate) ready_at: Option<Instant>,
    /// The latest `now` any input brought.
    pub(crate) clock: Instant,
    pub(crate) stats: SessionStats,
}

impl SessionNode {
    /// A node known to the cluster as `me`, in state [`NodeState::Idle`].
    /// Feed it the current members with [`SessionNode::member_added`], then
    /// call [`SessionNode::start`].
    pub fn new(cfg: SessionConfig, me: MemberKey, now: Instant) -> Self {
        let nonce = u64::from_le_bytes(me.id[..8].try_into().unwrap_or([0; 8]));
        SessionNode {
            next_sweep: now + cfg.expire_check_interval,
            cfg,
            limits: CodecLimits::default(),
            me,
            members: Vec::new(),
            leaving: HashSet::default(),
            live: vec![me],
            table: SessionTable::default(),
            state: NodeState::Idle,
            next_token: 1,
            next_ticket: 1,
            nonce,
            inflight: HashMap::default(),
            commits: HashMap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            join: None,
            donations: HashMap::default(),
            fetches: HashMap::default(),
            forward: HashMap::default(),
            drain: None,
            orphans: HashSet::default(),
            view_changed: None,
            recent_views: VecDeque::new(),
            departures: 0,
            forwards: HashMap::default(),
            served: HashMap::default(),
            pending_ids: HashMap::default(),
            deferred: HashMap::default(),
            fetched: HashMap::default(),
            releasing: HashMap::default(),
            lagging: HashSet::default(),
            at_risk: false,
            seen_forwards: HashSet::default(),
            seen_order: VecDeque::new(),
            dirty: HashSet::default(),
            failed_repairs: HashSet::default(),
            repairing: HashSet::default(),
            new_term: HashSet::default(),
            queued: HashMap::default(),
            reuse_ticket: None,
            ready_at: None,
            clock: now,
            stats: SessionStats::default(),
        }
    }

    /// Replaces the decoder bounds (defaults: [`CodecLimits::default`]).
    pub fn set_limits(&mut self, limits: CodecLimits) {
        self.limits = limits;
    }
    /// This node's key.
    pub fn me(&self) -> MemberKey {
        self.me
    }
    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }
    /// Life-cycle state.
    pub fn state(&self) -> NodeState {
        self.state
    }
    /// Departures from the placement set this node has counted (its own
    /// count, raised to the highest that a donor or joiner reported in a
    /// state transfer). A create in backup mode is the first version of
    /// this term: a create that an earlier primary made before it departed,
    /// and that nobody acknowledged, is in a lower term (that departure was
    /// counted here after it), so it never replaces this one when a
    /// partition heals.
    pub fn departures(&self) -> u32 {
        self.departures
    }

    /// Raises the departure count to `n` if that is higher.
    pub(crate) fn heard_departures(&mut self, n: u32) {
        self.departures = self.departures.max(n);
    }

    /// True once state transfer completed (or the node started alone).
    pub fn is_ready(&self) -> bool {
        self.state == NodeState::Ready
    }
    /// Counters.
    pub fn stats(&self) -> SessionStats {
        let mut s = self.stats.clone();
        s.sessions = self.table.len();
        s.under_replicated = self.under_replicated();
        s.handoffs_in_progress = self.releasing.len()
            + self.donations.len()
            + self.drain.as_ref().map_or(0, |d| d.pending.len());
        s
    }
    /// Sessions held here (all copies: primary, backup, fetched).
    pub fn sessions(&self) -> &SessionTable {
        &self.table
    }
    /// Reads a session without side effects.
    pub fn peek(&self, id: &[u8]) -> Option<&Session> {
        self.table.get(id)
    }
    /// Where session `id` lives now (`[primary, backups...]`); in delta mode
    /// the first member is the one that owns its expiry.
    pub fn placement_of(&self, id: &[u8]) -> Holders {
        Placement::holders(id, &self.live, self.copies())
    }
    /// True if this node is the primary of `id`. A host that chooses session
    /// ids can draw until this holds, so new sessions start out local.
    pub fn is_primary_for(&self, id: &[u8]) -> bool {
        self.placement_of(id).primary() == Some(self.me)
    }
    /// Commits not yet acked or failed.
    pub fn pending_commits(&self) -> usize {
        self.commits.len()
    }

    pub(crate) fn copies(&self) -> usize {
        match self.cfg.mode {
            SessionMode::Delta => self.live.len().max(1),
            SessionMode::Backup => self.cfg.backup_count + 1,
        }
    }

    /// The members that must hold a copy of `id` besides this node.
    pub(crate) fn required(&self, id: &[u8]) -> Vec<MemberKey> {
        match self.cfg.mode {
            SessionMode::Delta => self.peers(),
            SessionMode::Backup => self.placement_of(id).others(&self.me),
        }
    }

    /// Members that take part in placement, other than this node.
    pub(crate) fn peers(&self) -> Vec<MemberKey> {
        self.live
            .iter()
            .filter(|m| **m != self.me)
            .copied()
            .collect()
    }

    pub(crate) fn recompute_live(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        let old = std::mem::take(&mut self.live);
        let draining = matches!(self.state, NodeState::Draining | NodeState::Drained);
        let mut live: Vec<MemberKey> = self
            .members
            .iter()
            .filter(|m| !self.leaving.contains(m))
            .copied()
            .collect();
        if !draining {
            live.push(self.me);
        }
        live.sort();
        if live != old {
            let departed = old.iter().filter(|m| !live.contains(m)).count();
            self.departures = self
                .departures
                .saturating_add(u32::try_from(departed).unwrap_or(u32::MAX));
            if self.cfg.mode == SessionMode::Backup {
                self.primaries_changed(&old, &live);
            }
            self.recent_views.push_back((now, old));
            while self.recent_views.len() > MAX_RECENT_VIEWS {
                self.recent_views.pop_front();
            }
        }
        self.live = live;
    }

    /// The placement set went from `old` to `live` (backup mode). Every
    /// copy whose primary left it (lost, cut off or drained: this node
    /// cannot tell) counts one more departure ([`Session::lost`]): that
    /// primary may have started a term nobody acknowledged. Sessions this
    /// node is the new primary of: its copy may be newer than another
    /// holder's (a commit the former primary had not finished); repair
    /// them before serving reads, and start a new term on the next commit.
    fn primaries_changed(&mut self, old: &[MemberKey], live: &[MemberKey]) {
        let copies = self.copies();
        let ready = self.state == NodeState::Ready;
        let me = self.me;
        let mut promoted = Vec::new();
        for s in self.table.iter_mut() {
            let was = Placement::holders(&s.id, old, copies).primary();
            if was.is_some_and(|p| !live.contains(&p)) {
                s.lost = s.lost.saturating_add(1).min(MAX_LOST);
            }
            if ready
                && was != Some(me)
                && Placement::holders(&s.id, live, copies).primary() == Some(me)
            {
                promoted.push(s.id.clone());
            }
        }
        self.dirty.extend(promoted.iter().cloned());
        self.new_term.extend(promoted);
    }

    /// Departures of `id`'s primary from the placement set seen here in
    /// the last `accessTimeout` (`primarySettleTime` if longer): a copy of
    /// `id` sent before one of them may not count it, so it is added to
    /// the copy's count when the copy is applied. [`MAX_LOST`] if the
    /// views kept do not reach back that far.
    pub(crate) fn recent_departures(&self, id: &[u8], now: Instant) -> u8 {
        if self.cfg.mode != SessionMode::Backup {
            return 0;
        }
        let window = self.cfg.access_timeout.max(self.cfg.primary_settle_time);
        let within = |t: &Instant| now.saturating_duration_since(*t) < window;
        if self.recent_views.len() >= MAX_RECENT_VIEWS
            && self.recent_views.front().is_some_and(|(t, _)| within(t))
        {
            return MAX_LOST;
        }
        let copies = self.copies();
        let mut n = 0u8;
        for (i, (t, old)) in self.recent_views.iter().enumerate() {
            if !within(t) {
                continue;
            }
            let next = self.recent_views.get(i + 1).map_or(&self.live, |(_, v)| v);
            if old.iter().all(|m| next.contains(m)) {
                continue; // only joins: nobody departed
            }
            let was = Placement::holders(id, old, copies).primary();
            if was.is_some_and(|p| !next.contains(&p)) {
                n = n.saturating_add(1);
            }
        }
        n.min(MAX_LOST)
    }

    pub(crate) fn push_event(&mut self, e: SessionEvent) {
        self.events.push_back(e);
    }

    pub(crate) fn notify(&mut self, e: SessionEvent) {
        if self.cfg.notify_listeners_on_replication {
            self.events.push_back(e);
        }
    }

    pub(crate) fn nonce(&mut self) -> u64 {
        self.nonce = self.nonce.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.nonce | 1
    }

    /// Queues a transmit; `purpose` gets the per-member outcomes.
    pub(crate) fn send(
        &mut self,
        to: Vec<MemberKey>,
        payload: Bytes,
        purpose: Option<Purpose>,
    ) -> u64 {
        if to.is_empty() {
            return 0;
        }
        let token = match purpose {
            Some(p) => {
                let t = self.next_token;
                self.next_token += 1;
                self.inflight.insert(
                    t,
                    Inflight {
                        purpose: p,
                        sent: self.clock,
                        waiting: to.clone(),
                    },
                );
                t
            }
            None => 0,
        };
        let to = if to.len() == 1 {
            Dest::One(to[0])
        } else {
            Dest::Many(to)
        };
        self.transmits.push_back(Transmit {
            to,
            payload,
            token: SendToken(token),
        });
        token
    }

    /// Starts the node: with no other member it is ready at once; otherwise
    /// it asks for state (delta mode: the first member; backup mode: every
    /// member, for the sessions the placement now assigns to this node).
    pub fn start(&mut self, now: Instant) {
        if self.state != NodeState::Idle && self.state != NodeState::TransferFailed {
            return;
        }
        self.begin_join(now);
    }

    /// Starts recording changes to session `id`.
    pub fn begin(&self, id: impl Into<SessionId>) -> Txn {
        Txn::new(id)
    }

    /// Looks a session up for a request. In backup mode a session this node
    /// does not hold is fetched from its owner ([`Lookup::Fetching`], then a
    /// [`SessionEvent::Fetched`]); after drain, [`Lookup::Moved`] names the
    /// new owner.
    pub fn get(&mut self, id: &[u8], now: Instant) -> Lookup<'_> {
        self.clock = self.clock.max(now);
        let owner_without_me = || {
            let others: Vec<MemberKey> = self
                .live
                .iter()
                .filter(|m| **m != self.me)
                .copied()
                .collect();
            Placement::holders(id, &others, 1).primary()
        };
        match self.state {
            NodeState::Drained => {
                return owner_without_me().map_or(Lookup::NotFound, Lookup::Moved);
            }
            NodeState::Draining => {
                let handed = self.drain.as_ref().is_some_and(|d| d.handed.contains(id));
                if handed {
                    return owner_without_me().map_or(Lookup::NotFound, Lookup::Moved);
                }
            }
            _ => {}
        }
        if self.cfg.mode == SessionMode::Delta {
            return match self.table.get(id) {
                Some(s) => Lookup::Local(s),
                None => Lookup::NotFound,
            };
        }
        // Backup mode: the primary orders the session's commits, so it
        // answers reads, and only with acknowledged state.
        if self.is_primary_for(id) {
            if self.state != NodeState::Ready {
                return Lookup::Unavailable;
            }
            if self.pending_ids.contains_key(id) {
                let queued = self
                    .deferred
                    .get(id)
                    .is_some_and(|v| v.iter().any(|r| matches!(r, Reader::Local)));
                if queued {
                    return Lookup::Fetching { owner: self.me };
                }
                return match self.defer_read(Bytes::copy_from_slice(id), Reader::Local) {
                    true => Lookup::Fetching { owner: self.me },
                    false => Lookup::Unavailable,
                };
            }
            if self.dirty.contains(id) || !self.authoritative(id, now) {
                // Its copy may be behind, or hold a change not acknowledged.
                return Lookup::Unavailable;
            }
            if self.table.get(id).is_some() {
                return Lookup::Local(self.table.get(id).expect("checked above"));
            }
            return Lookup::NotFound;
        }
        match self.start_fetch(Bytes::copy_from_slice(id), now) {
            Some(owner) => Lookup::Fetching { owner },
            None => Lookup::Unavailable,
        }
    }

    /// The result of the read of `id` that a [`SessionEvent::Fetched`]
    /// announced: `Some(Some(session))` found, `Some(None)` absent, `None`
    /// if no result is waiting (taken already, or dropped past its bound).
    pub fn take_fetched(&mut self, id: &[u8]) -> Option<Option<Session>> {
        self.fetched.remove(id)
    }

    /// Hands every session this node holds to the members that hold it once
    /// this node is gone, tells everyone it is leaving, and emits
    /// [`SessionEvent::Drained`] when all of that is acknowledged. Commits
    /// made here or arriving meanwhile are forwarded, not lost.
    pub fn drain(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        if matches!(self.state, NodeState::Draining | NodeState::Drained) {
            return;
        }
        self.state = NodeState::Draining;
        self.recompute_live(now);
        self.view_changed = Some(now);
        let notice = self.members.clone();
        self.drain = Some(Drain {
            notice: notice.clone(),
            ..Drain::default()
        });
        self.send(notice, Message::Leaving.encode(), Some(Purpose::Leaving));
        for id in self.table.ids() {
            self.hand_off(&id, now);
        }
        self.check_drained();
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Messages are waiting for [`SessionNode::poll_transmit`].
    pub fn has_transmits(&self) -> bool {
        !self.transmits.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When [`SessionNode::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_sweep;
        if let Some(d) = self.join.as_ref().and_then(|j| j.deadline) {
            t = t.min(d);
        }
        for f in self.fetches.values() {
            t = t.min(f.deadline);
        }
        for f in self.forwards.values() {
            t = t.min(f.retry_at.unwrap_or(f.deadline));
        }
        for q in self.queued.values() {
            if let Some(q) = q.front() {
                t = t.min(q.deadline);
            }
        }
        if let Some(s) = self.settle_deadline() {
            t = t.min(s);
        }
        Some(t)
    }

    /// Runs timers: transfer timeout, fetch timeouts, expiry and the sweep of
    /// copies this node no longer holds by placement.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        self.check_transfer_timeout(now);
        self.check_fetch_timeouts(now);
        self.run_retries(now);
        self.check_forward_timeouts(now);
        self.check_queue_timeouts(now);
        self.run_settled(now);
        if now >= self.next_sweep {
            self.next_sweep = now + self.cfg.expire_check_interval;
            self.check_transfer_stall(now);
            self.sweep(now);
        }
    }

    /// Expires idle sessions whose expiry this node owns (and, as a safety
    /// net, any copy idle for twice its interval), and drops copies this
    /// node has not held by placement for two sweeps.
    fn sweep(&mut self, now: Instant) {
        self.table
            .purge_tombstones(now, self.cfg.tombstone_retention);
        self.expire_outcomes(now);
        let backup = self.cfg.mode == SessionMode::Backup;
        let sweep_orphans = backup
            && self.donations.is_empty()
            && self.state == NodeState::Ready
            && self.join.is_none();
        let mut expire = Vec::new();
        let mut drop = Vec::new();
        let mut release = Vec::new();
        let mut orphans = HashSet::default();
        for s in self.table.iter() {
            let holders = if backup || s.is_expired(now) {
                Some(self.placement_of(&s.id))
            } else {
                None
            };
            if sweep_orphans {
                if let Some(h) = &holders {
                    if !h.contains(&self.me) {
                        if self.orphans.contains(&s.id) {
                            release.push(s.id.clone());
                            orphans.insert(s.id.clone());
                        } else {
                            orphans.insert(s.id.clone());
                        }
                        continue;
                    }
                }
            }
            if s.is_expired(now) {
                let owner = holders.and_then(|h| h.primary());
                let twice =
                    Duration::from_secs((s.meta.max_inactive_secs as u64).saturating_mul(2));
                if owner == Some(self.me) {
                    expire.push((s.id.clone(), s.version));
                } else if now.saturating_duration_since(s.last_access) > twice {
                    drop.push(s.id.clone());
                }
            }
        }
        self.orphans = orphans;
        for id in drop {
            self.table.forget(&id);
        }
        for id in release {
            self.release(id, now);
        }
        self.repair_dirty(now);
        self.retry_lagging(now);
        let at_risk = self.under_replicated() > 0;
        if at_risk != self.at_risk {
            self.health_changed();
        }
        for (id, version) in expire {
            let to = self.required(&id);
            self.table.remove(&id, now);
            self.stats.expired += 1;
            let kind = CommitKind::Remove(RemoveReason::Expired, version);
            self.send(to, outcome::remove_message(&id, &kind), None);
            self.push_event(SessionEvent::Expired { id, local: true });
        }
    }
}
