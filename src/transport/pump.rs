//! The asynchronous engine behind `asynchronous` and `fastasyncqueue`: one
//! I/O thread that drains a bounded lock-free queue in batches, keeps a
//! non-blocking connection per member, writes up to 511 frames per `writev`
//! (header and shared payload as two iovecs each, no copy), reads acks,
//! times out, reconnects with backoff and resends. `fastasyncqueue` runs one
//! pump for all members; `asynchronous` one pump (and queue) per member.

use super::{Delivery, Shared, Ticket};
use crate::driver::sys;
use crate::error::Error;
use crate::proto::outbound::{OutboundConn, Reply};
use crate::proto::AckTracker;
use crate::queue::{SendQueue, Wake};
use crate::sr_log;
use crate::stats::Stats;
use crate::wire::frame::{
    ack_ranges, FrameHeader, FrameType, FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT, HEADER_LEN,
};
use crate::wire::Preface;
use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WAKER: Token = Token(usize::MAX);
/// Items taken off the queue per turn.
const INTAKE_BATCH: usize = 1024;
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
    fn as_slice(&self) -> &[SocketAddr] {
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

struct MioWake(Arc<Waker>);
impl Wake for MioWake {
    fn wake(&self) {
        let _ = self.0.wake();
    }
}

/// A running pump.
pub struct Pump {
    queue: Arc<SendQueue<Outgoing>>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    idle: Arc<AtomicBool>,
    in_flight: Arc<AtomicU64>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl Pump {
    /// Starts a pump thread named `name`.
    ///
    /// # Errors
    /// Poll or thread creation failures.
    pub fn start(shared: Arc<Shared>, name: &str) -> crate::Result<Pump> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let queue = Arc::new(SendQueue::new(
            shared.cfg.max_queue_length,
            Box::new(MioWake(waker.clone())),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(true));
        let in_flight = Arc::new(AtomicU64::new(0));
        let mut eng = Engine {
            poll,
            queue: queue.clone(),
            shared: shared.clone(),
            stop: stop.clone(),
            idle: idle.clone(),
            in_flight: in_flight.clone(),
            conns: Vec::new(),
            by_addr: HashMap::new(),
            last_lookup: None,
            held: None,
            preface: Preface::new(shared.member_id, &shared.cfg.domain, false).encode(),
            next_ping: 1,
        };
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || eng.run())?;
        Ok(Pump {
            queue,
            stop,
            waker,
            idle,
            in_flight,
            thread: std::sync::Mutex::new(Some(thread)),
            shared,
        })
    }

    /// Queues a message, waiting up to `queueAddWaitTimeout` for room.
    ///
    /// # Errors
    /// [`Error::QueueFull`] (the message was not queued and has no other
    /// outcome), [`Error::NotRunning`] after stop.
    pub fn send(&self, item: Outgoing) -> crate::Result<()> {
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

    /// Messages queued and not yet taken by the I/O thread.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Messages taken by the I/O thread that have no outcome yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// True when nothing is queued, pending or awaiting an ack.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.idle.load(Ordering::SeqCst)
    }

    /// Stops the thread; whatever has no outcome yet ends as
    /// [`Error::Shutdown`] (reported). Idempotent.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
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

struct Pending {
    hdr: [u8; HEADER_LEN],
    payload: Bytes,
    id: u64,
    ack: bool,
    attempts: u32,
    ticket: Option<Arc<Ticket>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No socket.
    Idle,
    /// Non-blocking connect in progress.
    Connecting(Instant),
    /// Connected; frames may be written.
    Open,
    /// Waiting before reconnecting.
    Backoff(Instant),
}

struct TxConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    state: State,
    proto: OutboundConn,
    rbuf: BytesMut,
    /// Control bytes (preface, PING) written before frames.
    ctl: Vec<u8>,
    pending: VecDeque<Pending>,
    /// Bytes of `pending[0]` already written.
    head_off: usize,
    inflight: AckTracker<Pending>,
    backoff: Duration,
    writable: bool,
    last_activity: Instant,
    ping_deadline: Option<Instant>,
    sent_on_conn: u64,
}

struct Engine {
    poll: Poll,
    queue: Arc<SendQueue<Outgoing>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    in_flight: Arc<AtomicU64>,
    conns: Vec<TxConn>,
    by_addr: HashMap<SocketAddr, usize>,
    /// The last address looked up (most batches go to one member).
    last_lookup: Option<(SocketAddr, usize)>,
    /// An item that did not fit its destinations' pending queues yet.
    held: Option<Outgoing>,
    preface: Vec<u8>,
    next_ping: u64,
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
        let idle = self.held.is_none()
            && self.queue.is_empty()
            && self
                .conns
                .iter()
                .all(|c| c.pending.is_empty() && c.inflight.is_empty());
        self.idle.store(idle, Ordering::SeqCst);
        let n: usize = self
            .conns
            .iter()
            .map(|c| c.pending.len() + c.inflight.len())
            .sum();
        self.in_flight.store(n as u64, Ordering::Relaxed);
        self.shared
            .stats
            .queue_depth
            .store((self.queue.len() + n) as u64, Ordering::Relaxed);
    }

    fn conn_index(&mut self, addr: SocketAddr) -> usize {
        if let Some((a, i)) = self.last_lookup {
            if a == addr {
                return i;
            }
        }
        if let Some(&i) = self.by_addr.get(&addr) {
            self.last_lookup = Some((addr, i));
            return i;
        }
        let i = self.conns.len();
        self.conns.push(TxConn {
            addr,
            stream: None,
            state: State::Idle,
            proto: OutboundConn::new(self.shared.cfg.domain.clone()),
            rbuf: BytesMut::new(),
            ctl: Vec::new(),
            pending: VecDeque::new(),
            head_off: 0,
            inflight: AckTracker::new(),
            backoff: self.shared.cfg.reconnect_backoff_min,
            writable: false,
            last_activity: Instant::now(),
            ping_deadline: None,
            sent_on_conn: 0,
        });
        self.by_addr.insert(addr, i);
        self.last_lookup = Some((addr, i));
        i
    }

    /// Moves queued items to their connections' pending queues.
    fn intake(&mut self) -> usize {
        let cap = self.shared.cfg.max_queue_length;
        let mut n = 0;
        while n < INTAKE_BATCH {
            let item = match self.held.take() {
                Some(i) => i,
                None => {
                    // Clear `idle` before popping so `is_idle` cannot see an
                    // empty queue and a stale idle flag at once.
                    self.idle.store(false, Ordering::SeqCst);
                    match self.queue.pop() {
                        Some(i) => i,
                        None => break,
                    }
                }
            };
            let dests = item.dest.as_slice();
            let mut idx = [0usize; 8];
            let fits = dests.iter().enumerate().all(|(k, &a)| {
                let i = self.conn_index(a);
                if k < idx.len() {
                    idx[k] = i;
                }
                self.conns[i].pending.len() < cap
            });
            if !fits {
                self.held = Some(item);
                break;
            }
            let hdr = FrameHeader::data(item.id, item.payload.len(), item.flags).encode();
            let ack = item.flags & (FLAG_ACK_DELIVERY | FLAG_ACK_RECEIPT) != 0;
            let last = dests.len() - 1;
            let Outgoing {
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
                let i = if k < idx.len() {
                    idx[k]
                } else {
                    self.conn_index(a)
                };
                let (p, t) = if k == last {
                    (payload.take().unwrap_or_default(), ticket.take().flatten())
                } else {
                    (
                        payload.clone().unwrap_or_default(),
                        ticket.clone().flatten(),
                    )
                };
                let c = &mut self.conns[i];
                c.pending.push_back(Pending {
                    hdr,
                    payload: p,
                    id,
                    ack,
                    attempts: 0,
                    ticket: t,
                });
                if c.state == State::Idle {
                    Self::connect(&self.poll, &self.shared, &self.preface, i, c);
                }
            }
            n += 1;
        }
        n
    }

    fn connect(poll: &Poll, shared: &Shared, preface: &[u8], i: usize, c: &mut TxConn) {
        let now = Instant::now();
        match TcpStream::connect(c.addr) {
            Ok(mut s) => {
                let _ = s.set_nodelay(shared.cfg.tcp_no_delay);
                super::receiver::set_buffers(&s, &shared.cfg);
                if let Err(e) = poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    sr_log!(Warn, "cannot register connection to {}: {e}", c.addr);
                    c.state = State::Backoff(now + c.backoff);
                    return;
                }
                c.stream = Some(s);
                c.state = State::Connecting(now + shared.cfg.connect_timeout);
                c.proto = OutboundConn::new(shared.cfg.domain.clone());
                c.rbuf.clear();
                c.ctl.clear();
                c.ctl.extend_from_slice(preface);
                c.head_off = 0;
                c.writable = false;
                c.sent_on_conn = 0;
                c.ping_deadline = None;
                c.last_activity = now;
            }
            Err(e) => {
                sr_log!(Debug, "connect to {} failed: {e}", c.addr);
                c.state = State::Backoff(now + c.backoff);
            }
        }
    }

    fn on_writable(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let State::Connecting(_) = c.state {
            let Some(s) = c.stream.as_ref() else { return };
            match s.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    self.broken(i, &format!("connect failed: {e}"));
                    return;
                }
            }
            match s.peer_addr() {
                Ok(_) => {
                    c.state = State::Open;
                    c.backoff = self.shared.cfg.reconnect_backoff_min;
                }
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
            if c.state == State::Open && c.writable && (!c.pending.is_empty() || !c.ctl.is_empty())
            {
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
            if c.state != State::Open || !c.writable {
                return progressed;
            }
            if c.pending.is_empty() && c.ctl.is_empty() {
                return progressed;
            }
            let Some(fd) = c.stream.as_ref().map(|s| s.as_raw_fd()) else {
                return progressed;
            };
            let mut iov = [sys::EMPTY_IOVEC; sys::IOV_MAX];
            let mut n = 0;
            if !c.ctl.is_empty() {
                iov[n] = sys::iovec(&c.ctl);
                n += 1;
            }
            let mut total = 0usize;
            for (k, p) in c.pending.iter().take(FRAMES_PER_WRITEV).enumerate() {
                let skip = if k == 0 { c.head_off } else { 0 };
                if skip < HEADER_LEN {
                    iov[n] = sys::iovec(&p.hdr[skip..]);
                    n += 1;
                    total += HEADER_LEN - skip;
                    if !p.payload.is_empty() {
                        iov[n] = sys::iovec(&p.payload);
                        n += 1;
                        total += p.payload.len();
                    }
                } else {
                    let off = skip - HEADER_LEN;
                    iov[n] = sys::iovec(&p.payload[off..]);
                    n += 1;
                    total += p.payload.len() - off;
                }
            }
            let _ = total;
            match sys::writev_iovecs(fd, &iov[..n]) {
                Ok(written) => {
                    progressed = true;
                    self.advance(i, written, now);
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

    /// Accounts `written` bytes: control bytes first, then frames.
    fn advance(&mut self, i: usize, mut written: usize, now: Instant) {
        let shared = self.shared.clone();
        let ack_timeout = shared.cfg.ack_timeout;
        let c = &mut self.conns[i];
        c.last_activity = now;
        let ctl = written.min(c.ctl.len());
        c.ctl.drain(..ctl);
        written -= ctl;
        let (mut msgs, mut bytes) = (0u64, 0u64);
        while written > 0 {
            let Some(p) = c.pending.front() else { break };
            let size = HEADER_LEN + p.payload.len();
            let left = size - c.head_off;
            if written < left {
                c.head_off += written;
                break;
            }
            written -= left;
            c.head_off = 0;
            let p = c.pending.pop_front().expect("front exists");
            msgs += 1;
            bytes += size as u64;
            if p.ack {
                c.inflight.track(p.id, now + ack_timeout, p);
            } else {
                shared.report(p.id, c.addr, Ok(Delivery::Sent), p.ticket.as_ref());
            }
        }
        c.sent_on_conn += msgs;
        Stats::add(&shared.stats.msgs_sent, msgs);
        Stats::add(&shared.stats.bytes_sent, bytes);
    }

    fn on_readable(&mut self, i: usize) {
        let shared = self.shared.clone();
        loop {
            let c = &mut self.conns[i];
            let Some(fd) = c.stream.as_ref().map(|s| s.as_raw_fd()) else {
                return;
            };
            if matches!(c.state, State::Connecting(_)) {
                // Readable before writable: let the writable path decide.
                return;
            }
            match sys::read_into(fd, &mut c.rbuf, 16 * 1024) {
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
            c.last_activity = Instant::now();
            let mut acked = 0u64;
            loop {
                let c = &mut self.conns[i];
                let r = match c.proto.poll(&mut c.rbuf) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        self.broken(i, &format!("bad reply: {e}"));
                        return;
                    }
                };
                match r {
                    Reply::Preface(_) => {}
                    Reply::Ack(p) => {
                        let addr = c.addr;
                        for (first, count) in ack_ranges(&p) {
                            acked += c.inflight.ack_range(first, count, |id, p| {
                                shared.report(id, addr, Ok(Delivery::Acked), p.ticket.as_ref())
                            }) as u64;
                        }
                    }
                    Reply::Fail { id, reason } => {
                        if let Some(p) = c.inflight.take(id) {
                            shared.report(
                                id,
                                c.addr,
                                Err(Error::RemoteFailure(reason)),
                                p.ticket.as_ref(),
                            );
                        }
                    }
                    Reply::Pong(_) => c.ping_deadline = None,
                    Reply::GoAway(r) => {
                        self.broken(i, &format!("member going away: {r}"));
                        return;
                    }
                }
            }
            Stats::add(&shared.stats.acks_received, acked);
        }
    }

    /// The connection is lost: resend what may not have arrived (up to
    /// `maxRetryAttempts`), fail the rest, and back off before reconnecting.
    fn broken(&mut self, i: usize, why: &str) {
        let shared = self.shared.clone();
        let max = shared.cfg.max_retry_attempts;
        let now = Instant::now();
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        sr_log!(Info, "connection to {} lost: {why}", c.addr);
        let mut retry: VecDeque<Pending> = VecDeque::new();
        let addr = c.addr;
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
        c.inflight.drain_all(|_, p| keep(p, &mut retry));
        for p in c.pending.drain(..) {
            keep(p, &mut retry);
        }
        c.pending = retry;
        c.head_off = 0;
        c.ctl.clear();
        c.writable = false;
        c.state = State::Backoff(now + c.backoff);
        c.backoff = (c.backoff * 2).clamp(
            shared
                .cfg
                .reconnect_backoff_min
                .max(Duration::from_millis(1)),
            shared.cfg.reconnect_backoff_max,
        );
    }

    fn sweep(&mut self, now: Instant) {
        let shared = self.shared.clone();
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            let addr = c.addr;
            c.inflight.expire(now, |id, p| {
                shared.report(id, addr, Err(Error::Timeout), p.ticket.as_ref())
            });
            match c.state {
                State::Connecting(d) if now >= d => {
                    self.broken(i, "connect timed out");
                }
                State::Backoff(until) if now >= until => {
                    let c = &mut self.conns[i];
                    if c.pending.is_empty() {
                        c.state = State::Idle;
                    } else {
                        Self::connect(&self.poll, &shared, &self.preface, i, c);
                        Stats::add(&shared.stats.reconnects, 1);
                    }
                }
                State::Open => self.keepalive(i, now),
                _ => {}
            }
        }
    }

    fn keepalive(&mut self, i: usize, now: Instant) {
        let cfg = &self.shared.cfg;
        let c = &mut self.conns[i];
        if let Some(d) = c.ping_deadline {
            if now >= d {
                self.broken(i, "no answer to keepalive ping");
            }
            return;
        }
        let quiet = c.pending.is_empty() && c.inflight.is_empty();
        let idle_for = now.saturating_duration_since(c.last_activity);
        let too_old = cfg.keep_alive_count > 0 && c.sent_on_conn >= cfg.keep_alive_count;
        if quiet
            && ((!cfg.keep_alive_timeout.is_zero() && idle_for >= cfg.keep_alive_timeout)
                || too_old)
        {
            if let Some(mut s) = c.stream.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
            c.state = State::Idle;
            return;
        }
        if !cfg.ping_interval.is_zero() && idle_for >= cfg.ping_interval {
            let h = FrameHeader {
                ty: FrameType::Ping,
                flags: 0,
                len: 0,
                id: self.next_ping,
            };
            self.next_ping += 1;
            c.ctl.extend_from_slice(&h.encode());
            c.ping_deadline = Some(now + cfg.ack_timeout);
            c.last_activity = now;
            self.write_conn(i);
        }
    }

    fn next_timer(&self, now: Instant) -> Instant {
        let mut t = now + Duration::from_millis(250);
        for c in &self.conns {
            if let Some(d) = c.inflight.next_deadline() {
                t = t.min(d);
            }
            match c.state {
                State::Connecting(d) | State::Backoff(d) => t = t.min(d),
                _ => {}
            }
        }
        t
    }

    fn shutdown(&mut self) {
        let shared = self.shared.clone();
        while let Some(item) = self.held.take().or_else(|| self.queue.pop()) {
            for &a in item.dest.as_slice() {
                shared.report(item.id, a, Err(Error::Shutdown), item.ticket.as_ref());
            }
        }
        for c in &mut self.conns {
            let addr = c.addr;
            c.inflight.drain_all(|id, p| {
                shared.report(id, addr, Err(Error::Shutdown), p.ticket.as_ref())
            });
            for p in c.pending.drain(..) {
                shared.report(p.id, addr, Err(Error::Shutdown), p.ticket.as_ref());
            }
            if let Some(mut s) = c.stream.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
        }
        self.idle.store(true, Ordering::SeqCst);
    }
}
