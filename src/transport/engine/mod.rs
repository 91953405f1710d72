//! The two engine loops, written once over the [`Driver`] contract and
//! monomorphised per backend (no dynamic dispatch on the hot path):
//!
//! - [`send::SendEngine`]: `asynchronous` and `fastasyncqueue` (the two
//!   differ only in admission policy), one thread for every member;
//! - [`recv::RecvEngine`]: accepts, reads, decodes through
//!   [`RxCore`](super::rx_core::RxCore) (both dialects) and writes acks.
//!
//! Which driver runs is decided once, when the engine thread starts.

pub(crate) mod recv;
#[cfg(test)]
mod recv_limits_tests;
#[cfg(test)]
mod recv_tests;
pub(crate) mod send;
#[cfg(test)]
mod tests;

use crate::config::Config;
use crate::driver::{Driver, SockOpts};
use crate::queue::Wake;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The socket options of `cfg` (`tcpNoDelay`, `rxBufSize`, `txBufSize`).
pub(crate) fn sock_opts(cfg: &Config) -> SockOpts {
    SockOpts {
        nodelay: cfg.tcp_no_delay,
        rcvbuf: cfg.rx_buf_size,
        sndbuf: cfg.tx_buf_size,
    }
}

/// Applies `rxBufSize` / `txBufSize` to a socket.
pub(crate) fn set_buffers(s: &impl std::os::fd::AsFd, cfg: &Config) {
    let sock = socket2::SockRef::from(s);
    if cfg.rx_buf_size > 0 {
        let _ = sock.set_recv_buffer_size(cfg.rx_buf_size);
    }
    if cfg.tx_buf_size > 0 {
        let _ = sock.set_send_buffer_size(cfg.tx_buf_size);
    }
}

/// The waker of a driver, type-erased for the cold paths (producers,
/// stop).
pub(crate) fn erased<D: Driver>(d: &D) -> Arc<dyn Wake> {
    d.waker()
}

/// Runs `body` on a new thread named `name`; `body` sets up (its driver
/// must be created on the thread that uses it) and reports the outcome
/// through the callback it is given before running. Returns what it
/// reported.
///
/// # Errors
/// What the setup reported, or thread creation failures.
pub(crate) fn spawn<T, F>(name: &str, body: F) -> crate::Result<(T, JoinHandle<()>)>
where
    T: Send + 'static,
    F: FnOnce(Box<dyn FnOnce(crate::Result<T>) + Send>) + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let thread = crate::driver::sys::ThreadBuilder::new()
        .name(name.to_string())
        .spawn(move || {
            body(Box::new(move |r| {
                let _ = tx.send(r);
            }))
        })?;
    match rx.recv() {
        Ok(Ok(v)) => Ok((v, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(std::io::Error::other(format!("{name} thread died during setup")).into())
        }
    }
}

impl<T: Wake + ?Sized> Wake for Arc<T> {
    fn wake(&self) {
        (**self).wake();
    }
}
