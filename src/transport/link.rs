//! One member's connection state in the asynchronous engines, whatever the
//! driver: the pending queue, partial-write accounting, ack tracking,
//! replies, timeouts, keepalive, and what happens to messages when the
//! connection breaks (resend up to `maxRetryAttempts`, else fail) or the
//! engine stops. The mio [`pump`](super::pump) and the io_uring
//! [`uring_pump`](super::uring_pump) differ only in how bytes move.

use super::{Delivery, Shared, Ticket};
use crate::error::Error;
use crate::proto::outbound::{OutboundConn, Reply};
use crate::proto::AckTracker;
use crate::sr_log;
use crate::stats::Stats;
use crate::wire::compress::Deflater;
use crate::wire::frame::{ack_ranges, FrameHeader, FrameType, FLAG_COMPRESSED, HEADER_LEN};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A frame waiting to be written (or acked).
pub(crate) struct Pending {
    pub(crate) hdr: [u8; HEADER_LEN],
    pub(crate) payload: Bytes,
    pub(crate) id: u64,
    pub(crate) ack: bool,
    pub(crate) attempts: u32,
    pub(crate) ticket: Option<Arc<Ticket>>,
    /// To be compressed into a BATCH with its neighbours before writing.
    pub(crate) deflate: bool,
    /// Set on a BATCH entry: the messages it carries (payload uncompressed,
    /// kept for acks and resend). Boxed so that the common, unbatched entry
    /// stays one pointer wider, not three.
    #[allow(clippy::box_collection)]
    pub(crate) batch: Option<Box<Vec<Pending>>>,
}

/// Most messages and raw bytes per BATCH frame.
const MAX_BATCH_MSGS: usize = 256;
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The messages of an entry: itself, or a BATCH's items, without
/// allocating in the common single case.
enum Items {
    One(Option<Pending>),
    Many(std::vec::IntoIter<Pending>),
}

impl Items {
    fn of(mut p: Pending) -> Items {
        match p.batch.take() {
            Some(items) => Items::Many(items.into_iter()),
            None => Items::One(Some(p)),
        }
    }
}

impl Iterator for Items {
    type Item = Pending;
    fn next(&mut self) -> Option<Pending> {
        match self {
            Items::One(p) => p.take(),
            Items::Many(it) => it.next(),
        }
    }
}

/// An engine's compressor for BATCH frames, state reused across batches,
/// and the scratch buffer a batch's frames are laid out in before deflate.
pub(crate) struct Batcher {
    deflater: Deflater,
    scratch: Vec<u8>,
}

impl Batcher {
    pub(crate) fn new(shared: &Shared) -> Batcher {
        Batcher {
            deflater: Deflater::new(shared.cfg.compression_level),
            scratch: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// No socket.
    Idle,
    /// Connect in progress.
    Connecting(Instant),
    /// Connected; frames may be written.
    Open,
    /// Waiting before reconnecting.
    Backoff(Instant),
}

/// What keepalive wants done.
pub(crate) enum KeepAlive {
    Nothing,
    /// Quiet for `keepAliveTimeout` (or `keepAliveCount` reached): close.
    Close,
    /// The ping went unanswered.
    Broken,
    /// A PING was queued in `ctl`: write it.
    Ping,
}

pub(crate) struct Link {
    pub(crate) addr: SocketAddr,
    pub(crate) state: State,
    pub(crate) proto: OutboundConn,
    pub(crate) rbuf: BytesMut,
    /// Control bytes (preface, PING) written before frames.
    pub(crate) ctl: Vec<u8>,
    pub(crate) pending: VecDeque<Pending>,
    /// Bytes of `pending[0]` already written.
    pub(crate) head_off: usize,
    pub(crate) inflight: AckTracker<Pending>,
    pub(crate) backoff: Duration,
    pub(crate) last_activity: Instant,
    pub(crate) ping_deadline: Option<Instant>,
    pub(crate) sent_on_conn: u64,
    /// Pending entries still marked to be deflated (so `batch_window` costs
    /// nothing on links that never compress).
    pub(crate) to_deflate: usize,
}

impl Link {
    pub(crate) fn new(addr: SocketAddr, shared: &Shared) -> Link {
        Link {
            addr,
            state: State::Idle,
            proto: OutboundConn::new(shared.cfg.domain.clone()),
            rbuf: BytesMut::new(),
            ctl: Vec::new(),
            pending: VecDeque::new(),
            head_off: 0,
            inflight: AckTracker::new(),
            backoff: shared.cfg.reconnect_backoff_min,
            last_activity: Instant::now(),
            ping_deadline: None,
            sent_on_conn: 0,
            to_deflate: 0,
        }
    }

    /// A new connection attempt started: fresh protocol, preface first.
    pub(crate) fn connecting(&mut self, shared: &Shared, preface: &[u8], now: Instant) {
        self.state = State::Connecting(now + shared.cfg.connect_timeout);
        self.proto = OutboundConn::new(shared.cfg.domain.clone());
        self.rbuf.clear();
        self.ctl.clear();
        self.ctl.extend_from_slice(preface);
        self.head_off = 0;
        self.sent_on_conn = 0;
        self.ping_deadline = None;
        self.last_activity = now;
    }

    /// The connect finished.
    pub(crate) fn opened(&mut self, shared: &Shared) {
        self.state = State::Open;
        self.backoff = shared.cfg.reconnect_backoff_min;
    }

    /// True if there is something to write.
    pub(crate) fn has_output(&self) -> bool {
        !self.pending.is_empty() || !self.ctl.is_empty()
    }

    /// Compresses every run of to-be-deflated messages among the next
    /// `window` entries into BATCH frames: one compressor reset per batch
    /// instead of one per message, and a dictionary shared by the batch.
    /// Call only while no write of these entries is in flight.
    pub(crate) fn batch_window(&mut self, b: &mut Batcher, shared: &Shared, window: usize) {
        if self.to_deflate == 0 {
            return;
        }
        let mut k = usize::from(self.head_off > 0);
        while k < self.pending.len().min(window) {
            if !(self.pending[k].deflate && self.pending[k].batch.is_none()) {
                k += 1;
                continue;
            }
            let (mut end, mut raw) = (k, 0usize);
            while end < self.pending.len()
                && end - k < MAX_BATCH_MSGS
                && raw < MAX_BATCH_BYTES
                && self.pending[end].deflate
                && self.pending[end].batch.is_none()
            {
                raw += HEADER_LEN + self.pending[end].payload.len();
                end += 1;
            }
            self.to_deflate = self.to_deflate.saturating_sub(end - k);
            b.scratch.clear();
            for p in self.pending.range(k..end) {
                b.scratch.extend_from_slice(&p.hdr);
                b.scratch.extend_from_slice(&p.payload);
            }
            let z = match b.deflater.compress(&b.scratch) {
                Ok(z) if z.len() + HEADER_LEN < raw && z.len() <= shared.cfg.max_frame_size => z,
                // Incompressible or too large: send the messages plain.
                _ => {
                    for p in self.pending.range_mut(k..end) {
                        p.deflate = false;
                    }
                    k = end;
                    continue;
                }
            };
            let items: Vec<Pending> = self.pending.drain(k..end).collect();
            Stats::add(&shared.stats.compressed, items.len() as u64);
            let first = items[0].id;
            let hdr = FrameHeader {
                ty: FrameType::Batch,
                flags: FLAG_COMPRESSED,
                len: z.len() as u32,
                id: first,
            }
            .encode();
            self.pending.insert(
                k,
                Pending {
                    hdr,
                    payload: z,
                    id: first,
                    ack: false,
                    attempts: 0,
                    ticket: None,
                    deflate: false,
                    batch: Some(Box::new(items)),
                },
            );
            k += 1;
        }
    }

    /// Accounts `written` bytes: control bytes first, then frames; frames
    /// fully written are tracked for their ack or reported sent.
    pub(crate) fn advance(&mut self, mut written: usize, now: Instant, shared: &Shared) {
        let ack_timeout = shared.cfg.ack_timeout;
        self.last_activity = now;
        let ctl = written.min(self.ctl.len());
        self.ctl.drain(..ctl);
        written -= ctl;
        let (mut msgs, mut bytes) = (0u64, 0u64);
        while written > 0 {
            let Some(p) = self.pending.front() else { break };
            let size = HEADER_LEN + p.payload.len();
            let left = size - self.head_off;
            if written < left {
                self.head_off += written;
                break;
            }
            written -= left;
            self.head_off = 0;
            let p = self.pending.pop_front().expect("front exists");
            bytes += size as u64;
            for p in Items::of(p) {
                msgs += 1;
                if p.ack {
                    self.inflight.track(p.id, now + ack_timeout, p);
                } else {
                    shared.report(p.id, self.addr, Ok(Delivery::Sent), p.ticket.as_ref());
                }
            }
        }
        self.sent_on_conn += msgs;
        Stats::add(&shared.stats.msgs_sent, msgs);
        Stats::add(&shared.stats.bytes_sent, bytes);
    }

    /// Handles every complete reply in `rbuf`.
    ///
    /// # Errors
    /// Why the connection must be dropped (bad reply, GOAWAY).
    pub(crate) fn on_replies(&mut self, shared: &Shared) -> Result<(), String> {
        self.last_activity = Instant::now();
        let mut acked = 0u64;
        let r = loop {
            let r = match self.proto.poll(&mut self.rbuf) {
                Ok(Some(r)) => r,
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("bad reply: {e}")),
            };
            match r {
                Reply::Preface(_) => {}
                Reply::Ack(p) => {
                    let addr = self.addr;
                    for (first, count) in ack_ranges(&p) {
                        acked += self.inflight.ack_range(first, count, |id, p| {
                            shared.report(id, addr, Ok(Delivery::Acked), p.ticket.as_ref())
                        }) as u64;
                    }
                }
                Reply::Fail { id, reason } => {
                    if let Some(p) = self.inflight.take(id) {
                        shared.report(
                            id,
                            self.addr,
                            Err(Error::RemoteFailure(reason)),
                            p.ticket.as_ref(),
                        );
                    }
                }
                Reply::Pong(_) => self.ping_deadline = None,
                Reply::GoAway(r) => break Err(format!("member going away: {r}")),
            }
        };
        Stats::add(&shared.stats.acks_received, acked);
        r
    }

    /// The connection is lost (the caller dropped its socket): resend what
    /// may not have arrived (up to `maxRetryAttempts`), fail the rest, and
    /// back off before reconnecting.
    pub(crate) fn broken(&mut self, shared: &Shared, why: &str) {
        let max = shared.cfg.max_retry_attempts;
        let now = Instant::now();
        sr_log!(Info, "connection to {} lost: {why}", self.addr);
        let mut retry: VecDeque<Pending> = VecDeque::new();
        let addr = self.addr;
        let keep = |mut p: Pending, retry: &mut VecDeque<Pending>| {
            if p.attempts < max {
                p.attempts += 1;
                Stats::add(&shared.stats.resends, 1);
                retry.push_back(p);
            } else {
                shared.report(
                    p.id,
                    addr,
                    Err(Error::Unreachable(format!("{addr}: {why}"))),
                    p.ticket.as_ref(),
                );
            }
        };
        self.inflight.drain_all(|_, p| keep(p, &mut retry));
        for p in self.pending.drain(..) {
            Items::of(p).for_each(|p| keep(p, &mut retry));
        }
        self.pending = retry;
        self.to_deflate = self.pending.iter().filter(|p| p.deflate).count();
        self.head_off = 0;
        self.ctl.clear();
        self.state = State::Backoff(now + self.backoff);
        self.backoff = (self.backoff * 2).clamp(
            shared
                .cfg
                .reconnect_backoff_min
                .max(Duration::from_millis(1)),
            shared.cfg.reconnect_backoff_max,
        );
    }

    /// Reports every expired ack wait as a timeout.
    pub(crate) fn expire(&mut self, now: Instant, shared: &Shared) {
        let addr = self.addr;
        self.inflight.expire(now, |id, p| {
            shared.report(id, addr, Err(Error::Timeout), p.ticket.as_ref())
        });
    }

    /// Decides on keepalive for an open connection; a ping goes to `ctl`.
    pub(crate) fn keepalive(
        &mut self,
        now: Instant,
        shared: &Shared,
        next_ping: &mut u64,
    ) -> KeepAlive {
        let cfg = &shared.cfg;
        if let Some(d) = self.ping_deadline {
            return if now >= d {
                KeepAlive::Broken
            } else {
                KeepAlive::Nothing
            };
        }
        let quiet = self.pending.is_empty() && self.inflight.is_empty();
        let idle_for = now.saturating_duration_since(self.last_activity);
        let too_old = cfg.keep_alive_count > 0 && self.sent_on_conn >= cfg.keep_alive_count;
        if quiet
            && ((!cfg.keep_alive_timeout.is_zero() && idle_for >= cfg.keep_alive_timeout)
                || too_old)
        {
            self.state = State::Idle;
            return KeepAlive::Close;
        }
        if !cfg.ping_interval.is_zero() && idle_for >= cfg.ping_interval {
            let h = FrameHeader {
                ty: FrameType::Ping,
                flags: 0,
                len: 0,
                id: *next_ping,
            };
            *next_ping += 1;
            self.ctl.extend_from_slice(&h.encode());
            self.ping_deadline = Some(now + cfg.ack_timeout);
            self.last_activity = now;
            return KeepAlive::Ping;
        }
        KeepAlive::Nothing
    }

    /// The earliest timer of this link.
    pub(crate) fn next_timer(&self, mut t: Instant) -> Instant {
        if let Some(d) = self.inflight.next_deadline() {
            t = t.min(d);
        }
        match self.state {
            State::Connecting(d) | State::Backoff(d) => t = t.min(d),
            _ => {}
        }
        t
    }

    /// Everything without an outcome ends as [`Error::Shutdown`].
    pub(crate) fn shutdown(&mut self, shared: &Shared) {
        let addr = self.addr;
        self.inflight
            .drain_all(|id, p| shared.report(id, addr, Err(Error::Shutdown), p.ticket.as_ref()));
        for p in self.pending.drain(..) {
            for p in Items::of(p) {
                shared.report(p.id, addr, Err(Error::Shutdown), p.ticket.as_ref());
            }
        }
        self.to_deflate = 0;
    }

    /// Messages pending or awaiting an ack.
    pub(crate) fn load(&self) -> usize {
        self.pending.len() + self.inflight.len()
    }
}

/// The engine side [`intake`] needs.
pub(crate) trait Links {
    /// Index of the link to `addr`, created if new.
    fn index(&mut self, addr: SocketAddr) -> usize;
    /// The link at `i`.
    fn link(&mut self, i: usize) -> &mut Link;
    /// Starts connecting link `i` (it is idle and has work).
    fn connect(&mut self, i: usize);
}

/// Moves up to `batch` queued items to their links' pending queues (at
/// most `cap` each); an item that does not fit waits in `held`. Returns
/// how many items moved.
pub(crate) fn intake<L: Links>(
    l: &mut L,
    queue: &crate::queue::SendQueue<super::pump::Outgoing>,
    held: &mut Option<super::pump::Outgoing>,
    idle: &std::sync::atomic::AtomicBool,
    cap: usize,
    batch: usize,
) -> usize {
    use crate::wire::frame::{FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT, FLAG_INTERNAL_DEFLATE};
    use std::sync::atomic::Ordering;
    let mut n = 0;
    while n < batch {
        let item = match held.take() {
            Some(i) => i,
            None => {
                // Clear `idle` before popping so `is_idle` cannot see an
                // empty queue and a stale idle flag at once.
                idle.store(false, Ordering::SeqCst);
                match queue.pop() {
                    Some(i) => i,
                    None => break,
                }
            }
        };
        let dests = item.dest.as_slice();
        let mut idx = [0usize; 8];
        let fits = dests.iter().enumerate().all(|(k, &a)| {
            let i = l.index(a);
            if k < idx.len() {
                idx[k] = i;
            }
            l.link(i).pending.len() < cap
        });
        if !fits {
            *held = Some(item);
            break;
        }
        let deflate = item.flags & FLAG_INTERNAL_DEFLATE != 0;
        let wire_flags = item.flags & !FLAG_INTERNAL_DEFLATE;
        let hdr = FrameHeader::data(item.id, item.payload.len(), wire_flags).encode();
        let ack = item.flags & (FLAG_ACK_DELIVERY | FLAG_ACK_RECEIPT) != 0;
        let last = dests.len() - 1;
        let super::pump::Outgoing {
            id,
            dest,
            payload,
            ticket,
            ..
        } = item;
        // The payload and ticket move into the last destination's entry;
        // earlier ones share them by reference count.
        let mut payload = Some(payload);
        let mut ticket = Some(ticket);
        for (k, &a) in dest.as_slice().iter().enumerate() {
            let i = if k < idx.len() { idx[k] } else { l.index(a) };
            let (p, t) = if k == last {
                (payload.take().unwrap_or_default(), ticket.take().flatten())
            } else {
                (
                    payload.clone().unwrap_or_default(),
                    ticket.clone().flatten(),
                )
            };
            let link = l.link(i);
            link.to_deflate += usize::from(deflate);
            link.pending.push_back(Pending {
                hdr,
                payload: p,
                id,
                ack,
                attempts: 0,
                ticket: t,
                deflate,
                batch: None,
            });
            if link.state == State::Idle {
                l.connect(i);
            }
        }
        n += 1;
    }
    n
}

/// The caller-side half of an engine (mio or io_uring): the queue and the
/// flags the engine thread publishes.
pub(crate) struct PumpHandle {
    pub(crate) queue: Arc<crate::queue::SendQueue<super::pump::Outgoing>>,
    pub(crate) stop: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) idle: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) in_flight: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) shared: Arc<Shared>,
}

impl PumpHandle {
    pub(crate) fn new(shared: Arc<Shared>, waker: Box<dyn crate::queue::Wake>) -> PumpHandle {
        PumpHandle {
            queue: Arc::new(crate::queue::SendQueue::new(
                shared.cfg.max_queue_length,
                waker,
            )),
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            idle: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            in_flight: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            shared,
        }
    }

    pub(crate) fn send(&self, item: super::pump::Outgoing) -> crate::Result<()> {
        use std::sync::atomic::Ordering;
        if self.stop.load(Ordering::Relaxed) {
            return Err(Error::NotRunning);
        }
        match self
            .queue
            .push(item, self.shared.cfg.queue_add_wait_timeout)
        {
            Ok(()) => Ok(()),
            Err((e, _)) => {
                Stats::add(&self.shared.stats.queue_full, 1);
                Err(e)
            }
        }
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.idle.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Publishes idleness, in-flight count and queue depth (engine side).
    pub(crate) fn publish<'a>(&self, held: bool, links: impl Iterator<Item = &'a Link> + Clone) {
        use std::sync::atomic::Ordering;
        let idle = !held && self.queue.is_empty() && links.clone().all(|l| l.load() == 0);
        self.idle.store(idle, Ordering::SeqCst);
        let n: usize = links.map(|l| l.load()).sum();
        self.in_flight.store(n as u64, Ordering::Relaxed);
        self.shared
            .stats
            .queue_depth
            .store((self.queue.len() + n) as u64, Ordering::Relaxed);
    }

    /// Reports everything still queued (and `held`) as shut down.
    pub(crate) fn report_unsent(&self, held: &mut Option<super::pump::Outgoing>) {
        while let Some(item) = held.take().or_else(|| self.queue.pop()) {
            for &a in item.dest.as_slice() {
                self.shared
                    .report(item.id, a, Err(Error::Shutdown), item.ticket.as_ref());
            }
        }
    }

    /// A second handle on the same queue and flags (for the engine).
    pub(crate) fn clone_ref(&self) -> PumpHandle {
        PumpHandle {
            queue: self.queue.clone(),
            stop: self.stop.clone(),
            idle: self.idle.clone(),
            in_flight: self.in_flight.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// Address to link index, with the last lookup cached (most batches go
/// to one member).
#[derive(Default)]
pub(crate) struct LinkIndex {
    by_addr: std::collections::HashMap<SocketAddr, usize>,
    last: Option<(SocketAddr, usize)>,
}

impl LinkIndex {
    /// The index of `addr`, or `next` (recorded) when new; the bool says
    /// whether it is new.
    pub(crate) fn lookup(&mut self, addr: SocketAddr, next: usize) -> (usize, bool) {
        if let Some((a, i)) = self.last {
            if a == addr {
                return (i, false);
            }
        }
        let (i, new) = match self.by_addr.get(&addr) {
            Some(&i) => (i, false),
            None => {
                self.by_addr.insert(addr, next);
                (next, true)
            }
        };
        self.last = Some((addr, i));
        (i, new)
    }
}
