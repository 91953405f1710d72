//! `synchronous` and `pooled`: the caller's thread writes the frame on a
//! connection it checks out of the member's pool and, with an ack requested,
//! reads the ack on that same connection. `synchronous` keeps one connection
//! per member; `pooled` up to `maxPoolSocketLimit`, so concurrent callers do
//! not queue behind each other. The fast path (an idle connection in the
//! pool) takes no lock, and a caller gets back the connection it used last
//! when it is idle (`idle.rs`).
//!
//! Isolation: no step blocks (connect is non-blocking, reads and writes use
//! `MSG_DONTWAIT`; a caller sleeps only in `poll` or, waiting on a single
//! ack, in one `read` bounded by `SO_RCVTIMEO`), and one send to several
//! members is one loop over all of them ([`SyncSender::send_many`]), so
//!
//! - every send returns by its deadline (`ackTimeout` from the call), whatever
//!   the peers do: connecting, writing (a member that stopped reading fills
//!   its socket) and waiting for the ack are all bounded by it;
//! - a connection that timed out, on a write or an ack, is closed, never
//!   put back into the pool (its stream may hold half a frame, and its late
//!   ack would answer a message the caller was told had failed);
//! - a stalled member never delays another: each member's connection goes
//!   back into its pool the moment that member's outcome is known, so other
//!   callers to a healthy member never wait behind a stalled one.
//!
//! Waiting for an ack, a caller first polls its socket for `idleSpinMicros`:
//! back to back in one of `cores / 2` spin slots, else yielding the CPU
//! between polls (up to 4 callers per core; the rest block at once). It
//! stops polling for a while after spins that ran out before the ack (see
//! `spin_missed`).

mod conn;
mod idle;
mod mux;

use super::Shared;
use crate::error::{Error, Result};
use crate::stats::Stats;
use crate::wire::frame::HEADER_LEN;
use bytes::Bytes;
use conn::{SyncConn, Wait};
use idle::IdleSlots;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A member's pool of connections.
struct Pool {
    addr: SocketAddr,
    idle: IdleSlots<SyncConn>,
    open: AtomicUsize,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    /// `pooled`, one member at a time: the connection callers share
    /// (`mux.rs`).
    mux: Mutex<Option<Arc<mux::Mux>>>,
}

/// Callers per core that may poll for their ack yielding between polls
/// (beyond the pure spinners). Measured on 2 vCPUs, S3 (4 callers):
/// 94–110 k msgs/s with the callers beyond the first blocking in `read`,
/// 137–155 k with them yielding, p99 from 100–137 µs to 30–52 µs.
const YIELD_SLOTS_PER_CORE: usize = 4;

/// How a caller waiting for an ack polls its socket.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Spin {
    /// It does not: it blocks at once.
    No,
    /// Back to back.
    Pure,
    /// With a `sched_yield` between polls, so that the threads that answer
    /// it (and other callers) run.
    Yield,
}

impl Spin {
    /// Between two polls: yields the CPU if polling as [`Spin::Yield`].
    fn pause(self) {
        if self == Spin::Yield {
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
}

/// How long a caller that also waits on sockets rechecks an exhausted pool.
const POOL_RECHECK: Duration = Duration::from_millis(1);

/// Where one member's part of a send stands.
enum Step {
    /// Needs a connection from the pool (or a new one).
    Checkout,
    /// Opening a new connection (connect, prefaces).
    Opening,
    /// Writing the frame; `usize` bytes are out.
    Writing(usize),
    /// Frame written, waiting for its ack.
    Acking,
    /// Outcome known; the connection is back in the pool or closed.
    Done(Result<()>),
}

/// One member's part of a send.
struct Dest {
    addr: SocketAddr,
    pool: Arc<Pool>,
    conn: Option<Box<SyncConn>>,
    step: Step,
    /// Connection losses so far (resent up to `maxRetryAttempts`).
    attempt: u32,
    /// Until when the connection being opened may take (`connectTimeout`).
    connect_by: Instant,
    /// What its socket waits for after the last step, if anything.
    waits: Option<Wait>,
    /// A failure seen while waiting, for the next step to handle.
    failed: Option<Error>,
}

/// The message of one send, the same for every member.
#[derive(Clone, Copy)]
struct Msg<'a> {
    hdr: &'a [u8; HEADER_LEN],
    payload: &'a Bytes,
    id: u64,
    ack: bool,
}

/// What a member's part waits for after a step.
enum Blocked {
    /// Nothing: its outcome is known.
    No,
    /// Its socket.
    On(Wait),
    /// A connection to come back to its exhausted pool.
    Pool,
}

/// The synchronous and pooled sender.
pub struct SyncSender {
    shared: Arc<Shared>,
    limit: usize,
    /// Callers waiting for an ack now. The first `spin_slots` of them
    /// poll their socket; the next ones, up to `yield_slots`, poll it too
    /// but yield the CPU between polls (more pure spinners than cores
    /// would take the CPU from the threads that answer them, and a caller
    /// that blocks pays the VM's wake-up on every ack); the rest block.
    waiting: AtomicUsize,
    spin_slots: usize,
    yield_slots: usize,
    /// Adaptive spin: consecutive spins that ended without the ack, and
    /// how many sends skip spinning before the next try. On a machine
    /// whose cores are taken, a spinning caller can keep the receiver off
    /// the CPU it needs, so the ack comes only after the spin: every round
    /// trip then pays the whole spin (110 µs instead of 10 at 50 µs spin).
    spin_misses: AtomicU32,
    spin_skip: AtomicU32,
    pools: RwLock<HashMap<SocketAddr, Arc<Pool>>>,
    /// Callers to one member share one connection (`mux.rs`).
    share: bool,
}

impl SyncSender {
    /// A sender with at most `limit` connections per member.
    pub fn new(shared: Arc<Shared>, limit: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        SyncSender {
            shared,
            limit: limit.max(1),
            waiting: AtomicUsize::new(0),
            spin_slots: (cores / 2).max(1),
            yield_slots: cores * YIELD_SLOTS_PER_CORE,
            spin_misses: AtomicU32::new(0),
            spin_skip: AtomicU32::new(0),
            pools: RwLock::new(HashMap::new()),
            share: false,
        }
    }

    /// Lets concurrent sends to one member share one connection (`pooled`
    /// mode): their frames leave together and one read takes their acks.
    /// Not with encryption, and not for a send to several members, which
    /// keep a connection each from the pool.
    pub fn with_shared_connections(mut self, on: bool) -> Self {
        self.share = on && self.shared.secure.is_none();
        self
    }

    fn pool(&self, addr: SocketAddr) -> Arc<Pool> {
        if let Some(p) = self
            .pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&addr)
        {
            return p.clone();
        }
        let mut w = self.pools.write().unwrap_or_else(|e| e.into_inner());
        w.entry(addr)
            .or_insert_with(|| {
                Arc::new(Pool {
                    addr,
                    idle: IdleSlots::new(self.limit),
                    open: AtomicUsize::new(0),
                    waiters: AtomicUsize::new(0),
                    lock: Mutex::new(()),
                    cv: Condvar::new(),
                    mux: Mutex::new(None),
                })
            })
            .clone()
    }

    /// An idle connection, or a new one being opened, or `Ok(None)` when the
    /// pool is exhausted. Never waits.
    fn try_checkout(&self, pool: &Pool) -> Result<Option<Box<SyncConn>>> {
        loop {
            if let Some(c) = pool.idle.pop() {
                let ka = &self.shared.cfg;
                let stale = (ka.keep_alive_count > 0 && c.sent >= ka.keep_alive_count)
                    || (!ka.keep_alive_timeout.is_zero()
                        && c.opened.elapsed() > ka.keep_alive_timeout);
                if !stale {
                    return Ok(Some(c));
                }
                self.discard(pool);
                continue;
            }
            let open = pool.open.load(Ordering::Acquire);
            if open >= self.limit {
                return Ok(None);
            }
            if pool
                .open
                .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            return match SyncConn::start(pool.addr, &self.shared) {
                Ok(c) => Ok(Some(Box::new(c))),
                Err(e) => {
                    self.discard(pool);
                    Err(e)
                }
            };
        }
    }

    /// Waits (up to `until`) for a connection to come back to `pool`.
    fn wait_pool(&self, pool: &Pool, until: Instant) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        let g = pool.lock.lock().unwrap_or_else(|e| e.into_inner());
        pool.waiters.fetch_add(1, Ordering::SeqCst);
        if pool.idle.is_empty() && pool.open.load(Ordering::SeqCst) >= self.limit {
            let _ = pool.cv.wait_timeout(g, until - now);
        }
        pool.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    fn checkin(&self, pool: &Pool, c: Box<SyncConn>) {
        if pool.idle.push(c).is_err() {
            self.discard(pool);
            return;
        }
        self.notify(pool);
    }

    /// Forgets a connection (closed by dropping it).
    fn discard(&self, pool: &Pool) {
        pool.open.fetch_sub(1, Ordering::AcqRel);
        self.notify(pool);
    }

    fn notify(&self, pool: &Pool) {
        if pool.waiters.load(Ordering::SeqCst) > 0 {
            let _g = pool.lock.lock().unwrap_or_else(|e| e.into_inner());
            pool.cv.notify_one();
        }
    }

    fn dest(&self, addr: SocketAddr, now: Instant) -> Dest {
        Dest {
            addr,
            pool: self.pool(addr),
            conn: None,
            step: Step::Checkout,
            attempt: 0,
            connect_by: now,
            waits: None,
            failed: None,
        }
    }

    /// Sends one frame to one member and, if `ack`, waits for its ack, all
    /// by `ackTimeout` from now. Resends on a fresh connection after a
    /// connection loss, up to `maxRetryAttempts`; a timeout is never retried.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Timeout`], [`Error::RemoteFailure`].
    pub fn send_one(
        &self,
        to: SocketAddr,
        hdr: &[u8; HEADER_LEN],
        payload: &Bytes,
        id: u64,
        ack: bool,
    ) -> Result<()> {
        let msg = Msg {
            hdr,
            payload,
            id,
            ack,
        };
        if self.share {
            return self.send_shared(to, msg);
        }
        let now = Instant::now();
        let mut d = [self.dest(to, now)];
        self.drive(&mut d, msg, now + self.shared.cfg.ack_timeout);
        let [d] = d;
        match d.step {
            Step::Done(r) => r,
            _ => Err(Error::Timeout),
        }
    }

    /// Sends to several members at once, all by `ackTimeout` from now, and
    /// returns one outcome per member (in the order of `to`). Each member's
    /// connection returns to its pool as soon as its own outcome is known.
    pub fn send_many(
        &self,
        to: &[SocketAddr],
        hdr: &[u8; HEADER_LEN],
        payload: &Bytes,
        id: u64,
        ack: bool,
    ) -> Vec<(SocketAddr, Result<()>)> {
        let deadline = Instant::now() + self.shared.cfg.ack_timeout;
        self.send_many_by(to, hdr, payload, id, ack, deadline)
    }

    /// [`SyncSender::send_many`] by a deadline of the caller's (a send
    /// that also goes to Tribes members ends by one deadline for all).
    pub fn send_many_by(
        &self,
        to: &[SocketAddr],
        hdr: &[u8; HEADER_LEN],
        payload: &Bytes,
        id: u64,
        ack: bool,
        deadline: Instant,
    ) -> Vec<(SocketAddr, Result<()>)> {
        let now = Instant::now();
        let mut ds: Vec<Dest> = to.iter().map(|&a| self.dest(a, now)).collect();
        let msg = Msg {
            hdr,
            payload,
            id,
            ack,
        };
        self.drive(&mut ds, msg, deadline);
        ds.into_iter()
            .map(|d| match d.step {
                Step::Done(r) => (d.addr, r),
                _ => (d.addr, Err(Error::Timeout)),
            })
            .collect()
    }

    /// Runs every member's part until each has an outcome or `deadline`
    /// passes; never blocks on one member while another could progress.
    fn drive(&self, ds: &mut [Dest], msg: Msg<'_>, deadline: Instant) {
        let mut spin_until: Option<Instant> = None;
        let mut spinning = false;
        // Spinning now; cleared when the spin ran out without the ack.
        let mut spun = false;
        let mut how = Spin::No;
        // Built only when the caller has to sleep: the spinning fast path
        // allocates nothing.
        let mut fds: Vec<libc::pollfd> = Vec::new();
        loop {
            let now = Instant::now();
            let (mut on_socket, mut wait_in) = (0, false);
            let (mut wait_pool, mut pool_waits) = (None, 0);
            for (i, d) in ds.iter_mut().enumerate() {
                d.waits = None;
                match self.advance(d, msg, deadline, now) {
                    Blocked::No => {}
                    Blocked::Pool => {
                        wait_pool.get_or_insert(i);
                        pool_waits += 1;
                    }
                    Blocked::On(w) => {
                        d.waits = Some(w);
                        on_socket += 1;
                        wait_in |= w == Wait::In;
                    }
                }
            }
            if on_socket == 0 && wait_pool.is_none() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                for d in ds.iter_mut() {
                    self.finish(d, Err(Error::Timeout));
                }
                break;
            }
            // An ack usually comes back within microseconds, and a thread
            // woken from poll pays the scheduler's wake-up latency (tens of
            // µs on a busy VM): poll the sockets briefly first, if a spin
            // slot is free.
            if wait_in && spin_until.is_none() {
                let n = self.waiting.fetch_add(1, Ordering::Relaxed);
                spinning = true;
                how = self.spin_kind(n);
                let spin = self.spin_time(how);
                spun = !spin.is_zero();
                spin_until = Some(now + spin);
            }
            if let Some(until) = spin_until.filter(|&u| wait_in && now < u) {
                if let [d] = &mut *ds {
                    spin_for_ack(d, until, how);
                    std::hint::spin_loop();
                } else {
                    how.pause();
                }
                continue;
            }
            if std::mem::take(&mut spun) {
                self.spin_missed();
            }
            // A member still opening fails at its `connectTimeout`, which may
            // come before the send's deadline (and leave time to resend).
            let wake = ds
                .iter()
                .filter(|d| matches!(d.step, Step::Opening) && d.connect_by < deadline)
                .map(|d| d.connect_by)
                .fold(deadline, Instant::min);
            let left = wake.saturating_duration_since(now);
            if on_socket == 0 {
                if let Some(i) = wait_pool {
                    // Several exhausted pools: recheck them all often.
                    let until = if pool_waits > 1 {
                        now + POOL_RECHECK
                    } else {
                        deadline
                    };
                    self.wait_pool(&ds[i].pool, until.min(deadline));
                }
                continue;
            }
            // One member waiting for its ack: one blocking read, no poll.
            if let [d] = &mut *ds {
                if d.waits == Some(Wait::In) && wait_pool.is_none() {
                    if let Some(c) = d.conn.as_mut().filter(|c| c.is_open()) {
                        if let Err(e) = c.read_by(deadline) {
                            d.failed = Some(e);
                        }
                        continue;
                    }
                }
            }
            fds.clear();
            fds.extend(ds.iter().filter_map(|d| {
                let w = d.waits?;
                Some(libc::pollfd {
                    fd: d.conn.as_ref()?.fd(),
                    events: match w {
                        Wait::In => libc::POLLIN,
                        Wait::Out => libc::POLLOUT,
                    },
                    revents: 0,
                })
            }));
            let t = if wait_pool.is_some() {
                left.min(POOL_RECHECK)
            } else {
                left
            };
            if let Err(e) = crate::driver::sys::poll(&mut fds, t) {
                for d in ds.iter_mut() {
                    self.finish(d, Err(Error::Unreachable(format!("poll: {e}"))));
                }
                break;
            }
        }
        if spinning {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        if spun {
            // The ack came while spinning.
            self.spin_misses.store(0, Ordering::Relaxed);
        }
    }

    /// How the `n`th caller now waiting for an ack (from 0) polls for it.
    fn spin_kind(&self, n: usize) -> Spin {
        if n >= self.yield_slots || !self.spin_allowed() {
            Spin::No
        } else if n < self.spin_slots {
            Spin::Pure
        } else {
            Spin::Yield
        }
    }

    /// How long a caller waiting as `how` polls before it blocks.
    fn spin_time(&self, how: Spin) -> Duration {
        match how {
            Spin::No => Duration::ZERO,
            Spin::Pure | Spin::Yield => self.shared.cfg.idle.spin,
        }
    }

    /// False while recent spins went unanswered (each skipped send counts
    /// down once; then one send tries again).
    fn spin_allowed(&self) -> bool {
        let skip = self.spin_skip.load(Ordering::Relaxed);
        if skip == 0 {
            return true;
        }
        self.spin_skip.store(skip - 1, Ordering::Relaxed);
        false
    }

    /// A spin ran out before the ack: skip spinning for the next 2, 4, ...
    /// up to 256 sends.
    fn spin_missed(&self) {
        let m = (self.spin_misses.load(Ordering::Relaxed) + 1).min(8);
        self.spin_misses.store(m, Ordering::Relaxed);
        self.spin_skip.store(1 << m, Ordering::Relaxed);
    }

    /// Takes one member's part as far as it goes without blocking.
    fn advance(&self, d: &mut Dest, msg: Msg<'_>, deadline: Instant, now: Instant) -> Blocked {
        let Msg {
            hdr,
            payload,
            id,
            ack,
        } = msg;
        loop {
            let r: Result<Option<Blocked>> = match &d.step {
                Step::Done(_) => return Blocked::No,
                _ if d.failed.is_some() => Err(d.failed.take().expect("checked")),
                Step::Checkout => match self.try_checkout(&d.pool) {
                    Ok(None) => return Blocked::Pool,
                    Ok(Some(c)) => {
                        d.step = if c.is_open() {
                            Step::Writing(0)
                        } else {
                            d.connect_by = now + self.shared.cfg.connect_timeout;
                            Step::Opening
                        };
                        d.conn = Some(c);
                        Ok(None)
                    }
                    Err(e) => Err(e),
                },
                Step::Opening => {
                    let c = d.conn.as_mut().expect("opening holds a connection");
                    match c.open() {
                        Ok(None) => {
                            d.step = Step::Writing(0);
                            Ok(None)
                        }
                        // `connectTimeout` is the member's fault (unreachable,
                        // so resent if allowed); the send's own deadline is
                        // caught by the caller as a timeout.
                        Ok(Some(_)) if now >= d.connect_by && d.connect_by < deadline => {
                            Err(Error::Unreachable(format!(
                                "no connection within connectTimeout ({:?})",
                                self.shared.cfg.connect_timeout
                            )))
                        }
                        Ok(Some(w)) => Ok(Some(Blocked::On(w))),
                        Err(e) => Err(e),
                    }
                }
                &Step::Writing(off) => {
                    let c = d.conn.as_mut().expect("writing holds a connection");
                    match c.write_frame(hdr, payload, off) {
                        Ok(n) if n == HEADER_LEN + payload.len() => {
                            self.count_sent(payload);
                            if ack {
                                // Its ack cannot be there yet: wait (spin,
                                // read or poll) before the first read.
                                d.step = Step::Acking;
                                Ok(Some(Blocked::On(Wait::In)))
                            } else {
                                Ok(Some(Blocked::No))
                            }
                        }
                        Ok(n) => {
                            d.step = Step::Writing(n);
                            Ok(Some(Blocked::On(Wait::Out)))
                        }
                        Err(e) => Err(e),
                    }
                }
                Step::Acking => {
                    let c = d.conn.as_mut().expect("acking holds a connection");
                    match c.check_ack(id) {
                        Ok(true) => Ok(Some(Blocked::No)),
                        Ok(false) => Ok(Some(Blocked::On(Wait::In))),
                        Err(e) => Err(e),
                    }
                }
            };
            match r {
                Ok(None) => {}
                Ok(Some(Blocked::No)) => {
                    if ack {
                        Stats::add(&self.shared.stats.acks_received, 1);
                    }
                    self.finish(d, Ok(()));
                    return Blocked::No;
                }
                Ok(Some(b)) => return b,
                Err(Error::Unreachable(why))
                    if d.attempt < self.shared.cfg.max_retry_attempts && now < deadline =>
                {
                    if let Some(c) = d.conn.take() {
                        self.count_refusal(&c);
                        self.discard(&d.pool);
                    }
                    d.attempt += 1;
                    d.step = Step::Checkout;
                    Stats::add(&self.shared.stats.resends, 1);
                    Stats::add(&self.shared.stats.reconnects, 1);
                    crate::sr_log!(Debug, "resending {id} to {} after: {why}", d.addr);
                }
                Err(e) => {
                    self.finish(d, Err(e));
                    return Blocked::No;
                }
            }
        }
    }

    /// Counts a member that did not pass the secure handshake.
    fn count_refusal(&self, c: &SyncConn) {
        if c.refused() {
            Stats::add(&self.shared.stats.secure_refusals, 1);
        }
    }

    /// Records one member's outcome (once) and returns or closes its
    /// connection: kept after an ack or a FAIL, closed after anything else.
    fn finish(&self, d: &mut Dest, r: Result<()>) {
        if matches!(d.step, Step::Done(_)) {
            return;
        }
        if let Some(c) = d.conn.take() {
            match &r {
                Ok(()) | Err(Error::RemoteFailure(_)) => self.checkin(&d.pool, c),
                _ => {
                    self.count_refusal(&c);
                    self.discard(&d.pool)
                }
            }
        }
        d.step = Step::Done(self.report(d.addr, r));
    }

    /// Counts a member's failed outcome (and tells membership of an
    /// unreachable one); the error names the member.
    fn report(&self, addr: SocketAddr, r: Result<()>) -> Result<()> {
        match r {
            Err(Error::Timeout) => {
                Stats::add(&self.shared.stats.timeouts, 1);
                Err(Error::Timeout)
            }
            Err(Error::Unreachable(w)) => {
                Stats::add(&self.shared.stats.failures, 1);
                self.shared.unreachable(addr);
                Err(Error::Unreachable(format!("{addr}: {w}")))
            }
            Err(e) => {
                Stats::add(&self.shared.stats.failures, 1);
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    #[inline]
    fn count_sent(&self, payload: &Bytes) {
        Stats::add(&self.shared.stats.msgs_sent, 1);
        Stats::add(
            &self.shared.stats.bytes_sent,
            (payload.len() + HEADER_LEN) as u64,
        );
    }

    /// Closes every pooled connection.
    pub fn close_all(&self) {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        for p in pools.values() {
            while p.idle.pop().is_some() {
                p.open.fetch_sub(1, Ordering::AcqRel);
            }
            if let Some(m) = p.mux.lock().unwrap_or_else(|e| e.into_inner()).take() {
                m.retire();
            }
        }
    }
}

/// One member waiting for its ack: polls its socket until bytes arrive
/// (a failure is kept for the next step) or `until`, reading the clock
/// only every few polls — the generic loop of `drive` would read it twice
/// and walk every step per poll, which delays seeing the ack.
fn spin_for_ack(d: &mut Dest, until: Instant, how: Spin) {
    let Some(c) = d.conn.as_mut().filter(|_| matches!(d.step, Step::Acking)) else {
        return;
    };
    for n in 1u32.. {
        match c.read_some() {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                d.failed = Some(e);
                return;
            }
        }
        if n % 8 == 0 && Instant::now() >= until {
            return;
        }
        how.pause();
    }
}

#[cfg(test)]
mod mux_tests;
#[cfg(test)]
mod tests;
