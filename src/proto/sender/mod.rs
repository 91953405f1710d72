//! The per-member sender as a sans-IO state machine (quinn-proto's shape).
//!
//! A [`SenderConn`] is one member's side of the asynchronous modes: its
//! bounded queue, its in-flight window, ack matching, deadlines, resend
//! after reconnect, keepalive, batching and the sequence markers that let
//! the receiver deliver each message once. It owns no socket, reads no
//! clock and calls nobody: a driver feeds it
//!
//! - [`handle_enqueue`](SenderConn::handle_enqueue) (a message for this
//!   member), [`handle_connecting`](SenderConn::handle_connecting),
//!   [`handle_connected`](SenderConn::handle_connected),
//!   [`handle_written`](SenderConn::handle_written) (bytes the socket
//!   took), [`handle_replies`](SenderConn::handle_replies) (bytes read),
//!   [`handle_broken`](SenderConn::handle_broken),
//!   [`handle_timeout`](SenderConn::handle_timeout) (`now` reached
//!   [`poll_timeout`](SenderConn::poll_timeout)) and
//!   [`handle_shutdown`](SenderConn::handle_shutdown),
//!
//! and after each call drains, in this order,
//! [`poll_action`](SenderConn::poll_action) (connect, close the socket),
//! [`poll_outcome`](SenderConn::poll_outcome) (exactly one per message),
//! and, when [`wants_write`](SenderConn::wants_write),
//! [`poll_transmit`](SenderConn::poll_transmit) (what to write, as header
//! slices and shared payloads).
//!
//! Bounds: at most `queue` messages wait unwritten (a message beyond it
//! ends at once as [`Error::QueueFull`], for this member only); at most
//! `window` acked messages are in flight; every message has its outcome by
//! its deadline (enqueue + `ackTimeout`), written or not; a head frame that
//! cannot be finished by its deadline closes the connection (the member
//! stopped reading).

mod pending;
mod replies;
mod secure;
#[cfg(test)]
mod tests;
mod timers;
mod types;
mod write;

pub use pending::Batcher;
use pending::Pending;
pub use types::{Action, Chunk, Counters, Delivery, Message, Outcome, SenderLimits, State};

use super::outbound::OutboundConn;
use super::secure::{SecureContext, SecureStream};
use super::AckTracker;
use crate::error::Error;
use crate::wire::frame::FrameHeader;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One member's sender; `T` is the caller's per-message handle.
pub struct SenderConn<T> {
    addr: SocketAddr,
    limits: SenderLimits,
    domain: Vec<u8>,
    /// This stream's epoch (random per instance, chosen by the driver).
    epoch: u64,
    next_seq: u64,
    state: State,
    proto: OutboundConn,
    /// Control bytes (preface, PING) written before frames.
    ctl: Vec<u8>,
    pending: VecDeque<Pending<T>>,
    /// Sequence markers among `pending` (not counted against `queue`).
    markers: usize,
    /// Bytes of `pending[0]` already written.
    head_off: usize,
    /// The sequence number the receiver expects next on this connection
    /// (`None`: nothing written yet, a marker must come first).
    wire_expect: Option<u64>,
    /// The sequence number expected after the last pending entry.
    tail_expect: Option<u64>,
    /// The member's receiver understands sequence markers (its reply
    /// preface says so; assumed until a reply says otherwise). Without,
    /// no marker is written: an older receiver would deliver it.
    seq_markers: bool,
    inflight: AckTracker<Pending<T>>,
    backoff: Duration,
    last_activity: Instant,
    /// Last time bytes went out (or the queue started filling).
    last_progress: Instant,
    /// Found stalled; cleared when the queue drains by writes.
    stalled: bool,
    /// The member left the cluster: release as soon as nothing is owed.
    leaving: bool,
    idle_since: Instant,
    ping_deadline: Option<Instant>,
    next_ping: u64,
    sent_on_conn: u64,
    /// Pending entries still marked to be deflated.
    to_deflate: usize,
    outcomes: VecDeque<(u64, T, Outcome)>,
    actions: VecDeque<Action>,
    counters: Counters,
    /// Set: every connection is authenticated and encrypted.
    secure_ctx: Option<SecureContext>,
    /// This connection's secure filter (secure mode, while connected).
    secure: Option<Box<SecureStream>>,
    /// Control bytes sealed in the batch being written.
    sealed_ctl: usize,
    /// The secure handshake must be done by then.
    handshake_deadline: Option<Instant>,
    /// Set: a message written without ack whose token passes this test
    /// ends without an outcome entry, only counted in `quiet_sent` (nobody
    /// would be told of it: no ticket, no listener).
    quiet: Option<fn(&T) -> bool>,
    /// Messages ended as sent without an outcome entry since the last
    /// [`take_quiet_sent`](SenderConn::take_quiet_sent).
    quiet_sent: usize,
}

impl<T: Default> SenderConn<T> {
    /// A sender to `addr` in cluster `domain`, created at `now`, with
    /// stream `epoch` (a random number: a new instance must not reuse an
    /// old one's epoch).
    pub fn new(
        addr: SocketAddr,
        limits: SenderLimits,
        domain: Vec<u8>,
        epoch: u64,
        now: Instant,
    ) -> SenderConn<T> {
        SenderConn {
            addr,
            limits,
            proto: OutboundConn::new(domain.clone()),
            domain,
            epoch,
            next_seq: 1,
            state: State::Idle,
            ctl: Vec::new(),
            pending: VecDeque::new(),
            markers: 0,
            head_off: 0,
            wire_expect: None,
            tail_expect: None,
            seq_markers: true,
            inflight: AckTracker::new(),
            backoff: limits.backoff_min,
            last_activity: now,
            last_progress: now,
            stalled: false,
            leaving: false,
            idle_since: now,
            ping_deadline: None,
            next_ping: 1,
            sent_on_conn: 0,
            to_deflate: 0,
            outcomes: VecDeque::new(),
            actions: VecDeque::new(),
            counters: Counters::default(),
            secure_ctx: None,
            secure: None,
            sealed_ctl: 0,
            handshake_deadline: None,
            quiet: None,
            quiet_sent: 0,
        }
    }

    /// Messages written without ack whose token passes `quiet` end as
    /// sent without an outcome from [`poll_outcome`](Self::poll_outcome):
    /// they are only counted, see [`take_quiet_sent`](Self::take_quiet_sent).
    /// For a driver that would report such an outcome to nobody.
    pub fn with_quiet_sent(mut self, quiet: fn(&T) -> bool) -> SenderConn<T> {
        self.quiet = Some(quiet);
        self
    }

    /// Messages that ended as sent without an outcome entry (see
    /// [`with_quiet_sent`](Self::with_quiet_sent)) since the last call.
    pub fn take_quiet_sent(&mut self) -> usize {
        std::mem::take(&mut self.quiet_sent)
    }

    /// Runs every connection of this sender through the secure layer
    /// (`ctx` set): a handshake before any frame, then only records.
    pub fn with_secure(mut self, ctx: Option<SecureContext>) -> SenderConn<T> {
        self.secure_ctx = ctx;
        self
    }

    /// The member's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Messages unwritten or awaiting an ack.
    pub fn load(&self) -> usize {
        self.pending.len() + self.inflight.len()
    }

    /// Messages waiting unwritten (entries; a BATCH counts once).
    pub fn queued(&self) -> usize {
        self.pending.len() - self.markers
    }

    /// True when the queue is full: [`handle_enqueue`](Self::handle_enqueue)
    /// would refuse.
    pub fn is_full(&self) -> bool {
        self.queued() >= self.limits.queue
    }

    /// True when nothing went out for `stall_after` although messages
    /// wait: the member stopped reading, or cannot be reached. Sticky until
    /// the member's queue drains by writes again, so that a member that
    /// keeps stalling (reconnects, fills a fresh socket buffer, stops) is
    /// not waited for again each time.
    pub fn is_stalled(&mut self, now: Instant) -> bool {
        if !self.stalled
            && self.queued() > 0
            && now.saturating_duration_since(self.last_progress) >= self.limits.stall_after
        {
            self.stalled = true;
        }
        self.stalled
    }

    /// When a full, progressing member would count as stalled.
    pub fn stall_deadline(&self) -> Instant {
        self.last_progress + self.limits.stall_after
    }

    /// True when this sender holds nothing and has had nothing to do since
    /// `idle_release` before `now`: the driver may drop it.
    pub fn is_reclaimable(&self, now: Instant) -> bool {
        self.state == State::Idle
            && self.load() == 0
            && self.outcomes.is_empty()
            && self.actions.is_empty()
            && now.saturating_duration_since(self.idle_since) >= self.limits.idle_release
    }

    /// Queues `m` at `now`. Returns false when the member's queue is full:
    /// the message then ends at once as [`Error::QueueFull`] (see
    /// [`poll_outcome`](Self::poll_outcome)); other members are untouched.
    pub fn handle_enqueue(&mut self, now: Instant, m: Message<T>) -> bool {
        if self.queued() >= self.limits.queue {
            self.outcomes
                .push_back((m.id, m.token, Err(Error::QueueFull)));
            return false;
        }
        if self.queued() == 0 {
            self.last_progress = now;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline = now + self.limits.ack_timeout;
        if self.seq_markers && self.tail_expect != Some(seq) {
            self.pending
                .push_back(Pending::marker(self.epoch, seq, deadline));
            self.markers += 1;
        }
        self.tail_expect = Some(seq + 1);
        self.to_deflate += usize::from(m.deflate);
        self.pending.push_back(Pending {
            hdr: FrameHeader::data(m.id, m.payload.len(), m.flags).encode(),
            payload: m.payload,
            id: m.id,
            seq,
            ack: m.ack,
            marker: false,
            attempts: 0,
            deadline,
            token: m.token,
            deflate: m.deflate,
            batch: None,
        });
        if self.state == State::Idle {
            self.want_connect();
        }
        true
    }

    fn want_connect(&mut self) {
        self.state = State::Wanted;
        self.actions.push_back(Action::Connect);
    }

    /// The driver started connecting at `now`; `preface` is written first.
    pub fn handle_connecting(&mut self, now: Instant, preface: &[u8]) {
        self.state = State::Connecting(now + self.limits.connect_timeout);
        self.proto = OutboundConn::new(self.domain.clone());
        self.ctl.clear();
        self.ctl.extend_from_slice(preface);
        self.head_off = 0;
        self.sent_on_conn = 0;
        self.ping_deadline = None;
        self.last_activity = now;
        self.wire_expect = None;
        self.mark_gaps(now);
        self.secure_connecting(now);
    }

    /// The connect could not even start (no socket, no room in the ring):
    /// back off and retry.
    pub fn handle_connect_failed(&mut self, now: Instant) {
        self.state = State::Backoff(now + self.backoff);
    }

    /// The connect finished.
    pub fn handle_connected(&mut self, now: Instant) {
        self.state = State::Open;
        self.backoff = self.limits.backoff_min;
        self.last_activity = now;
        if self.secure.is_some() {
            self.handshake_deadline = Some(now + self.limits.handshake_timeout);
        }
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next outcome: `(message id, token, outcome)`.
    #[inline]
    pub fn poll_outcome(&mut self) -> Option<(u64, T, Outcome)> {
        self.outcomes.pop_front()
    }

    /// Counters since the last call.
    pub fn take_counters(&mut self) -> Counters {
        std::mem::take(&mut self.counters)
    }
}
