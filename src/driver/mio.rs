//! The readiness driver (mio, epoll on Linux): every operation is tried at
//! once with a non-blocking system call; one the socket is not ready for
//! is kept and performed on the socket's next readiness edge.

use super::contract::{Driver, Event, Frame, SockOpts, Token};
use super::{sys, TokenMap};
use bytes::BytesMut;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Waker};
use socket2::Socket;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

const WAKER: mio::Token = mio::Token(usize::MAX);
const LISTENER: mio::Token = mio::Token(usize::MAX - 1);
/// Zero-timeout polls (an engine busy-polling) served by a direct read of
/// the hot socket between two `epoll_wait` calls: every other socket, the
/// listener and the waker are still looked at on every fourth such poll.
const HOT_POLLS: u32 = 4;

/// Wakes a [`MioDriver`]'s thread.
pub struct MioWaker(Waker);

impl crate::queue::Wake for MioWaker {
    fn wake(&self) {
        let _ = self.0.wake();
    }
}

struct Slot {
    sock: Socket,
    connecting: bool,
    /// No `WouldBlock` since the last writable edge.
    writable: bool,
    /// A send waits for the next writable edge.
    send_wait: bool,
    /// A receive waits for the next readable edge, with its buffer.
    recv_wait: Option<(BytesMut, usize)>,
    /// The read on the last readable edge (no hang-up, no error) left
    /// room in its buffer: it emptied the socket, and whatever arrives
    /// later brings a new edge (epoll is edge-triggered), so the next
    /// receive waits for that edge without the read that would only find
    /// the socket empty. Cleared by any readable edge.
    drained: bool,
}

/// The mio driver.
pub struct MioDriver {
    poll: Poll,
    events: Events,
    waker: Arc<MioWaker>,
    listener: Option<Socket>,
    slots: TokenMap<Slot>,
    /// The socket whose waiting receive was served last: while the engine
    /// busy-polls, it is read directly (as a spinning peer reads its
    /// socket) instead of waiting for its edge through `epoll_wait`.
    hot: Option<Token>,
    /// Zero-timeout polls since the last `epoll_wait`.
    hot_polls: u32,
}

impl MioDriver {
    /// A driver with its own epoll instance.
    ///
    /// # Errors
    /// epoll or eventfd creation failures.
    pub fn new() -> io::Result<MioDriver> {
        let poll = Poll::new()?;
        let waker = Arc::new(MioWaker(Waker::new(poll.registry(), WAKER)?));
        Ok(MioDriver {
            poll,
            events: Events::with_capacity(256),
            waker,
            listener: None,
            slots: TokenMap::default(),
            hot: None,
            hot_polls: 0,
        })
    }

    fn add(&mut self, token: Token, sock: Socket, connecting: bool) -> io::Result<()> {
        let fd = sock.as_raw_fd();
        self.poll.registry().register(
            &mut SourceFd(&fd),
            mio::Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let slot = Slot {
            sock,
            connecting,
            writable: !connecting,
            send_wait: false,
            recv_wait: None,
            drained: false,
        };
        if let Some(old) = self.slots.insert(token, slot) {
            self.forget(&old);
        }
        Ok(())
    }

    fn forget(&self, s: &Slot) {
        let fd = s.sock.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
    }

    fn slot(&mut self, token: Token) -> io::Result<&mut Slot> {
        self.slots
            .get_mut(&token)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no such socket"))
    }

    fn accept_all(&mut self, out: &mut Vec<Event>) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((sock, peer)) => {
                    if let Some(peer) = peer.as_socket() {
                        out.push(Event::Accepted { sock, peer });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    crate::sr_log!(Warn, "accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn on_ready(&mut self, token: Token, ev: &mio::event::Event, out: &mut Vec<Event>) {
        let Some(s) = self.slots.get_mut(&token) else {
            return;
        };
        if s.connecting {
            if let Some(res) = connect_result(&s.sock) {
                let res = sys::check_connected((&s.sock).into(), res);
                s.connecting = false;
                s.writable = res.is_ok();
                out.push(Event::Connected { token, res });
            }
            return;
        }
        if ev.is_writable() || ev.is_error() {
            s.writable = true;
            if std::mem::take(&mut s.send_wait) {
                out.push(Event::Sent { token, res: Ok(0) });
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            s.drained = false;
            if s.read_waiting(token, ev.is_read_closed() || ev.is_error(), out) {
                self.hot = Some(token);
            }
        }
    }
}

impl MioDriver {
    /// Busy-poll step: reads the hot socket's waiting receive directly.
    /// True if that produced an event. A readable edge this read consumed
    /// the data of is dropped by `epoll_wait` (it re-checks readiness), or
    /// costs one empty read if more arrived meanwhile.
    fn read_hot(&mut self, out: &mut Vec<Event>) -> bool {
        let Some(token) = self.hot else { return false };
        let Some(s) = self.slots.get_mut(&token) else {
            self.hot = None;
            return false;
        };
        s.read_waiting(token, false, out)
    }
}

impl Slot {
    /// Reads into the waiting receive, if any: true if that produced a
    /// `Received` event (data, end of stream or an error); false if nothing
    /// waits or the socket had nothing (the receive keeps waiting).
    /// `closing`: the edge also reported a hang-up or an error, so a read
    /// that left room does not mean the socket is drained.
    fn read_waiting(&mut self, token: Token, closing: bool, out: &mut Vec<Event>) -> bool {
        let Some((mut buf, want)) = self.recv_wait.take() else {
            return false;
        };
        let res = match sys::read_now(self.sock.as_raw_fd(), &mut buf, want) {
            Ok(None) => {
                self.recv_wait = Some((buf, want));
                return false;
            }
            Ok(Some(n)) => {
                self.drained = n > 0 && buf.len() < buf.capacity() && !closing;
                Ok(n)
            }
            Err(e) => Err(e),
        };
        out.push(Event::Received { token, res, buf });
        true
    }
}

/// A non-blocking connect's outcome, once known.
fn connect_result(s: &Socket) -> Option<io::Result<()>> {
    match s.take_error() {
        Ok(None) => {}
        Ok(Some(e)) | Err(e) => return Some(Err(e)),
    }
    match s.peer_addr() {
        Ok(_) => Some(Ok(())),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
        Err(e) => Some(Err(e)),
    }
}

impl Driver for MioDriver {
    type Waker = MioWaker;

    fn waker(&self) -> Arc<MioWaker> {
        self.waker.clone()
    }

    fn listen(&mut self, sock: Socket) -> io::Result<()> {
        sock.set_nonblocking(true)?;
        let fd = sock.as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
        self.listener = Some(sock);
        Ok(())
    }

    fn register(&mut self, token: Token, sock: Socket) -> io::Result<()> {
        sock.set_nonblocking(true)?;
        self.add(token, sock, false)
    }

    fn connect(&mut self, token: Token, addr: SocketAddr, opts: &SockOpts) -> io::Result<()> {
        let sock = Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.nonblocking(),
            None,
        )?;
        opts.apply(&sock);
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        self.add(token, sock, true)
    }

    fn recv(&mut self, token: Token, buf: &mut BytesMut, want: usize) -> io::Result<Option<usize>> {
        let s = self.slot(token)?;
        if std::mem::take(&mut s.drained) {
            s.recv_wait = Some((std::mem::take(buf), want));
            return Ok(None);
        }
        let r = sys::read_now(s.sock.as_raw_fd(), buf, want)?;
        if r.is_none() {
            s.recv_wait = Some((std::mem::take(buf), want));
        }
        Ok(r)
    }

    fn send<'a>(
        &mut self,
        token: Token,
        ctl: &[u8],
        frames: impl Iterator<Item = Frame<'a>>,
    ) -> io::Result<Option<usize>> {
        let s = self.slot(token)?;
        if !s.writable {
            s.send_wait = true;
            return Ok(None);
        }
        let mut iov = [sys::EMPTY_IOVEC; sys::IOV_MAX];
        let (n, _) = sys::gather_frames(ctl, &mut frames.peekable(), &mut iov, |_| false);
        if n == 0 {
            return Ok(Some(0));
        }
        loop {
            match sys::writev_iovecs(s.sock.as_raw_fd(), &iov[..n]) {
                Ok(w) => return Ok(Some(w)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.writable = false;
                    s.send_wait = true;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn close(&mut self, token: Token, last: &[u8]) {
        if let Some(s) = self.slots.remove(&token) {
            if !last.is_empty() {
                let _ = s
                    .sock
                    .send_with_flags(last, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
            }
            self.forget(&s);
        }
    }

    fn poll(&mut self, timeout: Duration, out: &mut Vec<Event>) -> io::Result<()> {
        if timeout.is_zero() && self.hot.is_some() {
            self.read_hot(out);
            self.hot_polls += 1;
            if self.hot_polls < HOT_POLLS {
                return Ok(());
            }
        }
        self.hot_polls = 0;
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let r = match self.poll.poll(&mut events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            r => r,
        };
        for ev in events.iter() {
            match ev.token() {
                WAKER => {}
                LISTENER => self.accept_all(out),
                mio::Token(t) => self.on_ready(t, ev, out),
            }
        }
        self.events = events;
        r
    }

    fn first_read_capacity(&self) -> usize {
        256 * 1024
    }

    fn shutdown(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        for s in slots.values() {
            self.forget(s);
        }
    }
}

#[cfg(test)]
#[path = "mio_tests.rs"]
mod tests;
