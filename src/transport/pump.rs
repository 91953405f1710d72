//! The asynchronous engine behind `asynchronous` and `fastasyncqueue`: one
//! I/O thread that drains a bounded lock-free queue in batches, keeps a
//! non-blocking connection per member, writes up to 511 frames per `writev`
//! (header and shared payload as two iovecs each, no copy), reads acks,
//! times out, reconnects with backoff and resends. Each member's logic is
//! a sans-IO [`SenderConn`](crate::proto::sender::SenderConn); this file
//! only moves its bytes. `fastasyncqueue` and `asynchronous` share the
//! engine: one thread for all members, whatever their number (the
//! asynchronous policy adds all-or-nothing admission per member).

use super::link::{self, Conn, Engine as _, LinkIndex, PumpHandle};
use super::{Shared, Ticket};
use crate::driver::sys;
use crate::proto::sender::Batcher;
use crate::queue::{SendQueue, Wake};
use crate::sr_log;
use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WAKER: Token = Token(usize::MAX);
/// Items taken off the queue per turn.
pub(crate) const INTAKE_BATCH: usize = 1024;
/// Frames per `writev` (two iovecs each, plus one for control bytes).
const FRAMES_PER_WRITEV: usize = (sys::IOV_MAX - 2) / 2;

/// Where a queued message goes.
#[derive(Debug, Clone)]
pub enum Dest {
    /// One member.
    One(SocketAddr),
    /// Several members; the payload is shared, not copied.
    Many(Arc<[SocketAddr]>),
}

impl Dest {
    pub(crate) fn as_slice(&self) -> &[SocketAddr] {
        match self {
            Dest::One(a) => std::slice::from_ref(a),
            Dest::Many(v) => v,
        }
    }
}

/// A message waiting in the queue.
pub struct Outgoing {
    /// Message id.
    pub id: u64,
    /// Destinations.
    pub dest: Dest,
    /// Payload (already compressed if it is to be).
    pub payload: Bytes,
    /// Frame flags.
    pub flags: u8,
    /// Waitable outcome, if the caller asked for one.
    pub ticket: Option<Arc<Ticket>>,
}

pub(crate) struct MioWake(pub(crate) Arc<Waker>);
impl Wake for MioWake {
    fn wake(&self) {
        let _ = self.0.wake();
    }
}

/// A running pump.
pub struct Pump {
    h: PumpHandle,
    waker: Arc<Waker>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Pump {
    /// Starts a pump thread named `name` (the `fastasyncqueue` policy).
    ///
    /// # Errors
    /// Poll or thread creation failures.
    pub fn start(shared: Arc<Shared>, name: &str) -> crate::Result<Pump> {
        Self::start_policy(shared, name, false)
    }

    /// Starts a pump; with `admission`, a send reserves room at every
    /// destination first, all or nothing (the `asynchronous` policy).
    pub(crate) fn start_policy(
        shared: Arc<Shared>,
        name: &str,
        admission: bool,
    ) -> crate::Result<Pump> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let h = PumpHandle::new(shared.clone(), Box::new(MioWake(waker.clone())), admission);
        let mut eng = Engine {
            poll,
            queue: h.queue.clone(),
            shared: shared.clone(),
            stop: h.stop.clone(),
            h: h.clone_ref(),
            conns: Vec::new(),
            index: LinkIndex::default(),
            preface: shared.preface(false).encode(),
            batcher: Batcher::new(shared.cfg.compression_level),
            touched: Vec::new(),
            held: None,
        };
        let thread = crate::driver::sys::ThreadBuilder::new()
            .name(name.to_string())
            .spawn(move || eng.run())?;
        Ok(Pump {
            h,
            waker,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues a message, waiting up to `queueAddWaitTimeout` for room.
    ///
    /// # Errors
    /// [`crate::Error::QueueFull`] (the message was not queued and has no other
    /// outcome), [`crate::Error::NotRunning`] after stop.
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

    /// `addr` left the cluster: its state is released once every message
    /// to it has an outcome.
    pub fn member_left(&self, addr: SocketAddr) {
        self.h.member_left(addr);
    }

    /// Members the I/O thread holds state for.
    pub fn members(&self) -> u64 {
        self.h.members.load(Ordering::Relaxed)
    }

    /// True when nothing is queued, pending or awaiting an ack.
    pub fn is_idle(&self) -> bool {
        self.h.is_idle()
    }

    /// Stops the thread; whatever has no outcome yet ends as
    /// [`crate::Error::Shutdown`] (reported before this returns).
    /// Idempotent.
    pub fn stop(&self) {
        self.h.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
        // A send racing with stop may have queued after the thread's last
        // look.
        self.h.report_unsent(None);
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop();
    }
}

struct TxConn {
    conn: Conn,
    stream: Option<TcpStream>,
    writable: bool,
    rbuf: BytesMut,
}

struct Engine {
    poll: Poll,
    h: PumpHandle,
    queue: Arc<SendQueue<Outgoing>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    /// Members by index (the mio token); `None` for a released slot.
    conns: Vec<Option<TxConn>>,
    index: LinkIndex,
    preface: Vec<u8>,
    /// Compresses runs of messages into BATCH frames before writing.
    batcher: Batcher,
    touched: Vec<usize>,
    /// A message waiting for a full (not stalled) member's room.
    held: Option<Outgoing>,
}

impl Engine {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let spin = self.shared.cfg.idle.spin;
        let mut idle_since: Option<Instant> = None;
        let mut next_sweep = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let took = self.intake(now);
            let wrote = self.write_all_ready(now);
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + Duration::from_millis(1);
            }
            let busy = took > 0 || wrote;
            self.h.publish(
                self.held.is_some(),
                self.conns.iter().flatten().map(|c| &c.conn),
            );
            let timeout = if busy || (self.held.is_none() && !self.queue.is_empty()) {
                idle_since = None;
                Some(Duration::ZERO)
            } else if self.held.is_some() {
                // A full member holds intake: sleep until its socket takes
                // more (an event) or it may count as stalled (a timer),
                // whatever the queue holds.
                let until = self.held_until(now);
                Some(self.wait_for(now, until))
            } else {
                let since = *idle_since.get_or_insert(now);
                if since.elapsed() < spin {
                    Some(Duration::ZERO)
                } else if self.queue.prepare_sleep() {
                    Some(self.wait_for(now, self.next_timer(now)))
                } else {
                    Some(Duration::ZERO)
                }
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    sr_log!(Error, "sender poll failed: {e}");
                }
            }
            self.queue.awake();
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                let i = ev.token().0;
                if self.conns.get(i).is_none_or(|c| c.is_none()) {
                    continue;
                }
                if ev.is_writable() {
                    self.on_writable(i, now);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.on_readable(i, now);
                }
            }
        }
        self.shutdown();
    }

    fn tx(&mut self, i: usize) -> &mut TxConn {
        self.conns[i].as_mut().expect("live member slot")
    }

    /// Moves queued messages onto their members.
    fn intake(&mut self, now: Instant) -> usize {
        let index = std::mem::take(&mut self.index);
        link::members_left(self, &index, now);
        self.index = index;
        let queue = self.queue.clone();
        let mut touched = std::mem::take(&mut self.touched);
        let mut held = self.held.take();
        let n = link::intake(self, &queue, &mut held, INTAKE_BATCH, now, &mut touched);
        self.held = held;
        for i in touched.drain(..) {
            link::drive(self, i, now);
        }
        self.touched = touched;
        n
    }

    fn on_writable(&mut self, i: usize, now: Instant) {
        let c = self.tx(i);
        if let crate::proto::sender::State::Connecting(_) = c.conn.state() {
            let Some(s) = c.stream.as_ref() else { return };
            match s.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    self.broken(i, now, &format!("connect failed: {e}"));
                    return;
                }
            }
            match s.peer_addr() {
                Ok(_) if super::connected_to_itself(s.into()) => {
                    return self.broken(i, now, super::SELF_CONNECT)
                }
                Ok(_) => c.conn.handle_connected(now),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.broken(i, now, &format!("connect failed: {e}"));
                    return;
                }
            }
        }
        self.tx(i).writable = true;
        self.write_conn(i, now);
    }

    fn write_all_ready(&mut self, now: Instant) -> bool {
        let mut wrote = false;
        for i in 0..self.conns.len() {
            if let Some(c) = &self.conns[i] {
                if c.writable && c.conn.wants_write() {
                    wrote |= self.write_conn(i, now);
                }
            }
        }
        wrote
    }

    /// Writes as much as the socket takes; returns true if anything went out.
    fn write_conn(&mut self, i: usize, now: Instant) -> bool {
        let mut progressed = false;
        loop {
            let Some(c) = self.conns[i].as_mut() else {
                return progressed;
            };
            if !c.writable || !c.conn.wants_write() {
                break;
            }
            let Some(fd) = c.stream.as_ref().map(|s| s.as_raw_fd()) else {
                break;
            };
            let mut iov = [sys::EMPTY_IOVEC; sys::IOV_MAX];
            let mut n = 0;
            let (ctl, frames) = c.conn.poll_transmit(&mut self.batcher, FRAMES_PER_WRITEV);
            if !ctl.is_empty() {
                iov[n] = sys::iovec(ctl);
                n += 1;
            }
            for f in frames {
                if !f.hdr.is_empty() {
                    iov[n] = sys::iovec(f.hdr);
                    n += 1;
                }
                if f.payload.len() > f.skip {
                    iov[n] = sys::iovec(&f.payload[f.skip..]);
                    n += 1;
                }
            }
            if n == 0 {
                break;
            }
            match sys::writev_iovecs(fd, &iov[..n]) {
                Ok(written) => {
                    progressed = true;
                    c.conn.handle_written(now, written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.writable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.broken(i, now, &format!("write failed: {e}"));
                    return progressed;
                }
            }
        }
        link::drive(self, i, now);
        progressed
    }

    fn on_readable(&mut self, i: usize, now: Instant) {
        loop {
            let Some(c) = self.conns[i].as_mut() else {
                return;
            };
            let Some(fd) = c.stream.as_ref().map(|s| s.as_raw_fd()) else {
                return;
            };
            if matches!(c.conn.state(), crate::proto::sender::State::Connecting(_)) {
                // Readable before writable: let the writable path decide.
                return;
            }
            match sys::read_into(fd, &mut c.rbuf, 16 * 1024) {
                Ok(0) => {
                    self.broken(i, now, "connection closed by member");
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.broken(i, now, &format!("read failed: {e}"));
                    return;
                }
            }
            c.conn.handle_replies(now, &mut c.rbuf);
            link::drive(self, i, now);
        }
    }

    /// The connection is lost: see [`Conn::handle_broken`].
    fn broken(&mut self, i: usize, now: Instant, why: &str) {
        sr_log!(Info, "connection to {} lost: {why}", self.tx(i).conn.addr());
        self.close(i);
        self.tx(i).conn.handle_broken(now, why);
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
                self.write_conn(i, now);
            }
            let Some(c) = self.conns[i].as_ref() else {
                continue;
            };
            if c.stream.is_none() && c.conn.is_reclaimable(now) {
                let addr = c.conn.addr();
                self.index.remove(addr, i);
                self.conns[i] = None;
            }
        }
    }

    fn wait_for(&self, now: Instant, until: Instant) -> Duration {
        let _ = now;
        until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_micros(100))
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
        self.h.report_unsent(self.held.take());
        let now = Instant::now();
        for i in 0..self.conns.len() {
            if let Some(c) = self.conns[i].as_mut() {
                c.conn.handle_shutdown();
                link::drive(self, i, now);
                self.close(i);
            }
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
            let c = TxConn {
                conn: link::new_conn(addr, &self.shared, now),
                stream: None,
                writable: false,
                rbuf: BytesMut::new(),
            };
            link::put_slot(&mut self.conns, i, c);
        }
        i
    }

    fn conn(&mut self, i: usize) -> &mut Conn {
        &mut self.tx(i).conn
    }

    fn connect(&mut self, i: usize, now: Instant) {
        let shared = self.shared.clone();
        let preface = std::mem::take(&mut self.preface);
        let registry = self.poll.registry();
        let c = self.conns[i].as_mut().expect("live member slot");
        let addr = c.conn.addr();
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                let _ = s.set_nodelay(shared.cfg.tcp_no_delay);
                super::receiver::set_buffers(&s, &shared.cfg);
                if let Err(e) =
                    registry.register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                {
                    sr_log!(Warn, "cannot register connection to {addr}: {e}");
                    c.conn.handle_connect_failed(now);
                } else {
                    c.stream = Some(s);
                    c.writable = false;
                    c.rbuf.clear();
                    c.conn.handle_connecting(now, &preface);
                }
            }
            Err(e) => {
                sr_log!(Debug, "connect to {addr} failed: {e}");
                c.conn.handle_connect_failed(now);
            }
        }
        self.preface = preface;
    }

    fn close(&mut self, i: usize) {
        let registry = self.poll.registry();
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        if let Some(mut s) = c.stream.take() {
            let _ = registry.deregister(&mut s);
        }
        c.writable = false;
        c.rbuf.clear();
    }
}
