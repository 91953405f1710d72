//! The completion driver: [`Driver`] over a [`Ring`]. Each token has at
//! most one connect, one send and one receive in flight. A send on a
//! socket with none in flight is written at once with a non-blocking
//! `sendmsg` (see `direct_send`); when the socket is full a one-shot poll
//! waits for room. A frame whose payload reaches [`UringTuning::zc_min`]
//! goes alone as `SENDMSG_ZC`, gathered with its header (headers copied,
//! payloads shared) and held until the notification. With a provided-buffer
//! ring, receives are multishot and hand out zero-copy chunks; when the
//! ring runs low they fall back to plain receives into the engine's buffer,
//! so nothing is lost and nothing waits. With [`UringTuning::hot_reads`]
//! (a busy-polling engine) receives are plain and the hot connection's is
//! read directly while the engine spins.

use super::{recv_filled, BufRing, Completion, Gather, Op, OpId, Ring, RingWaker};
use crate::driver::contract::{Driver, Ended, Event, Frame, SockOpts, Token};
use crate::driver::{sys, TokenMap};
use bytes::BytesMut;
use socket2::Socket;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// Payloads up to this size are copied into the send's own buffer rather
/// than shared by reference count.
const COPY_MAX: usize = 4 * 1024;
/// Most payload bytes one send copies (the rest of its frames are shared):
/// bounds what a pooled send buffer keeps.
const COPY_BUDGET: usize = 256 * 1024;

/// The accept's tag (`u64::MAX` and `u64::MAX - 1` are the ring's own).
const ACCEPT_TAG: u64 = u64::MAX - 2;

/// Tuning of the io_uring driver.
#[derive(Debug, Clone, Copy)]
pub struct UringTuning {
    /// Payloads of at least this many bytes go as `SENDMSG_ZC`.
    /// `usize::MAX` disables zero-copy sends.
    pub zc_min: usize,
    /// Use zero-copy sends to loopback addresses too.
    pub zc_loopback: bool,
    /// The engine busy-polls (`idleSpinMicros` > 0): receives are plain,
    /// not multishot, and the one waiting on the connection served last
    /// (the hot one) is read with a direct `recv` on each zero-timeout
    /// poll, as the mio driver reads its hot socket: no poll wake-up, task
    /// work or `io_uring_enter` between the bytes and the engine. The
    /// ring still watches every other connection, and the hot one too
    /// once the engine sleeps. Measured with `bench --io uring` against
    /// multishot receives: S2 (1 KiB ping-pong) p50 1.20-1.23x of the
    /// floor before, 1.10-1.16x after; S4 (100 KiB) 0.74-0.89x of the
    /// floor's rate before, 0.94-0.95x after; S1 unchanged within noise.
    pub hot_reads: bool,
}

impl Default for UringTuning {
    /// 32 KiB, not on loopback. Measured with `examples/zc_threshold.rs`
    /// (see docs/IO_URING.md): on loopback the kernel copies zero-copy
    /// sends anyway, and they ran at 0.4-0.6x plain `sendmsg` from 16 KiB
    /// to 256 KiB. Off loopback the published break-even is about 3 KB
    /// per send; a zero-copy frame here goes alone (it leaves the gathered
    /// batch), so the threshold sits well above that.
    fn default() -> Self {
        UringTuning {
            zc_min: 32 * 1024,
            zc_loopback: false,
            hot_reads: false,
        }
    }
}

/// Provided buffers for multishot receives.
pub struct Provided {
    /// The ring of buffers.
    pub bufs: BufRing,
    /// Below this many free buffers, receives are plain ones.
    pub low_water: usize,
    /// Buffers the ring holds when full.
    pub ring_buffers: usize,
    /// Bytes the pool may allocate in all.
    pub pool_bytes: usize,
}

struct Slot {
    sock: Socket,
    loopback: bool,
    connect: Option<OpId>,
    send: Option<OpId>,
    recv: Option<OpId>,
    /// The receive in flight is multishot.
    multishot: bool,
    /// A stop was asked for the multishot receive in flight.
    stopping: bool,
    /// A plain receive waiting with no operation submitted: read directly
    /// while the engine spins, submitted before it sleeps. Only the hot
    /// token has one.
    parked: Option<(BytesMut, usize)>,
    /// The last direct read left room in its buffer (it emptied the
    /// socket): the next receive parks without reading again.
    drained: bool,
}

impl Slot {
    fn new(sock: Socket, loopback: bool, connect: Option<OpId>) -> Slot {
        Slot {
            sock,
            loopback,
            connect,
            send: None,
            recv: None,
            multishot: false,
            stopping: false,
            parked: None,
            drained: false,
        }
    }
}

/// The io_uring driver.
pub struct UringDriver {
    // Declared first: dropped (drained) before the buffers it may fill.
    ring: Ring,
    provided: Option<Provided>,
    waker: Arc<RingWaker>,
    tuning: UringTuning,
    listener: Option<Socket>,
    accept: Option<OpId>,
    slots: TokenMap<Slot>,
    done: Vec<Completion>,
    /// Gather buffers back from finished sends, for reuse (boxed: a
    /// submitted op points the kernel at the `msghdr` inside the box).
    #[allow(clippy::vec_box)]
    gathers: Vec<Box<Gather>>,
    stopping: bool,
    /// The token whose plain receive is parked (see [`Slot::parked`]).
    hot: Option<Token>,
    /// Receives that failed to submit when they left the hot slot,
    /// reported by the next poll.
    failed: Vec<Event>,
}

impl crate::queue::Wake for RingWaker {
    fn wake(&self) {
        self.wake_now();
    }
}

impl UringDriver {
    /// A driver over a new ring of `entries` slots; create it on the
    /// thread that uses it (the ring has one issuer).
    ///
    /// # Errors
    /// Ring creation failures (io_uring missing or forbidden).
    pub fn new(entries: u32, tuning: UringTuning) -> io::Result<UringDriver> {
        let ring = Ring::new(entries)?;
        let waker = ring.waker();
        Ok(UringDriver {
            ring,
            provided: None,
            waker,
            tuning,
            listener: None,
            accept: None,
            slots: TokenMap::default(),
            done: Vec::new(),
            gathers: Vec::new(),
            stopping: false,
            hot: None,
            failed: Vec::new(),
        })
    }

    /// The ring, to register a provided-buffer ring on.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Receives go multishot into `p`'s buffers.
    pub fn provide(&mut self, p: Provided) {
        self.provided = Some(p);
    }

    fn slot(&mut self, token: Token) -> io::Result<&mut Slot> {
        self.slots
            .get_mut(&token)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no such socket"))
    }

    fn arm_accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let fd = l.as_raw_fd();
        match self.ring.push(Op::AcceptMulti { fd }, ACCEPT_TAG) {
            Ok(id) => self.accept = Some(id),
            Err(e) => crate::sr_log!(Error, "cannot arm accept: {e}"),
        }
    }

    /// Gives back a provided buffer a completion consumed, and a finished
    /// send's gather buffer for reuse.
    fn recycle(&mut self, c: &Completion, op: Option<Op>) {
        if let (Some(bid), Some(p)) = (c.buffer(), self.provided.as_mut()) {
            drop(p.bufs.filled(bid, c.res.max(0) as usize, c.flags));
        }
        if let Some(Op::SendMsg { mut batch, .. }) = op {
            batch.clear();
            if self.gathers.len() < 64 {
                self.gathers.push(batch);
            }
        }
    }

    fn on_accept(&mut self, c: Completion, out: &mut Vec<Event>) {
        if !c.more() {
            self.accept = None;
        }
        if c.res >= 0 {
            let sock = Socket::from(super::owned_fd(c.res));
            if let Some(peer) = sock.peer_addr().ok().and_then(|a| a.as_socket()) {
                out.push(Event::Accepted { sock, peer });
            }
        } else if c.res != -libc::ECANCELED {
            let e = io::Error::from_raw_os_error(-c.res);
            crate::sr_log!(Warn, "accept failed: {e}");
        }
        if self.accept.is_none() && !self.stopping {
            self.arm_accept();
        }
    }

    fn on_completion(&mut self, mut c: Completion, out: &mut Vec<Event>) {
        if c.notif() || c.orphan {
            // A zero-copy send done with its buffers, or a cancelled
            // receive that consumed a provided buffer.
            let op = c.op.take();
            self.recycle(&c, op);
            return;
        }
        if c.tag == ACCEPT_TAG {
            return self.on_accept(c, out);
        }
        let token = c.tag as usize;
        let Some(s) = self.slots.get_mut(&token) else {
            let op = c.op.take();
            return self.recycle(&c, op);
        };
        let err = || io::Error::from_raw_os_error(-c.res);
        if s.connect == Some(c.id) {
            s.connect = None;
            let res = if c.res < 0 { Err(err()) } else { Ok(()) };
            let res = sys::check_connected((&s.sock).into(), res);
            out.push(Event::Connected { token, res });
        } else if s.send == Some(c.id) {
            s.send = None;
            let res = if c.res < 0 {
                Err(err())
            } else if matches!(c.op, Some(Op::PollOut { .. })) {
                // Room again after a direct write found the socket full:
                // nothing was written, the engine writes anew.
                Ok(0)
            } else {
                Ok(c.res as usize)
            };
            out.push(Event::Sent { token, res });
            let op = c.op.take();
            self.recycle(&c, op);
        } else if s.recv == Some(c.id) {
            if let Some(op @ Op::Recv { .. }) = c.op.take() {
                s.recv = None;
                let buf = recv_filled(op, c.res).unwrap_or_default();
                let res = if c.res < 0 {
                    Err(err())
                } else {
                    Ok(c.res as usize)
                };
                if c.res > 0 {
                    s.drained = buf.len() < buf.capacity();
                }
                out.push(Event::Received { token, res, buf });
            } else {
                self.on_multi(token, c, out);
            }
        } else {
            // A late completion of an operation already replaced.
            let op = c.op.take();
            self.recycle(&c, op);
        }
    }

    fn on_multi(&mut self, token: Token, c: Completion, out: &mut Vec<Event>) {
        let Some(s) = self.slots.get_mut(&token) else {
            return;
        };
        let last = !c.more();
        if last {
            s.recv = None;
        }
        let stopping = s.stopping;
        let how = if c.res > 0 {
            let filled = c.buffer().and_then(|bid| {
                self.provided
                    .as_mut()?
                    .bufs
                    .filled(bid, c.res as usize, c.flags)
            });
            match filled {
                Some(f) => {
                    out.push(Event::Chunk {
                        token,
                        data: f.chunk,
                        buffer: f.buffer,
                    });
                    Ended::Rearm
                }
                None => Ended::Failed(io::Error::other("receive without a provided buffer")),
            }
        } else if c.res == 0 {
            Ended::Eof
        } else if c.res == -libc::ENOBUFS || (c.res == -libc::ECANCELED && stopping) {
            Ended::Rearm
        } else {
            Ended::Failed(io::Error::from_raw_os_error(-c.res))
        };
        if last || !matches!(how, Ended::Rearm) {
            out.push(Event::RecvEnded { token, how });
        }
    }
}

/// A send on a socket with no send in flight goes at once as one
/// `MSG_DONTWAIT` gathered `sendmsg` (the socket itself stays blocking for
/// the ring's operations): the same system call a submission would make,
/// issued now. The kernel copies the bytes before it returns, so no header
/// is copied, no payload's reference count is touched and no completion
/// follows. It takes the control bytes and the frames up to the first one
/// that should go zero-copy; `None` when there is nothing to take (the
/// zero-copy path goes on). `WouldBlock`: nothing was written.
fn direct_send<'a, I: Iterator<Item = Frame<'a>>>(
    s: &Slot,
    ctl: &[u8],
    frames: &mut std::iter::Peekable<I>,
    zc_min: usize,
) -> Option<io::Result<usize>> {
    let mut iov = [sys::EMPTY_IOVEC; sys::IOV_MAX];
    let (n, k) = sys::gather_frames(ctl, frames, &mut iov, |f| f.body.len() >= zc_min);
    if n == 0 {
        return if k > 0 { Some(Ok(0)) } else { None };
    }
    loop {
        match sys::writev_iovecs_nonblocking(s.sock.as_raw_fd(), &iov[..n]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return Some(r),
        }
    }
}

impl Driver for UringDriver {
    type Waker = RingWaker;

    fn waker(&self) -> Arc<RingWaker> {
        self.waker.clone()
    }

    fn listen(&mut self, sock: Socket) -> io::Result<()> {
        self.listener = Some(sock);
        self.arm_accept();
        if self.accept.is_none() {
            return Err(io::Error::other("cannot arm accept"));
        }
        Ok(())
    }

    fn register(&mut self, token: Token, sock: Socket) -> io::Result<()> {
        let loopback = sock
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.ip().is_loopback());
        if self
            .slots
            .insert(token, Slot::new(sock, loopback, None))
            .is_some()
        {
            return Err(io::Error::other("token in use"));
        }
        Ok(())
    }

    fn connect(&mut self, token: Token, addr: SocketAddr, opts: &SockOpts) -> io::Result<()> {
        let sock = Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        opts.apply(&sock);
        let op = Op::Connect {
            fd: sock.as_raw_fd(),
            addr: Box::new(addr.into()),
        };
        let id = self.ring.push(op, token as u64)?;
        let slot = Slot::new(sock, addr.ip().is_loopback(), Some(id));
        if let Some(old) = self.slots.insert(token, slot) {
            self.release(old);
        }
        Ok(())
    }

    fn recv(&mut self, token: Token, buf: &mut BytesMut, want: usize) -> io::Result<Option<usize>> {
        if !self.tuning.hot_reads {
            self.submit_recv(token, std::mem::take(buf), want)?;
            return Ok(None);
        }
        let s = self.slot(token)?;
        if !std::mem::take(&mut s.drained) {
            if let Some(r) = direct_read(s, buf, want) {
                return r.map(Some);
            }
        }
        buf.reserve(want);
        s.parked = Some((std::mem::take(buf), want));
        if let Some(prev) = self.hot.replace(token) {
            if prev != token {
                // One parked receive at a time: the one served last.
                self.unpark(prev);
            }
        }
        Ok(None)
    }

    fn recv_multi(&mut self, token: Token) -> io::Result<bool> {
        if self.tuning.hot_reads {
            return Ok(false);
        }
        let Some(p) = self.provided.as_mut() else {
            return Ok(false);
        };
        if p.bufs.provided() < p.ring_buffers {
            p.bufs.replenish();
        }
        if p.bufs.provided() < p.low_water {
            return Ok(false);
        }
        let group = p.bufs.group();
        let s = self.slot(token)?;
        let fd = s.sock.as_raw_fd();
        let id = self.ring.push(Op::RecvMulti { fd, group }, token as u64)?;
        let s = self.slot(token)?;
        s.recv = Some(id);
        s.multishot = true;
        s.stopping = false;
        Ok(true)
    }

    fn stop_multi(&mut self, token: Token) {
        if let Some(s) = self.slots.get_mut(&token) {
            if let (Some(id), true, false) = (s.recv, s.multishot, s.stopping) {
                self.ring.stop(id);
                s.stopping = true;
            }
        }
    }

    fn send<'a>(
        &mut self,
        token: Token,
        ctl: &[u8],
        frames: impl Iterator<Item = Frame<'a>>,
    ) -> io::Result<Option<usize>> {
        let zc_default = self.tuning.zc_min;
        let zc_loopback = self.tuning.zc_loopback;
        let mut frames = frames.peekable();
        let s = self.slot(token)?;
        let zc_min = if s.loopback && !zc_loopback {
            usize::MAX
        } else {
            zc_default
        };
        if s.send.is_none() {
            if let Some(r) = direct_send(s, ctl, &mut frames, zc_min) {
                return match r {
                    Ok(n) => Ok(Some(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Full: wait for room, then the engine writes anew.
                        let fd = s.sock.as_raw_fd();
                        let id = self.ring.push(Op::PollOut { fd }, token as u64)?;
                        self.slot(token)?.send = Some(id);
                        Ok(None)
                    }
                    Err(e) => Err(e),
                };
            }
        }
        let mut g = self.gathers.pop().unwrap_or_default();
        let s = self.slot(token)?;
        let fd = s.sock.as_raw_fd();
        g.push_copy(ctl);
        let mut zc = false;
        for (k, f) in frames.take(crate::driver::FRAMES_PER_SEND).enumerate() {
            let big = f.body.len() >= zc_min;
            if big && k > 0 {
                // A large frame goes alone, zero-copy, next time.
                break;
            }
            g.push_copy(f.head);
            let rest = f.body.len().saturating_sub(f.skip);
            if rest <= COPY_MAX && g.copied_len() + rest <= COPY_BUDGET {
                // Small payloads are copied next to their headers: one
                // iovec for the run, and no reference count touched (a
                // payload's count is often shared with the producer).
                g.push_copy(f.body.get(f.skip..).unwrap_or_default());
            } else if f.skip == 0 {
                g.push_shared(f.body.clone());
            } else {
                g.push_shared(f.body.slice(f.skip..));
            }
            if big {
                zc = true;
                break;
            }
        }
        if g.is_empty() {
            self.gathers.push(g);
            return Ok(Some(0));
        }
        let id = self
            .ring
            .push(Op::SendMsg { fd, batch: g, zc }, token as u64)?;
        self.slot(token)?.send = Some(id);
        Ok(None)
    }

    fn close(&mut self, token: Token, last: &[u8]) {
        if self.hot == Some(token) {
            self.hot = None;
        }
        if let Some(s) = self.slots.remove(&token) {
            if !last.is_empty() {
                let _ = s
                    .sock
                    .send_with_flags(last, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
            }
            if s.send.is_some() {
                // A send still queued (the acks of a peer's last frames)
                // is issued before the cancel and shutdown below.
                let _ = self.ring.submit();
            }
            self.release(s);
        }
    }

    fn poll(&mut self, timeout: Duration, out: &mut Vec<Event>) -> io::Result<()> {
        out.append(&mut self.failed);
        if let Some(t) = self.hot {
            if timeout.is_zero() {
                self.read_parked(t, out);
            } else {
                // About to sleep: the ring watches the parked receive.
                self.unpark(t);
                out.append(&mut self.failed);
            }
        }
        let r = if timeout.is_zero() {
            self.ring.submit()
        } else {
            self.ring.wait(timeout)
        };
        let mut done = std::mem::take(&mut self.done);
        self.ring.reap(&mut done);
        for c in done.drain(..) {
            self.on_completion(c, out);
        }
        self.done = done;
        r
    }

    fn pool_bytes(&self) -> usize {
        self.provided.as_ref().map_or(0, |p| p.pool_bytes)
    }

    fn shutdown(&mut self) {
        self.stopping = true;
        let tokens: Vec<Token> = self.slots.keys().copied().collect();
        for t in tokens {
            self.close(t, &[]);
        }
        if let Some(a) = self.accept.take() {
            self.ring.cancel(a);
        }
        if !self.ring.drain(Duration::from_secs(5)) {
            crate::sr_log!(Error, "io_uring driver did not drain");
        }
    }
}

impl UringDriver {
    /// Cancels a socket's operations and closes it; their buffers stay
    /// parked in the ring until the last completions.
    fn release(&mut self, s: Slot) {
        for id in [s.connect, s.send, s.recv].into_iter().flatten() {
            self.ring.cancel(id);
        }
        let _ = s.sock.shutdown(std::net::Shutdown::Both);
    }

    /// Submits a plain receive into `buf`.
    fn submit_recv(&mut self, token: Token, mut buf: BytesMut, want: usize) -> io::Result<()> {
        let s = self.slot(token)?;
        let fd = s.sock.as_raw_fd();
        buf.reserve(want);
        let id = self
            .ring
            .push(Op::Recv { fd, buf, max: want }, token as u64)?;
        let s = self.slot(token)?;
        s.recv = Some(id);
        s.multishot = false;
        Ok(())
    }

    /// Busy-poll step: reads the hot token's parked receive directly.
    fn read_parked(&mut self, token: Token, out: &mut Vec<Event>) {
        let Some(s) = self.slots.get_mut(&token) else {
            self.hot = None;
            return;
        };
        let Some((mut buf, want)) = s.parked.take() else {
            return;
        };
        match direct_read(s, &mut buf, want) {
            None => s.parked = Some((buf, want)),
            Some(res) => out.push(Event::Received { token, res, buf }),
        }
    }

    /// Hands `token`'s parked receive to the ring; it is no longer hot. A
    /// submission that fails is reported as that receive's failure.
    fn unpark(&mut self, token: Token) {
        if self.hot == Some(token) {
            self.hot = None;
        }
        let Some((buf, want)) = self.slots.get_mut(&token).and_then(|s| s.parked.take()) else {
            return;
        };
        if let Err(e) = self.submit_recv(token, buf, want) {
            self.failed.push(Event::Received {
                token,
                res: Err(e),
                buf: BytesMut::new(),
            });
        }
    }
}

/// One non-blocking read into `buf`; `None` when the socket has nothing
/// yet. Notes whether the read emptied the socket.
fn direct_read(s: &mut Slot, buf: &mut BytesMut, want: usize) -> Option<io::Result<usize>> {
    let r = sys::read_now(s.sock.as_raw_fd(), buf, want).transpose()?;
    if let Ok(n) = r {
        s.drained = n > 0 && buf.len() < buf.capacity();
    }
    Some(r)
}

#[cfg(test)]
#[path = "hot_tests.rs"]
mod hot_tests;
