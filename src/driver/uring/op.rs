//! Operations and the buffers they own. An [`Op`] is moved into the ring's
//! slab at submission and only comes back (or is dropped) when its last
//! completion arrives, so the kernel never sees freed memory. Everything a
//! submission points at lives on the heap (a `Box`, a `Vec`'s or a
//! `BytesMut`'s storage), never inside the `Op` value itself, which may move
//! while the slab grows.

use bytes::{Bytes, BytesMut};
use io_uring::{opcode, squeue, types};
use std::ops::Range;
use std::os::fd::RawFd;

/// One operation with everything it needs to stay alive until completion.
pub enum Op {
    /// Multishot accept on a listening socket: one completion per
    /// connection, the result being the new descriptor.
    AcceptMulti {
        /// Listening socket.
        fd: RawFd,
    },
    /// Multishot receive into the provided-buffer group `group`: one
    /// completion per filled buffer (the buffer id is in the flags).
    RecvMulti {
        /// Connected socket.
        fd: RawFd,
        /// Buffer group id.
        group: u16,
    },
    /// One receive into the spare capacity of `buf` (at most `max` bytes);
    /// the completion's result is how many bytes to `set_len` by.
    Recv {
        /// Connected socket.
        fd: RawFd,
        /// Destination; its spare capacity is written.
        buf: BytesMut,
        /// Most bytes to read.
        max: usize,
    },
    /// One send of `buf[off..]`.
    Send {
        /// Connected socket.
        fd: RawFd,
        /// Bytes to send (owned until completion).
        buf: Vec<u8>,
        /// Where the unsent part starts.
        off: usize,
    },
    /// One `sendmsg` of a gathered batch; `zc` uses `SENDMSG_ZC` (the
    /// buffers then stay owned until the notification completion).
    SendMsg {
        /// Connected socket.
        fd: RawFd,
        /// The gathered pieces.
        batch: Box<Gather>,
        /// Zero-copy send.
        zc: bool,
    },
    /// Connect a socket.
    Connect {
        /// Socket.
        fd: RawFd,
        /// Destination (boxed so its address is stable).
        addr: Box<socket2::SockAddr>,
    },
    /// One-shot wait until the socket can take bytes (a direct write found
    /// it full); the completion's result is the poll mask.
    PollOut {
        /// Connected socket.
        fd: RawFd,
    },
    /// Read of an eventfd (the ring's wake-up).
    ReadEvent {
        /// The eventfd.
        fd: RawFd,
        /// Eight bytes the counter is read into.
        buf: Box<[u8; 8]>,
    },
}

impl Op {
    /// The submission entry; pointers refer to heap memory owned by `self`.
    pub(super) fn entry(&mut self) -> squeue::Entry {
        match self {
            Op::AcceptMulti { fd } => opcode::AcceptMulti::new(types::Fd(*fd)).build(),
            Op::RecvMulti { fd, group } => opcode::RecvMulti::new(types::Fd(*fd), *group).build(),
            Op::Recv { fd, buf, max } => {
                let spare = buf.spare_capacity_mut();
                let len = spare.len().min(*max).min(u32::MAX as usize) as u32;
                opcode::Recv::new(types::Fd(*fd), spare.as_mut_ptr().cast(), len).build()
            }
            Op::Send { fd, buf, off } => {
                let b = &buf[*off..];
                opcode::Send::new(types::Fd(*fd), b.as_ptr(), b.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            Op::SendMsg { fd, batch, zc } => {
                let msg = batch.prepare();
                if *zc {
                    opcode::SendMsgZc::new(types::Fd(*fd), msg)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build()
                } else {
                    opcode::SendMsg::new(types::Fd(*fd), msg)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build()
                }
            }
            Op::Connect { fd, addr } => {
                opcode::Connect::new(types::Fd(*fd), addr.as_ptr().cast(), addr.len()).build()
            }
            Op::PollOut { fd } => {
                opcode::PollAdd::new(types::Fd(*fd), libc::POLLOUT as u32).build()
            }
            Op::ReadEvent { fd, buf } => {
                opcode::Read::new(types::Fd(*fd), buf.as_mut_ptr(), 8).build()
            }
        }
    }
}

enum Piece {
    Copied(Range<usize>),
    Shared(Bytes),
}

/// The pieces of one gathered send: small parts (control bytes, frame
/// headers) copied into an owned buffer, payloads shared by reference
/// count. Reuse one across submissions with [`Gather::clear`].
pub struct Gather {
    copied: Vec<u8>,
    pieces: Vec<Piece>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
    len: usize,
}

// SAFETY: the raw pointers in `iov` and `msg` point only into memory this
// value owns (`copied`, the `Bytes` in `pieces`, `iov` itself); they are
// rebuilt by `prepare` before each submission and never dereferenced by us.
unsafe impl Send for Gather {}

impl Default for Gather {
    fn default() -> Self {
        Gather {
            copied: Vec::new(),
            pieces: Vec::new(),
            iov: Vec::new(),
            // SAFETY: msghdr is a plain C struct for which all-zero is valid.
            msg: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }
}

impl Gather {
    /// Empties it, keeping its allocations.
    pub fn clear(&mut self) {
        self.copied.clear();
        self.pieces.clear();
        self.iov.clear();
        self.len = 0;
    }

    /// Appends a copy of `b` (for small parts).
    pub fn push_copy(&mut self, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        let start = self.copied.len();
        self.copied.extend_from_slice(b);
        match self.pieces.last_mut() {
            // Adjacent copies merge into one iovec.
            Some(Piece::Copied(r)) if r.end == start => r.end += b.len(),
            _ => self.pieces.push(Piece::Copied(start..start + b.len())),
        }
        self.len += b.len();
    }

    /// Appends a shared payload (no copy).
    pub fn push_shared(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.len += b.len();
        self.pieces.push(Piece::Shared(b));
    }

    /// Bytes copied into this gather's own buffer.
    pub fn copied_len(&self) -> usize {
        self.copied.len()
    }

    /// Bytes in total.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// iovecs it will take.
    pub fn pieces(&self) -> usize {
        self.pieces.len()
    }

    fn prepare(&mut self) -> *const libc::msghdr {
        self.iov.clear();
        for p in &self.pieces {
            let b: &[u8] = match p {
                Piece::Copied(r) => &self.copied[r.clone()],
                Piece::Shared(b) => b,
            };
            self.iov.push(crate::driver::sys::iovec(b));
        }
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
        &self.msg
    }
}

/// The buffer of a finished [`Op::Recv`] with the `res` bytes the kernel
/// wrote made part of it; `None` for any other op or a failed receive.
pub(crate) fn recv_filled(op: Op, res: i32) -> Option<BytesMut> {
    match op {
        Op::Recv { mut buf, max, .. } if res >= 0 => {
            let n = (res as usize).min(max).min(buf.capacity() - buf.len());
            // SAFETY: the kernel initialised `res` bytes of the spare
            // capacity this op lent it (bounded by what was lent).
            unsafe { buf.set_len(buf.len() + n) };
            Some(buf)
        }
        _ => None,
    }
}
