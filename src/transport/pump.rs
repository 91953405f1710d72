//! The asynchronous engine behind `asynchronous` and `fastasyncqueue`:
//! the caller-side handle of one [`SendEngine`] thread (on whichever
//! driver runs) that drains a bounded lock-free queue in batches, keeps a
//! non-blocking connection per member, writes up to
//! [`FRAMES_PER_SEND`](crate::driver::FRAMES_PER_SEND) frames per driver
//! call (header and shared payload, no copy), reads acks, times out,
//! reconnects with backoff and resends. Each member's logic is a sans-IO
//! [`SenderConn`](crate::proto::sender::SenderConn). `fastasyncqueue` and
//! `asynchronous` share the engine: one thread for all members, whatever
//! their number (the asynchronous policy adds all-or-nothing admission
//! per member).

use super::engine::{self, send::SendEngine};
use super::link::PumpHandle;
use super::{Shared, Ticket};
use crate::driver::mio::MioDriver;
use crate::driver::Backend;
use crate::queue::Wake;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// Items taken off the queue per turn.
pub(crate) const INTAKE_BATCH: usize = 1024;

/// Where a queued message goes.
#[derive(Debug, Clone)]
pub enum Dest {
    /// One member.
    One(SocketAddr),
    /// Several members; the payload is shared, not copied.
    Many(Arc<[SocketAddr]>),
}

impl Dest {
    pub(crate) fn as_slice(&self) -> &[SocketAddr] {
        match self {
            Dest::One(a) => std::slice::from_ref(a),
            Dest::Many(v) => v,
        }
    }
}

/// A message waiting in the queue.
pub struct Outgoing {
    /// Message id.
    pub id: u64,
    /// Destinations.
    pub dest: Dest,
    /// Payload (already compressed if it is to be).
    pub payload: Bytes,
    /// Frame flags.
    pub flags: u8,
    /// Waitable outcome, if the caller asked for one.
    pub ticket: Option<Arc<Ticket>>,
}

/// Wakes the engine thread once its driver exists.
struct LateWake(Arc<OnceLock<Arc<dyn Wake>>>);
impl Wake for LateWake {
    fn wake(&self) {
        if let Some(w) = self.0.get() {
            w.wake();
        }
    }
}

/// A running pump.
pub struct Pump {
    h: PumpHandle,
    waker: Arc<dyn Wake>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Pump {
    /// Starts the engine of `backend` on a thread named `name`, with the
    /// `fastasyncqueue` policy: a member whose queue is full fails its copy
    /// of a message with `QueueFull` (reported), the others take theirs.
    ///
    /// # Errors
    /// Poll, ring or thread failures.
    pub fn start(backend: Backend, shared: Arc<Shared>, name: &str) -> crate::Result<Pump> {
        Self::start_policy(backend, shared, name, false)
    }

    /// As [`Pump::start`]; with `admission` (the `asynchronous` policy) a
    /// send first reserves room at every destination, all or nothing,
    /// waiting up to `queueAddWaitTimeout`.
    ///
    /// # Errors
    /// Poll, ring or thread failures.
    pub fn start_policy(
        backend: Backend,
        shared: Arc<Shared>,
        name: &str,
        admission: bool,
    ) -> crate::Result<Pump> {
        match backend {
            #[cfg(target_os = "linux")]
            Backend::Uring => {
                let tuning = crate::driver::uring::UringTuning {
                    // A busy-polling engine reads its hot member's replies
                    // directly, as the receiver reads its hot connection.
                    hot_reads: !shared.cfg.idle.spin.is_zero(),
                    ..Default::default()
                };
                Self::start_uring(shared, name, tuning, admission)
            }
            _ => Self::start_on(shared, name, admission, MioDriver::new),
        }
    }

    /// Starts an io_uring engine with explicit tuning (the
    /// `fastasyncqueue` policy).
    ///
    /// # Errors
    /// Ring or thread creation failures.
    #[cfg(target_os = "linux")]
    pub fn start_uring(
        shared: Arc<Shared>,
        name: &str,
        tuning: crate::driver::uring::UringTuning,
        admission: bool,
    ) -> crate::Result<Pump> {
        Self::start_on(shared, name, admission, move || {
            crate::driver::uring::UringDriver::new(1024, tuning)
        })
    }

    fn start_on<D, M>(
        shared: Arc<Shared>,
        name: &str,
        admission: bool,
        make: M,
    ) -> crate::Result<Pump>
    where
        D: crate::driver::Driver,
        M: FnOnce() -> std::io::Result<D> + Send + 'static,
    {
        let late = Arc::new(OnceLock::new());
        let h = PumpHandle::new(shared, Box::new(LateWake(late.clone())), admission);
        let eh = h.clone_ref();
        let (waker, thread) = engine::spawn(name, move |ready| {
            let d = match make() {
                Ok(d) => d,
                Err(e) => return ready(Err(e.into())),
            };
            let w = engine::erased(&d);
            let _ = late.set(w.clone());
            ready(Ok(w));
            SendEngine::new(d, eh).run();
        })?;
        Ok(Pump {
            h,
            waker,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues a message, waiting up to `queueAddWaitTimeout` for room.
    ///
    /// # Errors
    /// [`crate::Error::QueueFull`] (the message was not queued and has no other
    /// outcome), [`crate::Error::NotRunning`] after stop.
    pub fn send(&self, item: Outgoing) -> crate::Result<()> {
        self.h.send(item)
    }

    /// Messages queued and not yet taken by the I/O thread.
    pub fn queue_len(&self) -> usize {
        self.h.queue_len()
    }

    /// Messages taken by the I/O thread that have no outcome yet.
    pub fn in_flight(&self) -> u64 {
        self.h.in_flight()
    }

    /// `addr` left the cluster: its state is released once every message
    /// to it has an outcome.
    pub fn member_left(&self, addr: SocketAddr) {
        self.h.member_left(addr);
    }

    /// Members the I/O thread holds state for.
    pub fn members(&self) -> u64 {
        self.h.members.load(Ordering::Relaxed)
    }

    /// True when nothing is queued, pending or awaiting an ack.
    pub fn is_idle(&self) -> bool {
        self.h.is_idle()
    }

    /// Stops the thread; whatever has no outcome yet ends as
    /// [`crate::Error::Shutdown`] (reported before this returns).
    /// Idempotent.
    pub fn stop(&self) {
        self.h.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
        // A send racing with stop may have queued after the thread's last
        // look.
        self.h.report_unsent(None);
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop();
    }
}
