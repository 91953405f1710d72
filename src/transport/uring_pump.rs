//! The asynchronous engine on io_uring: same queue, link logic and
//! interface as the mio [`Pump`](super::pump::Pump), with bytes moved by
//! completions. Each connection has at most one `sendmsg` in flight; it
//! gathers up to [`FRAMES_PER_SEND`] pending frames (header copied into the
//! op, payload shared by reference count) and everything the loop turn
//! produced for all connections is submitted with one `io_uring_enter`.
//! Frames whose payload reaches [`UringPumpTuning::zc_min`] go alone as
//! `SENDMSG_ZC`, their buffers held until the notification completion.
//! Replies (ACK/FAIL/PONG) are read with a plain receive into the link's
//! buffer, re-armed after each completion.

use super::link::{self, Conn, LinkIndex, PumpHandle};
use super::pump::{Outgoing, INTAKE_BATCH};
use super::Shared;
use crate::driver::uring::{recv_filled, Completion, Gather, Op, OpId, Ring, RingWaker};
use crate::proto::sender::Batcher;
use crate::queue::{SendQueue, Wake};
use crate::sr_log;
use bytes::BytesMut;
use socket2::Socket;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames gathered into one `sendmsg` (two iovecs each, one for control).
pub const FRAMES_PER_SEND: usize = 511;
/// Reply bytes a receive reserves.
const REPLY_CHUNK: usize = 16 * 1024;

/// Tuning of the io_uring engine.
#[derive(Debug, Clone, Copy)]
pub struct UringPumpTuning {
    /// Payloads of at least this many bytes go as `SENDMSG_ZC`.
    /// `usize::MAX` disables zero-copy sends.
    pub zc_min: usize,
    /// Use zero-copy sends to loopback addresses too.
    pub zc_loopback: bool,
}

impl Default for UringPumpTuning {
    /// 32 KiB, not on loopback. Measured with `examples/zc_threshold.rs`
    /// (see docs/IO_URING.md): on loopback the kernel copies zero-copy
    /// sends anyway, and they ran at 0.4-0.6x plain `sendmsg` from 16 KiB
    /// to 256 KiB. Off loopback the published break-even is about 3 KB
    /// per send; a zero-copy frame here goes alone (it leaves the gathered
    /// batch), so the threshold sits well above that.
    fn default() -> Self {
        UringPumpTuning {
            zc_min: 32 * 1024,
            zc_loopback: false,
        }
    }
}

/// Wakes the ring thread once it exists.
struct LateWake(Arc<OnceLock<Arc<RingWaker>>>);
impl Wake for LateWake {
    fn wake(&self) {
        if let Some(w) = self.0.get() {
            w.wake_now();
        }
    }
}

/// A running io_uring pump; same interface as [`Pump`](super::pump::Pump).
pub struct UringPump {
    h: PumpHandle,
    waker: Arc<RingWaker>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl UringPump {
    /// Starts a pump thread named `name` with its own ring.
    ///
    /// # Errors
    /// Ring or thread creation failures.
    pub fn start(shared: Arc<Shared>, name: &str) -> crate::Result<UringPump> {
        Self::start_tuned(shared, name, UringPumpTuning::default())
    }

    /// As [`UringPump::start`] with explicit tuning.
    ///
    /// # Errors
    /// As [`UringPump::start`].
    pub fn start_tuned(
        shared: Arc<Shared>,
        name: &str,
        tuning: UringPumpTuning,
    ) -> crate::Result<UringPump> {
        Self::start_policy(shared, name, tuning, false)
    }

    /// Starts a pump; with `admission`, a send reserves room at every
    /// destination first, all or nothing (the `asynchronous` policy).
    pub(crate) fn start_policy(
        shared: Arc<Shared>,
        name: &str,
        tuning: UringPumpTuning,
        admission: bool,
    ) -> crate::Result<UringPump> {
        let late = Arc::new(OnceLock::new());
        let h = PumpHandle::new(shared.clone(), Box::new(LateWake(late.clone())), admission);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let eh = h.clone_ref();
        let thread = crate::driver::sys::ThreadBuilder::new()
            .name(name.to_string())
            .spawn(move || {
                let ring = match Ring::new(1024) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let waker = ring.waker();
                let _ = late.set(waker.clone());
                let _ = tx.send(Ok(waker));
                let s2 = eh.shared.clone();
                let preface = s2.preface(false).encode();
                let level = s2.cfg.compression_level;
                let mut eng = Engine {
                    ring,
                    queue: eh.queue.clone(),
                    shared: s2,
                    stop: eh.stop.clone(),
                    h: eh,
                    conns: Vec::new(),
                    index: LinkIndex::default(),
                    preface,
                    batcher: Batcher::new(level),
                    touched: Vec::new(),
                    held: None,
                    tuning,
                    done: Vec::new(),
                    gathers: Vec::new(),
                };
                eng.run();
            })?;
        let waker = match rx.recv() {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e.into());
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other("pump ring thread died").into());
            }
        };
        Ok(UringPump {
            h,
            waker,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues a message, waiting up to `queueAddWaitTimeout` for room.
    ///
    /// # Errors
    /// [`crate::Error::QueueFull`], [`crate::Error::NotRunning`] after stop.
    pub fn send(&self, item: Outgoing) -> crate::Result<()> {
        self.h.send(item)
    }

    /// Messages queued and not yet taken by the I/O thread.
    pub fn queue_len(&self) -> usize {
        self.h.queue_len()
    }

    /// Messages taken by the I/O thread that have no outcome yet.
    pub fn in_flight(&self) -> u64 {
        self.h.in_flight()
    }

    /// True when nothing is queued, pending or awaiting an ack.
    pub fn is_idle(&self) -> bool {
        self.h.is_idle()
    }

    /// `addr` left the cluster: its state is released once every message
    /// to it has an outcome.
    pub fn member_left(&self, addr: SocketAddr) {
        self.h.member_left(addr);
    }

    /// Members the I/O thread holds state for.
    pub fn members(&self) -> u64 {
        self.h.members.load(Ordering::Relaxed)
    }

    /// Stops the thread: whatever has no outcome yet ends as
    /// [`crate::Error::Shutdown`]; every operation in flight is cancelled and its
    /// completion awaited before the buffers are freed. Idempotent.
    pub fn stop(&self) {
        self.h.stop.store(true, Ordering::SeqCst);
        self.waker.wake_now();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
        // A send racing with stop may have queued after the thread's last
        // look.
        self.h.report_unsent(None);
    }
}

impl Drop for UringPump {
    fn drop(&mut self) {
        self.stop();
    }
}

struct UConn {
    conn: Conn,
    sock: Option<Socket>,
    connect: Option<OpId>,
    send: Option<OpId>,
    recv: Option<OpId>,
    rbuf: BytesMut,
}

struct Engine {
    ring: Ring,
    h: PumpHandle,
    queue: Arc<SendQueue<Outgoing>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    /// Members by index (the ops' tag); `None` for a released slot.
    conns: Vec<Option<UConn>>,
    index: LinkIndex,
    preface: Vec<u8>,
    /// Compresses runs of messages into BATCH frames before writing.
    batcher: Batcher,
    touched: Vec<usize>,
    /// A message waiting for a full (not stalled) member's room.
    held: Option<Outgoing>,
    tuning: UringPumpTuning,
    done: Vec<Completion>,
    /// Gather buffers back from finished sends, for reuse (boxed: a
    /// submitted op points the kernel at the `msghdr` inside the box).
    #[allow(clippy::vec_box)]
    gathers: Vec<Box<Gather>>,
}

impl Engine {
    fn run(&mut self) {
        let spin = self.shared.cfg.idle.spin;
        let mut idle_since: Option<Instant> = None;
        let mut next_sweep = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let mut done = std::mem::take(&mut self.done);
            let reaped = self.ring.reap(&mut done);
            let now = Instant::now();
            for c in done.drain(..) {
                self.on_completion(c, now);
            }
            self.done = done;
            let index = std::mem::take(&mut self.index);
            link::members_left(self, &index, now);
            self.index = index;
            let queue = self.queue.clone();
            let mut touched = std::mem::take(&mut self.touched);
            let mut held = self.held.take();
            let took = link::intake(self, &queue, &mut held, INTAKE_BATCH, now, &mut touched);
            self.held = held;
            for i in touched.drain(..) {
                link::drive(self, i, now);
            }
            self.touched = touched;
            let wrote = self.write_all_ready();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + Duration::from_millis(1);
            }
            self.h.publish(
                self.held.is_some(),
                self.conns.iter().flatten().map(|c| &c.conn),
            );
            let busy = took > 0 || wrote || reaped > 0;
            let r = if busy || (self.held.is_none() && !self.queue.is_empty()) {
                idle_since = None;
                self.ring.submit()
            } else if self.held.is_some() {
                // A full member holds intake: sleep until a completion or
                // until it may count as stalled, whatever the queue holds.
                let until = self.held_until(now);
                self.ring.wait(
                    until
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_micros(100)),
                )
            } else {
                let since = *idle_since.get_or_insert(now);
                if since.elapsed() >= spin && self.queue.prepare_sleep() {
                    let wait = self
                        .next_timer(now)
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_micros(100));
                    let r = self.ring.wait(wait);
                    self.queue.awake();
                    r
                } else {
                    self.ring.submit()
                }
            };
            if let Err(e) = r {
                sr_log!(Error, "sender ring failed: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.shutdown();
    }

    fn on_completion(&mut self, cq: Completion, now: Instant) {
        let i = cq.tag as usize;
        if cq.notif() {
            // Zero-copy send done with its buffers.
            self.recycle(cq.op);
            return;
        }
        let Some(c) = self.conns.get_mut(i).and_then(|c| c.as_mut()) else {
            self.recycle(cq.op);
            return;
        };
        if c.connect == Some(cq.id) {
            c.connect = None;
            if cq.res < 0 {
                let e = io::Error::from_raw_os_error(-cq.res);
                self.broken(i, now, &format!("connect failed: {e}"));
            } else if c
                .sock
                .as_ref()
                .is_some_and(|s| super::connected_to_itself(s.into()))
            {
                self.broken(i, now, super::SELF_CONNECT);
            } else {
                c.conn.handle_connected(now);
                self.arm_recv(i);
            }
        } else if c.send == Some(cq.id) {
            c.send = None;
            let op = cq.op;
            if cq.res < 0 {
                self.recycle(op);
                let e = io::Error::from_raw_os_error(-cq.res);
                self.broken(i, now, &format!("write failed: {e}"));
                return;
            }
            c.conn.handle_written(now, cq.res as usize);
            self.recycle(op);
            link::drive(self, i, now);
        } else if c.recv == Some(cq.id) {
            c.recv = None;
            let Some(buf) = cq.op.and_then(|op| recv_filled(op, cq.res)) else {
                let e = io::Error::from_raw_os_error(-cq.res);
                self.broken(i, now, &format!("read failed: {e}"));
                return;
            };
            c.rbuf = buf;
            if cq.res == 0 {
                self.broken(i, now, "connection closed by member");
                return;
            }
            c.conn.handle_replies(now, &mut c.rbuf);
            link::drive(self, i, now);
            self.arm_recv(i);
        } else {
            // A late completion of a connection already replaced.
            self.recycle(cq.op);
        }
    }

    fn recycle(&mut self, op: Option<Op>) {
        if let Some(Op::SendMsg { mut batch, .. }) = op {
            batch.clear();
            if self.gathers.len() < 64 {
                self.gathers.push(batch);
            }
        }
    }

    fn arm_recv(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let Some(fd) = c.sock.as_ref().map(|s| s.as_raw_fd()) else {
            return;
        };
        if c.recv.is_some() {
            return;
        }
        let mut buf = std::mem::take(&mut c.rbuf);
        buf.reserve(REPLY_CHUNK);
        match self.ring.push(
            Op::Recv {
                fd,
                buf,
                max: REPLY_CHUNK,
            },
            i as u64,
        ) {
            Ok(id) => c.recv = Some(id),
            Err(e) => self.broken(i, Instant::now(), &format!("cannot arm receive: {e}")),
        }
    }

    fn write_all_ready(&mut self) -> bool {
        let mut wrote = false;
        for i in 0..self.conns.len() {
            if let Some(c) = &self.conns[i] {
                if c.send.is_none() && c.conn.wants_write() {
                    wrote |= self.write_conn(i);
                }
            }
        }
        wrote
    }

    /// Submits one gathered send of what the member has pending.
    fn write_conn(&mut self, i: usize) -> bool {
        let Some(c) = self.conns[i].as_mut() else {
            return false;
        };
        if c.send.is_some() || !c.conn.wants_write() {
            return false;
        }
        let Some(fd) = c.sock.as_ref().map(|s| s.as_raw_fd()) else {
            return false;
        };
        let zc_min = if c.conn.addr().ip().is_loopback() && !self.tuning.zc_loopback {
            usize::MAX
        } else {
            self.tuning.zc_min
        };
        let mut g = self.gathers.pop().unwrap_or_default();
        let (ctl, frames) = c.conn.poll_transmit(&mut self.batcher, FRAMES_PER_SEND);
        g.push_copy(ctl);
        let mut zc = false;
        for (k, f) in frames.enumerate() {
            let big = f.payload.len() >= zc_min;
            if big && k > 0 {
                // A large frame goes alone, zero-copy, next time.
                break;
            }
            g.push_copy(f.hdr);
            if f.skip == 0 {
                g.push_shared(f.payload.clone());
            } else {
                g.push_shared(f.payload.slice(f.skip..));
            }
            if big {
                zc = true;
                break;
            }
        }
        if g.is_empty() {
            self.gathers.push(g);
            return false;
        }
        match self.ring.push(Op::SendMsg { fd, batch: g, zc }, i as u64) {
            Ok(id) => {
                c.send = Some(id);
                true
            }
            Err(e) => {
                self.broken(i, Instant::now(), &format!("cannot submit send: {e}"));
                false
            }
        }
    }

    /// The connection is lost: see [`Conn::handle_broken`].
    fn broken(&mut self, i: usize, now: Instant, why: &str) {
        use link::Engine as _;
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        sr_log!(Info, "connection to {} lost: {why}", c.conn.addr());
        self.close(i);
        if let Some(c) = self.conns[i].as_mut() {
            c.conn.handle_broken(now, why);
        }
        link::drive(self, i, now);
    }

    fn sweep(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            if c.conn.poll_timeout().is_some_and(|t| t <= now) {
                c.conn.handle_timeout(now);
                link::drive(self, i, now);
            }
            let Some(c) = self.conns[i].as_ref() else {
                continue;
            };
            let quiet = c.sock.is_none() && c.connect.is_none() && c.send.is_none();
            if quiet && c.recv.is_none() && c.conn.is_reclaimable(now) {
                let addr = c.conn.addr();
                self.index.remove(addr, i);
                self.conns[i] = None;
            }
        }
    }

    fn held_until(&mut self, now: Instant) -> Instant {
        let held = self.held.take();
        let t = self.next_timer(now);
        let t = link::held_until(self, &held, t, now);
        self.held = held;
        t
    }

    fn next_timer(&self, now: Instant) -> Instant {
        let t = now + Duration::from_millis(250);
        self.conns
            .iter()
            .flatten()
            .filter_map(|c| c.conn.poll_timeout())
            .fold(t, Instant::min)
    }

    fn shutdown(&mut self) {
        use link::Engine as _;
        self.h.report_unsent(self.held.take());
        let now = Instant::now();
        for i in 0..self.conns.len() {
            if let Some(c) = self.conns[i].as_mut() {
                c.conn.handle_shutdown();
                link::drive(self, i, now);
                self.close(i);
            }
        }
        if !self.ring.drain(Duration::from_secs(5)) {
            sr_log!(Error, "sender ring did not drain");
        }
        self.h.publish(
            self.held.is_some(),
            self.conns.iter().flatten().map(|c| &c.conn),
        );
        self.h.idle.store(true, Ordering::SeqCst);
    }
}

impl link::Engine for Engine {
    fn handle(&self) -> &PumpHandle {
        &self.h
    }

    fn index(&mut self, addr: SocketAddr, now: Instant) -> usize {
        let (i, new) = self.index.lookup(addr, self.conns.len());
        if new {
            let c = UConn {
                conn: link::new_conn(addr, &self.shared, now),
                sock: None,
                connect: None,
                send: None,
                recv: None,
                rbuf: BytesMut::new(),
            };
            link::put_slot(&mut self.conns, i, c);
        }
        i
    }

    fn conn(&mut self, i: usize) -> &mut Conn {
        &mut self.conns[i].as_mut().expect("live member slot").conn
    }

    fn connect(&mut self, i: usize, now: Instant) {
        let shared = self.shared.clone();
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let addr = c.conn.addr();
        let sock = match Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        ) {
            Ok(s) => s,
            Err(e) => {
                sr_log!(Debug, "socket for {addr} failed: {e}");
                c.conn.handle_connect_failed(now);
                return;
            }
        };
        let _ = sock.set_nodelay(shared.cfg.tcp_no_delay);
        super::receiver::set_buffers(&sock, &shared.cfg);
        let fd = sock.as_raw_fd();
        let op = Op::Connect {
            fd,
            addr: Box::new(addr.into()),
        };
        match self.ring.push(op, i as u64) {
            Ok(id) => {
                c.sock = Some(sock);
                c.connect = Some(id);
                c.rbuf.clear();
                c.conn.handle_connecting(now, &self.preface);
            }
            Err(e) => {
                sr_log!(Warn, "cannot submit connect to {addr}: {e}");
                c.conn.handle_connect_failed(now);
            }
        }
    }

    /// Cancels the member's operations and closes its socket; their
    /// buffers stay parked in the ring until the last completions.
    fn close(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        for id in [c.connect.take(), c.send.take(), c.recv.take()]
            .into_iter()
            .flatten()
        {
            self.ring.cancel(id);
        }
        if let Some(s) = c.sock.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        c.rbuf.clear();
    }
}
