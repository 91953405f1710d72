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
use crate::wire::frame::{FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT, FLAG_COMPRESSED};
use crate::wire::{detect_dialect, Dialect, Preface};
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
    pub(crate) proto: InboundConn,
    pub(crate) member_id: [u8; 16],
    pub(crate) dialect: Dialect,
    /// A job held back by a full worker queue.
    pub(crate) stalled: Option<Job>,
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
        let t = std::thread::Builder::new()
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
        local_preface: Preface::new(shared.member_id, &shared.cfg.domain, true),
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
            proto: InboundConn::new(self.local_preface.clone(), self.shared.cfg.max_frame_size),
            member_id: [0; 16],
            dialect: Dialect::Unknown,
            stalled: None,
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
                    return Err(Close::Protocol(Error::Protocol(
                        "Tribes framing is not accepted by this receiver".into(),
                    )))
                }
                Dialect::Garbage => {
                    return Err(Close::Protocol(Error::Protocol(
                        "unknown protocol (bad magic)".into(),
                    )))
                }
            }
        }
        let mut delivered = 0u64;
        let result = loop {
            let ev = match c.proto.poll(buf) {
                Ok(Some(ev)) => ev,
                Ok(None) => break Ok(false),
                Err(e) => break Err(Close::Protocol(e)),
            };
            match ev {
                InEvent::Open(p) => c.member_id = p.member_id,
                InEvent::GoAway(reason) => {
                    sr_log!(Debug, "{} going away: {reason}", c.peer);
                    break Err(Close::Eof);
                }
                InEvent::Data(f) => {
                    let id = f.header.id;
                    let flags = f.header.flags;
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
                    if flags & FLAG_ACK_RECEIPT != 0 {
                        c.proto.ack(id);
                    }
                    let msg = Message {
                        from: c.peer,
                        member_id: c.member_id,
                        id,
                        payload,
                    };
                    delivered += 1;
                    let ack = flags & FLAG_ACK_DELIVERY != 0;
                    if self.workers.is_empty() {
                        let r = deliver(&self.listener, &msg, &self.shared);
                        if ack {
                            match r {
                                Ok(()) => c.proto.ack(id),
                                Err(reason) => c.proto.fail(id, &reason),
                            }
                        }
                    } else if let Err(job) = self.dispatch(Job { token, msg, ack }) {
                        c.stalled = Some(job);
                        break Ok(true);
                    }
                }
            }
        };
        Stats::add(&self.shared.stats.msgs_received, delivered);
        result
    }

    /// Hands a stalled connection's held job over; false if still full.
    pub(crate) fn unstall(&self, c: &mut ConnCore) -> bool {
        match c.stalled.take() {
            None => true,
            Some(job) => match self.dispatch(job) {
                Ok(()) => true,
                Err(job) => {
                    c.stalled = Some(job);
                    false
                }
            },
        }
    }

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
