//! The one sender engine loop, over any [`Driver`]: drains the bounded
//! queue in batches onto each member's sans-IO
//! [`SenderConn`](crate::proto::sender::SenderConn), moves the bytes it
//! asks for (many frames per driver call), feeds back what the socket took
//! and the replies it read, fires deadlines, and sleeps when nothing can
//! progress. `fastasyncqueue` and `asynchronous` differ only in the
//! admission policy of [`PumpHandle`].
//!
//! The byte path is one place: [`SendEngine::write_conn`] takes bytes out
//! of the member's state machine and hands them to the driver; a filter
//! (encryption) sits between the two. Replies come in through
//! [`SendEngine::on_replies`].

use crate::driver::{Driver, Event, Frame, SockOpts, Token, FRAMES_PER_SEND};
use crate::proto::sender::Batcher;
use crate::queue::SendQueue;
use crate::sr_log;
use crate::transport::link::{self, Conn, LinkIndex, PumpHandle};
use crate::transport::pump::{Outgoing, INTAKE_BATCH};
use crate::transport::Shared;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reply bytes one read reserves.
const REPLY_CHUNK: usize = 16 * 1024;
/// Longest sleep when no member has a deadline.
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// One member: its state machine and where its socket stands.
struct Member {
    conn: Conn,
    /// The driver holds a socket for it.
    open: bool,
    connecting: bool,
    /// A send is in flight (or waits for room).
    sending: bool,
    /// A read is in flight; `rbuf` is with the driver.
    reading: bool,
    rbuf: BytesMut,
}

/// The sender engine over driver `D`.
pub(crate) struct SendEngine<D: Driver> {
    d: D,
    h: PumpHandle,
    queue: Arc<SendQueue<Outgoing>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    /// Members by index (the token); `None` for a released slot.
    conns: Vec<Option<Member>>,
    index: LinkIndex,
    preface: Vec<u8>,
    opts: SockOpts,
    /// Compresses runs of messages into BATCH frames before writing.
    batcher: Batcher,
    touched: Vec<usize>,
    /// A message waiting for a full (not stalled) member's room.
    held: Option<Outgoing>,
    events: Vec<Event>,
    idle_since: Option<Instant>,
    next_sweep: Instant,
}

impl<D: Driver> SendEngine<D> {
    /// An engine for the handle `h` over `d`.
    pub(crate) fn new(d: D, h: PumpHandle) -> SendEngine<D> {
        let shared = h.shared.clone();
        let now = d.now();
        SendEngine {
            queue: h.queue.clone(),
            stop: h.stop.clone(),
            preface: shared.preface(false).encode(),
            opts: super::sock_opts(&shared.cfg),
            batcher: Batcher::new(shared.cfg.compression_level),
            shared,
            h,
            d,
            conns: Vec::new(),
            index: LinkIndex::default(),
            touched: Vec::new(),
            held: None,
            events: Vec::new(),
            idle_since: None,
            next_sweep: now,
        }
    }

    /// Runs until the handle's stop flag is set, then reports whatever
    /// has no outcome and lets the driver drain.
    pub(crate) fn run(mut self) {
        crate::transport::link::mark_engine_thread();
        let mut busy = true;
        while !self.stop.load(Ordering::Relaxed) {
            busy = self.turn(busy);
        }
        self.shutdown();
    }

    /// One turn of the loop: intake, writes, deadlines, then a wait (none
    /// when `busy`) and the events it brought. Returns whether the next
    /// turn should not sleep.
    pub(crate) fn turn(&mut self, busy: bool) -> bool {
        let now = self.d.now();
        let took = self.intake(now);
        let wrote = self.write_all_ready(now);
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + Duration::from_millis(1);
        }
        self.h.publish(
            self.held.is_some(),
            self.conns.iter().flatten().map(|m| &m.conn),
        );
        let busy = busy || took > 0 || wrote;
        let timeout = if busy || (self.held.is_none() && !self.queue.is_empty()) {
            self.idle_since = None;
            Duration::ZERO
        } else if self.held.is_some() {
            // A full member holds intake: sleep until its socket takes
            // more (an event) or it may count as stalled (a timer),
            // whatever the queue holds.
            let until = self.held_until(now);
            self.wait_until(until)
        } else {
            let since = *self.idle_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.shared.cfg.idle.spin
                && self.queue.prepare_sleep()
            {
                self.wait_until(self.next_timer(now))
            } else {
                Duration::ZERO
            }
        };
        let mut events = std::mem::take(&mut self.events);
        if let Err(e) = self.d.poll(timeout, &mut events) {
            sr_log!(Error, "sender driver failed: {e}");
            std::thread::sleep(Duration::from_millis(1));
        }
        self.queue.awake();
        let now = self.d.now();
        let any = !events.is_empty();
        for ev in events.drain(..) {
            self.on_event(ev, now);
        }
        self.events = events;
        any
    }

    /// The driver (tests inspect and steer it).
    #[cfg(test)]
    pub(crate) fn driver(&mut self) -> &mut D {
        &mut self.d
    }

    fn wait_until(&self, until: Instant) -> Duration {
        until
            .saturating_duration_since(self.d.now())
            .max(Duration::from_micros(100))
    }

    fn member(&mut self, i: usize) -> Option<&mut Member> {
        self.conns.get_mut(i).and_then(|m| m.as_mut())
    }

    fn on_event(&mut self, ev: Event, now: Instant) {
        match ev {
            Event::Connected { token, res } => {
                let Some(m) = self.member(token).filter(|m| m.connecting) else {
                    return;
                };
                m.connecting = false;
                match res {
                    Ok(()) => {
                        m.conn.handle_connected(now);
                        self.read_conn(token, now);
                        self.write_conn(token, now);
                    }
                    Err(e) => self.broken(token, now, &format!("connect failed: {e}")),
                }
            }
            Event::Received { token, res, buf } => {
                let Some(m) = self.member(token).filter(|m| m.reading) else {
                    return;
                };
                m.reading = false;
                m.rbuf = buf;
                if self.on_read(token, now, res) {
                    self.read_conn(token, now);
                }
            }
            Event::Sent { token, res } => {
                let Some(m) = self.member(token).filter(|m| m.sending) else {
                    return;
                };
                m.sending = false;
                match res {
                    Ok(n) => {
                        if n > 0 {
                            m.conn.handle_written(now, n);
                        }
                        self.write_conn(token, now);
                    }
                    Err(e) => self.broken(token, now, &format!("write failed: {e}")),
                }
            }
            // Senders neither listen nor read multishot.
            Event::Accepted { .. } | Event::Chunk { .. } | Event::RecvEnded { .. } => {}
        }
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

    fn write_all_ready(&mut self, now: Instant) -> bool {
        let mut wrote = false;
        for i in 0..self.conns.len() {
            if self.conns[i]
                .as_ref()
                .is_some_and(|m| m.open && !m.connecting && !m.sending && m.conn.wants_write())
            {
                wrote |= self.write_conn(i, now);
            }
        }
        wrote
    }

    /// Hands member `i`'s pending bytes to the driver until the socket
    /// takes no more or a send is in flight; true if anything went.
    fn write_conn(&mut self, i: usize, now: Instant) -> bool {
        let mut progressed = false;
        loop {
            let Some(m) = self.conns.get_mut(i).and_then(|m| m.as_mut()) else {
                return progressed;
            };
            if !m.open || m.connecting || m.sending || !m.conn.wants_write() {
                break;
            }
            let (ctl, frames) = m.conn.poll_transmit(&mut self.batcher, FRAMES_PER_SEND);
            let frames = frames.map(|c| Frame {
                head: c.hdr,
                body: c.payload,
                skip: c.skip,
            });
            match self.d.send(i, ctl, frames) {
                Ok(Some(0)) => break,
                Ok(Some(n)) => {
                    progressed = true;
                    m.conn.handle_written(now, n);
                }
                Ok(None) => {
                    progressed = true;
                    m.sending = true;
                    break;
                }
                Err(e) => {
                    self.broken(i, now, &format!("write failed: {e}"));
                    return progressed;
                }
            }
        }
        link::drive(self, i, now);
        progressed
    }

    /// Reads member `i`'s replies until the socket has none or a read is
    /// in flight.
    fn read_conn(&mut self, i: usize, now: Instant) {
        loop {
            let Some(m) = self.conns.get_mut(i).and_then(|m| m.as_mut()) else {
                return;
            };
            if !m.open || m.connecting || m.reading {
                return;
            }
            match self.d.recv(i, &mut m.rbuf, REPLY_CHUNK) {
                Ok(Some(n)) => {
                    if !self.on_read(i, now, Ok(n)) {
                        return;
                    }
                }
                Ok(None) => {
                    m.reading = true;
                    return;
                }
                Err(e) => return self.broken(i, now, &format!("read failed: {e}")),
            }
        }
    }

    /// A read ended; returns true if the member should read on.
    fn on_read(&mut self, i: usize, now: Instant, res: std::io::Result<usize>) -> bool {
        match res {
            Ok(0) => {
                self.broken(i, now, "connection closed by member");
                false
            }
            Ok(_) => {
                self.on_replies(i, now);
                true
            }
            Err(e) => {
                self.broken(i, now, &format!("read failed: {e}"));
                false
            }
        }
    }

    /// Bytes read from member `i` go to its state machine.
    fn on_replies(&mut self, i: usize, now: Instant) {
        if let Some(m) = self.member(i) {
            m.conn.handle_replies(now, &mut m.rbuf);
            link::drive(self, i, now);
        }
    }

    /// The connection is lost: see [`Conn::handle_broken`].
    fn broken(&mut self, i: usize, now: Instant, why: &str) {
        use link::Engine as _;
        let Some(m) = self.member(i) else { return };
        sr_log!(Info, "connection to {} lost: {why}", m.conn.addr());
        self.close(i);
        if let Some(m) = self.member(i) {
            m.conn.handle_broken(now, why);
        }
        link::drive(self, i, now);
    }

    fn sweep(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let Some(m) = self.member(i) else { continue };
            if m.conn.poll_timeout().is_some_and(|t| t <= now) {
                m.conn.handle_timeout(now);
                link::drive(self, i, now);
                self.write_conn(i, now);
            }
            let Some(m) = self.conns[i].as_ref() else {
                continue;
            };
            if !m.open && m.conn.is_reclaimable(now) {
                let addr = m.conn.addr();
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
        self.conns
            .iter()
            .flatten()
            .filter_map(|m| m.conn.poll_timeout())
            .fold(now + IDLE_WAIT, Instant::min)
    }

    fn shutdown(&mut self) {
        use link::Engine as _;
        self.h.report_unsent(self.held.take());
        let now = self.d.now();
        for i in 0..self.conns.len() {
            if let Some(m) = self.member(i) {
                m.conn.handle_shutdown();
                link::drive(self, i, now);
                self.close(i);
            }
        }
        self.d.shutdown();
        self.h.publish(
            self.held.is_some(),
            self.conns.iter().flatten().map(|m| &m.conn),
        );
        self.h.idle.store(true, Ordering::SeqCst);
    }
}

impl<D: Driver> link::Engine for SendEngine<D> {
    fn handle(&self) -> &PumpHandle {
        &self.h
    }

    fn index(&mut self, addr: SocketAddr, now: Instant) -> usize {
        let (i, new) = self.index.lookup(addr, self.conns.len());
        if new {
            let m = Member {
                conn: link::new_conn(addr, &self.shared, now),
                open: false,
                connecting: false,
                sending: false,
                reading: false,
                rbuf: BytesMut::new(),
            };
            link::put_slot(&mut self.conns, i, m);
        }
        i
    }

    fn conn(&mut self, i: usize) -> &mut Conn {
        &mut self.conns[i].as_mut().expect("live member slot").conn
    }

    fn connect(&mut self, i: usize, now: Instant) {
        let Some(m) = self.conns.get_mut(i).and_then(|m| m.as_mut()) else {
            return;
        };
        let addr = m.conn.addr();
        match self.d.connect(i as Token, addr, &self.opts) {
            Ok(()) => {
                m.open = true;
                m.connecting = true;
                m.sending = false;
                m.reading = false;
                m.rbuf.clear();
                m.conn.handle_connecting(now, &self.preface);
            }
            Err(e) => {
                sr_log!(Debug, "connect to {addr} failed: {e}");
                m.conn.handle_connect_failed(now);
            }
        }
    }

    /// Closes the member's socket; the driver cancels its operations.
    fn close(&mut self, i: usize) {
        let Some(m) = self.conns.get_mut(i).and_then(|m| m.as_mut()) else {
            return;
        };
        if m.open {
            self.d.close(i, &[]);
        }
        m.open = false;
        m.connecting = false;
        m.sending = false;
        if m.reading {
            // The buffer went down with the cancelled read.
            m.rbuf = BytesMut::new();
        }
        m.reading = false;
        m.rbuf.clear();
    }
}
