//! The host's writes: create, commit (with optimistic concurrency),
//! access, invalidate and id change, and the tickets that report them.
//! In backup mode a write made on a node that is not the session's
//! primary is handed to the primary (see `forward`).

use super::outcome::{self, CommitKind, PendingCommit, Purpose};
use super::{CommitTicket, NodeState, SessionEvent, SessionNode};
use crate::error::{Error, Result};
use crate::session::codec::{self, CopyReason, Delta, Message, RemoveReason};
use crate::session::config::SessionMode;
use crate::session::model::{MemberKey, Session, SessionId, SessionMeta, Txn, Version};
use std::time::{Duration, Instant};

impl SessionNode {
    pub(crate) fn check_writable(&self) -> Result<()> {
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
    pub(crate) fn new_ticket(
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
        self.clock = self.clock.max(now);
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
    pub(crate) fn forwards_to_primary(&self, id: &[u8]) -> bool {
        self.cfg.mode == SessionMode::Backup && !self.is_primary_for(id)
    }

    /// Fails with `Unavailable` if fewer than `minCommitCopies` holders
    /// (this node included) would take a commit of `id`.
    pub(crate) fn check_min_copies(&self, id: &[u8]) -> Result<()> {
        if self.cfg.min_commit_copies <= 1 {
            return Ok(()); // this node's copy is always there
        }
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
        self.check_min_copies(&txn.id)?;
        if self.cfg.mode == SessionMode::Backup && !self.authoritative(&txn.id, now) {
            // A copy may still be on its way here: creating now could
            // replace a session that exists. Wait for it.
            return self.queue_commit(txn, Some(creation_time), origin, now);
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
        // Backup mode: the first version of the term of the departures
        // counted here, above a create that a departed primary may have
        // left unacknowledged (it counted fewer).
        let term = match self.cfg.mode {
            SessionMode::Backup => u64::from(self.departures) << 32,
            SessionMode::Delta => 0,
        };
        let first = Version {
            counter: term + 1,
            writer: self.me.id,
        };
        let mut s = Session::new(txn.id.clone(), meta, first, now);
        s.apply(&txn.ops, &txn.meta);
        let to = self.required(&s.id);
        let payload = codec::encode_copy(CopyReason::Create, &s, now);
        let version = s.version;
        self.table.insert_local(s);
        let token = self.send(to.clone(), payload, Some(Purpose::Other));
        if let Some((by, _)) = origin {
            self.notify(SessionEvent::Created {
                id: txn.id.clone(),
                by,
            });
        }
        Ok(self.new_ticket(txn.id, CommitKind::Update, version, to, token, origin))
    }

    /// Commits a request's changes. On the session's primary (delta mode:
    /// anywhere): checks the base version, applies them here and sends only
    /// what changed to the holders. Backup mode, on any other node: hands
    /// the commit to the primary ([`Message::Forward`]); the ticket
    /// completes with its answer. A commit whose base differs while an
    /// earlier commit of the session is unacknowledged, or that reaches a
    /// primary still settling, waits (its ticket completes later).
    /// `Ok(None)` if `txn` is empty (the request only read: see
    /// [`SessionNode::access`]).
    ///
    /// # Errors
    /// [`Error::Conflict`] if the base is stale, [`Error::NotFound`] if the
    /// primary holds no such session, [`Error::Unreachable`] if fewer than
    /// `minCommitCopies` holders are up, the primary's copy is behind the
    /// base, or no primary is known; [`Error::Shutdown`] after drain.
    pub fn commit(&mut self, txn: Txn, now: Instant) -> Result<Option<CommitTicket>> {
        self.clock = self.clock.max(now);
        self.check_writable()?;
        if txn.is_empty() {
            self.access(&txn.id, now)?;
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
        // Placement once per commit (the hot path).
        let to = match self.cfg.mode {
            SessionMode::Backup => self.placement_of(&txn.id),
            SessionMode::Delta => crate::session::placement::Holders::default(),
        };
        let primary = to.primary();
        let to = match self.cfg.mode {
            SessionMode::Backup => to.others(&self.me),
            SessionMode::Delta => self.peers(),
        };
        if 1 + to.len() < self.cfg.min_commit_copies {
            return Err(Error::Unreachable(format!(
                "only {} holder(s) up, minCommitCopies is {}",
                1 + to.len(),
                self.cfg.min_commit_copies
            )));
        }
        if backup && !self.settled_primary(&txn.id, now, primary) {
            // The former primary's last commits may still be on their way.
            return self.queue_commit(txn, None, origin, now);
        }
        let Some((held, unannounced)) = self
            .table
            .get(&txn.id)
            .map(|s| (s.version, s.lost > s.lost_on_holders))
        else {
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
        let me = self.me.id;
        let draining = self.state == NodeState::Draining;
        if backup && unannounced && self.await_count_on_holders(&txn.id, now) {
            return self.queue_commit(txn, None, origin, now);
        }
        let promoted = backup && self.new_term.remove(&txn.id[..]);
        let s = self.table.get_mut(&txn.id).ok_or(Error::NotFound)?;
        let base = s.version;
        s.apply(&txn.ops, &txn.meta);
        s.version = if backup && (base.writer != me || promoted || s.lost > 0) {
            // First commit of a new primary: a new term (the counter's high
            // half), so that whatever an earlier primary left on some copy
            // without acknowledgement orders before every commit from now
            // on: 2^lost terms ahead when primaries of the session departed
            // since the base was written (each may have started a term of
            // its own that nobody acknowledged).
            base.new_term(s.lost, me)
        } else {
            base.next(me)
        };
        s.lost = 0;
        s.lost_on_holders = 0;
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
        if let Some((by, _)) = origin {
            // The change was made by a request on another member.
            self.notify(SessionEvent::Updated {
                id: txn.id.clone(),
                version,
                by,
            });
        }
        Ok(self.new_ticket(txn.id, CommitKind::Update, version, to, token, origin))
    }

    /// Called for a commit of `id` whose copy counts more departed
    /// primaries ([`Session::lost`]) than every holder acknowledged for
    /// this version: true if it must wait, for the term it would start
    /// relies on that count. Were this node lost after such a commit, the next
    /// primary must count at least one departure more than this node did,
    /// or its term could equal this one's. The copy goes out as a repair
    /// (the session is dirty until every holder acknowledged it); the
    /// commit runs after.
    fn await_count_on_holders(&mut self, id: &SessionId, now: Instant) -> bool {
        if self.required(id).is_empty() {
            return false; // no other holder to tell
        }
        if !self.dirty.contains(id) {
            self.mark_dirty(id);
            self.repair_dirty(now);
        }
        true
    }

    /// Records a read-only access: refreshes the last access here and, no
    /// more often than a quarter of the max inactive interval, on the
    /// members that hold the session (so none of them expires it).
    ///
    /// # Errors
    /// [`Error::NotFound`] if no member holds it by placement.
    pub fn access(&mut self, id: &[u8], now: Instant) -> Result<()> {
        self.clock = self.clock.max(now);
        if self.table.get(id).is_none() {
            // Not held here (backup mode: a non-holder keeps no copy): tell
            // the holders directly.
            let holders = match self.cfg.mode {
                SessionMode::Backup => self.placement_of(id).others(&self.me),
                SessionMode::Delta => Vec::new(),
            };
            if holders.is_empty() {
                return Err(Error::NotFound);
            }
            let msg = Message::Access {
                id: SessionId::copy_from_slice(id),
            };
            self.send(holders, msg.encode(), None);
            return Ok(());
        }
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
        self.clock = self.clock.max(now);
        self.check_writable()?;
        let (id, version) = match self.table.get(id) {
            Some(s) => (s.id.clone(), s.version),
            // Backup mode: a non-holder keeps no copy; the holders remove it.
            None if self.cfg.mode == SessionMode::Backup
                && !self.placement_of(id).others(&self.me).is_empty() =>
            {
                (SessionId::copy_from_slice(id), Version::default())
            }
            None => return Err(Error::NotFound),
        };
        let to = self.required(&id);
        self.table.remove(&id, now);
        let kind = CommitKind::Remove(RemoveReason::Invalidated, version);
        let payload = outcome::remove_message(&id, &kind);
        let token = self.send(to.clone(), payload, Some(Purpose::Other));
        Ok(self.new_ticket(id, kind, version, to, token, None))
    }

    /// Renames a session cluster-wide (Tomcat's JvmRouteBinderValve
    /// takeover). Each member applies the rename as one step, so none ends
    /// with both ids or neither. On a member without a copy (backup mode)
    /// the session's primary renames it ([`Message::ForwardChangeId`]), as
    /// it runs a commit made there; the ticket ends with its answer.
    ///
    /// # Errors
    /// [`Error::NotFound`] if `old` is not here and this member is its
    /// primary (a forwarded rename of an unknown id fails its ticket with
    /// [`CommitFailure::NotFound`](super::CommitFailure::NotFound)), [`Error::Conflict`] if `new` is in use
    /// here or was removed recently.
    pub fn change_id(
        &mut self,
        old: &[u8],
        new: impl Into<SessionId>,
        now: Instant,
    ) -> Result<CommitTicket> {
        self.clock = self.clock.max(now);
        self.check_writable()?;
        let new = new.into();
        if new.len() > self.limits.max_id_len {
            return Err(Error::InvalidArgument("session id too long".into()));
        }
        if self.table.get(old).is_none() && self.forwards_to_primary(old) {
            // No copy here: the session's primary renames it.
            return self.forward_change_id(old, new, now);
        }
        self.change_id_at(old, new, now, None)
    }

    /// Renames `old` to `new` here and on every holder of either; the
    /// outcome goes to `origin` (a forwarded rename) or to this node's host.
    pub(crate) fn change_id_at(
        &mut self,
        old: &[u8],
        new: SessionId,
        now: Instant,
        origin: Option<(MemberKey, u64)>,
    ) -> Result<CommitTicket> {
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
        Ok(self.new_ticket(
            new,
            CommitKind::ChangeId { old },
            version,
            to,
            token,
            origin,
        ))
    }
}
