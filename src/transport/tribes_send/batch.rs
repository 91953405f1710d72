//! One Tribes message to several members at once, on non-blocking sockets:
//! each member's part (connect, write, wait for the 21-byte ACK) steps as
//! far as its socket allows, and one `poll` over all of them waits for the
//! next step, so the whole send ends by one deadline (`ackTimeout` from the
//! call) however many members stall, and a stalled member never delays
//! another.

use super::super::not_now;
use super::TribesSender;
use crate::config::AckMode;
use crate::error::{Error, Result};
use crate::stats::Stats;
use crate::wire::tribes;
use bytes::Bytes;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::io::{self, IoSlice, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Where one member's part stands.
enum Step {
    /// Needs a connection (an idle one, or a new one).
    Checkout,
    /// Connecting; fails as unreachable at `connect_by`.
    Connecting(Instant),
    /// Writing the frame; `usize` bytes are out.
    Writing(usize),
    /// Frame written; `usize` bytes of the ack are in.
    Acking(usize),
    /// Outcome known; the connection is back in the pool or closed.
    Done(Result<()>),
}

/// One member's part of a send.
struct Part {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    step: Step,
    /// Connection losses so far (resent up to `maxRetryAttempts`).
    attempt: u32,
    ack: [u8; tribes::ACK_FRAME.len()],
    /// What its socket waits for after the last step (`POLLIN`/`POLLOUT`).
    waits: i16,
}

/// A message on its way to several Tribes members: made by
/// [`TribesSender::start`] (which takes every member as far as it goes
/// without blocking) and ended by [`TribesSender::finish`].
pub(crate) struct TribesBatch {
    head: Bytes,
    body: Bytes,
    ack: AckMode,
    deadline: Instant,
    parts: Vec<Part>,
}

impl TribesBatch {
    fn len(&self) -> usize {
        self.head.len() + self.body.len() + tribes::END_DATA.len()
    }

    /// True if a part can progress only if it is driven: its connect is in
    /// progress or its frame is partly written. Parts that wait for an ack
    /// need no driving (the ack waits in the socket until `finish` reads
    /// it).
    fn needs_driving(&self) -> bool {
        self.parts
            .iter()
            .any(|p| !matches!(p.step, Step::Acking(_) | Step::Done(_)))
    }
}

/// The error of a broken connection.
fn broken(to: SocketAddr, e: impl std::fmt::Display) -> Error {
    Error::Unreachable(format!("{to}: {e}"))
}

impl TribesSender {
    /// Starts sending one frame (`head`, `body`, END_DATA) to each of `to`
    /// and, with an ack, waiting for each ack, all by `deadline`: every
    /// member is taken as far as its socket allows now, without blocking.
    /// End it with [`TribesSender::finish`].
    pub(crate) fn start(
        &self,
        to: &[SocketAddr],
        head: Bytes,
        body: Bytes,
        ack: AckMode,
        deadline: Instant,
    ) -> TribesBatch {
        let mut b = TribesBatch {
            head,
            body,
            ack,
            deadline,
            parts: to
                .iter()
                .map(|&addr| Part {
                    addr,
                    conn: None,
                    step: Step::Checkout,
                    attempt: 0,
                    ack: [0; tribes::ACK_FRAME.len()],
                    waits: 0,
                })
                .collect(),
        };
        self.advance_all(&mut b);
        b
    }

    /// Drives `b` until every member has its outcome or the deadline
    /// passes (those left end as [`Error::Timeout`], their connections
    /// closed); returns one outcome per member, in the order given.
    pub(crate) fn finish(&self, mut b: TribesBatch) -> Vec<(SocketAddr, Result<()>)> {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        loop {
            let waiting = self.advance_all(&mut b);
            if waiting == 0 {
                break;
            }
            let left = b.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                for p in &mut b.parts {
                    self.end(p, Err(Error::Timeout));
                }
                break;
            }
            fds.clear();
            fds.extend(b.parts.iter().filter(|p| p.waits != 0).filter_map(|p| {
                Some(libc::pollfd {
                    fd: p.conn.as_ref()?.as_raw_fd(),
                    events: p.waits,
                    revents: 0,
                })
            }));
            // A connect's own deadline (`connectTimeout`) may come first.
            let wake = b
                .parts
                .iter()
                .filter_map(|p| match p.step {
                    Step::Connecting(by) => Some(by),
                    _ => None,
                })
                .min()
                .map_or(left, |by| {
                    by.saturating_duration_since(Instant::now()).min(left)
                });
            if let Err(e) = crate::driver::sys::poll(&mut fds, wake) {
                for p in &mut b.parts {
                    self.end(p, Err(Error::Unreachable(format!("poll: {e}"))));
                }
                break;
            }
        }
        b.parts
            .into_iter()
            .map(|p| match p.step {
                Step::Done(r) => (p.addr, r),
                _ => (p.addr, Err(Error::Timeout)),
            })
            .collect()
    }

    /// Finishes `b` (as [`TribesSender::finish`]) while `other` runs on
    /// this thread, so both progress by the same deadline: a synchronous
    /// send's native part blocks its caller, and a Tribes part with a
    /// connect in progress or a frame larger than its socket takes at once
    /// would otherwise move on only after it. Such a part is driven on a
    /// helper thread for this call alone (one at most per caller; not one
    /// per member); a batch that only waits for acks needs none.
    pub(crate) fn finish_alongside<R>(
        &self,
        b: TribesBatch,
        other: impl FnOnce() -> R,
    ) -> (R, Vec<(SocketAddr, Result<()>)>) {
        if !b.needs_driving() {
            let r = other();
            return (r, self.finish(b));
        }
        let slot = std::sync::Mutex::new(Some(b));
        let take = || slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        std::thread::scope(|s| {
            let helper = std::thread::Builder::new()
                .name("sr-tribes-send".into())
                .spawn_scoped(s, || take().map(|b| self.finish(b)));
            let r = other();
            let done = match helper {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                // No thread to be had: it goes on after `other`, as before.
                Err(_) => None,
            };
            let done = done.or_else(|| take().map(|b| self.finish(b)));
            (r, done.expect("the batch is finished exactly once"))
        })
    }

    /// Advances every part; returns how many wait on their socket.
    fn advance_all(&self, b: &mut TribesBatch) -> usize {
        let now = Instant::now();
        let mut waiting = 0;
        for i in 0..b.parts.len() {
            let w = self.advance(b, i, now);
            b.parts[i].waits = w;
            waiting += usize::from(w != 0 || matches!(b.parts[i].step, Step::Connecting(_)));
        }
        waiting
    }

    /// Takes part `i` as far as it goes without blocking; returns the poll
    /// events it waits for (0: none, its outcome is known or it waits for
    /// its connect deadline only).
    fn advance(&self, b: &mut TribesBatch, i: usize, now: Instant) -> i16 {
        let total = b.len();
        loop {
            let p = &mut b.parts[i];
            let to = p.addr;
            let r: Result<Option<i16>> = match p.step {
                Step::Done(_) => return 0,
                Step::Checkout => match self.pooled(to) {
                    Some(s) => {
                        p.conn = Some(s);
                        p.step = Step::Writing(0);
                        Ok(None)
                    }
                    None => match connect(to, self.shared.cfg.tcp_no_delay) {
                        Ok((s, done)) => {
                            p.conn = Some(s);
                            p.step = if done {
                                Step::Writing(0)
                            } else {
                                Step::Connecting(now + self.shared.cfg.connect_timeout)
                            };
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    },
                },
                Step::Connecting(by) => {
                    let s = p.conn.as_ref().expect("connecting holds a socket");
                    match connected(to, s) {
                        Ok(true) => {
                            p.step = Step::Writing(0);
                            Ok(None)
                        }
                        Ok(false) if now >= by => Err(broken(
                            to,
                            format!(
                                "no connection within connectTimeout ({:?})",
                                self.shared.cfg.connect_timeout
                            ),
                        )),
                        Ok(false) => Ok(Some(libc::POLLOUT)),
                        Err(e) => Err(e),
                    }
                }
                Step::Writing(off) => {
                    let s = p.conn.as_ref().expect("writing holds a socket");
                    match write_from(s, [&b.head, &b.body, &tribes::END_DATA[..]], off) {
                        Ok(n) if n == total => {
                            Stats::add(&self.shared.stats.msgs_sent, 1);
                            Stats::add(&self.shared.stats.bytes_sent, total as u64);
                            if b.ack == AckMode::None {
                                self.end(p, Ok(()));
                                return 0;
                            }
                            p.step = Step::Acking(0);
                            Ok(None)
                        }
                        Ok(n) => {
                            p.step = Step::Writing(n);
                            Ok(Some(libc::POLLOUT))
                        }
                        Err(e) => Err(broken(to, e)),
                    }
                }
                Step::Acking(got) => {
                    let Part { conn, ack, .. } = p;
                    let s = conn.as_mut().expect("acking holds a socket");
                    match s.read(&mut ack[got..]) {
                        Ok(0) => Err(broken(to, "closed before the ack")),
                        Ok(n) if got + n < ack.len() => {
                            p.step = Step::Acking(got + n);
                            Ok(None)
                        }
                        Ok(_) => {
                            let r = if *ack == tribes::ACK_FRAME {
                                Stats::add(&self.shared.stats.acks_received, 1);
                                Ok(())
                            } else if *ack == tribes::FAIL_ACK_FRAME {
                                Err(Error::RemoteFailure(
                                    "Tribes member answered FAIL_ACK".into(),
                                ))
                            } else {
                                Err(broken(to, "not a Tribes ack"))
                            };
                            self.end(p, r);
                            return 0;
                        }
                        Err(e) if not_now(&e) => Ok(Some(libc::POLLIN)),
                        Err(e) => Err(broken(to, e)),
                    }
                }
            };
            match r {
                Ok(None) => {}
                Ok(Some(w)) => return w,
                // A lost connection is resent on a new one, while time
                // is left; a timeout never is.
                Err(Error::Unreachable(_))
                    if p.attempt < self.shared.cfg.max_retry_attempts && now < b.deadline =>
                {
                    p.conn = None;
                    p.attempt += 1;
                    p.step = Step::Checkout;
                    Stats::add(&self.shared.stats.resends, 1);
                }
                Err(e) => {
                    self.end(p, Err(e));
                    return 0;
                }
            }
        }
    }

    /// Records a part's outcome (once): its connection goes back to the
    /// pool after an ACK or FAIL_ACK, and is closed after anything else (it
    /// may hold half a frame, or a late ack for a message given up on).
    fn end(&self, p: &mut Part, r: Result<()>) {
        if matches!(p.step, Step::Done(_)) {
            return;
        }
        if let Some(s) = p.conn.take() {
            if matches!(r, Ok(()) | Err(Error::RemoteFailure(_))) {
                self.checkin(p.addr, s);
            }
        }
        p.step = Step::Done(r);
    }
}

/// Starts a non-blocking connect; `true` if it completed at once.
fn connect(to: SocketAddr, nodelay: bool) -> Result<(TcpStream, bool)> {
    let sock = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| broken(to, e))?;
    sock.set_nonblocking(true).map_err(|e| broken(to, e))?;
    let _ = sock.set_nodelay(nodelay);
    let done = match sock.connect(&to.into()) {
        Ok(()) => true,
        Err(e) if not_now(&e) => false,
        Err(e) => return Err(broken(to, e)),
    };
    let s: TcpStream = sock.into();
    if done && crate::driver::sys::connected_to_itself((&s).into()) {
        return Err(broken(to, crate::driver::sys::SELF_CONNECT));
    }
    Ok((s, done))
}

/// True once a non-blocking connect completed; its failure, or a
/// connection to itself, is an error.
fn connected(to: SocketAddr, s: &TcpStream) -> Result<bool> {
    if let Some(e) = s.take_error().map_err(|e| broken(to, e))? {
        return Err(broken(to, e));
    }
    match s.peer_addr() {
        Ok(_) if crate::driver::sys::connected_to_itself(s.into()) => {
            Err(broken(to, crate::driver::sys::SELF_CONNECT))
        }
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
        Err(e) => Err(broken(to, e)),
    }
}

/// Writes what the socket takes now of `parts` from byte `off` (no
/// SIGPIPE, never blocks); returns the new offset.
fn write_from(s: &TcpStream, parts: [&[u8]; 3], mut off: usize) -> io::Result<usize> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    while off < total {
        let (mut skip, mut n) = (off, 0);
        let mut iov = [IoSlice::new(&[]); 3];
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
            } else {
                iov[n] = IoSlice::new(&p[skip..]);
                n += 1;
                skip = 0;
            }
        }
        match SockRef::from(s)
            .send_vectored_with_flags(&iov[..n], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(off),
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}
