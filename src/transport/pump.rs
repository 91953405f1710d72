//! The asynchronous engine behind `asynchronous` and `fastasyncqueue`: one
//! I/O thread that drains a bounded lock-free queue in batches, keeps a
//! non-blocking connection per member, writes up to 511 frames per `writev`
//! (header and shared payload as two iovecs each, no copy), reads acks,
//! times out, reconnects with backoff and resends. `fastasyncqueue` runs one
//! pump for all members; `asynchronous` one pump (and queue) per member.

use super::link::{self, Batcher, KeepAlive, Link, LinkIndex, Links, PumpHandle, State};
use super::{Shared, Ticket};
use crate::driver::sys;
use crate::queue::{SendQueue, Wake};
use crate::sr_log;
use crate::stats::Stats;
use crate::wire::frame::HEADER_LEN;
use bytes::Bytes;
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
    /// Starts a pump thread named `name`.
    ///
    /// # Errors
    /// Poll or thread creation failures.
    pub fn start(shared: Arc<Shared>, name: &str) -> crate::Result<Pump> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let h = PumpHandle::new(shared.clone(), Box::new(MioWake(waker.clone())));
        let mut eng = Engine {
            poll,
            queue: h.queue.clone(),
            shared: shared.clone(),
            stop: h.stop.clone(),
            idle: h.idle.clone(),
            h: h.clone_ref(),
            conns: Vec::new(),
            index: LinkIndex::default(),
            held: None,
            preface: shared.preface(false).encode(),
            batcher: Batcher::new(&shared),
            next_ping: 1,
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

    /// True when nothing is queued, pending or awaiting an ack.
    pub fn is_idle(&self) -> bool {
        self.h.is_idle()
    }

    /// Stops the thread; whatever has no outcome yet ends as
    /// [`crate::Error::Shutdown`] (reported). Idempotent.
    pub fn stop(&self) {
        self.h.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop();
    }
}

struct TxConn {
    link: Link,
    stream: Option<TcpStream>,
    writable: bool,
}

struct Engine {
    poll: Poll,
    h: PumpHandle,
    queue: Arc<SendQueue<Outgoing>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    conns: Vec<TxConn>,
    index: LinkIndex,
    /// An item that did not fit its destinations' pending queues yet.
    held: Option<Outgoing>,
    preface: Vec<u8>,
    next_ping: u64,
    /// Compresses runs of messages into BATCH frames before writing.
    batcher: Batcher,
}

impl Engine {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let spin = self.shared.cfg.idle.spin;
        let mut idle_since: Option<Instant> = None;
        let mut next_sweep = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let took = self.intake();
            let wrote = self.write_all_ready();
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + Duration::from_millis(1);
            }
            let busy = took > 0 || wrote;
            self.publish_idle();
            let timeout = if busy || (!self.queue.is_empty() && self.held.is_none()) {
                idle_since = None;
                Some(Duration::ZERO)
            } else {
                let since = *idle_since.get_or_insert(now);
                if since.elapsed() < spin {
                    Some(Duration::ZERO)
                } else if self.queue.prepare_sleep() {
                    Some(
                        self.next_timer(now)
                            .saturating_duration_since(now)
                            .max(Duration::from_micros(100)),
                    )
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
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                let i = ev.token().0;
                if i >= self.conns.len() {
                    continue;
                }
                if ev.is_writable() {
                    self.on_writable(i);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.on_readable(i);
                }
            }
        }
        self.shutdown();
    }

    fn publish_idle(&self) {
        self.h
            .publish(self.held.is_some(), self.conns.iter().map(|c| &c.link));
    }

    /// Moves queued items to their connections' pending queues.
    fn intake(&mut self) -> usize {
        let cap = self.shared.cfg.max_queue_length;
        let queue = self.queue.clone();
        let idle = self.idle.clone();
        let mut held = self.held.take();
        let n = link::intake(self, &queue, &mut held, &idle, cap, INTAKE_BATCH);
        self.held = held;
        n
    }

    fn on_writable(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let State::Connecting(_) = c.link.state {
            let Some(s) = c.stream.as_ref() else { return };
            match s.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    self.broken(i, &format!("connect failed: {e}"));
                    return;
                }
            }
            match s.peer_addr() {
                Ok(_) => c.link.opened(&self.shared),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.broken(i, &format!("connect failed: {e}"));
                    return;
                }
            }
        }
        self.conns[i].writable = true;
        self.write_conn(i);
    }

    fn write_all_ready(&mut self) -> bool {
        let mut wrote = false;
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if c.link.state == State::Open && c.writable && c.link.has_output() {
                wrote |= self.write_conn(i);
            }
        }
        wrote
    }

    /// Writes as much as the socket takes; returns true if anything went out.
    fn write_conn(&mut self, i: usize) -> bool {
        let now = Instant::now();
        let mut progressed = false;
        loop {
            let c = &mut self.conns[i];
            if c.link.state != State::Open || !c.writable || !c.link.has_output() {
                return progressed;
            }
            let Some(fd) = c.stream.as_ref().map(|s| s.as_raw_fd()) else {
                return progressed;
            };
            c.link
                .batch_window(&mut self.batcher, &self.shared, FRAMES_PER_WRITEV);
            let l = &c.link;
            let mut iov = [sys::EMPTY_IOVEC; sys::IOV_MAX];
            let mut n = 0;
            if !l.ctl.is_empty() {
                iov[n] = sys::iovec(&l.ctl);
                n += 1;
            }
            for (k, p) in l.pending.iter().take(FRAMES_PER_WRITEV).enumerate() {
                let skip = if k == 0 { l.head_off } else { 0 };
                if skip < HEADER_LEN {
                    iov[n] = sys::iovec(&p.hdr[skip..]);
                    n += 1;
                    if !p.payload.is_empty() {
                        iov[n] = sys::iovec(&p.payload);
                        n += 1;
                    }
                } else {
                    iov[n] = sys::iovec(&p.payload[skip - HEADER_LEN..]);
                    n += 1;
                }
            }
            match sys::writev_iovecs(fd, &iov[..n]) {
                Ok(written) => {
                    progressed = true;
                    self.conns[i].link.advance(written, now, &self.shared);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.conns[i].writable = false;
                    return progressed;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.broken(i, &format!("write failed: {e}"));
                    return progressed;
                }
            }
        }
    }

    fn on_readable(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            let Some(fd) = c.stream.as_ref().map(|s| s.as_raw_fd()) else {
                return;
            };
            if matches!(c.link.state, State::Connecting(_)) {
                // Readable before writable: let the writable path decide.
                return;
            }
            match sys::read_into(fd, &mut c.link.rbuf, 16 * 1024) {
                Ok(0) => {
                    self.broken(i, "connection closed by member");
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.broken(i, &format!("read failed: {e}"));
                    return;
                }
            }
            if let Err(why) = c.link.on_replies(&self.shared) {
                self.broken(i, &why);
                return;
            }
        }
    }

    fn drop_socket(&mut self, i: usize) {
        if let Some(mut s) = self.conns[i].stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.conns[i].writable = false;
    }

    /// The connection is lost: see [`Link::broken`].
    fn broken(&mut self, i: usize, why: &str) {
        self.drop_socket(i);
        self.conns[i].link.broken(&self.shared, why);
    }

    fn sweep(&mut self, now: Instant) {
        let shared = self.shared.clone();
        for i in 0..self.conns.len() {
            self.conns[i].link.expire(now, &shared);
            match self.conns[i].link.state {
                State::Connecting(d) if now >= d => {
                    self.broken(i, "connect timed out");
                }
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
                        KeepAlive::Nothing => {}
                        KeepAlive::Close => self.drop_socket(i),
                        KeepAlive::Broken => self.broken(i, "no answer to keepalive ping"),
                        KeepAlive::Ping => {
                            self.write_conn(i);
                        }
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
        self.idle.store(true, Ordering::SeqCst);
    }
}

impl Links for Engine {
    fn index(&mut self, addr: SocketAddr) -> usize {
        let (i, new) = self.index.lookup(addr, self.conns.len());
        if !new {
            return i;
        }
        self.conns.push(TxConn {
            link: Link::new(addr, &self.shared),
            stream: None,
            writable: false,
        });
        i
    }

    fn link(&mut self, i: usize) -> &mut Link {
        &mut self.conns[i].link
    }

    fn connect(&mut self, i: usize) {
        let now = Instant::now();
        let shared = &self.shared;
        let c = &mut self.conns[i];
        match TcpStream::connect(c.link.addr) {
            Ok(mut s) => {
                let _ = s.set_nodelay(shared.cfg.tcp_no_delay);
                super::receiver::set_buffers(&s, &shared.cfg);
                if let Err(e) = self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    sr_log!(Warn, "cannot register connection to {}: {e}", c.link.addr);
                    c.link.state = State::Backoff(now + c.link.backoff);
                    return;
                }
                c.stream = Some(s);
                c.writable = false;
                c.link.connecting(shared, &self.preface, now);
            }
            Err(e) => {
                sr_log!(Debug, "connect to {} failed: {e}", c.link.addr);
                c.link.state = State::Backoff(now + c.link.backoff);
            }
        }
    }
}
