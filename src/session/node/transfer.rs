//! State transfer on join (joiner and donor sides, chunked under flow
//! control), and fetches of sessions a node does not hold (backup mode).
//!
//! The joiner asks; each donor snapshots the ids it must send and streams
//! them in chunks of `sendAllSessionsSize` (or `sendAllSessionsBytes`),
//! keeping at most `stateTransferWindow` chunks unacknowledged. A chunk
//! counts as applied on the joiner's chunk ack or on a positive delivery
//! ack, whichever comes first. Each session is encoded when its chunk is
//! built, so it carries the state of that moment; commits made meanwhile
//! reach the joiner as ordinary replication and the version rules keep the
//! newer state whatever the arrival order. The joiner is ready only when
//! every donor has completed and every chunk arrived.

use super::outcome::Purpose;
use super::{NodeState, SessionEvent, SessionNode, TransferFailure};
use crate::session::codec::{self, Message, SessionImage};
use crate::session::config::SessionMode;
use crate::session::hash::{HashMap, HashSet};
use crate::session::model::{MemberKey, Session, SessionId};
use crate::session::placement::Placement;
use crate::session::table::Apply;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Resends of one chunk or completion before a donor gives up (the joiner
/// then times out and reports it).
const MAX_TRANSFER_RETRIES: u32 = 8;

/// "Until further notice" for forwarding to a joiner still being served.
const FOREVER: Duration = Duration::from_secs(86_400);

/// Progress of one donor, as the joiner sees it.
#[derive(Debug, Default)]
pub(crate) struct DonorProgress {
    seen: HashSet<u32>,
    complete: Option<u32>,
}

/// The joiner's side of a state transfer.
#[derive(Debug)]
pub(crate) struct Join {
    transfer: u64,
    pub(crate) deadline: Option<Instant>,
    donors: HashMap<MemberKey, DonorProgress>,
    /// When a chunk or completion of this transfer last arrived (or it
    /// started): a transfer stalled for a sweep interval is asked again.
    progress_at: Instant,
}

impl DonorProgress {
    /// Every chunk the donor announced arrived.
    fn done(&self) -> bool {
        self.complete
            .is_some_and(|n| self.seen.iter().filter(|s| **s < n).count() == n as usize)
    }
}

/// The donor's side of a state transfer to one joiner.
#[derive(Debug)]
pub(crate) struct Donation {
    /// The joiner's view of placement.
    view: Vec<MemberKey>,
    ids: Vec<SessionId>,
    /// Every id ever put in `ids`, to find sessions that arrived since.
    listed: HashSet<SessionId>,
    cursor: usize,
    next_seq: u32,
    outstanding: HashMap<u32, (usize, usize)>,
    sent: u64,
    complete_sent: bool,
    retries: u32,
}

/// A fetch in flight.
#[derive(Debug)]
pub(crate) struct Fetch {
    id: SessionId,
    pub(crate) target: MemberKey,
    tried: Vec<MemberKey>,
    pub(crate) deadline: Instant,
    /// A read joined after this fetch was sent: its answer may predate
    /// that read, so ask again before answering anyone.
    again: bool,
}

impl SessionNode {
    pub(crate) fn begin_join(&mut self, now: Instant) {
        self.state = NodeState::Joining;
        // Views before the start do not matter: the donors send what the
        // placement gives this node now.
        self.recent_views.clear();
        let donors: Vec<MemberKey> = match self.cfg.mode {
            SessionMode::Delta => self.peers().into_iter().take(1).collect(),
            SessionMode::Backup => self.peers(),
        };
        self.join = Some(self.new_join(now));
        for d in donors {
            self.request_from(d, now);
        }
        self.check_ready();
    }

    /// A ready node asks member `m` for the sessions placement gives this
    /// node that `m` holds (after a partition healed, or a member appeared).
    pub(crate) fn catch_up_from(&mut self, m: MemberKey, now: Instant) {
        if self.join.is_none() {
            self.join = Some(self.new_join(now));
        }
        self.request_from(m, now);
    }

    /// A transfer starting at `now`, under a fresh id, with no donor yet.
    fn new_join(&mut self, now: Instant) -> Join {
        Join {
            transfer: self.nonce(),
            deadline: self.cfg.state_transfer_timeout.map(|t| now + t),
            donors: HashMap::default(),
            progress_at: now,
        }
    }

    pub(crate) fn request_from(&mut self, m: MemberKey, _now: Instant) {
        let Some(j) = &mut self.join else {
            return;
        };
        j.donors.insert(m, DonorProgress::default());
        let transfer = j.transfer;
        self.send(
            vec![m],
            Message::StateRequest {
                transfer,
                view: self.live.iter().map(|m| m.id).collect(),
                departures: self.departures,
            }
            .encode(),
            Some(Purpose::Request { transfer }),
        );
    }

    pub(crate) fn resend_request(&mut self, m: MemberKey, transfer: u64) {
        let Some(j) = &self.join else {
            return;
        };
        let pending =
            j.transfer == transfer && j.donors.get(&m).is_some_and(|p| p.complete.is_none());
        if pending && self.members.binary_search(&m).is_ok() {
            self.send(
                vec![m],
                Message::StateRequest {
                    transfer,
                    view: self.live.iter().map(|m| m.id).collect(),
                    departures: self.departures,
                }
                .encode(),
                Some(Purpose::Request { transfer }),
            );
        }
    }

    /// A donor left during the transfer: ask again.
    pub(crate) fn donor_lost(&mut self, m: MemberKey, now: Instant) {
        let Some(j) = &mut self.join else {
            return;
        };
        if j.donors.remove(&m).is_none() {
            return;
        }
        match self.cfg.mode {
            SessionMode::Delta => {
                if j.donors.is_empty() {
                    if let Some(next) = self.peers().first().copied() {
                        self.request_from(next, now);
                    }
                }
            }
            SessionMode::Backup => {
                // The lost donor's share now falls to others: restart.
                let transfer = self.nonce();
                if let Some(j) = &mut self.join {
                    j.transfer = transfer;
                    j.donors.clear();
                }
                for p in self.peers() {
                    self.request_from(p, now);
                }
            }
        }
        self.check_ready();
    }

    fn check_ready(&mut self) {
        let Some(j) = &self.join else {
            return;
        };
        let done = j.donors.values().all(DonorProgress::done);
        if !done {
            return;
        }
        let had_donors = !j.donors.is_empty();
        self.join = None;
        if self.state == NodeState::Ready {
            // Caught up: commits that waited for it may run.
            let now = self.clock;
            self.run_settled(now);
        }
        if self.state == NodeState::Joining {
            self.state = NodeState::Ready;
            if had_donors && !self.table.is_empty() {
                // Commits the former primaries still had in flight may
                // reach this node a little after the transfer: it answers
                // for its sessions only once they had time to arrive.
                self.ready_at = Some(self.clock);
            }
            if had_donors {
                self.stats.transfers_received += 1;
            }
            let sessions = self.table.len();
            self.push_event(SessionEvent::Ready { sessions });
            // A host learns the cluster's health as soon as the node is
            // ready, even when its view formed before it opened (no member
            // change follows then).
            self.health_changed();
        }
    }

    /// A transfer with no chunk or completion for `expireCheckInterval`:
    /// the donors not done yet are asked again, under a new transfer id (a
    /// donor gives up on a joiner it could not reach `MAX_TRANSFER_RETRIES`
    /// times; without asking again the joiner waited for it until
    /// `stateTransferTimeout`, also after the link healed). Donors done
    /// already are not asked again. Runs from the sweep.
    pub(crate) fn check_transfer_stall(&mut self, now: Instant) {
        let Some(j) = &self.join else {
            return;
        };
        if now.saturating_duration_since(j.progress_at) < self.cfg.expire_check_interval {
            return;
        }
        let stalled: Vec<MemberKey> = j
            .donors
            .iter()
            .filter(|(m, p)| !p.done() && self.members.binary_search(m).is_ok())
            .map(|(m, _)| *m)
            .collect();
        if stalled.is_empty() {
            return;
        }
        let transfer = self.nonce();
        if let Some(j) = &mut self.join {
            j.transfer = transfer;
            j.progress_at = now;
        }
        for m in stalled {
            self.request_from(m, now);
        }
    }

    pub(crate) fn check_transfer_timeout(&mut self, now: Instant) {
        let Some(j) = &self.join else {
            return;
        };
        if j.deadline.is_some_and(|d| now >= d) {
            let missing = j
                .donors
                .values()
                .filter(|p| p.complete.is_none())
                .count()
                .max(1);
            self.join = None;
            if self.state == NodeState::Joining {
                self.state = NodeState::TransferFailed;
                self.push_event(SessionEvent::TransferFailed {
                    reason: TransferFailure::Timeout { missing },
                });
            } else {
                crate::sr_log!(
                    Warn,
                    "{}: catching up with {missing} member(s) timed out (stateTransferTimeout)",
                    self.me.addr
                );
            }
        }
    }

    /// The ids this node must send to joiner `to`, except those in `skip`:
    /// every session `to` holds by this node's placement or by the
    /// joiner's own `view` (which may lack members that died unnoticed).
    fn share_for(
        &self,
        to: MemberKey,
        skip: &HashSet<SessionId>,
        view: &[MemberKey],
    ) -> Vec<SessionId> {
        let copies = self.copies();
        self.table
            .iter()
            .filter(|s| !skip.contains(&s.id))
            .filter(|s| match self.cfg.mode {
                SessionMode::Delta => true,
                // Every copy the joiner holds by placement, whoever else
                // holds it too: the member placement ranks first may have
                // died without anyone noticing yet, so no donor may count
                // on another to send it. The version rules drop duplicates.
                SessionMode::Backup => {
                    self.placement_of(&s.id).contains(&to)
                        || (!view.is_empty()
                            && Placement::holders(&s.id, view, copies).contains(&to))
                }
            })
            .map(|s| s.id.clone())
            .collect()
    }

    pub(crate) fn on_state_request(
        &mut self,
        from: MemberKey,
        transfer: u64,
        view: Vec<[u8; 16]>,
        departures: u32,
        now: Instant,
    ) {
        self.heard_departures(departures);
        // The request may overtake the membership event of the joiner
        // (which then changes nothing): report the health change here.
        if self.add_member(from, now) {
            self.health_changed();
        }
        // The joiner's view as keys (placement only uses the ids).
        let mut view: Vec<MemberKey> = view
            .into_iter()
            .map(|id| {
                if id == from.id {
                    return from;
                }
                self.members
                    .iter()
                    .chain(std::iter::once(&self.me))
                    .find(|m| m.id == id)
                    .copied()
                    .unwrap_or(MemberKey::new(id, from.addr))
            })
            .collect();
        view.sort();
        view.dedup();
        let ids = self.share_for(from, &HashSet::default(), &view);
        self.donations.retain(|(to, _), _| *to != from);
        self.forward.insert(from, now + FOREVER);
        self.donations.insert(
            (from, transfer),
            Donation {
                view,
                listed: ids.iter().cloned().collect(),
                ids,
                cursor: 0,
                next_seq: 0,
                outstanding: HashMap::default(),
                sent: 0,
                complete_sent: false,
                retries: 0,
            },
        );
        self.pump(from, transfer, now);
    }

    /// Encodes the sessions of `ids[start..]` that still exist, up to the
    /// chunk bounds; returns the payload (if any session was left) and the
    /// end of the range consumed.
    fn build_chunk(
        &self,
        ids: &[SessionId],
        start: usize,
        transfer: u64,
        seq: u32,
        now: Instant,
    ) -> (Option<(Bytes, usize)>, usize) {
        let mut batch: Vec<&Session> = Vec::new();
        let mut bytes = 0usize;
        let mut i = start;
        while i < ids.len()
            && batch.len() < self.cfg.send_all_sessions_size
            && bytes < self.cfg.send_all_sessions_bytes
        {
            if let Some(s) = self.table.get(&ids[i]) {
                bytes += codec::live_len(s);
                batch.push(s);
            }
            i += 1;
        }
        if batch.is_empty() {
            return (None, i);
        }
        let n = batch.len();
        (
            Some((codec::encode_chunk(transfer, seq, &batch, bytes, now), n)),
            i,
        )
    }

    fn pump(&mut self, to: MemberKey, transfer: u64, now: Instant) {
        let key = (to, transfer);
        let Some(mut d) = self.donations.remove(&key) else {
            return;
        };
        while d.outstanding.len() < self.cfg.state_transfer_window && d.cursor < d.ids.len() {
            let start = d.cursor;
            let (chunk, end) = self.build_chunk(&d.ids, start, transfer, d.next_seq, now);
            d.cursor = end;
            if let Some((payload, n)) = chunk {
                let seq = d.next_seq;
                d.next_seq += 1;
                d.sent += n as u64;
                d.outstanding.insert(seq, (start, end));
                self.send(
                    vec![to],
                    payload,
                    Some(Purpose::Chunk { to, transfer, seq }),
                );
            }
        }
        if d.cursor >= d.ids.len() && d.outstanding.is_empty() && !d.complete_sent {
            // Sessions that reached this node during the transfer from
            // members that did not know the joiner yet: send them too.
            let late = self.share_for(to, &d.listed, &d.view);
            if !late.is_empty() {
                d.listed.extend(late.iter().cloned());
                d.ids.extend(late);
                self.donations.insert(key, d);
                return self.pump(to, transfer, now);
            }
            d.complete_sent = true;
            let msg = Message::StateComplete {
                transfer,
                chunks: d.next_seq,
                sessions: d.sent,
                departures: self.departures,
                leaving: self.drain.is_some(),
            };
            self.send(
                vec![to],
                msg.encode(),
                Some(Purpose::Complete { to, transfer }),
            );
        }
        self.donations.insert(key, d);
    }

    pub(crate) fn chunk_outcome(
        &mut self,
        to: MemberKey,
        transfer: u64,
        seq: u32,
        ok: bool,
        now: Instant,
    ) {
        let key = (to, transfer);
        let Some(d) = self.donations.get_mut(&key) else {
            return;
        };
        if ok {
            if d.outstanding.remove(&seq).is_some() {
                self.pump(to, transfer, now);
            }
            return;
        }
        let Some(&(start, _)) = d.outstanding.get(&seq) else {
            return;
        };
        if d.retries >= MAX_TRANSFER_RETRIES {
            self.donation_ended(key, now);
            return;
        }
        d.retries += 1;
        let ids = std::mem::take(&mut d.ids);
        let (chunk, _) = self.build_chunk(&ids, start, transfer, seq, now);
        if let Some(d) = self.donations.get_mut(&key) {
            d.ids = ids;
        }
        match chunk {
            Some((payload, _)) => {
                self.send(
                    vec![to],
                    payload,
                    Some(Purpose::Chunk { to, transfer, seq }),
                );
            }
            None => {
                // Everything in it is gone: resend it empty so the seq is seen.
                let payload = codec::encode_chunk(transfer, seq, &[], 0, now);
                self.send(
                    vec![to],
                    payload,
                    Some(Purpose::Chunk { to, transfer, seq }),
                );
            }
        }
    }

    /// The transfer `key` ended, completed or given up past its retries:
    /// updates are forwarded to the joiner for one more `accessTimeout`,
    /// not "until further notice" for as long as it stays a member (a
    /// joiner has one donation per donor; if it still waits it asks again
    /// under a new transfer).
    fn donation_ended(&mut self, key: (MemberKey, u64), now: Instant) {
        self.donations.remove(&key);
        self.forward.insert(key.0, now + self.cfg.access_timeout);
    }

    pub(crate) fn complete_outcome(
        &mut self,
        to: MemberKey,
        transfer: u64,
        ok: bool,
        now: Instant,
    ) {
        let key = (to, transfer);
        let Some(d) = self.donations.get_mut(&key) else {
            return;
        };
        if ok {
            self.donation_ended(key, now);
            self.stats.transfers_served += 1;
            return;
        }
        if d.retries >= MAX_TRANSFER_RETRIES {
            self.donation_ended(key, now);
            return;
        }
        d.retries += 1;
        let msg = Message::StateComplete {
            transfer,
            chunks: d.next_seq,
            sessions: d.sent,
            departures: self.departures,
            leaving: self.drain.is_some(),
        };
        self.send(
            vec![to],
            msg.encode(),
            Some(Purpose::Complete { to, transfer }),
        );
    }

    pub(crate) fn on_chunk(
        &mut self,
        from: MemberKey,
        transfer: u64,
        seq: u32,
        sessions: Vec<SessionImage>,
        now: Instant,
    ) {
        for img in sessions {
            let recent = self.recent_departures(&img.id, now);
            match self.table.apply_image(img, recent, now) {
                Apply::Done { .. } => {
                    self.stats.applied += 1;
                    self.stats.sessions_transferred += 1;
                }
                _ => self.stats.stale += 1,
            }
        }
        if let Some(j) = &mut self.join {
            if j.transfer == transfer {
                if let Some(p) = j.donors.get_mut(&from) {
                    p.seen.insert(seq);
                    j.progress_at = now;
                }
            }
        }
        self.send(
            vec![from],
            Message::ChunkAck { transfer, seq }.encode(),
            None,
        );
        self.check_ready();
    }

    pub(crate) fn on_complete(
        &mut self,
        from: MemberKey,
        transfer: u64,
        chunks: u32,
        departures: u32,
        leaving: bool,
        now: Instant,
    ) {
        self.heard_departures(departures);
        if leaving {
            // A donor that drains (its leaving notice may be overtaken by
            // this message, or have gone out before this node was known).
            self.member_leaving(from, now);
        }
        if let Some(j) = &mut self.join {
            if j.transfer == transfer {
                if let Some(p) = j.donors.get_mut(&from) {
                    p.complete = Some(chunks);
                    j.progress_at = now;
                }
            }
        }
        self.check_ready();
    }

    /// A remote update of `id` from `from` was applied here: pass it on to
    /// joiners this node serves (or served moments ago), whose membership
    /// event may not have reached `from` yet, so `from` skipped them.
    pub(crate) fn forward_to_joiners(&mut self, from: MemberKey, id: &SessionId, now: Instant) {
        if self.forward.is_empty() {
            return;
        }
        self.forward.retain(|_, until| *until > now);
        let targets: Vec<MemberKey> = self
            .forward
            .keys()
            .filter(|j| **j != from)
            .filter(|j| self.cfg.mode == SessionMode::Delta || self.placement_of(id).contains(j))
            .copied()
            .collect();
        if targets.is_empty() {
            return;
        }
        if let Some(s) = self.table.get(id) {
            let payload = codec::encode_copy(codec::CopyReason::Rebalance, s, now);
            self.stats.copies_sent += 1;
            self.send(targets, payload, None);
        }
    }

    // ------------------------------------------------------------- fetches

    /// Starts (or joins) a fetch of `id` from its owner; the member asked.
    pub(crate) fn start_fetch(&mut self, id: SessionId, now: Instant) -> Option<MemberKey> {
        if let Some(f) = self.fetches.values_mut().find(|f| f.id == id) {
            f.again = true;
            return Some(f.target);
        }
        let target = *self.fetch_candidates(&id).first()?;
        let fetch = self.nonce();
        self.fetches.insert(
            fetch,
            Fetch {
                id: id.clone(),
                target,
                tried: vec![target],
                deadline: now + self.cfg.access_timeout,
                again: false,
            },
        );
        self.stats.fetches += 1;
        self.send(
            vec![target],
            Message::FetchRequest { fetch, id }.encode(),
            Some(Purpose::Fetch { fetch }),
        );
        Some(target)
    }

    /// Whom to ask for `id`: its primary, which alone answers reads
    /// (backup mode).
    fn fetch_candidates(&self, id: &[u8]) -> Vec<MemberKey> {
        self.placement_of(id)
            .primary()
            .filter(|p| *p != self.me)
            .into_iter()
            .collect()
    }

    /// The owner asked did not answer: ask the next holder, or give up.
    pub(crate) fn retry_fetch(&mut self, fetch: u64, now: Instant) {
        let Some(f) = self.fetches.get(&fetch) else {
            return;
        };
        let next = self
            .fetch_candidates(&f.id)
            .into_iter()
            .find(|m| !f.tried.contains(m));
        match next {
            Some(target) => {
                let id = f.id.clone();
                if let Some(f) = self.fetches.get_mut(&fetch) {
                    f.target = target;
                    f.tried.push(target);
                    f.deadline = now + self.cfg.access_timeout;
                }
                self.send(
                    vec![target],
                    Message::FetchRequest { fetch, id }.encode(),
                    Some(Purpose::Fetch { fetch }),
                );
            }
            None => {
                if let Some(f) = self.fetches.remove(&fetch) {
                    self.push_event(SessionEvent::FetchFailed { id: f.id });
                }
            }
        }
    }

    pub(crate) fn on_fetch_reply(
        &mut self,
        fetch: u64,
        id: SessionId,
        session: Option<SessionImage>,
        now: Instant,
    ) {
        let Some(f) = self.fetches.get(&fetch) else {
            return;
        };
        if f.id != id {
            return;
        }
        // The primary's answer, acknowledged state only. Not kept in the
        // table: a copy this node does not hold by placement would go stale.
        if let Some(f) = self.fetches.remove(&fetch) {
            if f.again {
                // Some reader started after this fetch: its answer must not
                // be older than that reader.
                self.start_fetch(f.id, now);
                return;
            }
        }
        self.deliver_read(id, session.map(|img| img.into_session(now)));
    }

    pub(crate) fn check_fetch_timeouts(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| now >= f.deadline)
            .map(|(k, _)| *k)
            .collect();
        for f in due {
            self.retry_fetch(f, now);
        }
    }
}
