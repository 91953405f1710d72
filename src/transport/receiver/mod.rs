//! The receiver: one I/O thread running the
//! [`RecvEngine`](super::engine::recv::RecvEngine) over whichever driver
//! runs. It accepts, reads into large buffers (mio) or provided buffers
//! (io_uring: a multishot receive per connection on a shared
//! provided-buffer ring), decodes frames in place and hands the listener
//! zero-copy slices, in order per connection. With `tcpThreadCount > 0`
//! delivery runs on a worker pool; each connection is pinned to one
//! worker, which keeps its order, and a full worker queue pauses reading
//! that connection instead of blocking the I/O thread.
//!
//! io_uring zero-copy choice: each filled provided buffer becomes a
//! `Bytes` and the frames inside it are handed to the listener as slices
//! of it; the buffer goes back to the ring when the last slice drops. When
//! the ring has no free buffers (listeners holding payloads past the
//! memory cap, or a connection stalled on a full worker queue), the
//! multishot receive ends with `ENOBUFS` and the connection falls back to
//! plain receives, so nothing is lost and nothing waits.

mod tuning;

use super::engine::{self, recv::RecvEngine};
use super::rx_core::{self, WorkerHandle};
use super::{MessageListener, Shared};
use crate::driver::mio::MioDriver;
use crate::driver::{Backend, Driver};
use crate::error::Result;
use crate::queue::Wake;
use crate::sr_log;
use socket2::Socket;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
pub use tuning::UringRxTuning;

/// Provided buffers in the ring, and their size. Few: the kernel fills
/// ring entries in order, so each receive lands in the buffer returned
/// longest ago; with 32 MiB in rotation that memory was cold and the
/// kernel's copy cost 3.5× the sender's (S4: p50 27 → 19 µs with 4).
const RING_BUFFERS: u16 = 4;
const BUFFER_SIZE: usize = 1024 * 1024;
/// Buffers allocated at most (provided plus lent to listeners).
const MAX_BUFFERS: usize = 128;
/// Below this many free buffers new receives are plain ones.
const LOW_WATER: usize = 8;

/// A running receiver.
pub struct Receiver {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<dyn Wake>,
    thread: Option<JoinHandle<()>>,
    workers: Vec<WorkerHandle>,
}

impl Receiver {
    /// Binds `tcpListenAddress:tcpListenPort` and starts the I/O thread of
    /// `backend` (and the worker threads).
    ///
    /// # Errors
    /// Bind, ring or thread-spawn failures.
    pub fn start(
        backend: Backend,
        shared: Arc<Shared>,
        listener: MessageListener,
    ) -> Result<Receiver> {
        match backend {
            #[cfg(target_os = "linux")]
            Backend::Uring => Self::start_uring(shared, listener, UringRxTuning::default()),
            _ => Self::start_on("sr-receiver", shared, listener, MioDriver::new),
        }
    }

    /// Starts an io_uring receiver with explicit buffer-ring sizes.
    ///
    /// # Errors
    /// As [`Receiver::start`].
    #[cfg(target_os = "linux")]
    pub fn start_uring(
        shared: Arc<Shared>,
        listener: MessageListener,
        tuning: UringRxTuning,
    ) -> Result<Receiver> {
        use crate::driver::uring::{BufRing, Provided, UringDriver, UringTuning};
        let tuning = tuning::fit_pool(tuning, &shared.cfg);
        let driver_tuning = UringTuning {
            // A busy-polling engine reads its hot connection directly
            // (plain receives, no provided buffers).
            hot_reads: !shared.cfg.idle.spin.is_zero(),
            ..UringTuning::default()
        };
        let make = move || -> io::Result<UringDriver> {
            let mut d = UringDriver::new(256, driver_tuning)?;
            if driver_tuning.hot_reads {
                sr_log!(
                    Info,
                    "io_uring receiver: plain receives, the hot connection read directly while busy-polling"
                );
                return Ok(d);
            }
            let bufs = BufRing::with_mode(
                d.ring(),
                1,
                tuning.ring_buffers,
                tuning.buffer_size,
                tuning.max_buffers,
                tuning.incremental,
            )?;
            sr_log!(
                Info,
                "io_uring receiver: {} provided buffers of {} KiB, incremental={}",
                tuning.ring_buffers,
                tuning.buffer_size / 1024,
                bufs.incremental()
            );
            d.provide(Provided {
                bufs,
                low_water: LOW_WATER.min(tuning.ring_buffers as usize / 2).max(1),
                ring_buffers: tuning.ring_buffers as usize,
                pool_bytes: tuning.max_buffers * tuning.buffer_size,
            });
            Ok(d)
        };
        Self::start_on("sr-receiver-uring", shared, listener, make)
    }

    fn start_on<D, M>(
        name: &str,
        shared: Arc<Shared>,
        listener: MessageListener,
        make: M,
    ) -> Result<Receiver>
    where
        D: Driver,
        M: FnOnce() -> io::Result<D> + Send + 'static,
    {
        let addr = SocketAddr::new(shared.cfg.tcp_listen_address, shared.cfg.tcp_listen_port);
        let sock = Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        sock.set_reuse_address(true)?;
        sock.bind(&addr.into())?;
        sock.listen(1024)?;
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener has no inet address"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let ((waker, workers), thread) = engine::spawn(name, move |ready| {
            let mut d = match make() {
                Ok(d) => d,
                Err(e) => return ready(Err(e.into())),
            };
            if let Err(e) = d.listen(sock) {
                return ready(Err(e.into()));
            }
            let waker = engine::erased(&d);
            let pool = d.pool_bytes();
            let started = rx_core::start_workers(&shared, listener, Box::new(waker.clone()), pool);
            let (core, workers) = match started {
                Ok(v) => v,
                Err(e) => return ready(Err(e.into())),
            };
            ready(Ok((waker, workers)));
            RecvEngine::new(d, core, stop2).run();
        })?;
        sr_log!(Info, "receiver listening on {local}");
        Ok(Receiver {
            local,
            stop,
            waker,
            thread: Some(thread),
            workers,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the threads, cancels and drains every operation in flight and
    /// closes every connection. Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        rx_core::stop_workers(&mut self.workers);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
