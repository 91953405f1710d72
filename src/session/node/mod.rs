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

mod forward;
mod inbound;
mod membership;
mod outcome;
mod transfer;
mod types;

use super::codec::{self, CodecLimits, CopyReason, Delta, Message, RemoveReason};
use super::config::{SessionConfig, SessionMode};
use super::model::{MemberKey, Session, SessionId, SessionMeta, Txn, Version};
use super::placement::{Holders, Placement};
use super::table::SessionTable;
use crate::error::{Error, Result};
use crate::session::hash::{HashMap, HashSet};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use forward::{Forwarded, Reader};
pub use inbound::Reject;
use outcome::{CommitKind, Inflight, PendingCommit, Purpose};
use transfer::{Donation, Fetch, Join};
pub use types::*;

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
            forwards: HashMap::default(),
            served: HashMap::default(),
            pending_ids: HashMap::default(),
            deferred: HashMap::default(),
            fetched: HashMap::default(),
            releasing: HashMap::default(),
            at_risk: false,
            seen_forwards: HashSet::default(),
            seen_order: VecDeque::new(),
            dirty: HashSet::default(),
            failed_repairs: HashSet::default(),
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
            self.recent_views.push_back((now, old));
            while self.recent_views.len() > 64 {
                self.recent_views.pop_front();
            }
        }
        self.live = live;
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

    fn check_writable(&self) -> Result<()> {
        if self.state == NodeState::Drained {
            return Err(Error::Shutdown);
        }
        Ok(())
    }

    /// Runs a queued commit again, under its ticket.
    pub(crate) fn rerun(
        &mut self,
        ticket: u64,
        txn: Txn,
        create: Option<u64>,
        origin: Option<(MemberKey, u64)>,
        now: Instant,
    ) -> Result<CommitTicket> {
        self.reuse_ticket = Some(ticket);
        let r = match create {
            Some(ct) => self.create_at(txn, ct, now, origin),
            None => self.commit_at(txn, now, origin),
        };
        self.reuse_ticket = None;
        r
    }

    pub(crate) fn next_ticket(&mut self) -> u64 {
        let t = self.next_ticket;
        self.next_ticket += 1;
        t
    }

    #[allow(clippy::too_many_arguments)]
    fn new_ticket(
        &mut self,
        id: SessionId,
        kind: CommitKind,
        version: Version,
        awaiting: Vec<MemberKey>,
        token: u64,
        origin: Option<(MemberKey, u64)>,
    ) -> CommitTicket {
        let reused = self.reuse_ticket.take();
        let t = reused.unwrap_or_else(|| self.next_ticket());
        if origin.is_none() && reused.is_none() {
            self.stats.commits += 1;
        }
        let pc = PendingCommit {
            id,
            kind,
            version,
            awaiting,
            acked: Vec::new(),
            retries: 0,
        };
        if let Some(o) = origin {
            self.served.insert(t, o);
        }
        if pc.awaiting.is_empty() {
            // `check_min_copies` let it through: one copy is enough.
            self.resolve(t, pc.id, Ok(1));
        } else {
            *self.pending_ids.entry(pc.id.clone()).or_insert(0) += 1;
            self.commits.insert(t, pc);
            if let Some(inf) = self.inflight.get_mut(&token) {
                inf.purpose = Purpose::Commit { ticket: t };
            }
        }
        CommitTicket(t)
    }

    /// Creates session `txn.id` with the changes in `txn`, and replicates it.
    ///
    /// # Errors
    /// [`Error::Conflict`] if the id exists or was removed recently,
    /// [`Error::InvalidArgument`] past `maxActiveSessions`, [`Error::Shutdown`]
    /// after drain.
    pub fn create(&mut self, txn: Txn, creation_time: u64, now: Instant) -> Result<CommitTicket> {
        self.check_writable()?;
        if txn.id.len() > self.limits.max_id_len {
            return Err(Error::InvalidArgument("session id too long".into()));
        }
        if self.forwards_to_primary(&txn.id) {
            return self.forward_commit(txn, true, creation_time, now);
        }
        self.create_at(txn, creation_time, now, None)
    }

    /// True if a commit of `id` made here goes to its primary (backup mode,
    /// this node not the primary).
    fn forwards_to_primary(&self, id: &[u8]) -> bool {
        self.cfg.mode == SessionMode::Backup && !self.is_primary_for(id)
    }

    /// Fails with `Unavailable` if fewer than `minCommitCopies` holders
    /// (this node included) would take a commit of `id`.
    fn check_min_copies(&self, id: &[u8]) -> Result<()> {
        let copies = 1 + self.required(id).len();
        if copies < self.cfg.min_commit_copies {
            return Err(Error::Unreachable(format!(
                "only {copies} holder(s) up, minCommitCopies is {}",
                self.cfg.min_commit_copies
            )));
        }
        Ok(())
    }

    pub(crate) fn create_at(
        &mut self,
        txn: Txn,
        creation_time: u64,
        now: Instant,
        origin: Option<(MemberKey, u64)>,
    ) -> Result<CommitTicket> {
        if self.table.get(&txn.id).is_some() || self.table.is_tombstoned(&txn.id) {
            if self.unsettled(&txn.id) {
                return self.queue_commit(txn, Some(creation_time), origin, now);
            }
            self.stats.conflicts += 1;
            return Err(Error::Conflict("session id in use".into()));
        }
        if self.cfg.mode == SessionMode::Backup && !self.authoritative(&txn.id, now) {
            // A copy may still be on its way here: creating now could
            // replace a session that exists.
            return Err(Error::Unreachable(
                "placement changed recently; this primary may not hold every session yet".into(),
            ));
        }
        self.check_min_copies(&txn.id)?;
        if let Some(max) = self.cfg.max_active_sessions {
            if self.table.len() >= max {
                return Err(Error::InvalidArgument("maxActiveSessions reached".into()));
            }
        }
        let meta = SessionMeta {
            creation_time,
            max_inactive_secs: self.cfg.max_inactive_interval,
            principal: None,
            auth_type: None,
        };
        let mut s = Session::new(
            txn.id.clone(),
            meta,
            Version::default().next(self.me.id),
            now,
        );
        s.apply(&txn.ops, &txn.meta);
        let to = self.required(&s.id);
        let payload = codec::encode_copy(CopyReason::Create, &s, now);
        let version = s.version;
        self.table.insert_local(s);
        let token = self.send(to.clone(), payload, Some(Purpose::Other));
        Ok(self.new_ticket(txn.id, CommitKind::Update, version, to, token, origin))
    }

    /// Commits a request's changes: applies them here and sends only what
    /// changed to the members that hold the session. `Ok(None)` if `txn` is
    /// empty (the request only read: see [`SessionNode::access`]).
    ///
    /// # Errors
    /// [`Error::NotFound`] if this node holds no copy (in backup mode, `get`
    /// it first), [`Error::Shutdown`] after drain.
    pub fn commit(&mut self, txn: Txn, now: Instant) -> Result<Option<CommitTicket>> {
        self.check_writable()?;
        if txn.is_empty() {
            if self.table.get(&txn.id).is_some() {
                self.access(&txn.id, now)?;
            }
            return Ok(None);
        }
        if self.forwards_to_primary(&txn.id) {
            return self.forward_commit(txn, false, 0, now).map(Some);
        }
        self.commit_at(txn, now, None).map(Some)
    }

    pub(crate) fn commit_at(
        &mut self,
        txn: Txn,
        now: Instant,
        origin: Option<(MemberKey, u64)>,
    ) -> Result<CommitTicket> {
        let backup = self.cfg.mode == SessionMode::Backup;
        if backup && !self.authoritative(&txn.id, now) {
            return Err(Error::Unreachable(
                "placement changed recently; this primary may not hold the newest copy yet".into(),
            ));
        }
        let Some(held) = self.table.get(&txn.id).map(|s| s.version) else {
            return Err(Error::NotFound);
        };
        if let Some(b) = txn.base {
            if held < b {
                // The read saw a newer version than this node holds: this
                // copy is behind (placement just moved), not overtaken.
                return Err(Error::Unreachable(
                    "this primary's copy is older than the version read; retry".into(),
                ));
            }
            if held != b && self.unsettled(&txn.id) {
                return self.queue_commit(txn, None, origin, now);
            }
            if held != b {
                self.stats.conflicts += 1;
                return Err(Error::Conflict(
                    "the session changed since the version this transaction read".into(),
                ));
            }
        }
        self.check_min_copies(&txn.id)?;
        let me = self.me.id;
        let to = self.required(&txn.id);
        let draining = self.state == NodeState::Draining;
        let s = self.table.get_mut(&txn.id).ok_or(Error::NotFound)?;
        let base = s.version;
        s.apply(&txn.ops, &txn.meta);
        s.version = if backup && base.writer != me {
            // First commit of a new primary: a new term (the counter's high
            // half), so that whatever an earlier primary left on some copy
            // without acknowledgement orders before every commit from now on.
            Version {
                counter: ((base.counter >> 32) + 1) << 32,
                writer: me,
            }
        } else {
            base.next(me)
        };
        s.last_access = now;
        s.last_replicated = now;
        let version = s.version;
        let payload = if draining {
            // New holders may not have the session yet: send it whole.
            codec::encode_copy(CopyReason::Handoff, s, now)
        } else {
            Message::Delta(Delta {
                id: txn.id.clone(),
                base,
                version: s.version,
                ops: txn.ops,
                meta: txn.meta,
            })
            .encode()
        };
        let token = self.send(to.clone(), payload, Some(Purpose::Other));
        Ok(self.new_ticket(txn.id, CommitKind::Update, version, to, token, origin))
    }

    /// Records a read-only access: refreshes the last access here and, no
    /// more often than a quarter of the max inactive interval, on the
    /// members that hold the session (so none of them expires it).
    ///
    /// # Errors
    /// [`Error::NotFound`] if this node holds no copy.
    pub fn access(&mut self, id: &[u8], now: Instant) -> Result<()> {
        let s = self.table.get_mut(id).ok_or(Error::NotFound)?;
        s.last_access = now;
        if s.meta.max_inactive_secs < 0 {
            return Ok(());
        }
        let every = Duration::from_millis((s.meta.max_inactive_secs as u64).saturating_mul(250));
        if now.saturating_duration_since(s.last_replicated) < every {
            return Ok(());
        }
        s.last_replicated = now;
        let id = s.id.clone();
        let to = self.required(&id);
        self.send(to, Message::Access { id }.encode(), None);
        Ok(())
    }

    /// Invalidates a session cluster-wide.
    ///
    /// # Errors
    /// [`Error::NotFound`] if this node holds no copy.
    pub fn invalidate(&mut self, id: &[u8], now: Instant) -> Result<CommitTicket> {
        self.check_writable()?;
        let s = self.table.get(id).ok_or(Error::NotFound)?;
        let (id, version) = (s.id.clone(), s.version);
        let to = self.required(&id);
        self.table.remove(&id, now);
        let kind = CommitKind::Remove(RemoveReason::Invalidated, version);
        let payload = outcome::remove_message(&id, &kind);
        let token = self.send(to.clone(), payload, Some(Purpose::Other));
        Ok(self.new_ticket(id, kind, version, to, token, None))
    }

    /// Renames a session cluster-wide (Tomcat's JvmRouteBinderValve
    /// takeover). Each member applies the rename as one step, so none ends
    /// with both ids or neither.
    ///
    /// # Errors
    /// [`Error::NotFound`] if `old` is not here, [`Error::Conflict`] if `new`
    /// is in use or was removed recently.
    pub fn change_id(
        &mut self,
        old: &[u8],
        new: impl Into<SessionId>,
        now: Instant,
    ) -> Result<CommitTicket> {
        self.check_writable()?;
        let new = new.into();
        if new.len() > self.limits.max_id_len {
            return Err(Error::InvalidArgument("session id too long".into()));
        }
        if self.table.get(&new).is_some() || self.table.is_tombstoned(&new) {
            return Err(Error::Conflict("new session id in use".into()));
        }
        let old = self.table.get(old).ok_or(Error::NotFound)?.id.clone();
        let mut to = self.required(&old);
        for m in self.required(&new) {
            if !to.contains(&m) {
                to.push(m);
            }
        }
        let mut s = self.table.remove(&old, now).ok_or(Error::NotFound)?;
        s.id = new.clone();
        s.version = s.version.next(self.me.id);
        s.last_access = now;
        let payload = codec::encode_change_id(&old, &s, now);
        let version = s.version;
        self.table.insert_local(s);
        let token = self.send(to.clone(), payload, Some(Purpose::Other));
        Ok(self.new_ticket(new, CommitKind::ChangeId { old }, version, to, token, None))
    }

    /// Looks a session up for a request. In backup mode a session this node
    /// does not hold is fetched from its owner ([`Lookup::Fetching`], then a
    /// [`SessionEvent::Fetched`]); after drain, [`Lookup::Moved`] names the
    /// new owner.
    pub fn get(&mut self, id: &[u8], now: Instant) -> Lookup<'_> {
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
            t = t.min(f.deadline);
        }
        for q in self.queued.values() {
            if let Some(q) = q.front() {
                t = t.min(q.deadline);
            }
        }
        Some(t)
    }

    /// Runs timers: transfer timeout, fetch timeouts, expiry and the sweep of
    /// copies this node no longer holds by placement.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        self.check_transfer_timeout(now);
        self.check_fetch_timeouts(now);
        self.check_forward_timeouts(now);
        self.check_queue_timeouts(now);
        if now >= self.next_sweep {
            self.next_sweep = now + self.cfg.expire_check_interval;
            self.sweep(now);
        }
    }

    /// Expires idle sessions whose expiry this node owns (and, as a safety
    /// net, any copy idle for twice its interval), and drops copies this
    /// node has not held by placement for two sweeps.
    fn sweep(&mut self, now: Instant) {
        self.table
            .purge_tombstones(now, self.cfg.tombstone_retention);
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
