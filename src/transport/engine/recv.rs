//! The one receiver engine loop, over any [`Driver`]: accepts (admission
//! against `maxConnections`), reads, decodes through [`RxCore`] and writes
//! acks back, in order per connection, and enforces the receiver's
//! deadlines and bounds.
//!
//! Bytes come in two shapes, whatever the driver: reads into the
//! connection's own buffer (`carry`), decoded in place; and, where the
//! driver has provided buffers, zero-copy chunks whose frames are handed
//! to the listener as slices of the chunk. Only the bytes of a frame that
//! straddles two chunks are copied (into `carry`, reserved once for the
//! whole frame). A paused connection takes no more bytes: its multishot
//! receive is stopped and chunks already under way wait in `queued`, in
//! order. The byte path is one place, [`RecvEngine::feed`] /
//! [`RecvEngine::decode_carry`]; a filter (decryption) sits before them.

use crate::driver::{Driver, Ended, Event, SockOpts, Token, TokenMap};
use crate::proto::limits::Admit;
use crate::sr_log;
use crate::stats::Stats;
use crate::transport::rx_core::{Close, ConnCore, Hold, RxCore};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Plain reads per connection per turn before others get theirs.
const READ_BUDGET: usize = 8;
/// Bytes a plain read reserves at least.
const PLAIN_CHUNK: usize = 64 * 1024;
/// Longest sleep of an idle engine.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// What receive a connection has out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    None,
    /// A plain read: `carry` is with the driver.
    Plain,
    /// A multishot receive.
    Multi,
}

struct RxConn {
    core: ConnCore,
    /// Bytes of a frame straddling chunks (or every byte, with plain reads).
    carry: BytesMut,
    /// Chunks received while paused, in order (with their buffer view in
    /// incremental mode).
    queued: VecDeque<(Bytes, Option<Bytes>)>,
    /// Incremental mode: the start of an incomplete frame, left in place
    /// in its buffer (with the buffer's view) in case the next chunk
    /// continues right after it.
    tail: Option<(Bytes, Bytes)>,
    reading: Reading,
    /// A send of output is in flight (or waits for room).
    sending: bool,
}

/// The receiver engine over driver `D`.
pub(crate) struct RecvEngine<D: Driver> {
    d: D,
    core: RxCore,
    conns: TokenMap<RxConn>,
    next_token: Token,
    opts: SockOpts,
    stop: Arc<AtomicBool>,
    /// Connections served again on the next turn (read budget spent, or
    /// a pause that ends by itself).
    again: Vec<Token>,
    events: Vec<Event>,
    /// Turns in a row that found nothing to do (the clock is read on
    /// every [`IDLE_CLOCK_EVERY`]th of them only).
    idle_turns: u32,
}

/// While spinning idle, the clock is read once per this many empty turns:
/// reading it every turn cost the io_uring receiver a fifth of its CPU.
const IDLE_CLOCK_EVERY: u32 = 32;

impl<D: Driver> RecvEngine<D> {
    /// An engine over `d` (already listening), delivering through `core`.
    pub(crate) fn new(d: D, core: RxCore, stop: Arc<AtomicBool>) -> RecvEngine<D> {
        RecvEngine {
            opts: super::sock_opts(&core.shared.cfg),
            d,
            core,
            conns: TokenMap::default(),
            next_token: 1,
            stop,
            again: Vec::new(),
            events: Vec::new(),
            idle_turns: 0,
        }
    }

    /// Runs until stopped, then closes every connection and lets the
    /// driver drain.
    pub(crate) fn run(mut self) {
        let mut idle_since: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            self.turn(&mut idle_since);
        }
        for (t, _) in std::mem::take(&mut self.conns) {
            self.d.close(t, &[]);
        }
        self.d.shutdown();
    }

    /// One turn: wait (not at all while connections are due again, or
    /// before the idle spin is over), handle the events, the workers'
    /// acks, the deadlines, and the connections due again. Time is the
    /// driver's clock (a virtual clock on the fake driver), read once
    /// after a wait that brought events or slept, and when the engine may
    /// sleep (at the end of a turn that did nothing, and on every
    /// [`IDLE_CLOCK_EVERY`]th empty turn while spinning); never per
    /// message.
    pub(crate) fn turn(&mut self, idle_since: &mut Option<Instant>) {
        let spin = self.core.shared.cfg.idle.spin;
        let may_sleep = match *idle_since {
            Some(t) if self.again.is_empty() => {
                self.idle_turns = self.idle_turns.wrapping_add(1);
                if spin.is_zero() || self.idle_turns % IDLE_CLOCK_EVERY == 0 {
                    let now = self.d.now();
                    self.core.set_now(now);
                    now.saturating_duration_since(t) >= spin
                } else {
                    false
                }
            }
            _ => {
                self.idle_turns = 0;
                false
            }
        };
        let timeout = if !may_sleep {
            Duration::ZERO
        } else {
            self.core.rx.sleeping.store(true, Ordering::SeqCst);
            if self.core.rx.acks.is_empty() {
                // Until the next deadline (handshake, upload, ack write).
                self.core.sleep_for(IDLE_POLL)
            } else {
                Duration::ZERO
            }
        };
        let mut events = std::mem::take(&mut self.events);
        if let Err(e) = self.d.poll(timeout, &mut events) {
            sr_log!(Error, "receiver driver failed: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        if may_sleep {
            // Only a turn that may have slept set it: a store on every
            // busy turn would take the line from the workers reading it.
            self.core.rx.sleeping.store(false, Ordering::SeqCst);
        }
        let mut did = !events.is_empty();
        if did || !timeout.is_zero() || idle_since.is_none() {
            let now = self.d.now();
            self.core.set_now(now);
        }
        for ev in events.drain(..) {
            self.on_event(ev);
        }
        self.events = events;
        did |= self.drain_worker_acks();
        did |= self.enforce_limits();
        if !self.again.is_empty() {
            for t in std::mem::take(&mut self.again) {
                self.with_conn(t, Self::serve);
            }
            did = true;
        }
        if did {
            *idle_since = None;
        } else if idle_since.is_none() {
            // Idle from the end of this turn (as the spin is measured).
            *idle_since = Some(self.d.now());
        }
    }

    /// The driver (tests inspect and steer it).
    #[cfg(test)]
    pub(crate) fn driver(&mut self) -> &mut D {
        &mut self.d
    }

    /// Takes `t`'s connection out, runs `f` on it, then flushes its output
    /// and puts it back, or closes it if `f` or the flush failed.
    fn with_conn(
        &mut self,
        t: Token,
        f: impl FnOnce(&mut Self, Token, &mut RxConn) -> Result<(), Close>,
    ) {
        let Some(mut c) = self.conns.remove(&t) else {
            return;
        };
        match f(self, t, &mut c).and_then(|()| self.flush(t, &mut c)) {
            Ok(()) => {
                self.conns.insert(t, c);
            }
            Err(why) => self.close(t, c, why),
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Accepted { sock, peer } => self.accept(sock, peer),
            Event::Received { token, res, buf } => self.with_conn(token, |e, t, c| {
                if c.reading != Reading::Plain {
                    return Ok(());
                }
                c.reading = Reading::None;
                c.carry = buf;
                match res {
                    Ok(0) => Err(Close::Eof),
                    Ok(n) => {
                        Stats::add(&e.core.shared.stats.bytes_received, n as u64);
                        if !c.core.paused() && c.queued.is_empty() {
                            e.core.begin_turn(&mut c.core);
                        }
                        if e.decode_carry(t, c)? {
                            e.read(t, c)?;
                        }
                        Ok(())
                    }
                    Err(err) => Err(Close::Io(err)),
                }
            }),
            Event::Chunk {
                token,
                data,
                buffer,
            } => self.with_conn(token, |e, t, c| {
                Stats::add(&e.core.shared.stats.bytes_received, data.len() as u64);
                if !c.core.paused() && c.queued.is_empty() {
                    e.core.begin_turn(&mut c.core);
                }
                e.feed(t, c, data, buffer)
            }),
            Event::RecvEnded { token, how } => self.with_conn(token, |e, t, c| {
                c.reading = Reading::None;
                match how {
                    Ended::Rearm => e.read(t, c),
                    Ended::Eof => Err(Close::Eof),
                    Ended::Failed(err) => Err(Close::Io(err)),
                }
            }),
            Event::Sent { token, res } => self.with_conn(token, |e, t, c| {
                if !c.sending {
                    return Ok(());
                }
                c.sending = false;
                let n = res.map_err(Close::Io)?;
                c.core.proto.take_output().drain(..n);
                if e.core.output_drained(&mut c.core) {
                    e.again.push(t);
                }
                Ok(())
            }),
            Event::Connected { .. } => {}
        }
    }

    /// Admits a connection just accepted, after closing the oldest one
    /// still in its handshake when every slot is taken.
    fn accept(&mut self, sock: socket2::Socket, peer: std::net::SocketAddr) {
        let t = self.next_token;
        self.next_token += 1;
        match self.core.admit(t, peer) {
            Admit::Accept => {}
            Admit::Evict(old) => {
                if let Some(c) = self.conns.remove(&old) {
                    let why = Close::Limit(
                        "maxConnections reached: oldest connection without a preface makes room",
                    );
                    self.close(old, c, why);
                }
            }
            Admit::Refuse => return,
        }
        self.opts.apply(&sock);
        let core = self.core.new_conn(t, peer);
        if let Err(e) = self.d.register(t, sock) {
            sr_log!(Warn, "cannot register {peer}: {e}");
            self.core.on_close(&core, &Close::Io(e));
            return;
        }
        let c = RxConn {
            core,
            carry: BytesMut::with_capacity(self.d.first_read_capacity()),
            queued: VecDeque::new(),
            tail: None,
            reading: Reading::None,
            sending: false,
        };
        self.conns.insert(t, c);
        self.with_conn(t, Self::read);
    }

    /// Arms a receive for `c`, or reads it at once (up to
    /// [`READ_BUDGET`] times, then it is served again next turn), unless
    /// it is paused, has chunks waiting or already has a receive out.
    fn read(&mut self, t: Token, c: &mut RxConn) -> Result<(), Close> {
        if c.reading != Reading::None || c.core.paused() || !c.queued.is_empty() {
            return Ok(());
        }
        // Shared-key records are opened in the buffer they are read into:
        // a plain read puts them there, a chunk would be copied there.
        if !self.core.opens_in_place() && self.d.recv_multi(t).map_err(Close::Io)? {
            c.reading = Reading::Multi;
            return Ok(());
        }
        if let Some((tail, _)) = c.tail.take() {
            c.carry.extend_from_slice(&tail);
        }
        for _ in 0..READ_BUDGET {
            let want = c.core.proto.wanted_after(c.carry.len()).max(PLAIN_CHUNK);
            match self.d.recv(t, &mut c.carry, want).map_err(Close::Io)? {
                Some(0) => return Err(Close::Eof),
                Some(n) => {
                    Stats::add(&self.core.shared.stats.bytes_received, n as u64);
                    if !self.decode_carry(t, c)? {
                        return Ok(());
                    }
                }
                None => {
                    c.reading = Reading::Plain;
                    return Ok(());
                }
            }
        }
        // Budget spent with data possibly left: come back next turn.
        self.again.push(t);
        Ok(())
    }

    /// Decodes the frames complete in `carry`; false if that paused the
    /// connection (it is then parked).
    fn decode_carry(&mut self, t: Token, c: &mut RxConn) -> Result<bool, Close> {
        self.core.decode(t, &mut c.core, &mut c.carry)?;
        if c.core.paused() {
            self.park(t, c);
            return Ok(false);
        }
        Ok(true)
    }

    /// Decodes one filled chunk: joins it to the tail left in the same
    /// buffer or completes a straddling frame in `carry` first, then
    /// slices the rest in place; an incomplete frame stays in place as the
    /// tail (incremental mode) or goes to `carry`.
    fn feed(
        &mut self,
        t: Token,
        c: &mut RxConn,
        mut chunk: Bytes,
        buffer: Option<Bytes>,
    ) -> Result<(), Close> {
        if c.core.paused() || !c.queued.is_empty() {
            c.queued.push_back((chunk, buffer));
            return Ok(());
        }
        if let Some((tail, tbuf)) = c.tail.take() {
            match crate::driver::join_adjacent(&tail, &tbuf, &chunk) {
                Some(joined) => chunk = joined,
                None => {
                    // The frame continues elsewhere: copy its start.
                    let w = c.core.proto.wanted_after(tail.len());
                    c.carry.reserve(tail.len() + w);
                    c.carry.extend_from_slice(&tail);
                }
            }
        }
        while !c.carry.is_empty() {
            self.core.decode(t, &mut c.core, &mut c.carry)?;
            if c.core.paused() {
                c.queued.push_back((chunk, buffer));
                self.park(t, c);
                return Ok(());
            }
            if c.carry.is_empty() || chunk.is_empty() {
                break;
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
        self.core.decode(t, &mut c.core, &mut chunk)?;
        if c.core.paused() {
            c.queued.push_back((chunk, buffer));
            self.park(t, c);
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

    /// Serves a connection again: hands over its held jobs, decodes what
    /// it already holds (carry, then queued chunks), then reads on.
    fn serve(&mut self, t: Token, c: &mut RxConn) -> Result<(), Close> {
        self.core.begin_turn(&mut c.core);
        if c.core.hold.is_some() {
            // Still held (for output or memory): its event resumes it.
            return Ok(());
        }
        if !self.core.unstall(&mut c.core) {
            self.again.push(t);
            return Ok(());
        }
        if c.reading != Reading::Plain && !self.decode_carry(t, c)? {
            return Ok(());
        }
        // Taken out first: a chunk that pauses again goes back in front of
        // the rest (feed queues what it did not decode).
        let mut it = std::mem::take(&mut c.queued).into_iter();
        while let Some((chunk, buffer)) = it.next() {
            self.feed(t, c, chunk, buffer)?;
            if c.core.paused() {
                c.queued.extend(it);
                return Ok(());
            }
        }
        self.read(t, c)
    }

    /// A connection that just paused: retried on the next turn if a full
    /// worker queue or its spent inflate budget paused it; and unless only
    /// its turn is over, it takes no more bytes until the pause ends.
    fn park(&mut self, t: Token, c: &mut RxConn) {
        let only_turn = c.core.stalled.is_empty() && c.core.hold == Some(Hold::Turn);
        if c.core.retry_next_turn() {
            self.again.push(t);
        }
        if !only_turn && c.reading == Reading::Multi {
            self.d.stop_multi(t);
        }
    }

    /// Writes what the connection's protocol has queued (acks, FAILs):
    /// as much as the socket takes now, the rest when it takes more.
    fn flush(&mut self, t: Token, c: &mut RxConn) -> Result<(), Close> {
        while !c.sending && c.core.proto.has_output() {
            let out = c.core.proto.take_output();
            let sent = self.d.send(t, out, std::iter::empty()).map_err(Close::Io)?;
            Stats::add(&self.core.shared.stats.acks_sent, 1);
            match sent {
                Some(0) => break,
                Some(n) => {
                    out.drain(..n);
                }
                None => c.sending = true,
            }
        }
        if self.core.output_drained(&mut c.core) {
            self.again.push(t);
        }
        Ok(())
    }

    /// Acks the workers handed back after delivery, written at once.
    fn drain_worker_acks(&mut self) -> bool {
        let mut touched: Vec<Token> = Vec::new();
        while let Some(a) = self.core.pop_ack() {
            if let Some(c) = self.conns.get_mut(&a.token) {
                let t = a.token;
                self.core.worker_ack(&mut c.core, a);
                if touched.last() != Some(&t) {
                    touched.push(t);
                }
            }
        }
        let any = !touched.is_empty();
        for t in touched {
            self.with_conn(t, |_, _, _| Ok(()));
        }
        any
    }

    /// Closes connections past a deadline and retries those that waited
    /// for receive memory once some was released. Returns true if it did
    /// anything.
    fn enforce_limits(&mut self) -> bool {
        let mut did = false;
        for (t, why) in self.core.expired() {
            if let Some(c) = self.conns.remove(&t) {
                self.close(t, c, why);
                did = true;
            }
        }
        for t in self.core.memory_waiters() {
            if let Some(c) = self.conns.get_mut(&t) {
                if self.core.unhold_memory(&mut c.core) {
                    self.again.push(t);
                    did = true;
                }
            }
        }
        did
    }

    /// Counts and logs the close, frees the connection's slot and memory,
    /// and closes its socket (after a best-effort FAIL for a protocol
    /// error, or the acks of frames that came with the peer's hang-up; not
    /// past a send still in flight).
    fn close(&mut self, t: Token, mut c: RxConn, why: Close) {
        self.core.on_close(&c.core, &why);
        let last: &[u8] = if matches!(why, Close::Protocol(_) | Close::Eof) && !c.sending {
            c.core.proto.take_output()
        } else {
            &[]
        };
        self.d.close(t, last);
    }
}
