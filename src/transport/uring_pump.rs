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

use super::link::{self, Batcher, KeepAlive, Link, LinkIndex, Links, PumpHandle, State};
use super::pump::{Outgoing, INTAKE_BATCH};
use super::Shared;
use crate::driver::uring::{recv_filled, Completion, Gather, Op, OpId, Ring, RingWaker};
use crate::queue::{SendQueue, Wake};
use crate::sr_log;
use crate::stats::Stats;
use crate::wire::frame::HEADER_LEN;
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
        let late = Arc::new(OnceLock::new());
        let h = PumpHandle::new(shared.clone(), Box::new(LateWake(late.clone())));
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
                let s2b = s2.clone();
                let mut eng = Engine {
                    ring,
                    queue: eh.queue.clone(),
                    shared: s2,
                    stop: eh.stop.clone(),
                    idle: eh.idle.clone(),
                    h: eh,
                    conns: Vec::new(),
                    index: LinkIndex::default(),
                    held: None,
                    preface,
                    batcher: Batcher::new(&s2b),
                    next_ping: 1,
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
    }
}

impl Drop for UringPump {
    fn drop(&mut self) {
        self.stop();
    }
}

struct UConn {
    link: Link,
    sock: Option<Socket>,
    connect: Option<OpId>,
    send: Option<OpId>,
    recv: Option<OpId>,
}

struct Engine {
    ring: Ring,
    h: PumpHandle,
    queue: Arc<SendQueue<Outgoing>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    conns: Vec<UConn>,
    index: LinkIndex,
    held: Option<Outgoing>,
    preface: Vec<u8>,
    next_ping: u64,
    /// Compresses runs of messages into BATCH frames before writing.
    batcher: Batcher,
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
            for c in done.drain(..) {
                self.on_completion(c);
            }
            self.done = done;
            let cap = self.shared.cfg.max_queue_length;
            let (queue, idle) = (self.queue.clone(), self.idle.clone());
            let mut held = self.held.take();
            let took = link::intake(self, &queue, &mut held, &idle, cap, INTAKE_BATCH);
            self.held = held;
            let wrote = self.write_all_ready();
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + Duration::from_millis(1);
            }
            self.publish_idle();
            let busy = took > 0 || wrote || reaped > 0;
            let r = if busy || (!self.queue.is_empty() && self.held.is_none()) {
                idle_since = None;
                self.ring.submit()
            } else {
                let since = *idle_since.get_or_insert(now);
                if since.elapsed() >= spin && self.queue.prepare_sleep() {
                    let wait = self
                        .next_timer(now)
                        .saturating_duration_since(now)
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

    fn publish_idle(&self) {
        self.h
            .publish(self.held.is_some(), self.conns.iter().map(|c| &c.link));
    }

    fn on_completion(&mut self, cq: Completion) {
        let i = cq.tag as usize;
        if cq.notif() {
            // Zero-copy send done with its buffers.
            self.recycle(cq.op);
            return;
        }
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        if c.connect == Some(cq.id) {
            c.connect = None;
            if cq.res < 0 {
                let e = io::Error::from_raw_os_error(-cq.res);
                self.broken(i, &format!("connect failed: {e}"));
            } else {
                c.link.opened(&self.shared);
                self.arm_recv(i);
            }
        } else if c.send == Some(cq.id) {
            c.send = None;
            let op = cq.op;
            if cq.res < 0 {
                self.recycle(op);
                let e = io::Error::from_raw_os_error(-cq.res);
                self.broken(i, &format!("write failed: {e}"));
                return;
            }
            self.conns[i]
                .link
                .advance(cq.res as usize, Instant::now(), &self.shared);
            self.recycle(op);
        } else if c.recv == Some(cq.id) {
            c.recv = None;
            let Some(buf) = cq.op.and_then(|op| recv_filled(op, cq.res)) else {
                let e = io::Error::from_raw_os_error(-cq.res);
                self.broken(i, &format!("read failed: {e}"));
                return;
            };
            c.link.rbuf = buf;
            if cq.res == 0 {
                self.broken(i, "connection closed by member");
                return;
            }
            if let Err(why) = c.link.on_replies(&self.shared) {
                self.broken(i, &why);
                return;
            }
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
        let c = &mut self.conns[i];
        let Some(fd) = c.sock.as_ref().map(|s| s.as_raw_fd()) else {
            return;
        };
        let mut buf = std::mem::take(&mut c.link.rbuf);
        buf.reserve(REPLY_CHUNK);
        match self.ring.push(
            Op::Recv {
                fd,
                buf,
                max: REPLY_CHUNK,
            },
            i as u64,
        ) {
            Ok(id) => self.conns[i].recv = Some(id),
            Err(e) => self.broken(i, &format!("cannot arm receive: {e}")),
        }
    }

    fn write_all_ready(&mut self) -> bool {
        let mut wrote = false;
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if c.link.state == State::Open && c.send.is_none() && c.link.has_output() {
                wrote |= self.write_conn(i);
            }
        }
        wrote
    }

    /// Submits one gathered send of what the link has pending.
    fn write_conn(&mut self, i: usize) -> bool {
        let mut g = self.gathers.pop().unwrap_or_default();
        let c = &mut self.conns[i];
        let zc_min = if c.link.addr.ip().is_loopback() && !self.tuning.zc_loopback {
            usize::MAX
        } else {
            self.tuning.zc_min
        };
        let Some(fd) = c.sock.as_ref().map(|s| s.as_raw_fd()) else {
            return false;
        };
        c.link
            .batch_window(&mut self.batcher, &self.shared, FRAMES_PER_SEND);
        let l = &c.link;
        g.push_copy(&l.ctl);
        let mut zc = false;
        for (k, p) in l.pending.iter().take(FRAMES_PER_SEND).enumerate() {
            let big = p.payload.len() >= zc_min;
            if big && k > 0 {
                // A large frame goes alone, zero-copy, next time.
                break;
            }
            let skip = if k == 0 { l.head_off } else { 0 };
            if skip < HEADER_LEN {
                g.push_copy(&p.hdr[skip..]);
                g.push_shared(p.payload.clone());
            } else {
                g.push_shared(p.payload.slice(skip - HEADER_LEN..));
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
                self.conns[i].send = Some(id);
                true
            }
            Err(e) => {
                self.broken(i, &format!("cannot submit send: {e}"));
                false
            }
        }
    }

    /// Cancels the connection's operations and closes its socket; their
    /// buffers stay parked in the ring until the last completions.
    fn drop_socket(&mut self, i: usize) {
        let c = &mut self.conns[i];
        for id in [c.connect.take(), c.send.take(), c.recv.take()]
            .into_iter()
            .flatten()
        {
            self.ring.cancel(id);
        }
        if let Some(s) = c.sock.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn broken(&mut self, i: usize, why: &str) {
        self.drop_socket(i);
        self.conns[i].link.broken(&self.shared, why);
    }

    fn sweep(&mut self, now: Instant) {
        let shared = self.shared.clone();
        for i in 0..self.conns.len() {
            self.conns[i].link.expire(now, &shared);
            match self.conns[i].link.state {
                State::Connecting(d) if now >= d => self.broken(i, "connect timed out"),
                State::Backoff(until) if now >= until => {
                    if self.conns[i].link.pending.is_empty() {
                        self.conns[i].link.state = State::Idle;
                    } else {
                        Links::connect(self, i);
                        Stats::add(&shared.stats.reconnects, 1);
                    }
                }
                State::Open => {
                    match self.conns[i]
                        .link
                        .keepalive(now, &shared, &mut self.next_ping)
                    {
                        KeepAlive::Nothing | KeepAlive::Ping => {}
                        KeepAlive::Close => self.drop_socket(i),
                        KeepAlive::Broken => self.broken(i, "no answer to keepalive ping"),
                    }
                }
                _ => {}
            }
        }
    }

    fn next_timer(&self, now: Instant) -> Instant {
        let t = now + Duration::from_millis(250);
        self.conns.iter().fold(t, |t, c| c.link.next_timer(t))
    }

    fn shutdown(&mut self) {
        let shared = self.shared.clone();
        self.h.report_unsent(&mut self.held);
        for i in 0..self.conns.len() {
            self.conns[i].link.shutdown(&shared);
            self.drop_socket(i);
        }
        if !self.ring.drain(Duration::from_secs(5)) {
            sr_log!(Error, "sender ring did not drain");
        }
        self.idle.store(true, Ordering::SeqCst);
    }
}

impl Links for Engine {
    fn index(&mut self, addr: SocketAddr) -> usize {
        let (i, new) = self.index.lookup(addr, self.conns.len());
        if !new {
            return i;
        }
        self.conns.push(UConn {
            link: Link::new(addr, &self.shared),
            sock: None,
            connect: None,
            send: None,
            recv: None,
        });
        i
    }

    fn link(&mut self, i: usize) -> &mut Link {
        &mut self.conns[i].link
    }

    fn connect(&mut self, i: usize) {
        let now = Instant::now();
        let shared = self.shared.clone();
        let addr = self.conns[i].link.addr;
        let sock = match Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        ) {
            Ok(s) => s,
            Err(e) => {
                sr_log!(Debug, "socket for {addr} failed: {e}");
                let c = &mut self.conns[i].link;
                c.state = State::Backoff(now + c.backoff);
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
                let c = &mut self.conns[i];
                c.sock = Some(sock);
                c.connect = Some(id);
                c.link.connecting(&shared, &self.preface, now);
            }
            Err(e) => {
                sr_log!(Warn, "cannot submit connect to {addr}: {e}");
                let c = &mut self.conns[i].link;
                c.state = State::Backoff(now + c.backoff);
            }
        }
    }
}
