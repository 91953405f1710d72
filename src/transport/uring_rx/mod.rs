//! The receiver on io_uring: one ring thread with a multishot accept, a
//! multishot receive per connection on a shared provided-buffer ring, acks
//! written back batched (one send in flight per connection, taking every
//! ack queued meanwhile), delivery on the same `RxCore` as the mio
//! receiver.
//!
//! Zero-copy choice: each filled provided buffer becomes a `Bytes` and the
//! frames inside it are handed to the listener as slices of it; the buffer
//! goes back to the ring when the last slice drops. Only the bytes of a
//! frame (or preface) that straddles two buffers are copied, into the
//! connection's `carry` buffer, reserved once for the whole frame: that is
//! one copy of at most one frame per buffer boundary, against which the
//! alternative (re-arming a plain receive into a frame-sized buffer for
//! every large frame) costs a cancel and a re-arm round trip per frame.
//! When the ring has no free buffers (listeners holding payloads past the
//! memory cap, or a connection stalled on a full worker queue), the
//! multishot receive ends with `ENOBUFS` and the connection falls back to
//! plain receives into `carry`, so nothing is lost and nothing waits.

mod tuning;

use super::rx_core::{self, Close, ConnCore, RxCore, WorkerHandle};
use super::rx_engine::{self, RxDriver};
use super::{MessageListener, Shared};
use crate::driver::uring::{recv_filled, BufRing, Completion, Filled, Op, OpId, Ring, RingWaker};
use crate::error::Result;
use crate::queue::Wake;
use crate::sr_log;
use crate::stats::Stats;
use bytes::{Buf, Bytes, BytesMut};
use socket2::Socket;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tuning::fit_pool;
pub use tuning::UringRxTuning;

const ACCEPT_TAG: u64 = 0;
const FIRST_CONN: usize = 1;
/// Provided buffers in the ring, and their size. Few: the kernel fills
/// ring entries in order, so each receive lands in the buffer returned
/// longest ago; with 32 MiB in rotation that memory was cold and the
/// kernel's copy cost 3.5× the sender's (S4: p50 27 → 19 µs with 4).
const RING_BUFFERS: u16 = 4;
const BUFFER_SIZE: usize = 1024 * 1024;
/// Buffers allocated at most (provided plus lent to listeners).
const MAX_BUFFERS: usize = 128;
/// Below this many free buffers new receives are plain ones into `carry`.
const LOW_WATER: usize = 8;
/// Bytes a fallback plain receive reserves.
const PLAIN_CHUNK: usize = 64 * 1024;

/// A running io_uring receiver; same interface as
/// [`Receiver`](super::receiver::Receiver).
pub struct UringReceiver {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<RingWaker>,
    thread: Option<JoinHandle<()>>,
    workers: Vec<WorkerHandle>,
}

struct RingWake(Arc<RingWaker>);
impl Wake for RingWake {
    fn wake(&self) {
        self.0.wake_now();
    }
}

impl UringReceiver {
    /// Binds `tcpListenAddress:tcpListenPort` and starts the ring (and
    /// worker) threads.
    ///
    /// # Errors
    /// Bind, ring setup or thread-spawn failures.
    pub fn start(shared: Arc<Shared>, listener: MessageListener) -> Result<UringReceiver> {
        Self::start_tuned(shared, listener, UringRxTuning::default())
    }

    /// As [`UringReceiver::start`] with explicit buffer-ring sizes.
    ///
    /// # Errors
    /// As [`UringReceiver::start`].
    pub fn start_tuned(
        shared: Arc<Shared>,
        listener: MessageListener,
        tuning: UringRxTuning,
    ) -> Result<UringReceiver> {
        let addr = SocketAddr::new(shared.cfg.tcp_listen_address, shared.cfg.tcp_listen_port);
        let sock = Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        sock.set_reuse_address(true)?;
        sock.bind(&addr.into())?;
        sock.listen(1024)?;
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener has no inet address"))?;
        let tuning = fit_pool(tuning, &shared.cfg);
        let pool = tuning.max_buffers * tuning.buffer_size;
        let stop = Arc::new(AtomicBool::new(false));
        // The ring is created on its own thread (single issuer).
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (s2, stop2) = (shared.clone(), stop.clone());
        let thread = crate::driver::sys::ThreadBuilder::new()
            .name("sr-receiver-uring".into())
            .spawn(move || {
                let setup = (|| -> io::Result<(Ring, BufRing)> {
                    let ring = Ring::new(256)?;
                    let bufs = BufRing::with_mode(
                        &ring,
                        1,
                        tuning.ring_buffers,
                        tuning.buffer_size,
                        tuning.max_buffers,
                        tuning.incremental,
                    )?;
                    Ok((ring, bufs))
                })();
                let (ring, bufs) = match setup {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                sr_log!(
                    Info,
                    "io_uring receiver: {} provided buffers of {} KiB, incremental={}",
                    tuning.ring_buffers,
                    tuning.buffer_size / 1024,
                    bufs.incremental()
                );
                let waker = ring.waker();
                let (core, workers) = match rx_core::start_workers(
                    &s2,
                    listener,
                    Box::new(RingWake(waker.clone())),
                    pool,
                ) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok((waker, workers)));
                let mut rx = RingRx {
                    ring,
                    bufs,
                    listener: sock,
                    accept: None,
                    conns: HashMap::new(),
                    next_token: FIRST_CONN,
                    core,
                    stop: stop2,
                    stalled: Vec::new(),
                    low_water: LOW_WATER.min(tuning.ring_buffers as usize / 2).max(1),
                    ring_buffers: tuning.ring_buffers as usize,
                    rearm: Vec::new(),
                    flush: Vec::new(),
                    done: Vec::new(),
                };
                rx.run();
            })?;
        let (waker, workers) = match rx.recv() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e.into());
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other("receiver ring thread died").into());
            }
        };
        sr_log!(Info, "receiver (io_uring) listening on {local}");
        Ok(UringReceiver {
            local,
            stop,
            waker,
            thread: Some(thread),
            workers,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the threads, cancels and drains every operation in flight
    /// and closes every connection. Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake_now();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        rx_core::stop_workers(&mut self.workers);
    }
}

impl Drop for UringReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

struct UConn {
    sock: Socket,
    core: ConnCore,
    /// Bytes of a frame straddling buffers (or all bytes, in fallback).
    carry: BytesMut,
    /// Buffers received while stalled, in order (with their buffer view
    /// in incremental mode).
    queued: VecDeque<(Bytes, Option<Bytes>)>,
    /// Incremental mode: the start of an incomplete frame, left in place
    /// in its buffer (with the buffer's view) in case the next chunk
    /// continues right after it.
    tail: Option<(Bytes, Bytes)>,
    recv: Option<OpId>,
    /// The receive in flight is multishot (stopped when the connection is
    /// held, so that it does not keep filling buffers).
    multishot: bool,
    /// A stop was asked for the multishot receive in flight.
    stopping: bool,
    send: Option<OpId>,
    /// The output buffer swapped out of the protocol for the next send.
    spare: Vec<u8>,
}

struct RingRx {
    // Declared first: dropped (drained) before the buffers it may fill.
    ring: Ring,
    bufs: BufRing,
    listener: Socket,
    accept: Option<OpId>,
    conns: HashMap<usize, UConn>,
    next_token: usize,
    core: RxCore,
    stop: Arc<AtomicBool>,
    stalled: Vec<usize>,
    /// Free buffers needed to arm a multishot receive.
    low_water: usize,
    ring_buffers: usize,
    /// Connections whose receive ended and must be re-armed.
    rearm: Vec<usize>,
    /// Connections with acks to write.
    flush: Vec<usize>,
    done: Vec<Completion>,
}

impl RingRx {
    fn run(&mut self) {
        let spin = self.core.shared.cfg.idle.spin;
        let mut idle_since: Option<Instant> = None;
        self.arm_accept();
        while !self.stop.load(Ordering::Relaxed) {
            let mut done = std::mem::take(&mut self.done);
            let n = self.ring.reap(&mut done);
            for c in done.drain(..) {
                self.on_completion(c);
            }
            self.done = done;
            let mut did = n > 0;
            did |= self.drain_worker_acks();
            did |= rx_engine::enforce_limits(self);
            if !self.stalled.is_empty() {
                for t in std::mem::take(&mut self.stalled) {
                    self.resume(t);
                }
                did = true;
            }
            if self.bufs.provided() < self.ring_buffers {
                self.bufs.replenish();
            }
            for t in std::mem::take(&mut self.rearm) {
                self.arm_recv(t);
            }
            for t in std::mem::take(&mut self.flush) {
                self.flush_conn(t);
            }
            if did {
                idle_since = None;
            } else if idle_since.is_none() {
                idle_since = Some(Instant::now());
            }
            let sleep = idle_since.is_some_and(|t| t.elapsed() >= spin);
            let r = if sleep && self.stalled.is_empty() {
                let waker = self.ring.waker();
                waker.sleeping.store(true, Ordering::SeqCst);
                self.core.rx.sleeping.store(true, Ordering::SeqCst);
                let r = if self.core.rx.acks.is_empty() && !self.stop.load(Ordering::SeqCst) {
                    // Until the next handshake or ack-write deadline.
                    self.ring
                        .wait(self.core.sleep_for(Duration::from_millis(500)))
                } else {
                    self.ring.submit()
                };
                waker.sleeping.store(false, Ordering::SeqCst);
                self.core.rx.sleeping.store(false, Ordering::SeqCst);
                r
            } else {
                self.ring.submit()
            };
            if let Err(e) = r {
                sr_log!(Error, "receiver ring failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let tokens: Vec<usize> = self.conns.keys().copied().collect();
        for t in tokens {
            if let Some(c) = self.conns.remove(&t) {
                self.release(c);
            }
        }
        if let Some(a) = self.accept.take() {
            self.ring.cancel(a);
        }
        if !self.ring.drain(Duration::from_secs(5)) {
            sr_log!(Error, "receiver ring did not drain");
        }
    }

    fn arm_accept(&mut self) {
        let fd = self.listener.as_raw_fd();
        match self.ring.push(Op::AcceptMulti { fd }, ACCEPT_TAG) {
            Ok(id) => self.accept = Some(id),
            Err(e) => sr_log!(Error, "cannot arm accept: {e}"),
        }
    }

    fn on_completion(&mut self, c: Completion) {
        if c.orphan {
            // A cancelled receive consumed a buffer: give it back.
            if let Some(bid) = c.buffer() {
                drop(self.bufs.filled(bid, c.res.max(0) as usize, c.flags));
            }
            return;
        }
        if c.tag == ACCEPT_TAG {
            if !c.more() {
                self.accept = None;
            }
            self.on_accept(c.res);
            if self.accept.is_none() && !self.stop.load(Ordering::Relaxed) {
                self.arm_accept();
            }
            return;
        }
        let token = c.tag as usize;
        let Some(mut conn) = self.conns.remove(&token) else {
            if let Some(bid) = c.buffer() {
                drop(self.bufs.filled(bid, c.res.max(0) as usize, c.flags));
            }
            return;
        };
        let r = if conn.send == Some(c.id) {
            let r = self.on_sent(&mut conn, c);
            if r.is_ok() && conn.send.is_none() {
                rx_engine::output_written(self, token, &mut conn);
            }
            r
        } else {
            self.on_recv(token, &mut conn, c)
        };
        match r {
            Ok(()) => {
                if conn.core.proto.has_output() && conn.send.is_none() {
                    self.flush.push(token);
                }
                self.conns.insert(token, conn);
            }
            Err(why) => self.close(conn, why),
        }
    }

    fn on_accept(&mut self, res: i32) {
        if res < 0 {
            if res != -libc::ECANCELED {
                sr_log!(
                    Warn,
                    "accept failed: {}",
                    io::Error::from_raw_os_error(-res)
                );
            }
            return;
        }
        let sock = Socket::from(crate::driver::uring::owned_fd(res));
        let peer = match sock.peer_addr().ok().and_then(|a| a.as_socket()) {
            Some(p) => p,
            None => return,
        };
        let token = self.next_token;
        self.next_token += 1;
        if !rx_engine::admit(self, token, peer) {
            return;
        }
        let cfg = &self.core.shared.cfg;
        let _ = sock.set_nodelay(cfg.tcp_no_delay);
        super::receiver::set_buffers(&sock, cfg);
        let core = self.core.new_conn(token, peer);
        self.conns.insert(
            token,
            UConn {
                sock,
                core,
                carry: BytesMut::new(),
                queued: VecDeque::new(),
                tail: None,
                recv: None,
                multishot: false,
                stopping: false,
                send: None,
                spare: Vec::new(),
            },
        );
        self.arm_recv(token);
    }

    /// Arms a multishot receive, or a plain one when buffers run low.
    fn arm_recv(&mut self, token: usize) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.recv.is_some() || c.core.paused() || !c.queued.is_empty() {
            return;
        }
        let fd = c.sock.as_raw_fd();
        c.multishot = self.bufs.provided() >= self.low_water;
        c.stopping = false;
        let op = if c.multishot {
            Op::RecvMulti {
                fd,
                group: self.bufs.group(),
            }
        } else {
            if let Some((t, _)) = c.tail.take() {
                c.carry.extend_from_slice(&t);
            }
            let mut buf = std::mem::take(&mut c.carry);
            let want = c.core.proto.wanted_after(buf.len()).max(PLAIN_CHUNK);
            buf.reserve(want);
            Op::Recv { fd, buf, max: want }
        };
        match self.ring.push(op, token as u64) {
            Ok(id) => c.recv = Some(id),
            Err(e) => {
                sr_log!(Error, "cannot arm receive: {e}");
                if let Some(c) = self.conns.remove(&token) {
                    self.close(c, Close::Io(e));
                }
            }
        }
    }

    fn on_recv(
        &mut self,
        token: usize,
        c: &mut UConn,
        cq: Completion,
    ) -> std::result::Result<(), Close> {
        let last = !cq.more();
        if last {
            c.recv = None;
        }
        if !c.core.paused() && c.queued.is_empty() {
            self.core.begin_turn(&mut c.core);
        }
        if let Some(op @ Op::Recv { .. }) = cq.op {
            // A plain receive: its buffer is the connection's carry.
            match recv_filled(op, cq.res) {
                Some(buf) => c.carry = buf,
                None => return Err(Close::Io(io::Error::from_raw_os_error(-cq.res))),
            }
            if cq.res == 0 {
                return Err(Close::Eof);
            }
            Stats::add(&self.core.shared.stats.bytes_received, cq.res as u64);
            self.core.decode(token, &mut c.core, &mut c.carry)?;
            if c.core.paused() {
                rx_engine::park(self, token, c);
                return Ok(());
            }
            self.rearm.push(token);
            return Ok(());
        }
        if cq.res > 0 {
            let Some(bid) = cq.buffer() else {
                return Err(Close::Io(io::Error::other("receive without a buffer")));
            };
            let Some(f) = self.bufs.filled(bid, cq.res as usize, cq.flags) else {
                return Err(Close::Io(io::Error::other("unknown provided buffer")));
            };
            Stats::add(&self.core.shared.stats.bytes_received, cq.res as u64);
            self.feed(token, c, f.chunk, f.buffer)?;
        } else if cq.res == 0 {
            return Err(Close::Eof);
        } else if cq.res != -libc::ENOBUFS && !(cq.res == -libc::ECANCELED && c.stopping) {
            return Err(Close::Io(io::Error::from_raw_os_error(-cq.res)));
        }
        if last {
            self.rearm.push(token);
        }
        Ok(())
    }

    /// Decodes one filled chunk: joins it to the tail left in the same
    /// buffer or completes a straddling frame in `carry` first, then
    /// slices the rest in place; an incomplete frame stays in place as the
    /// tail (incremental mode) or goes to `carry`.
    fn feed(
        &mut self,
        token: usize,
        c: &mut UConn,
        mut chunk: Bytes,
        buffer: Option<Bytes>,
    ) -> std::result::Result<(), Close> {
        if c.core.paused() || !c.queued.is_empty() {
            c.queued.push_back((chunk, buffer));
            return Ok(());
        }
        if let Some((t, tbuf)) = c.tail.take() {
            match Filled::join(&t, &tbuf, &chunk) {
                Some(joined) => chunk = joined,
                None => {
                    // The frame continues elsewhere: copy its start.
                    let w = c.core.proto.wanted_after(t.len());
                    c.carry.reserve(t.len() + w);
                    c.carry.extend_from_slice(&t);
                }
            }
        }
        while !c.carry.is_empty() {
            self.core.decode(token, &mut c.core, &mut c.carry)?;
            if c.core.paused() {
                c.queued.push_back((chunk, buffer));
                rx_engine::park(self, token, c);
                return Ok(());
            }
            if c.carry.is_empty() {
                break;
            }
            if chunk.is_empty() {
                return Ok(());
            }
            let w = c.core.proto.wanted_after(c.carry.len());
            let take = if w == 0 {
                chunk.len()
            } else {
                w.min(chunk.len())
            };
            c.carry.extend_from_slice(&chunk[..take]);
            chunk.advance(take);
        }
        if chunk.is_empty() {
            return Ok(());
        }
        self.core.decode(token, &mut c.core, &mut chunk)?;
        if c.core.paused() {
            c.queued.push_back((chunk, buffer));
            rx_engine::park(self, token, c);
            return Ok(());
        }
        if !chunk.is_empty() {
            match buffer {
                Some(b) => c.tail = Some((chunk, b)),
                None => {
                    let w = c.core.proto.wanted_after(chunk.len());
                    c.carry.reserve(chunk.len() + w);
                    c.carry.extend_from_slice(&chunk);
                }
            }
        }
        Ok(())
    }

    /// Retries a paused connection (a full worker queue, its inflate
    /// budget spent, or a hold that ended).
    fn resume(&mut self, token: usize) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        self.core.begin_turn(&mut c.core);
        if c.core.hold.is_some() {
            // Still held (for output or memory): its event resumes it.
            self.conns.insert(token, c);
            return;
        }
        if !self.core.unstall(&mut c.core) {
            self.stalled.push(token);
            self.conns.insert(token, c);
            return;
        }
        let r = (|| {
            let queued = std::mem::take(&mut c.queued);
            let mut it = queued.into_iter();
            // Frames already in carry (or the rest of a batch) go first.
            {
                self.core.decode(token, &mut c.core, &mut c.carry)?;
                if c.core.paused() {
                    c.queued.extend(it);
                    rx_engine::park(self, token, &mut c);
                    return Ok(());
                }
            }
            for (chunk, buffer) in it.by_ref() {
                self.feed(token, &mut c, chunk, buffer)?;
                if c.core.paused() {
                    c.queued.extend(it);
                    return Ok(());
                }
            }
            self.rearm.push(token);
            Ok(())
        })();
        match r {
            Ok(()) => {
                if c.core.proto.has_output() && c.send.is_none() {
                    self.flush.push(token);
                }
                self.conns.insert(token, c);
            }
            Err(why) => self.close(c, why),
        }
    }

    fn drain_worker_acks(&mut self) -> bool {
        let mut any = false;
        while let Some(a) = self.core.pop_ack() {
            any = true;
            if let Some(c) = self.conns.get_mut(&a.token) {
                let t = a.token;
                self.core.worker_ack(&mut c.core, a);
                if c.send.is_none() && self.flush.last() != Some(&t) {
                    self.flush.push(t);
                }
            }
        }
        any
    }

    /// Sends everything the protocol has queued (one send in flight).
    fn flush_conn(&mut self, token: usize) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.send.is_some() || !c.core.proto.has_output() {
            return;
        }
        let out = c.core.proto.take_output();
        let mut buf = std::mem::take(&mut c.spare);
        buf.clear();
        std::mem::swap(out, &mut buf);
        let fd = c.sock.as_raw_fd();
        match self.ring.push(Op::Send { fd, buf, off: 0 }, token as u64) {
            Ok(id) => {
                c.send = Some(id);
                Stats::add(&self.core.shared.stats.acks_sent, 1);
            }
            Err(e) => {
                if let Some(c) = self.conns.remove(&token) {
                    self.close(c, Close::Io(e));
                }
            }
        }
    }

    fn on_sent(&mut self, c: &mut UConn, cq: Completion) -> std::result::Result<(), Close> {
        c.send = None;
        let Some(Op::Send { fd, buf, off }) = cq.op else {
            return Ok(());
        };
        if cq.res <= 0 {
            return Err(Close::Io(io::Error::from_raw_os_error(-cq.res.min(-1))));
        }
        let off = off + cq.res as usize;
        if off < buf.len() {
            // Short write: send the rest before anything newer.
            let id = self
                .ring
                .push(Op::Send { fd, buf, off }, cq.tag)
                .map_err(Close::Io)?;
            c.send = Some(id);
        } else {
            c.spare = buf;
        }
        Ok(())
    }

    /// Cancels the connection's operations and closes its socket; the ops'
    /// buffers stay parked in the ring until their last completions.
    fn release(&mut self, c: UConn) {
        if let Some(id) = c.recv {
            self.ring.cancel(id);
        }
        if let Some(id) = c.send {
            self.ring.cancel(id);
        }
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
    }

    fn close(&mut self, mut c: UConn, why: Close) {
        self.core.on_close(&c.core, &why);
        // Best effort: tell the peer why (FAIL frames queued above), or ack
        // what came with its hang-up; not past a send still in flight.
        if matches!(why, Close::Protocol(_) | Close::Eof) && c.send.is_none() {
            let out = c.core.proto.take_output();
            let _ = c
                .sock
                .send_with_flags(out, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
        }
        self.release(c);
    }
}

/// Completions: a paused connection's multishot receive is stopped (not
/// orphaned: what it already received is kept, in order) so that it pins
/// no more provided buffers; the retry re-arms it.
impl RxDriver for RingRx {
    type Conn = UConn;

    fn core(&mut self) -> &mut RxCore {
        &mut self.core
    }

    fn conn_core(c: &mut UConn) -> &mut ConnCore {
        &mut c.core
    }

    fn take_conn(&mut self, token: usize) -> Option<UConn> {
        self.conns.remove(&token)
    }

    fn put_conn(&mut self, token: usize, c: UConn) {
        self.conns.insert(token, c);
    }

    fn close_conn(&mut self, _token: usize, c: UConn, why: Close) {
        self.close(c, why);
    }

    fn retry_next_turn(&mut self, token: usize) {
        self.stalled.push(token);
    }

    fn stop_reading(&mut self, c: &mut UConn) {
        if let (Some(id), true, false) = (c.recv, c.multishot, c.stopping) {
            self.ring.stop(id);
            c.stopping = true;
        }
    }
}
