//! What both receivers (mio and io_uring) share: turning decoded frames
//! into listener calls and acks, the worker pool that keeps per-connection
//! order, and the reasons a connection closes.

use super::{Message, MessageListener, Shared};
use crate::error::Error;
use crate::proto::inbound::{InEvent, InboundConn};
use crate::proto::limits::{Admit, Expiry, RxLimits, RxLimitsConfig, UNRESERVED_FRAME};
use crate::proto::secure::SecureError;
use crate::proto::FrameBuf;
use crate::queue::Wake;
use crate::sr_log;
use crate::stats::Stats;
use crate::wire::compress::Inflater;
use crate::wire::frame::{
    batch_frames, FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT, FLAG_COMPRESSED, FLAG_SEQ, HEADER_LEN,
};
use crate::wire::tribes::{self, ChannelData};
use crate::wire::{compress, detect_dialect, Dialect, Preface};
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Jobs a worker queue holds.
pub(crate) const WORKER_QUEUE: usize = 4096;

pub(crate) struct Job {
    pub(crate) token: usize,
    pub(crate) msg: Message,
    pub(crate) ack: bool,
}

pub(crate) struct AckReturn {
    pub(crate) token: usize,
    pub(crate) id: u64,
    pub(crate) err: Option<String>,
}

pub(crate) struct WorkerShared {
    q: ArrayQueue<Job>,
    sleeping: AtomicBool,
    stop: AtomicBool,
}

/// The I/O thread's side of the worker hand-back.
pub(crate) struct RxShared {
    pub(crate) acks: ArrayQueue<AckReturn>,
    pub(crate) sleeping: AtomicBool,
    pub(crate) waker: Box<dyn Wake>,
}

pub(crate) struct WorkerHandle {
    shared: Arc<WorkerShared>,
    thread: Option<JoinHandle<()>>,
}

/// Why a connection is being closed.
#[derive(Debug)]
pub(crate) enum Close {
    Eof,
    Io(io::Error),
    Protocol(Error),
    /// A receiver limit (handshake deadline, slot eviction, acks unread).
    Limit(&'static str),
    /// The peer did not authenticate, or a record failed authentication.
    Secure(SecureError),
}

/// Why a connection is not read for now, besides a full worker queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// It spent its inflate budget this turn: others go first, it resumes
    /// on the next turn.
    Turn,
    /// Its unsent output is above `maxPendingAckBytes`: resumes when the
    /// output drains (or is closed at `ackWriteTimeout`).
    Output,
    /// Its frame in progress waits for receive memory: resumes when
    /// memory is released.
    Memory,
}

/// Per-connection protocol state, whatever the driver.
pub(crate) struct ConnCore {
    pub(crate) peer: SocketAddr,
    /// The sending member's address (its preface's listen port), else `peer`.
    pub(crate) from: SocketAddr,
    pub(crate) proto: InboundConn,
    pub(crate) member_id: [u8; 16],
    pub(crate) dialect: Dialect,
    /// Set once the connection turns out to speak Tribes framing.
    tribes: Option<TribesRx>,
    /// Messages decoded but held back by a full worker queue (a BATCH can
    /// yield several at once).
    pub(crate) stalled: std::collections::VecDeque<Job>,
    pub(crate) token: usize,
    pub(crate) hold: Option<Hold>,
    /// Receive memory reserved for the frame in progress.
    reserved: usize,
    /// Inflated bytes this turn.
    inflated: usize,
    /// The handshake completed (native preface, or a first Tribes frame).
    opened: bool,
    /// A frame is partly received and its `connectionUploadTimeout` runs.
    mid_frame: bool,
    /// Shared-key mode: bytes of a record not complete yet (so not opened).
    /// They are part of the frame in progress for its upload deadline.
    pub(super) unopened: usize,
    /// The inner frames of a BATCH not delivered yet: a batch stops where
    /// a bound pauses the connection and goes on when it resumes, so one
    /// batch cannot queue a million jobs or acks at once.
    batch_rest: Option<Bytes>,
    /// Position in the sender's member stream (exactly-once, `proto::dedup`).
    seq: crate::proto::dedup::StreamCursor,
}

impl ConnCore {
    /// True if the connection must not be read or decoded for now.
    pub(crate) fn paused(&self) -> bool {
        !self.stalled.is_empty() || self.hold.is_some()
    }

    /// True if the pause ends by itself on the next turn (the driver
    /// retries it then); otherwise an event ends it (output drained,
    /// memory released).
    pub(crate) fn retry_next_turn(&self) -> bool {
        !self.stalled.is_empty() || self.hold == Some(Hold::Turn)
    }
}

/// Tribes side of a connection: frames in; its 21-byte ACK / FAIL_ACK
/// frames go out through the connection's ordinary output.
struct TribesRx {
    dec: tribes::FrameDecoder,
    seq: u64,
}

/// The delivery side of a receiver thread.
pub(crate) struct RxCore {
    pub(crate) shared: Arc<Shared>,
    listener: MessageListener,
    inflater: Inflater,
    local_preface: Preface,
    workers: Vec<Arc<WorkerShared>>,
    worker_threads: Vec<Option<std::thread::Thread>>,
    pub(crate) rx: Arc<RxShared>,
    limits: RxLimits,
    /// Shared-key mode: Tribes `EncryptInterceptor` bodies from Tribes
    /// members are opened (and replays refused) with this.
    tribes_crypt: Option<secure::TribesCrypt>,
    /// Messages for the batch listener delivered on this thread
    /// (`tcpThreadCount=0`), held until the end of the connection's decode
    /// turn (or [`super::MAX_DELIVERY_BATCH`]), with their ack-after-delivery bit.
    inline: Vec<(Message, bool)>,
    results: Vec<Result<(), String>>,
    /// The engine's clock for this turn ([`RxCore::set_now`]): every
    /// deadline and bound reads this, never the OS clock, so the protocol
    /// logic runs the same on a virtual clock.
    now: Instant,
}

/// The receiver bounds from the config, `driver_pool` bytes of the memory
/// bound being the driver's (never below one largest frame).
fn limits_config(cfg: &crate::config::Config, driver_pool: usize) -> RxLimitsConfig {
    let k = &cfg.rx_limits;
    let frames = k
        .max_receive_memory
        .saturating_sub(driver_pool)
        .max(cfg.max_frame_size);
    RxLimitsConfig {
        max_connections: k.max_connections,
        handshake_timeout: k.handshake_timeout,
        max_pending_output: k.max_pending_ack_bytes,
        output_stall_timeout: k.ack_write_timeout,
        max_receive_memory: frames,
        upload_timeout: k.connection_upload_timeout,
        inflate_per_turn: k.max_inflate_per_turn,
    }
}

/// Starts `tcpThreadCount` workers; returns the core for the I/O thread and
/// the handles to stop them with. `driver_pool` bytes of `maxReceiveMemory`
/// are the driver's own receive buffers (io_uring's provided buffers); the
/// rest bounds frames in progress.
pub(crate) fn start_workers(
    shared: &Arc<Shared>,
    listener: MessageListener,
    waker: Box<dyn Wake>,
    driver_pool: usize,
) -> io::Result<(RxCore, Vec<WorkerHandle>)> {
    let nworkers = shared.cfg.tcp_thread_count;
    let rx = Arc::new(RxShared {
        acks: ArrayQueue::new(WORKER_QUEUE * nworkers.max(1) + 64),
        sleeping: AtomicBool::new(false),
        waker,
    });
    let mut handles = Vec::with_capacity(nworkers);
    for i in 0..nworkers {
        let ws = Arc::new(WorkerShared {
            q: ArrayQueue::new(WORKER_QUEUE),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let (w2, l2, r2, s2) = (ws.clone(), listener.clone(), rx.clone(), shared.clone());
        let t = crate::driver::sys::ThreadBuilder::new()
            .name(format!("sr-worker-{i}"))
            .spawn(move || worker::worker_loop(w2, l2, r2, s2))?;
        handles.push(WorkerHandle {
            shared: ws,
            thread: Some(t),
        });
    }
    let core = RxCore {
        shared: shared.clone(),
        listener,
        inflater: Inflater::new(shared.cfg.max_decompressed_size),
        local_preface: shared.preface(true),
        workers: handles.iter().map(|w| w.shared.clone()).collect(),
        worker_threads: handles
            .iter()
            .map(|w| w.thread.as_ref().map(|t| t.thread().clone()))
            .collect(),
        rx,
        limits: RxLimits::new(limits_config(&shared.cfg, driver_pool)),
        tribes_crypt: secure::TribesCrypt::for_node(shared),
        inline: Vec::new(),
        results: Vec::new(),
        now: Instant::now(),
    };
    Ok((core, handles))
}

/// Stops and joins the workers.
pub(crate) fn stop_workers(workers: &mut [WorkerHandle]) {
    for w in workers {
        w.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = w.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl RxCore {
    /// Sets the time the engine read from its driver's clock for this
    /// turn (one read per turn, not per message).
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// Decides on a connection just accepted as `token` (tokens ascend):
    /// accept it, accept it after closing an older connection still in its
    /// handshake (the caller closes that one with [`Close::Limit`]), or
    /// refuse it (counted and logged here; the caller drops the socket).
    pub(crate) fn admit(&mut self, token: usize, peer: SocketAddr) -> Admit {
        let a = self.limits.admit(token, self.now);
        if a == Admit::Refuse {
            Stats::add(&self.shared.stats.rx_limit_closes, 1);
            sr_log!(
                Warn,
                "refusing {peer}: all {} connections (maxConnections) are past their handshake",
                self.limits.config().max_connections
            );
        }
        a
    }

    /// State for a newly accepted connection from `peer`, admitted as
    /// `token` by [`RxCore::admit`].
    pub(crate) fn new_conn(&self, token: usize, peer: SocketAddr) -> ConnCore {
        Stats::add(&self.shared.stats.connections_accepted, 1);
        ConnCore {
            peer,
            from: peer,
            proto: InboundConn::new(self.local_preface.clone(), self.shared.cfg.max_frame_size),
            member_id: [0; 16],
            dialect: Dialect::Unknown,
            tribes: None,
            stalled: std::collections::VecDeque::new(),
            token,
            hold: None,
            reserved: 0,
            mid_frame: false,
            unopened: 0,
            inflated: 0,
            opened: false,
            batch_rest: None,
            seq: Default::default(),
        }
    }

    /// Starts a connection's turn: a new inflate budget, and a connection
    /// held for its turn may go again.
    pub(crate) fn begin_turn(&self, c: &mut ConnCore) {
        c.inflated = 0;
        if c.hold == Some(Hold::Turn) {
            c.hold = None;
        }
    }

    /// After output was written: a connection held for unsent output is
    /// released once it is back within the bound. Returns true if the
    /// caller must resume reading it.
    pub(crate) fn output_drained(&mut self, c: &mut ConnCore) -> bool {
        if c.hold == Some(Hold::Output) && !self.limits.output_over(c.proto.pending_output()) {
            c.hold = None;
            self.limits.output_unblocked(c.token);
            return true;
        }
        false
    }

    /// An ack or failure a worker handed back after delivery; a peer that
    /// does not read them reaches the output bound here too.
    pub(crate) fn worker_ack(&mut self, c: &mut ConnCore, a: AckReturn) {
        match a.err {
            None => c.proto.ack(a.id),
            Some(r) => c.proto.fail(a.id, &r),
        }
        if c.hold != Some(Hold::Output) && self.limits.output_over(c.proto.pending_output()) {
            c.hold = Some(Hold::Output);
            self.limits.output_blocked(c.token, self.now);
        }
    }

    /// Connections waiting for receive memory that may retry now (memory
    /// was released); the caller resumes each with [`RxCore::unhold_memory`].
    pub(crate) fn memory_waiters(&mut self) -> Vec<usize> {
        self.limits.take_waiters()
    }

    /// Ends a memory hold so the connection retries its reservation.
    /// Returns true if it was held for memory.
    pub(crate) fn unhold_memory(&self, c: &mut ConnCore) -> bool {
        if c.hold == Some(Hold::Memory) {
            c.hold = None;
            return true;
        }
        false
    }

    /// Connections whose deadline passed, with the reason to close them.
    pub(crate) fn expired(&mut self) -> Vec<(usize, Close)> {
        // Most turns (a busy-polling engine's every turn) have none due.
        if self.limits.next_deadline().is_none_or(|d| d > self.now) {
            return Vec::new();
        }
        self.limits
            .expired(self.now)
            .into_iter()
            .map(|(t, e)| {
                let why = match e {
                    Expiry::Handshake => Close::Limit("no preface within handshakeTimeout"),
                    Expiry::OutputStalled => {
                        Close::Limit("acks unread past maxPendingAckBytes for ackWriteTimeout")
                    }
                    Expiry::Upload => {
                        Close::Limit("frame not complete within connectionUploadTimeout")
                    }
                };
                (t, why)
            })
            .collect()
    }

    /// How long the driver may sleep from the time last set before a
    /// deadline is due (capped at `max`).
    pub(crate) fn sleep_for(&self, max: Duration) -> Duration {
        match self.limits.next_deadline() {
            Some(d) => d.saturating_duration_since(self.now).min(max),
            None => max,
        }
    }

    /// Checks the bounds after an event: the output bound, then the
    /// inflate budget. Returns true if the connection is now held.
    fn over_bounds(&mut self, c: &mut ConnCore) -> bool {
        if self.limits.output_over(c.proto.pending_output()) {
            c.hold = Some(Hold::Output);
            self.limits.output_blocked(c.token, self.now);
            return true;
        }
        if c.inflated >= self.limits.config().inflate_per_turn {
            c.hold = Some(Hold::Turn);
            return true;
        }
        false
    }

    /// A frame completed: its reservation returns to the pool.
    /// It also ends the frame's `connectionUploadTimeout`.
    pub(super) fn frame_done(&mut self, c: &mut ConnCore) {
        if c.reserved > 0 {
            self.limits.release(c.token, c.reserved);
            c.reserved = 0;
        }
        if std::mem::take(&mut c.mid_frame) {
            self.limits.between_frames(c.token);
        }
    }

    /// More bytes are needed for a frame of `len` bytes: a large one must
    /// first reserve receive memory, else the connection waits for it.
    fn need_frame(&mut self, c: &mut ConnCore, len: usize) {
        if len <= UNRESERVED_FRAME || c.reserved > 0 {
            return;
        }
        let need = len.min(self.limits.config().max_receive_memory);
        if self.limits.reserve(c.token, need, self.now) {
            c.reserved = need;
        } else {
            c.hold = Some(Hold::Memory);
        }
    }

    /// The decoder needs more bytes and `left` bytes of the next frame
    /// are in (buffered, or a header the decoder took): a frame in part
    /// (of any size) must complete within `connectionUploadTimeout` from
    /// its start; `fresh` says frames completed since the last call, so
    /// what is in is a new frame. Nothing in: between frames, no
    /// deadline.
    fn mid_frame(&mut self, c: &mut ConnCore, left: usize, fresh: bool) {
        if left == 0 {
            if std::mem::take(&mut c.mid_frame) {
                self.limits.between_frames(c.token);
            }
        } else if !c.mid_frame || fresh {
            c.mid_frame = true;
            self.limits.frame_started(c.token, self.now);
        }
    }

    fn handshake_done(&mut self, c: &mut ConnCore) {
        if !c.opened {
            c.opened = true;
            self.limits.opened(c.token);
        }
    }

    /// Decodes and delivers the complete frames in `buf` until one of the
    /// connection's bounds pauses it ([`ConnCore::paused`]): a full worker
    /// queue (the caller retries it with [`RxCore::unstall`]), its inflate
    /// budget, its unsent output, or receive memory for its next frame.
    pub(crate) fn decode<B: FrameBuf>(
        &mut self,
        token: usize,
        c: &mut ConnCore,
        buf: &mut B,
    ) -> Result<(), Close> {
        if c.paused() {
            return Ok(());
        }
        if self.shared.secure.is_some() {
            // secure hook: records are opened before the frame decoder
            return self.decode_secure(token, c, buf);
        }
        self.decode_clear(token, c, buf)
    }

    /// Decodes frames from clear bytes (see [`RxCore::decode`]).
    pub(super) fn decode_clear<B: FrameBuf>(
        &mut self,
        token: usize,
        c: &mut ConnCore,
        buf: &mut B,
    ) -> Result<(), Close> {
        if c.paused() {
            return Ok(());
        }
        if c.dialect == Dialect::Unknown {
            match detect_dialect(buf) {
                Dialect::Unknown => return Ok(()),
                Dialect::Native => c.dialect = Dialect::Native,
                Dialect::Tribes => {
                    c.dialect = Dialect::Tribes;
                    c.tribes = Some(TribesRx {
                        dec: tribes::FrameDecoder::new(self.shared.cfg.max_frame_size),
                        seq: 0,
                    });
                }
                Dialect::Garbage => {
                    return Err(Close::Protocol(Error::Protocol(
                        "unknown protocol (bad magic)".into(),
                    )))
                }
            }
        }
        if c.dialect == Dialect::Tribes {
            return self.decode_tribes(c, buf);
        }
        let mut delivered = 0u64;
        let mut decoded = false;
        let result = loop {
            if let Some(rest) = c.batch_rest.take() {
                match self.run_batch(token, c, rest) {
                    Ok(n) => delivered += n,
                    Err(e) => break Err(e),
                }
                if c.paused() {
                    break Ok(());
                }
            }
            if let Some(n) = self.data_run(token, c, buf) {
                delivered += n;
                decoded = true;
                if !c.stalled.is_empty() || self.over_bounds(c) {
                    break Ok(());
                }
                continue;
            }
            let ev = match c.proto.poll(buf) {
                Ok(Some(ev)) => ev,
                Ok(None) => {
                    if c.opened {
                        // A header the decoder already took is part of
                        // the frame in progress, even with no payload
                        // byte buffered yet.
                        // So are the bytes of a record not yet complete.
                        let taken = c.proto.frame_in_progress().map_or(0, |_| HEADER_LEN);
                        self.mid_frame(c, buf.len() + taken + c.unopened, decoded);
                    }
                    // PINGs are answered inside `poll`: check their PONGs.
                    if !self.over_bounds(c) {
                        if let Some(len) = c.proto.frame_in_progress() {
                            self.need_frame(c, len);
                        }
                    }
                    break Ok(());
                }
                Err(e) => break Err(Close::Protocol(e)),
            };
            decoded = true;
            match ev {
                InEvent::Open(p) => {
                    self.handshake_done(c);
                    c.member_id = p.member_id;
                    if p.listen_port != 0 {
                        c.from = SocketAddr::new(c.peer.ip(), p.listen_port);
                    }
                }
                InEvent::GoAway(reason) => {
                    sr_log!(Debug, "{} going away: {reason}", c.peer);
                    break Err(Close::Eof);
                }
                InEvent::Data(f) => {
                    self.frame_done(c);
                    let (id, flags) = (f.header.id, f.header.flags);
                    let payload = if flags & FLAG_COMPRESSED != 0 {
                        match self.inflater.inflate(&f.payload) {
                            Ok(p) => {
                                c.inflated += p.len();
                                p
                            }
                            Err(e) => {
                                c.proto.fail(id, &e.to_string());
                                break Err(Close::Protocol(e));
                            }
                        }
                    } else {
                        f.payload
                    };
                    // exactly-once (proto::dedup): markers, duplicates
                    match self.seq_filter(c, id, flags, &payload) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => break Err(Close::Protocol(e)),
                    }
                    delivered += 1;
                    self.on_data(token, c, id, flags, payload);
                }
                InEvent::Batch(f) => {
                    self.frame_done(c);
                    let body = if f.header.flags & FLAG_COMPRESSED != 0 {
                        match self.inflater.inflate(&f.payload) {
                            Ok(b) => {
                                c.inflated += b.len();
                                b
                            }
                            Err(e) => break Err(Close::Protocol(e)),
                        }
                    } else {
                        f.payload
                    };
                    match self.run_batch(token, c, body) {
                        Ok(n) => delivered += n,
                        Err(e) => break Err(e),
                    }
                }
            }
            if !c.stalled.is_empty() || self.over_bounds(c) {
                break Ok(());
            }
        };
        self.flush_inline(c);
        Stats::add(&self.shared.stats.msgs_received, delivered);
        result
    }

    /// Delivers the inner frames of a BATCH body until a bound pauses the
    /// connection; the rest waits in `batch_rest`. Returns how many were
    /// delivered.
    fn run_batch(&mut self, token: usize, c: &mut ConnCore, body: Bytes) -> Result<u64, Close> {
        let max = self.shared.cfg.max_frame_size;
        let mut off = 0usize;
        let mut n = 0u64;
        for r in batch_frames(&body, max) {
            let (h, p) = r.map_err(Close::Protocol)?;
            off += HEADER_LEN + p.len();
            // exactly-once (proto::dedup)
            if !self
                .seq_filter(c, h.id, h.flags, &p)
                .map_err(Close::Protocol)?
            {
                continue;
            }
            n += 1;
            self.on_data(token, c, h.id, h.flags, p);
            if !c.stalled.is_empty() || self.over_bounds(c) {
                if off < body.len() {
                    c.batch_rest = Some(body.slice(off..));
                }
                break;
            }
        }
        Ok(n)
    }

    /// Exactly-once across reconnects (see `proto::dedup`): a sequence
    /// marker moves the connection's cursor and is not a message; a
    /// duplicate of a delivered message is acked, not delivered. True to
    /// deliver.
    fn seq_filter(&self, c: &mut ConnCore, id: u64, flags: u8, p: &[u8]) -> Result<bool, Error> {
        if flags & FLAG_SEQ != 0 {
            let table = &self.shared.dedup;
            c.seq.on_marker(table, c.member_id, p)?;
            return Ok(false);
        }
        if c.seq.accept() {
            return Ok(true);
        }
        Self::ack_duplicate(c, id, flags);
        Ok(false)
    }

    /// A duplicate of a delivered message (a resend after a reconnect):
    /// acked if it asks for an ack, never delivered again.
    #[inline]
    pub(super) fn ack_duplicate(c: &mut ConnCore, id: u64, flags: u8) {
        if flags & (FLAG_ACK_RECEIPT | FLAG_ACK_DELIVERY) != 0 {
            c.proto.ack(id);
        }
    }

    /// One message: ack on receipt, deliver (here or on the connection's
    /// worker), ack or FAIL after delivery. A full worker queue parks the
    /// message on the connection, which stops reading until it drains.
    pub(super) fn on_data(
        &mut self,
        token: usize,
        c: &mut ConnCore,
        id: u64,
        flags: u8,
        payload: Bytes,
    ) {
        let msg = Message {
            from: c.from,
            peer: c.peer,
            member_id: c.member_id,
            id,
            payload,
        };
        if self.workers.is_empty() && self.shared.batch.get().is_none() {
            self.deliver_here(c, &msg, flags);
            return;
        }
        if flags & FLAG_ACK_RECEIPT != 0 {
            c.proto.ack(id);
        }
        let ack = flags & FLAG_ACK_DELIVERY != 0;
        if self.workers.is_empty() {
            self.inline.push((msg, ack));
            if self.inline.len() >= super::MAX_DELIVERY_BATCH {
                self.flush_inline(c);
            }
            return;
        }
        let job = Job { token, msg, ack };
        if !c.stalled.is_empty() {
            c.stalled.push_back(job);
        } else if let Err(job) = self.dispatch(job) {
            c.stalled.push_back(job);
        }
    }

    /// Hands a stalled connection's held jobs over; false if still full.
    pub(crate) fn unstall(&self, c: &mut ConnCore) -> bool {
        while let Some(job) = c.stalled.pop_front() {
            if let Err(job) = self.dispatch(job) {
                c.stalled.push_front(job);
                return false;
            }
        }
        true
    }

    // Handing the job back on a full queue is the point; boxing it would
    // cost an allocation per message.
    #[allow(clippy::result_large_err)]
    fn dispatch(&self, job: Job) -> Result<(), Job> {
        let w = job.token % self.workers.len();
        let ws = &self.workers[w];
        ws.q.push(job)?;
        if ws.sleeping.swap(false, Ordering::SeqCst) {
            if let Some(t) = &self.worker_threads[w] {
                t.unpark();
            }
        }
        Ok(())
    }

    /// Pops the acks workers handed back.
    pub(crate) fn pop_ack(&self) -> Option<AckReturn> {
        if self.workers.is_empty() {
            // Delivered inline: no worker hands acks back.
            return None;
        }
        self.rx.acks.pop()
    }

    /// Counts and logs a close and gives the connection's slot, deadlines
    /// and reserved memory back.
    pub(crate) fn on_close(&mut self, c: &ConnCore, why: &Close) {
        self.limits.closed(c.token, c.reserved);
        let peer = c.peer;
        self.count_secure_close(c, why);
        match why {
            Close::Limit(what) => {
                Stats::add(&self.shared.stats.rx_limit_closes, 1);
                sr_log!(Warn, "closing connection from {peer}: {what}");
            }
            Close::Eof => sr_log!(Debug, "connection from {peer} closed"),
            Close::Io(e) => sr_log!(Info, "connection from {peer} failed: {e}"),
            Close::Protocol(e) => {
                Stats::add(&self.shared.stats.protocol_errors, 1);
                sr_log!(Warn, "closing connection from {peer}: {e}");
            }
            Close::Secure(_) => {} // counted and logged above
        }
    }
}

/// Calls the listener, turning a panic into a failure.
fn deliver(l: &MessageListener, m: &Message, shared: &Shared) -> Result<(), String> {
    let r = match catch_unwind(AssertUnwindSafe(|| l(m))) {
        Ok(r) => r,
        Err(_) => Err("listener panicked".to_string()),
    };
    if r.is_err() {
        Stats::add(&shared.stats.listener_errors, 1);
    }
    r
}

#[path = "rx_worker.rs"]
mod worker;

#[path = "rx_secure.rs"]
mod secure;

#[path = "rx_run.rs"]
mod run;

#[path = "rx_tribes.rs"]
mod tribes_rx;

#[cfg(test)]
#[path = "rx_core_tests.rs"]
mod tests;
