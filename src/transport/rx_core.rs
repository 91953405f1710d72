//! What both receivers (mio and io_uring) share: turning decoded frames
//! into listener calls and acks, the worker pool that keeps per-connection
//! order, and the reasons a connection closes.

use super::{Message, MessageListener, Shared};
use crate::error::Error;
use crate::proto::inbound::{InEvent, InboundConn};
use crate::proto::FrameBuf;
use crate::queue::Wake;
use crate::sr_log;
use crate::stats::Stats;
use crate::wire::compress::Inflater;
use crate::wire::frame::{batch_frames, FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT, FLAG_COMPRESSED};
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
/// Inbound connections beyond this are refused.
pub(crate) const MAX_CONNECTIONS: usize = 4096;

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
pub(crate) enum Close {
    Eof,
    Io(io::Error),
    Protocol(Error),
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
}

/// Starts `tcpThreadCount` workers; returns the core for the I/O thread and
/// the handles to stop them with.
pub(crate) fn start_workers(
    shared: &Arc<Shared>,
    listener: MessageListener,
    waker: Box<dyn Wake>,
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
            .spawn(move || worker_loop(w2, l2, r2, s2))?;
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
    /// State for a newly accepted connection from `peer`.
    pub(crate) fn new_conn(&self, peer: SocketAddr) -> ConnCore {
        Stats::add(&self.shared.stats.connections_accepted, 1);
        ConnCore {
            peer,
            from: peer,
            proto: InboundConn::new(self.local_preface.clone(), self.shared.cfg.max_frame_size),
            member_id: [0; 16],
            dialect: Dialect::Unknown,
            tribes: None,
            stalled: std::collections::VecDeque::new(),
        }
    }

    /// Decodes and delivers every complete frame in `buf`. Returns true if
    /// a full worker queue stalled the connection (the caller retries it
    /// later with [`RxCore::unstall`] before decoding more).
    pub(crate) fn decode<B: FrameBuf>(
        &mut self,
        token: usize,
        c: &mut ConnCore,
        buf: &mut B,
    ) -> Result<bool, Close> {
        if c.dialect == Dialect::Unknown {
            match detect_dialect(buf) {
                Dialect::Unknown => return Ok(false),
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
            return self.decode_tribes(c, buf).map(|()| false);
        }
        let mut delivered = 0u64;
        let result = loop {
            let ev = match c.proto.poll(buf) {
                Ok(Some(ev)) => ev,
                Ok(None) => break Ok(false),
                Err(e) => break Err(Close::Protocol(e)),
            };
            match ev {
                InEvent::Open(p) => {
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
                    let (id, flags) = (f.header.id, f.header.flags);
                    let payload = if flags & FLAG_COMPRESSED != 0 {
                        match self.inflater.inflate(&f.payload) {
                            Ok(p) => p,
                            Err(e) => {
                                c.proto.fail(id, &e.to_string());
                                break Err(Close::Protocol(e));
                            }
                        }
                    } else {
                        f.payload
                    };
                    delivered += 1;
                    self.on_data(token, c, id, flags, payload);
                }
                InEvent::Batch(f) => {
                    let body = if f.header.flags & FLAG_COMPRESSED != 0 {
                        match self.inflater.inflate(&f.payload) {
                            Ok(b) => b,
                            Err(e) => break Err(Close::Protocol(e)),
                        }
                    } else {
                        f.payload
                    };
                    let max = self.shared.cfg.max_frame_size;
                    let mut bad = None;
                    for r in batch_frames(&body, max) {
                        match r {
                            Ok((h, p)) => {
                                delivered += 1;
                                self.on_data(token, c, h.id, h.flags, p);
                            }
                            Err(e) => {
                                bad = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = bad {
                        break Err(Close::Protocol(e));
                    }
                }
            }
            if !c.stalled.is_empty() {
                break Ok(true);
            }
        };
        Stats::add(&self.shared.stats.msgs_received, delivered);
        result
    }

    /// One message: ack on receipt, deliver (here or on the connection's
    /// worker), ack or FAIL after delivery. A full worker queue parks the
    /// message on the connection, which stops reading until it drains.
    fn on_data(&mut self, token: usize, c: &mut ConnCore, id: u64, flags: u8, payload: Bytes) {
        if flags & FLAG_ACK_RECEIPT != 0 {
            c.proto.ack(id);
        }
        let msg = Message {
            from: c.from,
            peer: c.peer,
            member_id: c.member_id,
            id,
            payload,
        };
        let ack = flags & FLAG_ACK_DELIVERY != 0;
        if self.workers.is_empty() {
            let r = deliver(&self.listener, &msg, &self.shared);
            if ack {
                match r {
                    Ok(()) => c.proto.ack(id),
                    Err(reason) => c.proto.fail(id, &reason),
                }
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

    /// Tribes framing: each frame carries a ChannelData; acks follow the
    /// message's options exactly as Tribes' NioReplicationTask does (ACK
    /// before delivery with USE_ACK; after it, or FAIL_ACK, with
    /// SYNCHRONIZED_ACK). Gzip-flagged bodies are inflated within bounds.
    /// Delivery stays on this thread (Tribes connections are rare, and this
    /// keeps their order trivially).
    fn decode_tribes<B: FrameBuf>(&mut self, c: &mut ConnCore, buf: &mut B) -> Result<(), Close> {
        use tribes::options::{GZIP, SYNCHRONIZED_ACK, USE_ACK};
        let Some(t) = c.tribes.as_mut() else {
            return Ok(());
        };
        let mut delivered = 0u64;
        loop {
            let payload = match t.dec.decode(buf) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(Close::Protocol(e)),
            };
            let cd = ChannelData::decode(payload).map_err(Close::Protocol)?;
            let member = cd.member().map_err(Close::Protocol)?;
            let from = match u16::try_from(member.port) {
                Ok(p) if p != 0 => SocketAddr::new(member.host, p),
                _ => c.peer,
            };
            let member_id = member.unique_id;
            let use_ack = cd.has(USE_ACK);
            let sync = use_ack && cd.has(SYNCHRONIZED_ACK);
            if use_ack && !sync {
                c.proto.push_raw(&tribes::ACK_FRAME);
            }
            let body = if cd.has(GZIP) {
                match compress::gunzip_bounded(&cd.message, self.shared.cfg.max_decompressed_size) {
                    Ok(b) => b,
                    Err(e) => {
                        if sync {
                            c.proto.push_raw(&tribes::FAIL_ACK_FRAME);
                        }
                        return Err(Close::Protocol(e));
                    }
                }
            } else {
                cd.message
            };
            // Tribes' failure-detector probes and pings are not messages.
            let r = if tribes::is_control_body(&body) {
                Ok(())
            } else {
                t.seq += 1;
                delivered += 1;
                let msg = Message {
                    from,
                    peer: c.peer,
                    member_id,
                    id: t.seq,
                    payload: body,
                };
                deliver(&self.listener, &msg, &self.shared)
            };
            if sync {
                c.proto.push_raw(match r {
                    Ok(()) => &tribes::ACK_FRAME,
                    Err(_) => &tribes::FAIL_ACK_FRAME,
                });
            }
        }
        Stats::add(&self.shared.stats.msgs_received, delivered);
        Ok(())
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
        self.rx.acks.pop()
    }

    /// Counts and logs a close.
    pub(crate) fn log_close(&self, peer: SocketAddr, why: &Close) {
        match why {
            Close::Eof => sr_log!(Debug, "connection from {peer} closed"),
            Close::Io(e) => sr_log!(Info, "connection from {peer} failed: {e}"),
            Close::Protocol(e) => {
                Stats::add(&self.shared.stats.protocol_errors, 1);
                sr_log!(Warn, "closing connection from {peer}: {e}");
            }
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

fn worker_loop(w: Arc<WorkerShared>, l: MessageListener, rx: Arc<RxShared>, shared: Arc<Shared>) {
    let spin = shared.cfg.idle.spin;
    let mut idle_since: Option<Instant> = None;
    loop {
        if let Some(job) = w.q.pop() {
            idle_since = None;
            let r = deliver(&l, &job.msg, &shared);
            if job.ack {
                let mut ret = AckReturn {
                    token: job.token,
                    id: job.msg.id,
                    err: r.err(),
                };
                // The return queue holds every worker's full queue, so this
                // only spins if the I/O thread is far behind.
                while let Err(back) = rx.acks.push(ret) {
                    ret = back;
                    std::thread::yield_now();
                }
                if rx.sleeping.swap(false, Ordering::SeqCst) {
                    rx.waker.wake();
                }
            }
            continue;
        }
        if w.stop.load(Ordering::SeqCst) {
            return;
        }
        match idle_since {
            None => idle_since = Some(Instant::now()),
            Some(t) if t.elapsed() >= spin => {
                w.sleeping.store(true, Ordering::SeqCst);
                if w.q.is_empty() && !w.stop.load(Ordering::SeqCst) {
                    std::thread::park_timeout(Duration::from_millis(100));
                }
                w.sleeping.store(false, Ordering::SeqCst);
            }
            _ => std::hint::spin_loop(),
        }
    }
}
