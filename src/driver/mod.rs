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
//! The contract itself is the [`Driver`] trait (its rules are in its
//! docs): register and connect sockets by [`Token`],
//! read into buffers the engine lends (or, with provided buffers, hand out
//! zero-copy chunks), write many frames per call, wake from another
//! thread, and wait for events with a deadline. Operations complete at
//! once or later as an [`Event`], so one engine loop per direction
//! (`transport::engine`) runs over any driver, monomorphised.
//!
//! Two backends meet it: mio ([`mio::MioDriver`]: readiness, epoll on
//! Linux; raw system calls in [`sys`]) and io_uring
//! ([`uring::UringDriver`], Linux only: completions, multishot accept and
//! receive on a provided-buffer ring, batched `sendmsg`). This layer is the
//! only one with `unsafe`.
//!
//! [`Driver`]: crate::driver::Driver
//! [`Token`]: crate::driver::Token
//! [`Event`]: crate::driver::Event
//! [`mio::MioDriver`]: crate::driver::mio::MioDriver
//! [`sys`]: crate::driver::sys
//! [`uring::UringDriver`]: crate::driver::uring::UringDriver

mod contract;
#[cfg(test)]
pub(crate) mod fake;
pub mod mio;
pub mod sys;
#[cfg(test)]
mod test_pairs;
#[cfg(target_os = "linux")]
pub mod uring;

pub use contract::{join_adjacent, Driver, Ended, Event, Frame, SockOpts, Token, FRAMES_PER_SEND};

/// Tokens to values, hashed with one multiplication (tokens are small
/// distinct integers the engines choose; SipHash would cost more than the
/// lookup it guards).
pub(crate) type TokenMap<V> =
    std::collections::HashMap<Token, V, std::hash::BuildHasherDefault<TokenHasher>>;

/// The hasher of [`TokenMap`].
#[derive(Default)]
pub(crate) struct TokenHasher(u64);

impl std::hash::Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Which backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// mio (epoll).
    Mio,
    /// io_uring.
    Uring,
}

impl Backend {
    /// Resolves the `ioBackend` setting. `mio` gives mio; `uring` gives
    /// io_uring if the kernel offers what the driver needs (see
    /// [`uring::probe()`]) and fails otherwise; `auto` gives io_uring when
    /// available and mio when not. The choice is logged.
    ///
    /// With `auto`, the environment variable `SESSIONREPL_IO_BACKEND`
    /// (`mio` or `uring`), when set, decides instead.
    ///
    /// # Errors
    /// `uring` where io_uring is missing or forbidden; an unknown name.
    pub fn resolve(setting: &str) -> crate::Result<Backend> {
        // The environment may narrow `auto` (for tools that cannot follow
        // io_uring, such as valgrind): SESSIONREPL_IO_BACKEND=mio.
        let env = std::env::var("SESSIONREPL_IO_BACKEND").ok();
        let setting = match (setting, env.as_deref()) {
            ("auto", Some(e @ ("mio" | "uring"))) => e,
            _ => setting,
        };
        let b = match setting {
            "mio" => Backend::Mio,
            "uring" => match uring_probe() {
                Ok(()) => Backend::Uring,
                Err(why) => {
                    return Err(crate::config::bad(
                        "ioBackend",
                        &format!("io_uring is not available: {why}"),
                    ))
                }
            },
            "auto" => match uring_probe() {
                Ok(()) => Backend::Uring,
                Err(why) => {
                    crate::sr_log!(Info, "io_uring unavailable ({why}); falling back to mio");
                    Backend::Mio
                }
            },
            other => {
                return Err(crate::config::bad(
                    "ioBackend",
                    &format!("unknown backend '{other}'"),
                ))
            }
        };
        crate::sr_log!(Info, "I/O driver: {b:?} (ioBackend={setting})");
        Ok(b)
    }
}

#[cfg(target_os = "linux")]
fn uring_probe() -> Result<(), String> {
    uring::probe()
}

#[cfg(not(target_os = "linux"))]
fn uring_probe() -> Result<(), String> {
    Err("io_uring exists on Linux only".into())
}
