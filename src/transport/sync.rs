//! `synchronous` and `pooled`: the caller's thread writes the frame on a
//! connection it checks out of the member's pool and, with an ack requested,
//! reads the ack on that same connection. `synchronous` keeps one connection
//! per member; `pooled` up to `maxPoolSocketLimit`, so concurrent callers do
//! not queue behind each other. The fast path (an idle connection in the
//! pool) takes no lock.

use super::Shared;
use crate::error::{Error, Result};
use crate::proto::outbound::{OutboundConn, Reply};
use crate::stats::Stats;
use crate::wire::frame::{ack_ranges, HEADER_LEN};
use bytes::{Bytes, BytesMut};
use crossbeam_queue::ArrayQueue;
use std::collections::HashMap;
use std::io::{self, IoSlice, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// One blocking connection to a member, preface exchanged.
pub struct SyncConn {
    stream: TcpStream,
    rbuf: BytesMut,
    proto: OutboundConn,
    read_timeout: Duration,
    /// Messages sent on this connection.
    pub sent: u64,
    /// How long to poll for a reply before blocking (`idleSpinMicros`, or
    /// zero when other callers already spin on every spare core).
    spin: Duration,
    opened: Instant,
}

impl SyncConn {
    /// Connects, sends our preface and waits for the receiver's.
    ///
    /// # Errors
    /// [`Error::Unreachable`] if the member cannot be reached or refuses us.
    pub fn connect(addr: SocketAddr, shared: &Shared) -> Result<SyncConn> {
        let cfg = &shared.cfg;
        let unreachable = |e: &dyn std::fmt::Display| Error::Unreachable(format!("{addr}: {e}"));
        let mut stream =
            TcpStream::connect_timeout(&addr, cfg.connect_timeout).map_err(|e| unreachable(&e))?;
        stream
            .set_nodelay(cfg.tcp_no_delay)
            .map_err(|e| unreachable(&e))?;
        super::receiver::set_buffers(&stream, cfg);
        stream
            .set_read_timeout(Some(cfg.connect_timeout))
            .map_err(|e| unreachable(&e))?;
        stream
            .write_all(&shared.preface(false).encode())
            .map_err(|e| unreachable(&e))?;
        let mut c = SyncConn {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            proto: OutboundConn::new(cfg.domain.clone()),
            read_timeout: cfg.connect_timeout,
            sent: 0,
            spin: cfg.idle.spin,
            opened: Instant::now(),
        };
        let deadline = Instant::now() + cfg.connect_timeout;
        while !c.proto.is_open() {
            match c.proto.poll(&mut c.rbuf).map_err(|e| unreachable(&e))? {
                Some(Reply::Preface(_)) => break,
                Some(_) => return Err(unreachable(&"unexpected frame before preface")),
                None => c.fill(deadline).map_err(|e| unreachable(&e))?,
            }
        }
        c.set_timeout(cfg.ack_timeout)
            .map_err(|e| unreachable(&e))?;
        Ok(c)
    }

    fn set_timeout(&mut self, t: Duration) -> io::Result<()> {
        let t = t.max(Duration::from_millis(1));
        if t != self.read_timeout {
            self.stream.set_read_timeout(Some(t))?;
            self.read_timeout = t;
        }
        Ok(())
    }

    /// Reads once, honouring `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<()> {
        // Poll briefly before blocking: an ack usually comes back within
        // microseconds, and a thread woken from a blocking read pays the
        // scheduler's wake-up latency (tens of µs on a busy VM).
        if !self.spin.is_zero() {
            let fd = self.stream.as_raw_fd();
            let until = Instant::now() + self.spin;
            loop {
                match crate::driver::sys::try_read_into(fd, &mut self.rbuf, 4096) {
                    Ok(0) => return Err(Error::Unreachable("connection closed by member".into())),
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if Instant::now() >= until {
                            break;
                        }
                        std::hint::spin_loop();
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::Unreachable(e.to_string())),
                }
            }
        }
        loop {
            match crate::driver::sys::read_into(self.stream.as_raw_fd(), &mut self.rbuf, 4096) {
                Ok(0) => return Err(Error::Unreachable("connection closed by member".into())),
                Ok(_) => return Ok(()),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::Timeout);
                    }
                    self.set_timeout(deadline - now)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Unreachable(e.to_string())),
            }
        }
    }

    /// Writes one frame (header + payload) with one `writev`.
    ///
    /// # Errors
    /// [`Error::Unreachable`] on a broken connection.
    pub fn write_frame(&mut self, hdr: &[u8; HEADER_LEN], payload: &[u8]) -> Result<()> {
        let mut iov = [IoSlice::new(hdr), IoSlice::new(payload)];
        crate::driver::sys::writev_all(self.stream.as_raw_fd(), &mut iov)
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        self.sent += 1;
        Ok(())
    }

    /// Waits for the ack (or FAIL) of `id` until `deadline`. Late acks of
    /// earlier messages are skipped.
    ///
    /// # Errors
    /// [`Error::RemoteFailure`], [`Error::Timeout`], [`Error::Unreachable`].
    pub fn wait_ack(&mut self, id: u64, deadline: Instant) -> Result<()> {
        loop {
            while let Some(r) = self
                .proto
                .poll(&mut self.rbuf)
                .map_err(|e| Error::Unreachable(e.to_string()))?
            {
                match r {
                    Reply::Ack(p) if ack_ranges(&p).any(|(f, n)| id >= f && id - f < n as u64) => {
                        return Ok(());
                    }
                    Reply::Fail { id: fid, reason } if fid == id => {
                        return Err(Error::RemoteFailure(reason))
                    }
                    Reply::GoAway(r) => return Err(Error::Unreachable(format!("going away: {r}"))),
                    _ => {}
                }
            }
            self.fill(deadline)?;
        }
    }
}

/// A member's pool of connections.
struct Pool {
    addr: SocketAddr,
    idle: ArrayQueue<SyncConn>,
    open: AtomicUsize,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

/// The synchronous and pooled sender.
pub struct SyncSender {
    shared: Arc<Shared>,
    limit: usize,
    /// Callers waiting for an ack now; only the first `spin_slots` of them
    /// poll their socket, the rest block (more spinners than cores would
    /// take the CPU from the threads that answer them).
    waiting: AtomicUsize,
    spin_slots: usize,
    pools: RwLock<HashMap<SocketAddr, Arc<Pool>>>,
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
            pools: RwLock::new(HashMap::new()),
        }
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
                    idle: ArrayQueue::new(self.limit),
                    open: AtomicUsize::new(0),
                    waiters: AtomicUsize::new(0),
                    lock: Mutex::new(()),
                    cv: Condvar::new(),
                })
            })
            .clone()
    }

    fn checkout(&self, pool: &Pool, deadline: Instant) -> Result<SyncConn> {
        loop {
            if let Some(c) = pool.idle.pop() {
                let ka = &self.shared.cfg;
                let stale = (ka.keep_alive_count > 0 && c.sent >= ka.keep_alive_count)
                    || (!ka.keep_alive_timeout.is_zero()
                        && c.opened.elapsed() > ka.keep_alive_timeout);
                if !stale {
                    return Ok(c);
                }
                self.discard(pool);
                continue;
            }
            let open = pool.open.load(Ordering::Acquire);
            if open < self.limit {
                if pool
                    .open
                    .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    continue;
                }
                return match SyncConn::connect(pool.addr, &self.shared) {
                    Ok(c) => Ok(c),
                    Err(e) => {
                        self.discard(pool);
                        Err(e)
                    }
                };
            }
            // Pool exhausted: wait for a connection to come back.
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            let g = pool.lock.lock().unwrap_or_else(|e| e.into_inner());
            pool.waiters.fetch_add(1, Ordering::SeqCst);
            if pool.idle.is_empty() && pool.open.load(Ordering::SeqCst) >= self.limit {
                let _ = pool
                    .cv
                    .wait_timeout(g, (deadline - now).min(Duration::from_millis(50)));
            }
            pool.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn checkin(&self, pool: &Pool, c: SyncConn) {
        if pool.idle.push(c).is_err() {
            self.discard(pool);
            return;
        }
        self.notify(pool);
    }

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

    /// Sends one frame to one member and, if `ack`, waits for its ack.
    /// Resends on a fresh connection after a connection loss, up to
    /// `maxRetryAttempts`; a timeout is never retried.
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
        let pool = self.pool(to);
        let deadline = Instant::now() + self.shared.cfg.ack_timeout;
        let mut attempt = 0;
        loop {
            let r = self.checkout(&pool, deadline).and_then(|mut c| {
                let r = c.write_frame(hdr, payload).and_then(|()| {
                    self.count_sent(payload);
                    if ack {
                        self.wait_ack(&mut c, id, deadline)
                    } else {
                        Ok(())
                    }
                });
                match &r {
                    Ok(()) | Err(Error::RemoteFailure(_)) => self.checkin(&pool, c),
                    // A timed-out connection may still deliver a late ack;
                    // ids tell it apart, so the connection stays usable.
                    Err(Error::Timeout) => self.checkin(&pool, c),
                    Err(_) => self.discard(&pool),
                }
                r
            });
            match r {
                Ok(()) => {
                    if ack {
                        Stats::add(&self.shared.stats.acks_received, 1);
                    }
                    return Ok(());
                }
                Err(Error::Unreachable(why)) if attempt < self.shared.cfg.max_retry_attempts => {
                    attempt += 1;
                    Stats::add(&self.shared.stats.resends, 1);
                    Stats::add(&self.shared.stats.reconnects, 1);
                    crate::sr_log!(Debug, "resending {id} to {to} after: {why}");
                }
                Err(e) => {
                    match e {
                        Error::Timeout => Stats::add(&self.shared.stats.timeouts, 1),
                        Error::Unreachable(_) => {
                            Stats::add(&self.shared.stats.failures, 1);
                            self.shared.unreachable(to);
                        }
                        _ => Stats::add(&self.shared.stats.failures, 1),
                    }
                    return Err(match e {
                        Error::Unreachable(w) => Error::Unreachable(format!("{to}: {w}")),
                        e => e,
                    });
                }
            }
        }
    }

    /// Sends to several members: writes to all first, then collects acks, so
    /// the members work in parallel. Returns one outcome per member.
    pub fn send_many(
        &self,
        to: &[SocketAddr],
        hdr: &[u8; HEADER_LEN],
        payload: &Bytes,
        id: u64,
        ack: bool,
    ) -> Vec<(SocketAddr, Result<()>)> {
        if to.len() == 1 {
            return vec![(to[0], self.send_one(to[0], hdr, payload, id, ack))];
        }
        let deadline = Instant::now() + self.shared.cfg.ack_timeout;
        let mut held: Vec<(SocketAddr, Arc<Pool>, Result<SyncConn>)> = to
            .iter()
            .map(|&a| {
                let pool = self.pool(a);
                let c = self.checkout(&pool, deadline).and_then(|mut c| {
                    match c.write_frame(hdr, payload) {
                        Ok(()) => {
                            self.count_sent(payload);
                            Ok(c)
                        }
                        Err(e) => {
                            self.discard(&pool);
                            Err(e)
                        }
                    }
                });
                (a, pool, c)
            })
            .collect();
        let mut out = Vec::with_capacity(to.len());
        for (a, pool, c) in held.drain(..) {
            let r = match c {
                Ok(mut c) => {
                    let r = if ack {
                        self.wait_ack(&mut c, id, deadline)
                    } else {
                        Ok(())
                    };
                    match &r {
                        Ok(()) | Err(Error::RemoteFailure(_)) | Err(Error::Timeout) => {
                            self.checkin(&pool, c)
                        }
                        Err(_) => self.discard(&pool),
                    }
                    r
                }
                Err(e) => Err(e),
            };
            // A connection lost mid-way gets the single-member path's retry.
            let r = match r {
                Err(Error::Unreachable(_)) if self.shared.cfg.max_retry_attempts > 0 => {
                    Stats::add(&self.shared.stats.resends, 1);
                    self.send_one(a, hdr, payload, id, ack)
                }
                Ok(()) => {
                    if ack {
                        Stats::add(&self.shared.stats.acks_received, 1);
                    }
                    Ok(())
                }
                Err(e) => {
                    match e {
                        Error::Timeout => Stats::add(&self.shared.stats.timeouts, 1),
                        _ => Stats::add(&self.shared.stats.failures, 1),
                    }
                    Err(e)
                }
            };
            out.push((a, r));
        }
        out
    }

    /// Waits for an ack, polling first if a spin slot is free.
    fn wait_ack(&self, c: &mut SyncConn, id: u64, deadline: Instant) -> Result<()> {
        let n = self.waiting.fetch_add(1, Ordering::Relaxed);
        c.spin = if n < self.spin_slots {
            self.shared.cfg.idle.spin
        } else {
            Duration::ZERO
        };
        let r = c.wait_ack(id, deadline);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        r
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
        }
    }
}
