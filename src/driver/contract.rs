//! The contract every I/O backend meets: [`Driver`] and what it reports.

use bytes::{Bytes, BytesMut};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An engine's name for one socket.
pub type Token = usize;

/// Most frames one [`Driver::send`] call takes (two iovecs each, plus one
/// for the control bytes, within `IOV_MAX`).
pub const FRAMES_PER_SEND: usize = (super::sys::IOV_MAX - 2) / 2;

/// One frame (or what is left of it) to send: `head` is copied if the
/// driver must keep it, `body[skip..]` is shared.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    /// Header bytes still to send (may be empty).
    pub head: &'a [u8],
    /// The payload.
    pub body: &'a Bytes,
    /// Payload bytes already sent.
    pub skip: usize,
}

/// Socket options applied to every connection a driver opens or accepts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SockOpts {
    /// `TCP_NODELAY`.
    pub nodelay: bool,
    /// `SO_RCVBUF` (0: the system's).
    pub rcvbuf: usize,
    /// `SO_SNDBUF` (0: the system's).
    pub sndbuf: usize,
}

impl SockOpts {
    /// Applies the options to `s`; failures leave the system defaults.
    pub fn apply(&self, s: &socket2::Socket) {
        let _ = s.set_nodelay(self.nodelay);
        if self.rcvbuf > 0 {
            let _ = s.set_recv_buffer_size(self.rcvbuf);
        }
        if self.sndbuf > 0 {
            let _ = s.set_send_buffer_size(self.sndbuf);
        }
    }
}

/// How a multishot receive ended.
#[derive(Debug)]
pub enum Ended {
    /// It stopped (asked to, or out of provided buffers): arm another.
    Rearm,
    /// The peer closed the stream.
    Eof,
    /// The socket failed.
    Failed(io::Error),
}

/// Something that happened to a token.
#[derive(Debug)]
pub enum Event {
    /// The listening socket took a connection (see [`Driver::listen`]).
    Accepted {
        /// The new socket, not yet registered.
        sock: socket2::Socket,
        /// Its peer.
        peer: SocketAddr,
    },
    /// A connect ended.
    Connected {
        /// The socket.
        token: Token,
        /// Open, or why not.
        res: io::Result<()>,
    },
    /// A receive ended; `buf` is the buffer the engine lent (with the
    /// bytes read appended). `Ok(0)` is the end of the stream.
    Received {
        /// The socket.
        token: Token,
        /// Bytes read.
        res: io::Result<usize>,
        /// The lent buffer, back.
        buf: BytesMut,
    },
    /// A multishot receive filled a provided buffer (zero-copy).
    Chunk {
        /// The socket.
        token: Token,
        /// The bytes received.
        data: Bytes,
        /// The whole buffer `data` lies in, when buffers are consumed
        /// incrementally (the next chunk may continue right after it).
        buffer: Option<Bytes>,
    },
    /// A multishot receive ended.
    RecvEnded {
        /// The socket.
        token: Token,
        /// How.
        how: Ended,
    },
    /// A send ended: how many of the bytes offered the socket took (`0`:
    /// none yet, but the socket may take more now).
    Sent {
        /// The socket.
        token: Token,
        /// Bytes taken.
        res: io::Result<usize>,
    },
}

/// An I/O backend: the contract every driver meets, in the shape of
/// completions.
///
/// An engine names each socket with a [`Token`] it chooses, asks the
/// driver to connect, read and write, and learns how each operation ended
/// either at once (the call returns `Some`) or later, as an [`Event`] from
/// [`Driver::poll`]. A readiness backend (mio) performs the system call on
/// the spot and, when the socket is not ready, keeps the operation until
/// readiness and then performs it; a completion backend (io_uring) submits
/// it and reports its completion. Either way the engine sees one
/// behaviour, so one engine loop per direction runs over both.
///
/// Rules every driver keeps (the engines rely on them):
///
/// 1. At most one [`Driver::recv`] (or one multishot receive) and one
///    [`Driver::send`] per token are outstanding; the engine does not ask
///    for another before the first one ended.
/// 2. A buffer handed to [`Driver::recv`] that did not fill at once is
///    the driver's until [`Event::Received`] gives it back (with the bytes
///    read appended to what it held).
/// 3. [`Driver::send`] borrows what it sends. A driver that cannot finish
///    at once copies the small parts and shares the payloads by reference
///    count, keeps them alive until the kernel is done, and reports the
///    bytes taken with [`Event::Sent`]; the engine keeps offering the same
///    bytes (minus what was taken) until then. `Sent` with `0` bytes means
///    only "the socket may take more now".
/// 4. [`Driver::close`] ends everything of that token; later polls report
///    nothing of it (operations in flight are cancelled, their buffers
///    parked until the kernel lets go). The token may be reused at once;
///    events the current poll already returned may still name it, so an
///    engine ignores an event that does not answer what it asked for.
/// 5. [`Driver::poll`] waits at most `timeout` (zero: not at all), and
///    returns early when the [`Driver::Waker`] was woken from another
///    thread; an idle engine sleeps in it.
pub trait Driver {
    /// Its cross-thread waker: makes the next (or current)
    /// [`Driver::poll`] return soon.
    type Waker: crate::queue::Wake + 'static;

    /// The waker of this driver.
    fn waker(&self) -> Arc<Self::Waker>;

    /// The current time (a fake driver runs a virtual clock).
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Accepts connections on the bound, listening `sock`; each arrives as
    /// [`Event::Accepted`].
    ///
    /// # Errors
    /// Registration or submission failures.
    fn listen(&mut self, sock: socket2::Socket) -> io::Result<()>;

    /// Takes an accepted socket as `token`.
    ///
    /// # Errors
    /// Registration failures (the socket is dropped).
    fn register(&mut self, token: Token, sock: socket2::Socket) -> io::Result<()>;

    /// Starts connecting `token` to `addr`; [`Event::Connected`] follows.
    ///
    /// # Errors
    /// The socket could not be created or the connect was refused at once.
    fn connect(&mut self, token: Token, addr: SocketAddr, opts: &SockOpts) -> io::Result<()>;

    /// Reads into the spare capacity of `buf` (at least `want` bytes
    /// reserved). `Some(n)`: read now (`0`: end of stream). `None`: the
    /// driver took `buf` and [`Event::Received`] gives it back.
    ///
    /// # Errors
    /// The socket failed.
    fn recv(&mut self, token: Token, buf: &mut BytesMut, want: usize) -> io::Result<Option<usize>>;

    /// Arms a multishot receive into provided buffers: true if armed
    /// ([`Event::Chunk`]s then [`Event::RecvEnded`] follow), false if the
    /// driver has none (or too few free) and the engine reads with
    /// [`Driver::recv`] instead.
    ///
    /// # Errors
    /// Submission failures.
    fn recv_multi(&mut self, token: Token) -> io::Result<bool> {
        let _ = token;
        Ok(false)
    }

    /// Asks an armed multishot receive to end without losing what it
    /// already received ([`Event::RecvEnded`] with [`Ended::Rearm`]).
    fn stop_multi(&mut self, token: Token) {
        let _ = token;
    }

    /// Sends `ctl` then `frames`. `Some(n)`: the socket took `n` bytes now.
    /// `None`: in flight, or waiting for room; [`Event::Sent`] follows.
    ///
    /// # Errors
    /// The socket failed.
    fn send<'a>(
        &mut self,
        token: Token,
        ctl: &[u8],
        frames: impl Iterator<Item = Frame<'a>>,
    ) -> io::Result<Option<usize>>;

    /// Closes `token`, first trying (without waiting) to send `last`.
    fn close(&mut self, token: Token, last: &[u8]);

    /// Waits for events (at most `timeout`), appending them to `out`.
    ///
    /// # Errors
    /// The wait itself failed (the engine logs it and goes on).
    fn poll(&mut self, timeout: Duration, out: &mut Vec<Event>) -> io::Result<()>;

    /// Bytes of receive buffers the driver owns (counted against
    /// `maxReceiveMemory`).
    fn pool_bytes(&self) -> usize {
        0
    }

    /// Capacity a connection's first read buffer gets.
    fn first_read_capacity(&self) -> usize {
        0
    }

    /// Cancels everything in flight and waits (bounded) until the kernel
    /// let go of every buffer.
    fn shutdown(&mut self) {}
}

/// One slice covering `head` followed by `next`, when both lie back to
/// back inside `buffer` (the view an [`Event::Chunk`] came with): a frame
/// split across two chunks of one incrementally consumed buffer needs no
/// copy.
pub fn join_adjacent(head: &Bytes, buffer: &Bytes, next: &Bytes) -> Option<Bytes> {
    let base = buffer.as_ptr() as usize;
    let h = head.as_ptr() as usize;
    let n = next.as_ptr() as usize;
    let end = base + buffer.len();
    if h < base || h + head.len() != n || n + next.len() > end {
        return None;
    }
    let start = h - base;
    Some(buffer.slice(start..start + head.len() + next.len()))
}
