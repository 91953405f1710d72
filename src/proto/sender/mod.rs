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
mod secure;
#[cfg(test)]
mod tests;
mod timers;

pub use pending::Batcher;
use pending::{batch_window, Items, Pending};

use super::outbound::{OutboundConn, Reply};
use super::secure::{SecureContext, SecureStream};
use super::AckTracker;
use crate::config::Config;
use crate::error::Error;
use crate::wire::frame::{ack_ranges, FrameHeader, HEADER_LEN};
use crate::wire::preface::CAP_SEQ;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a message ended for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written to the socket (no ack was requested).
    Sent,
    /// Acknowledged by the receiver.
    Acked,
}

/// Outcome of one message at one destination.
pub type Outcome = Result<Delivery, Error>;

/// The limits and timers a [`SenderConn`] runs with.
#[derive(Debug, Clone, Copy)]
pub struct SenderLimits {
    /// Messages waiting unwritten (`maxQueueLength`).
    pub queue: usize,
    /// Acked messages in flight (written, ack not yet in).
    pub window: usize,
    /// Each message's outcome is due this long after enqueue (`ackTimeout`).
    pub ack_timeout: Duration,
    /// Resends after a broken connection (`maxRetryAttempts`).
    pub max_retry_attempts: u32,
    /// A connect not done by then fails (`connectTimeout`).
    pub connect_timeout: Duration,
    /// First and longest pause before reconnecting.
    pub backoff_min: Duration,
    /// See `backoff_min`.
    pub backoff_max: Duration,
    /// Close a connection quiet for this long (`keepAliveTimeout`; 0 = never).
    pub keep_alive_timeout: Duration,
    /// Close a quiet connection after this many messages (0 = never).
    pub keep_alive_count: u64,
    /// Ping a connection quiet for this long (0 = never).
    pub ping_interval: Duration,
    /// Largest frame payload (`maxFrameSize`).
    pub max_frame_size: usize,
    /// A member with nothing to do for this long may be forgotten
    /// (`memberIdleRelease`).
    pub idle_release: Duration,
    /// A member whose queue is full and that wrote nothing for this long
    /// is stalled: its new messages fail at once ([`Error::QueueFull`])
    /// instead of holding up the engine's shared intake.
    pub stall_after: Duration,
    /// A secure handshake not done by this long after connecting fails
    /// the connection (`handshakeTimeout`).
    pub handshake_timeout: Duration,
}

impl SenderLimits {
    /// The limits of a channel configured with `c`.
    pub fn from_config(c: &Config) -> SenderLimits {
        SenderLimits {
            queue: c.max_queue_length,
            window: c.max_queue_length,
            ack_timeout: c.ack_timeout,
            max_retry_attempts: c.max_retry_attempts,
            connect_timeout: c.connect_timeout,
            backoff_min: c.reconnect_backoff_min,
            backoff_max: c.reconnect_backoff_max,
            keep_alive_timeout: c.keep_alive_timeout,
            keep_alive_count: c.keep_alive_count,
            ping_interval: c.ping_interval,
            max_frame_size: c.max_frame_size,
            idle_release: c.member_idle_release,
            stall_after: (c.ack_timeout / 4).min(Duration::from_millis(250)),
            handshake_timeout: c.rx_limits.handshake_timeout,
        }
    }
}

/// One message handed to [`SenderConn::handle_enqueue`].
pub struct Message<T> {
    /// Message id (unique per sending channel).
    pub id: u64,
    /// Payload (shared across destinations).
    pub payload: Bytes,
    /// DATA frame flags as written (ack flags, compressed).
    pub flags: u8,
    /// An ack decides the outcome.
    pub ack: bool,
    /// Compress in a BATCH with its neighbours before writing.
    pub deflate: bool,
    /// The caller's handle, given back with the outcome.
    pub token: T,
}

/// Connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No socket, nothing asked.
    Idle,
    /// A connect was asked for ([`Action::Connect`]) and not started yet.
    Wanted,
    /// Connect in progress, failing at the deadline.
    Connecting(Instant),
    /// Connected; frames may be written.
    Open,
    /// Waiting until then before reconnecting.
    Backoff(Instant),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a connection, then call [`SenderConn::handle_connecting`] (or
    /// [`SenderConn::handle_connect_failed`]).
    Connect,
    /// Drop the socket (its messages were already dealt with); the string
    /// says why, for the log.
    Close(String),
}

/// Counters since the last [`SenderConn::take_counters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Messages fully written.
    pub msgs_sent: u64,
    /// Frame bytes fully written.
    pub bytes_sent: u64,
    /// Messages acked.
    pub acks: u64,
    /// Messages queued again for resend after a broken connection.
    pub resends: u64,
    /// Messages compressed into BATCH frames.
    pub compressed: u64,
    /// Reconnects after a backoff.
    pub reconnects: u64,
    /// Connections whose peer did not prove the cluster key / certificate.
    pub secure_refusals: u64,
    /// Connections closed for a record that failed authentication.
    pub secure_errors: u64,
}

/// One frame (or the rest of one) to write: copy `hdr`, share
/// `payload[skip..]`.
pub struct Chunk<'a> {
    /// Header bytes still to write (empty when the header is out).
    pub hdr: &'a [u8],
    /// The payload.
    pub payload: &'a Bytes,
    /// Payload bytes already written.
    pub skip: usize,
}

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

    /// True when there is something to write and room to write it. Frames
    /// wait for the receiver's reply preface (one round trip per
    /// connection): it says whether sequence markers may be written.
    #[inline]
    pub fn wants_write(&self) -> bool {
        if self.state != State::Open {
            return false;
        }
        // secure hook: only ciphertext leaves, and only after the handshake
        if let Some(s) = &self.secure {
            if !s.pending().is_empty() {
                return true;
            }
            if !s.is_established() {
                return false;
            }
        }
        !self.ctl.is_empty()
            || (self.proto.is_open()
                && !self.pending.is_empty()
                && self.inflight.len() < self.limits.window)
    }

    /// What to write next, at most `max_frames` frames after the control
    /// bytes: compresses runs first (with `b`), then returns the control
    /// bytes and the frames. Report what the socket took with
    /// [`handle_written`](Self::handle_written) before the next call.
    pub fn poll_transmit(
        &mut self,
        b: &mut Batcher,
        max_frames: usize,
    ) -> (&[u8], impl Iterator<Item = Chunk<'_>>) {
        // A full window holds frames back (control bytes still go), and so
        // does a receiver that has not answered the preface yet.
        let max = if self.proto.is_open() {
            max_frames.min(self.limits.window.saturating_sub(self.inflight.len()))
        } else {
            0
        };
        if self.to_deflate > 0 {
            let start = usize::from(self.head_off > 0);
            let (done, z) =
                batch_window(&mut self.pending, start, max, b, self.limits.max_frame_size);
            self.to_deflate = self.to_deflate.saturating_sub(done);
            self.counters.compressed += z as u64;
        }
        // secure hook: the batch is sealed, the driver writes ciphertext
        let secure = self.secure.is_some();
        if secure {
            self.seal_batch(max);
        }
        let head_off = self.head_off;
        let frames = self
            .pending
            .iter()
            .take(if secure { 0 } else { max })
            .enumerate()
            .map(move |(k, p)| {
                let skip = if k == 0 { head_off } else { 0 };
                if skip < HEADER_LEN {
                    Chunk {
                        hdr: &p.hdr[skip..],
                        payload: &p.payload,
                        skip: 0,
                    }
                } else {
                    Chunk {
                        hdr: &[],
                        payload: &p.payload,
                        skip: skip - HEADER_LEN,
                    }
                }
            });
        let out = match &self.secure {
            Some(s) => s.pending(),
            None => &self.ctl,
        };
        (out, frames)
    }

    /// The socket took `written` bytes of what
    /// [`poll_transmit`](Self::poll_transmit) offered: control bytes
    /// first, then frames; a frame fully written is tracked for its ack or
    /// ends as [`Delivery::Sent`].
    pub fn handle_written(&mut self, now: Instant, written: usize) {
        self.last_activity = now;
        if written > 0 {
            self.last_progress = now;
        }
        // secure hook: plaintext counts once the records holding it are
        // out (the batch's control bytes first, then its frames)
        let (ctl, written) = match self.secure.as_deref_mut() {
            Some(s) => {
                let plain = s.written(written);
                if plain == 0 {
                    return;
                }
                let ctl = self.sealed_ctl.min(plain);
                self.sealed_ctl -= ctl;
                (ctl, plain - ctl)
            }
            None => {
                let ctl = written.min(self.ctl.len());
                (ctl, written - ctl)
            }
        };
        self.advance_written(ctl, written);
    }

    /// `ctl` control bytes and then `written` frame bytes went out.
    fn advance_written(&mut self, ctl: usize, mut written: usize) {
        self.ctl.drain(..ctl);
        let (mut msgs, mut bytes) = (0u64, 0u64);
        while written > 0 {
            let Some(p) = self.pending.front() else { break };
            let size = p.wire_len();
            let left = size - self.head_off;
            if written < left {
                self.head_off += written;
                break;
            }
            written -= left;
            self.head_off = 0;
            let p = self.pending.pop_front().expect("front exists");
            bytes += size as u64;
            self.wire_expect = Some(p.seq + p.count());
            if p.marker {
                self.markers -= 1;
            } else if p.batch.is_none() {
                // The common entry: one message, handled in place (no
                // iterator over a batch, no further moves of the entry).
                msgs += 1;
                self.item_written(p);
            } else {
                for p in Items::of(p) {
                    msgs += 1;
                    self.item_written(p);
                }
            }
        }
        if self.pending.is_empty() {
            self.tail_expect = self.wire_expect;
            self.stalled = false;
        }
        self.sent_on_conn += msgs;
        self.counters.msgs_sent += msgs;
        self.counters.bytes_sent += bytes;
    }

    /// One message fully written: tracked for its ack, or ended as sent.
    #[inline]
    fn item_written(&mut self, p: Pending<T>) {
        if p.ack {
            self.inflight.track(p.id, p.deadline, p);
        } else if self.quiet.is_some_and(|q| q(&p.token)) {
            self.quiet_sent += 1;
        } else {
            let Pending { id, token, .. } = p;
            self.outcomes.push_back((id, token, Ok(Delivery::Sent)));
        }
    }

    /// Decodes every complete reply in `buf` (bytes read from the socket).
    /// A bad reply or a GOAWAY breaks the connection
    /// ([`Action::Close`] follows).
    pub fn handle_replies(&mut self, now: Instant, buf: &mut BytesMut) {
        self.last_activity = now;
        if self.secure.is_some() {
            // secure hook: replies are opened first
            return self.secure_replies(now, buf);
        }
        self.decode_replies(now, buf);
    }

    fn decode_replies(&mut self, now: Instant, buf: &mut BytesMut) {
        loop {
            let r = match self.proto.poll(buf) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => return self.close_broken(now, &format!("bad reply: {e}")),
            };
            match r {
                Reply::Preface(p) => {
                    // Nothing is written yet on this connection: the
                    // markers can still be dropped (or put back).
                    let seq = p.caps & CAP_SEQ != 0;
                    if seq != self.seq_markers {
                        self.seq_markers = seq;
                        self.mark_gaps(now);
                    }
                }
                Reply::Ack(p) => {
                    for (first, count) in ack_ranges(&p) {
                        let out = &mut self.outcomes;
                        self.counters.acks += self.inflight.ack_range(first, count, |id, p| {
                            out.push_back((id, p.token, Ok(Delivery::Acked)))
                        }) as u64;
                    }
                }
                Reply::Fail { id, reason } => {
                    if let Some(p) = self.inflight.take(id) {
                        self.outcomes
                            .push_back((id, p.token, Err(Error::RemoteFailure(reason))));
                    }
                }
                Reply::Pong(_) => self.ping_deadline = None,
                Reply::GoAway(r) => {
                    return self.close_broken(now, &format!("member going away: {r}"))
                }
            }
        }
    }

    fn close_broken(&mut self, now: Instant, why: &str) {
        self.actions.push_back(Action::Close(why.to_string()));
        self.handle_broken(now, why);
    }

    /// The connection is lost (the driver dropped or is dropping its
    /// socket): what may not have arrived is queued again for resend (up
    /// to `maxRetryAttempts`, and only before its deadline), the rest
    /// ends as [`Error::Unreachable`] or [`Error::Timeout`]; reconnect after
    /// a backoff.
    pub fn handle_broken(&mut self, now: Instant, why: &str) {
        let max = self.limits.max_retry_attempts;
        let mut retry: Vec<Pending<T>> = Vec::new();
        let addr = self.addr;
        let out = &mut self.outcomes;
        let counters = &mut self.counters;
        let mut keep = |mut p: Pending<T>| {
            if p.deadline <= now {
                out.push_back((p.id, p.token, Err(Error::Timeout)));
            } else if p.attempts < max {
                p.attempts += 1;
                counters.resends += 1;
                retry.push(p);
            } else {
                let e = Error::Unreachable(format!("{addr}: {why}"));
                out.push_back((p.id, p.token, Err(e)));
            }
        };
        self.inflight.drain_all(|_, p| keep(p));
        for p in self.pending.drain(..) {
            Items::of(p).for_each(&mut keep);
        }
        // Resend in stream order: inflight (tracked by id) and pending
        // interleave by sequence number.
        retry.sort_by_key(|p| p.seq);
        self.to_deflate = retry.iter().filter(|p| p.deflate).count();
        self.pending = retry.into();
        self.head_off = 0;
        self.ctl.clear();
        self.secure_closed();
        self.wire_expect = None;
        self.ping_deadline = None;
        self.mark_gaps(now);
        self.state = State::Backoff(now + self.backoff);
        self.backoff = (self.backoff * 2).clamp(
            self.limits.backoff_min.max(Duration::from_millis(1)),
            self.limits.backoff_max.max(Duration::from_millis(1)),
        );
    }

    /// Makes the markers in `pending` match the sequence numbers: one
    /// before every entry whose number is not the one the receiver will
    /// expect, none elsewhere. Called after entries were removed or put
    /// back (rare), never on the hot path.
    fn mark_gaps(&mut self, now: Instant) {
        let start = usize::from(self.head_off > 0);
        let mut expect = if start == 1 {
            Some(self.pending[0].seq + self.pending[0].count())
        } else {
            self.wire_expect
        };
        let mut out = VecDeque::with_capacity(self.pending.len() + 1);
        let mut rest = std::mem::take(&mut self.pending);
        out.extend(rest.drain(..start));
        let mut markers = out.iter().filter(|p| p.marker).count();
        for p in rest {
            if p.marker {
                continue;
            }
            if self.seq_markers && expect != Some(p.seq) {
                out.push_back(Pending::marker(self.epoch, p.seq, now));
                markers += 1;
            }
            expect = Some(p.seq + p.count());
            out.push_back(p);
        }
        self.pending = out;
        self.markers = markers;
        self.tail_expect = expect;
    }

    /// The driver stops: everything without an outcome ends as
    /// [`Error::Shutdown`].
    pub fn handle_shutdown(&mut self) {
        let out = &mut self.outcomes;
        self.inflight
            .drain_all(|id, p| out.push_back((id, p.token, Err(Error::Shutdown))));
        for p in self.pending.drain(..) {
            for p in Items::of(p) {
                self.outcomes
                    .push_back((p.id, p.token, Err(Error::Shutdown)));
            }
        }
        self.to_deflate = 0;
        self.markers = 0;
        self.head_off = 0;
        self.tail_expect = None;
        self.wire_expect = None;
        self.ctl.clear();
        self.secure_closed();
        if !matches!(self.state, State::Idle) {
            self.actions.push_back(Action::Close("shutdown".into()));
        }
        self.state = State::Idle;
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
