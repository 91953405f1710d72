//! `pooled` mode, one member: concurrent callers share one connection to
//! the member instead of each checking out its own, so frames sent at the
//! same time leave in one `writev` and the receiver, reading them in one
//! read, acks them all in one write; one caller reads that ack for all.
//!
//! - **Combining writer.** A caller queues its frame; if no one is writing,
//!   it becomes the writer and writes every queued frame (its own and those
//!   queued meanwhile) until the queue is empty. Writes are non-blocking
//!   and bounded by the writer's deadline: a member that stopped reading
//!   breaks the connection at that deadline (its stream may hold half a
//!   frame) and every caller on it gets `Timeout`.
//! - **Leader/follower ack reader.** One caller whose frame is out reads
//!   the socket (spinning briefly, then one blocking `read` bounded by its
//!   own deadline) and resolves every caller whose ack or FAIL it finds,
//!   waking exactly those; the others sleep (`park_timeout`) until their
//!   outcome is set, their deadline passes, or they are handed the reading.
//!   A reader that leaves wakes one caller still waiting to take over.
//! - **Deadlines and closing.** Every caller leaves by its own deadline. A
//!   caller that timed out retires the connection: no new caller joins it,
//!   callers already on it still get their acks, and it is closed when the
//!   last leaves. A broken connection (closed, reset, GOAWAY, a write
//!   timeout) gives every caller on it its error once; connection losses
//!   are resent on a fresh connection up to `maxRetryAttempts`.
//!
//! Callers are matched to acks by message id (unique per channel). Used
//! without encryption only (a secured stream seals and opens through one
//! state that a reader and a writer cannot share).

use super::conn::{send_some, SyncConn, Wait};
use super::{Pool, SyncSender};
use crate::error::{Error, Result};
use crate::proto::outbound::Reply;
use crate::stats::Stats;
use crate::wire::frame::{ack_ranges, HEADER_LEN};
use bytes::Bytes;
use std::io::IoSlice;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// Most frames one `writev` carries (two slices each, under `IOV_MAX`).
const MAX_WRITE_FRAMES: usize = 256;

/// One caller's frame waiting to be written.
struct Frame {
    hdr: [u8; HEADER_LEN],
    payload: Bytes,
    ticket: u64,
}

/// One caller on the connection.
struct Waiter {
    /// Tells callers apart (message ids should, but a caller's own
    /// bookkeeping must not depend on it).
    ticket: u64,
    /// The message id its ack carries.
    id: u64,
    ack: bool,
    thread: Thread,
    /// Its frame is out.
    written: bool,
    outcome: Option<Result<()>>,
}

/// What the callers on one connection share, under one lock held briefly.
#[derive(Default)]
struct State {
    /// Frames not yet taken by the writer.
    out: Vec<Frame>,
    /// The writer's last batch, kept for its capacity.
    spare: Vec<Frame>,
    waiters: Vec<Waiter>,
    next_ticket: u64,
    /// The prefaces are exchanged.
    open: bool,
    /// A caller is writing (or, before `open`, opening).
    writing: bool,
    /// A caller is reading acks.
    reading: bool,
    /// The connection broke: every caller on it gets this.
    dead: Option<Error>,
    /// No new caller joins; closed when the last one leaves.
    retired: bool,
    /// Frames written (`keepAliveCount`).
    sent: u64,
}

/// One connection shared by a member's callers.
pub(super) struct Mux {
    st: Mutex<State>,
    /// The reading side (buffer and reply decoder), used by the reader.
    reader: Mutex<Option<SyncConn>>,
    /// The writing side, set once open.
    writer: OnceLock<TcpStream>,
    opened: Instant,
}

impl Mux {
    /// A connection its first caller is about to open.
    fn opening() -> Mux {
        Mux {
            st: Mutex::new(State {
                writing: true,
                ..State::default()
            }),
            reader: Mutex::new(None),
            writer: OnceLock::new(),
            opened: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the connection (a reader blocked on it wakes at once).
    fn close(&self) {
        if let Some(w) = self.writer.get() {
            let _ = w.shutdown(Shutdown::Both);
        }
    }

    /// Breaks the connection: every caller on it gets `e` (the first
    /// error seen), and is woken to take it.
    fn kill(&self, st: &mut State, e: Error) {
        st.dead.get_or_insert(e);
        st.retired = true;
        for w in &st.waiters {
            w.thread.unpark();
        }
        self.close();
    }

    /// No new caller joins; closed now if no one is on it, else when the
    /// last caller leaves.
    pub(super) fn retire(&self) {
        let mut st = self.lock();
        st.retired = true;
        if st.waiters.is_empty() {
            self.close();
        }
    }

    /// Wakes one caller whose frame is out to read for the others, if no
    /// one reads.
    fn handoff(&self, st: &State) {
        if st.reading || !st.open || st.dead.is_some() {
            return;
        }
        if let Some(w) = st.waiters.iter().find(|w| w.written && w.outcome.is_none()) {
            w.thread.unpark();
        }
    }

    /// Caller `i` leaves; a retired connection closes with the last one.
    fn leave(&self, st: &mut State, i: usize) -> Waiter {
        let w = st.waiters.swap_remove(i);
        if st.retired && st.waiters.is_empty() {
            self.close();
        } else {
            self.handoff(st);
        }
        w
    }

    /// Applies one reply: resolves (and wakes, other than `me`) the callers
    /// it answers.
    fn apply(&self, st: &mut State, r: Reply, me: u64) {
        match r {
            Reply::Ack(p) => {
                for (first, n) in ack_ranges(&p) {
                    Self::resolve(st, me, |id| id.wrapping_sub(first) < n as u64, || Ok(()));
                }
            }
            Reply::Fail { id, reason } => {
                Self::resolve(
                    st,
                    me,
                    |w| w == id,
                    || Err(Error::RemoteFailure(reason.clone())),
                );
            }
            Reply::GoAway(r) => self.kill(st, Error::Unreachable(format!("going away: {r}"))),
            Reply::Preface(_) | Reply::Pong(_) => {}
        }
    }

    /// Gives the callers whose message id `hit`s the outcome `o` (once)
    /// and wakes them, other than `me`.
    fn resolve(st: &mut State, me: u64, hit: impl Fn(u64) -> bool, o: impl Fn() -> Result<()>) {
        for w in st.waiters.iter_mut() {
            if w.outcome.is_none() && hit(w.id) {
                w.outcome = Some(o());
                if w.ticket != me {
                    w.thread.unpark();
                }
            }
        }
    }

    /// True once caller `me` has its outcome (or the connection broke).
    fn resolved(st: &State, me: u64) -> bool {
        st.dead.is_some()
            || st
                .waiters
                .iter()
                .any(|w| w.ticket == me && w.outcome.is_some())
    }
}

impl SyncSender {
    /// [`SyncSender::send_one`] on the member's shared connection (same
    /// outcomes, deadline and resends).
    pub(super) fn send_shared(&self, to: SocketAddr, msg: super::Msg<'_>) -> Result<()> {
        let super::Msg {
            hdr,
            payload,
            id,
            ack,
        } = msg;
        let deadline = Instant::now() + self.shared.cfg.ack_timeout;
        let pool = self.pool(to);
        let mut attempt = 0;
        loop {
            match self.send_on_mux(&pool, hdr, payload, id, ack, deadline) {
                Err(Error::Unreachable(why))
                    if attempt < self.shared.cfg.max_retry_attempts
                        && Instant::now() < deadline =>
                {
                    attempt += 1;
                    Stats::add(&self.shared.stats.resends, 1);
                    Stats::add(&self.shared.stats.reconnects, 1);
                    crate::sr_log!(Debug, "resending {id} to {to} after: {why}");
                }
                Ok(()) => {
                    if ack {
                        Stats::add(&self.shared.stats.acks_received, 1);
                    }
                    return Ok(());
                }
                r => return self.report(to, r),
            }
        }
    }

    /// The member's current shared connection, or a new one (then `true`:
    /// the caller opens it). A retired or stale one is replaced.
    fn current_mux(&self, pool: &Pool) -> (Arc<Mux>, bool) {
        let mut slot = pool.mux.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = slot.as_ref() {
            let st = m.lock();
            let ka = &self.shared.cfg;
            let stale = (ka.keep_alive_count > 0 && st.sent >= ka.keep_alive_count)
                || (!ka.keep_alive_timeout.is_zero() && m.opened.elapsed() > ka.keep_alive_timeout);
            if !st.retired && !stale {
                drop(st);
                return (m.clone(), false);
            }
            drop(st);
            m.retire();
        }
        let m = Arc::new(Mux::opening());
        *slot = Some(m.clone());
        (m, true)
    }

    /// One attempt: joins (or opens) the shared connection, queues the
    /// frame, writes if no one else is, and waits for the outcome.
    fn send_on_mux(
        &self,
        pool: &Pool,
        hdr: &[u8; HEADER_LEN],
        payload: &Bytes,
        id: u64,
        ack: bool,
        deadline: Instant,
    ) -> Result<()> {
        let (mux, opener) = self.current_mux(pool);
        let (ticket, write) = {
            let mut st = mux.lock();
            let ticket = st.next_ticket;
            st.next_ticket += 1;
            st.out.push(Frame {
                hdr: *hdr,
                payload: payload.clone(),
                ticket,
            });
            st.waiters.push(Waiter {
                ticket,
                id,
                ack,
                thread: thread::current(),
                written: false,
                outcome: None,
            });
            let write = !st.writing && st.open && st.dead.is_none();
            st.writing |= write;
            (ticket, write || opener)
        };
        if opener {
            let r = self.open_mux(&mux, pool.addr, deadline);
            let mut st = mux.lock();
            match r {
                Ok(()) => st.open = true,
                Err(e) => {
                    st.writing = false;
                    mux.kill(&mut st, e);
                }
            }
        }
        if write {
            self.write_out(&mux, ack, deadline);
        }
        self.await_outcome(&mux, ticket, deadline)
    }

    /// Connects and exchanges prefaces, by `connectTimeout` and `deadline`.
    fn open_mux(&self, mux: &Mux, addr: SocketAddr, deadline: Instant) -> Result<()> {
        let mut c = SyncConn::start(addr, &self.shared)?;
        let connect_by = Instant::now() + self.shared.cfg.connect_timeout;
        while let Some(w) = c.open()? {
            let now = Instant::now();
            if now >= connect_by.min(deadline) {
                return Err(if connect_by < deadline {
                    Error::Unreachable(format!(
                        "no connection within connectTimeout ({:?})",
                        self.shared.cfg.connect_timeout
                    ))
                } else {
                    Error::Timeout
                });
            }
            wait_fd(c.fd(), w, connect_by.min(deadline) - now)?;
        }
        let _ = mux.writer.set(c.writer()?);
        *mux.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
        Ok(())
    }

    /// The writer's loop: writes every queued frame until none is left.
    /// `will_read`: the writer waits for an ack next (and may read for the
    /// others), else it hands the reading to a caller whose frame is out.
    fn write_out(&self, mux: &Mux, will_read: bool, deadline: Instant) {
        let mut st = mux.lock();
        let Some(wr) = mux.writer.get() else {
            st.writing = false;
            return;
        };
        loop {
            if st.out.is_empty() || st.dead.is_some() {
                st.writing = false;
                if !will_read {
                    mux.handoff(&st);
                }
                return;
            }
            let mut batch = std::mem::take(&mut st.spare);
            std::mem::swap(&mut batch, &mut st.out);
            drop(st);
            let r = write_frames(wr, &batch, deadline);
            st = mux.lock();
            match r {
                Ok(()) => {
                    st.sent += batch.len() as u64;
                    for f in &batch {
                        self.count_sent(&f.payload);
                        let Some(w) = st.waiters.iter_mut().find(|w| w.ticket == f.ticket) else {
                            continue;
                        };
                        w.written = true;
                        if !w.ack && w.outcome.is_none() {
                            w.outcome = Some(Ok(()));
                            w.thread.unpark();
                        }
                    }
                }
                Err(e) => mux.kill(&mut st, e),
            }
            batch.clear();
            st.spare = batch;
        }
    }

    /// Waits for caller `me`'s outcome by `deadline`, reading for everyone
    /// while no one else does.
    fn await_outcome(&self, mux: &Mux, me: u64, deadline: Instant) -> Result<()> {
        let mut st = mux.lock();
        loop {
            let i = st
                .waiters
                .iter()
                .position(|w| w.ticket == me)
                .expect("a caller stays listed until it leaves");
            if st.waiters[i].outcome.is_some() {
                return mux.leave(&mut st, i).outcome.expect("checked");
            }
            if let Some(e) = st.dead.clone() {
                mux.leave(&mut st, i);
                return Err(e);
            }
            let now = Instant::now();
            if now >= deadline {
                // Its late ack will match no one; the connection is
                // retired so it is not used again.
                st.out.retain(|f| f.ticket != me);
                st.retired = true;
                mux.leave(&mut st, i);
                return Err(Error::Timeout);
            }
            if st.open && !st.reading && st.waiters[i].written {
                st.reading = true;
                drop(st);
                self.read_acks(mux, me, deadline);
                st = mux.lock();
                st.reading = false;
                continue;
            }
            drop(st);
            thread::park_timeout(deadline - now);
            st = mux.lock();
        }
    }

    /// The reader: applies the replies that arrive until caller `me` has
    /// its outcome or `deadline` passes. Polls the socket for
    /// `idleSpinMicros` first (as `SyncSender::spin_kind` allows), then sleeps in one
    /// blocking `read` bounded by `deadline`.
    fn read_acks(&self, mux: &Mux, me: u64, deadline: Instant) {
        let mut guard = mux.reader.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = guard.as_mut() else { return };
        let n = self.waiting.fetch_add(1, Ordering::Relaxed);
        let how = self.spin_kind(n);
        let spin = self.spin_time(how);
        let spin_until = Instant::now() + spin;
        let mut spinning = !spin.is_zero();
        let r = (|| -> Result<()> {
            loop {
                while let Some(reply) = c.next_reply()? {
                    let mut st = mux.lock();
                    mux.apply(&mut st, reply, me);
                    if Mux::resolved(&st, me) {
                        return Ok(());
                    }
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(());
                }
                if spinning && now < spin_until {
                    if !c.read_some()? {
                        how.pause();
                    }
                    continue;
                }
                if std::mem::take(&mut spinning) {
                    self.spin_missed();
                }
                c.read_by(deadline)?;
            }
        })();
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if spinning {
            // The ack came while spinning.
            self.spin_misses.store(0, Ordering::Relaxed);
        }
        if let Err(e) = r {
            mux.kill(&mut mux.lock(), e);
        }
    }
}

/// Sleeps until `fd` is ready for `w` or `t` passes.
fn wait_fd(fd: std::os::fd::RawFd, w: Wait, t: Duration) -> Result<()> {
    let mut fds = [libc::pollfd {
        fd,
        events: match w {
            Wait::In => libc::POLLIN,
            Wait::Out => libc::POLLOUT,
        },
        revents: 0,
    }];
    crate::driver::sys::poll(&mut fds, t)
        .map(|_| ())
        .map_err(|e| Error::Unreachable(format!("poll: {e}")))
}

/// Writes `frames` whole, as many per `writev` as fit, by `deadline`
/// (`Timeout` if the member does not take them by then).
fn write_frames(wr: &TcpStream, frames: &[Frame], deadline: Instant) -> Result<()> {
    let mut iov = [IoSlice::new(&[]); 2 * MAX_WRITE_FRAMES];
    // The first frame not fully written, and its bytes already out.
    let (mut first, mut off) = (0, 0);
    while first < frames.len() {
        let mut n = 0;
        for (k, f) in frames[first..].iter().take(MAX_WRITE_FRAMES).enumerate() {
            let skip = if k == 0 { off } else { 0 };
            if skip < HEADER_LEN {
                iov[n] = IoSlice::new(&f.hdr[skip..]);
                iov[n + 1] = IoSlice::new(&f.payload);
                n += 2;
            } else {
                iov[n] = IoSlice::new(&f.payload[skip - HEADER_LEN..]);
                n += 1;
            }
        }
        match send_some(wr, &iov[..n])? {
            Some(mut w) => {
                while w > 0 {
                    let left = HEADER_LEN + frames[first].payload.len() - off;
                    if w >= left {
                        w -= left;
                        first += 1;
                        off = 0;
                    } else {
                        off += w;
                        w = 0;
                    }
                }
            }
            None => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Timeout);
                }
                wait_fd(wr.as_raw_fd(), Wait::Out, deadline - now)?;
            }
        }
    }
    Ok(())
}
