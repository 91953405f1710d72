//! I/O backends behind one contract.
//!
//! # The driver contract
//!
//! A driver moves bytes between sockets and the sans-IO state machines of
//! [`crate::proto`]; it never interprets them. Every driver must:
//!
//! 1. read into buffers it owns (a `BytesMut` per connection, or a provided
//!    buffer ring) and hand the decoder whole read buffers, so frames can be
//!    sliced out without a copy;
//! 2. write many frames per system call (`writev` or one batched submission)
//!    and keep a frame's buffers alive until the kernel is done with them;
//! 3. wake a sleeping I/O thread with one syscall only when it sleeps;
//! 4. on stop, cancel and drain everything in flight with no leak.
//!
//! Today the one backend is mio (readiness, epoll on Linux); the raw system
//! calls both the transport and a future io_uring backend need live in
//! [`sys`], the only place of this layer with `unsafe`.

pub mod sys;

/// Which backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// mio (epoll).
    Mio,
}

impl Backend {
    /// Resolves the `ioBackend` setting. `auto` and `mio` give mio; `uring`
    /// is refused until the io_uring driver exists.
    ///
    /// # Errors
    /// `uring` while the io_uring driver is not built.
    pub fn resolve(setting: &str) -> crate::Result<Backend> {
        match setting {
            "auto" | "mio" => Ok(Backend::Mio),
            other => Err(crate::config::bad(
                "ioBackend",
                &format!("backend '{other}' is not available in this build"),
            )),
        }
    }
}
