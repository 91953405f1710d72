//! One connection to a member and the steps of one send on it. No step
//! blocks: each goes as far as the socket allows (`MSG_DONTWAIT`) and says
//! what it waits for, so one caller can drive several members at once and
//! stop at its deadline whatever the peers do. The socket itself is left
//! blocking once connected, so a caller waiting on a single member can
//! sleep in one `read` bounded by `SO_RCVTIMEO` ([`SyncConn::read_by`])
//! instead of `poll` + `recv`.

use super::super::{not_now, Shared};
use crate::error::{Error, Result};
use crate::proto::outbound::{OutboundConn, Reply};
use crate::proto::secure::SecureStream;
use crate::wire::frame::{ack_ranges, HEADER_LEN};
use bytes::BytesMut;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// What a step is waiting for before it can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// The socket to become readable (preface or ack).
    In,
    /// The socket to become writable (connect, or a full send buffer).
    Out,
}

/// How far a connection is in its opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// TCP connect in progress.
    Connecting,
    /// Secure mode: the handshake runs (its messages written, the answer
    /// awaited) before the preface.
    Securing,
    /// Sending our preface; `usize` bytes of it are written.
    SendingPreface(usize),
    /// Waiting for the receiver's preface.
    AwaitingPreface,
    /// Preface exchanged.
    Open,
}

/// One connection to a member, owned by one caller at a time.
pub(super) struct SyncConn {
    stream: TcpStream,
    rbuf: BytesMut,
    proto: OutboundConn,
    opening: Opening,
    preface: Vec<u8>,
    /// `SO_RCVTIMEO` as last set (zero: not set).
    rcv_timeout: Duration,
    /// Messages sent on this connection.
    pub(super) sent: u64,
    pub(super) opened: Instant,
    /// Secure mode: the filter, and the ciphertext read but not opened.
    secure: Option<Box<SecureStream>>,
    raw: BytesMut,
    /// The member failed or dropped the secure handshake.
    refused: bool,
}

fn closed() -> Error {
    Error::Unreachable("connection closed by member".into())
}

fn broken(e: impl std::fmt::Display) -> Error {
    Error::Unreachable(e.to_string())
}

impl SyncConn {
    /// Starts a non-blocking connect to `addr`; the opening continues in
    /// [`SyncConn::open`].
    ///
    /// # Errors
    /// [`Error::Unreachable`] if the connect fails at once.
    pub(super) fn start(addr: SocketAddr, shared: &Shared) -> Result<SyncConn> {
        let cfg = &shared.cfg;
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(broken)?;
        sock.set_nonblocking(true).map_err(broken)?;
        sock.set_nodelay(cfg.tcp_no_delay).map_err(broken)?;
        super::super::engine::set_buffers(&sock, cfg);
        let secure = match &shared.secure {
            Some(ctx) => Some(Box::new(
                SecureStream::connect(ctx, addr.ip())
                    .map_err(|e| broken(format!("secure session: {e}")))?,
            )),
            None => None,
        };
        let opening = match sock.connect(&addr.into()) {
            Ok(()) if crate::driver::sys::connected_to_itself(socket2::SockRef::from(&sock)) => {
                return Err(broken(crate::driver::sys::SELF_CONNECT))
            }
            Ok(()) => {
                sock.set_nonblocking(false).map_err(broken)?;
                Opening::Securing
            }
            Err(e) if not_now(&e) => Opening::Connecting,
            Err(e) => return Err(broken(e)),
        };
        Ok(SyncConn {
            stream: sock.into(),
            rbuf: BytesMut::with_capacity(4096),
            proto: OutboundConn::new(cfg.domain.clone()),
            opening,
            preface: shared.preface(false).encode().to_vec(),
            rcv_timeout: Duration::ZERO,
            sent: 0,
            opened: Instant::now(),
            secure,
            raw: BytesMut::new(),
            refused: false,
        })
    }

    /// True if the member failed or dropped the secure handshake (count it
    /// as a refusal).
    pub(super) fn refused(&self) -> bool {
        self.refused
    }

    /// The socket, for `poll`.
    pub(super) fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// True once the preface exchange is complete.
    pub(super) fn is_open(&self) -> bool {
        self.opening == Opening::Open
    }

    /// Advances the opening as far as the socket allows. `Ok(None)` once
    /// open.
    ///
    /// # Errors
    /// [`Error::Unreachable`]: refused, reset, or a bad preface.
    pub(super) fn open(&mut self) -> Result<Option<Wait>> {
        loop {
            match self.opening {
                Opening::Open => return Ok(None),
                Opening::Connecting => {
                    // Connected once the peer address is known; a failed
                    // connect leaves its reason in SO_ERROR.
                    if let Some(e) = self.stream.take_error().map_err(broken)? {
                        return Err(broken(e));
                    }
                    match self.stream.peer_addr() {
                        Ok(_) if crate::driver::sys::connected_to_itself((&self.stream).into()) => {
                            return Err(broken(crate::driver::sys::SELF_CONNECT))
                        }
                        Ok(_) => {
                            self.stream.set_nonblocking(false).map_err(broken)?;
                            self.opening = Opening::Securing;
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                            return Ok(Some(Wait::Out))
                        }
                        Err(e) => return Err(broken(e)),
                    }
                }
                Opening::Securing => {
                    let Some(s) = self.secure.as_deref() else {
                        self.opening = Opening::SendingPreface(0);
                        continue;
                    };
                    if !s.pending().is_empty() {
                        if !self.flush_secure()? {
                            return Ok(Some(Wait::Out));
                        }
                    } else if s.is_established() {
                        self.opening = Opening::SendingPreface(0);
                    } else {
                        match self.read_some() {
                            Ok(true) => {}
                            Ok(false) => return Ok(Some(Wait::In)),
                            Err(e) => {
                                self.refused = true;
                                return Err(e);
                            }
                        }
                    }
                }
                Opening::SendingPreface(off) if self.secure.is_some() => {
                    // secure hook: the preface is sealed once, then written
                    if off == 0 {
                        self.seal(&[&self.preface.clone()])?;
                    }
                    self.opening = if self.flush_secure()? {
                        Opening::AwaitingPreface
                    } else {
                        Opening::SendingPreface(1)
                    };
                    if self.opening != Opening::AwaitingPreface {
                        return Ok(Some(Wait::Out));
                    }
                }
                Opening::SendingPreface(off) => {
                    let p = std::mem::take(&mut self.preface);
                    let r = self.send_some(&[IoSlice::new(&p[off..])]);
                    self.preface = p;
                    match r? {
                        Some(n) if off + n == self.preface.len() => {
                            self.opening = Opening::AwaitingPreface;
                        }
                        Some(n) => self.opening = Opening::SendingPreface(off + n),
                        None => return Ok(Some(Wait::Out)),
                    }
                }
                Opening::AwaitingPreface => {
                    match self.proto.poll(&mut self.rbuf).map_err(broken)? {
                        Some(Reply::Preface(_)) => self.opening = Opening::Open,
                        Some(_) => return Err(broken("unexpected frame before preface")),
                        None => {
                            if !self.read_some()? {
                                return Ok(Some(Wait::In));
                            }
                        }
                    }
                }
            }
        }
    }

    /// One non-blocking `sendmsg` on this connection; see [`send_some`].
    fn send_some(&self, iov: &[IoSlice<'_>]) -> Result<Option<usize>> {
        send_some(&self.stream, iov)
    }

    /// A second handle on the open connection, for a writer that runs
    /// while another thread reads (`mux.rs`).
    ///
    /// # Errors
    /// [`Error::Unreachable`] if the descriptor cannot be duplicated.
    pub(super) fn writer(&self) -> Result<TcpStream> {
        self.stream.try_clone().map_err(broken)
    }

    /// The next reply (ack, FAIL, ...) among the bytes read so far.
    ///
    /// # Errors
    /// [`Error::Unreachable`] on a malformed reply.
    pub(super) fn next_reply(&mut self) -> Result<Option<Reply>> {
        self.proto.poll(&mut self.rbuf).map_err(broken)
    }

    /// Secure mode: seals `parts` into records waiting to be written.
    fn seal(&mut self, parts: &[&[u8]]) -> Result<()> {
        let s = self.secure.as_deref_mut().expect("secure mode");
        let mut seal = s.sealer();
        for p in parts {
            seal.push(p);
        }
        seal.finish().map_err(broken)
    }

    /// Secure mode: writes sealed bytes; true once none wait.
    fn flush_secure(&mut self) -> Result<bool> {
        loop {
            let s = self.secure.as_deref().expect("secure mode");
            if s.pending().is_empty() {
                return Ok(true);
            }
            match self.send_some(&[IoSlice::new(s.pending())])? {
                Some(n) => {
                    self.secure.as_deref_mut().expect("secure mode").written(n);
                }
                None => return Ok(false),
            }
        }
    }

    /// Writes what is left of one frame (header + payload) from byte `off`.
    /// Returns the new offset; the frame is out when it reaches
    /// `HEADER_LEN + payload.len()`. (Secure mode: the frame is sealed at
    /// offset 0 and any offset in between means "records still waiting".)
    ///
    /// # Errors
    /// [`Error::Unreachable`] on a broken connection.
    pub(super) fn write_frame(
        &mut self,
        hdr: &[u8; HEADER_LEN],
        payload: &[u8],
        mut off: usize,
    ) -> Result<usize> {
        let total = HEADER_LEN + payload.len();
        if self.secure.is_some() {
            // secure hook
            if off == 0 {
                self.seal(&[hdr, payload])?;
            }
            if !self.flush_secure()? {
                return Ok(1);
            }
            self.sent += 1;
            return Ok(total);
        }
        while off < total {
            let sent = if off < HEADER_LEN {
                self.send_some(&[IoSlice::new(&hdr[off..]), IoSlice::new(payload)])?
            } else {
                self.send_some(&[IoSlice::new(&payload[off - HEADER_LEN..])])?
            };
            match sent {
                Some(n) => off += n,
                None => return Ok(off),
            }
        }
        self.sent += 1;
        Ok(off)
    }

    /// Secure mode: opens what was read into `rbuf`.
    fn open_read(&mut self) -> Result<()> {
        if let Some(s) = self.secure.as_deref_mut() {
            let r = s.receive(&self.raw);
            self.raw.clear();
            r.map_err(broken)?;
            self.rbuf.extend_from_slice(s.plain());
            s.plain().clear();
        }
        Ok(())
    }

    /// The buffer reads go to: ciphertext in secure mode.
    fn read_buf(&mut self) -> &mut BytesMut {
        if self.secure.is_some() {
            &mut self.raw
        } else {
            &mut self.rbuf
        }
    }

    /// Reads what is there without blocking. `false` when nothing was.
    ///
    /// # Errors
    /// [`Error::Unreachable`] on a closed or broken connection.
    pub(super) fn read_some(&mut self) -> Result<bool> {
        loop {
            let fd = self.fd();
            match crate::driver::sys::try_read_into(fd, self.read_buf(), 4096) {
                Ok(0) => return Err(closed()),
                Ok(_) => return self.open_read().map(|()| true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(broken(e)),
            }
        }
    }

    /// Sleeps in one blocking `read` until bytes arrive or `deadline`
    /// passes (open connections only). `SO_RCVTIMEO` is set only when the
    /// time left differs much from the last setting, so a fast send pays no
    /// extra system call. `Ok(false)` when nothing came.
    ///
    /// # Errors
    /// [`Error::Unreachable`] on a closed or broken connection.
    pub(super) fn read_by(&mut self, deadline: Instant) -> Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        if self.rcv_timeout.is_zero() || left < self.rcv_timeout || left > self.rcv_timeout * 2 {
            let t = left.max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(t)).map_err(broken)?;
            self.rcv_timeout = t;
        }
        let fd = self.fd();
        match crate::driver::sys::read_into(fd, self.read_buf(), 4096) {
            Ok(0) => Err(closed()),
            Ok(_) => self.open_read().map(|()| true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(broken(e)),
        }
    }

    /// Looks for the ack (or FAIL) of `id` in what arrived so far, reading
    /// what the socket holds. `Ok(true)` once acked; `Ok(false)` to wait
    /// for more. Late acks of earlier messages are skipped.
    ///
    /// # Errors
    /// [`Error::RemoteFailure`] (the connection stays usable),
    /// [`Error::Unreachable`].
    pub(super) fn check_ack(&mut self, id: u64) -> Result<bool> {
        loop {
            while let Some(r) = self.proto.poll(&mut self.rbuf).map_err(broken)? {
                match r {
                    Reply::Ack(p) if ack_ranges(&p).any(|(f, n)| id >= f && id - f < n as u64) => {
                        return Ok(true);
                    }
                    Reply::Fail { id: fid, reason } if fid == id => {
                        return Err(Error::RemoteFailure(reason))
                    }
                    Reply::GoAway(r) => return Err(Error::Unreachable(format!("going away: {r}"))),
                    _ => {}
                }
            }
            if !self.read_some()? {
                return Ok(false);
            }
        }
    }
}

/// One non-blocking `sendmsg` (no SIGPIPE). `None` when the socket takes
/// nothing now.
///
/// # Errors
/// [`Error::Unreachable`] on a broken connection.
pub(super) fn send_some(stream: &TcpStream, iov: &[IoSlice<'_>]) -> Result<Option<usize>> {
    loop {
        match SockRef::from(stream)
            .send_vectored_with_flags(iov, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        {
            Ok(0) => return Err(broken("connection wrote zero bytes")),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(broken(e)),
        }
    }
}
