//! Senders (the four replication modes) and the receiver.
//!
//! - [`receiver`]: a mio selector thread accepts, reads into large buffers,
//!   decodes in place and hands the listener zero-copy slices, in order per
//!   connection; an optional worker pool keeps that order.
//! - [`sync`]: `synchronous` and `pooled`: the caller's thread writes on a
//!   checked-out connection and waits for its ack there.
//! - [`pump`]: `asynchronous` and `fastasyncqueue`: one I/O thread drives
//!   every member's sans-IO [`SenderConn`](crate::proto::sender::SenderConn)
//!   (queue, window, acks, deadlines, resend), writing many frames per
//!   `writev`; the two modes differ only in admission policy.

mod link;
pub mod pump;
pub mod receiver;
mod rx_core;
mod rx_engine;
pub mod sync;
mod ticket;
pub mod tribes_send;
#[cfg(target_os = "linux")]
pub mod uring_pump;
#[cfg(target_os = "linux")]
pub mod uring_rx;

pub use ticket::Ticket;

use crate::driver::Backend;

use crate::config::{AckMode, Config};
use crate::error::Error;
use crate::stats::Stats;
use crate::wire::frame::{FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

/// A message handed to the listener. `payload` is a zero-copy slice of the
/// receive buffer (or of the inflated buffer); clone it to keep it.
#[derive(Debug, Clone)]
pub struct Message {
    /// The sending member: its receiver's listen address when it announced
    /// one (native preface, Tribes member blob), else the connection's peer
    /// address.
    pub from: SocketAddr,
    /// The connection's peer address.
    pub peer: SocketAddr,
    /// Sender's member id (from its preface; zero for Tribes peers).
    pub member_id: [u8; 16],
    /// Message id, unique per sending channel.
    pub id: u64,
    /// The payload, inflated if it was compressed.
    pub payload: Bytes,
}

/// Receives messages. Returning `Err(reason)` sends a FAIL with that reason
/// when the sender asked for an ack after delivery.
pub type MessageListener = Arc<dyn Fn(&Message) -> Result<(), String> + Send + Sync>;

/// Receives messages in batches (at most [`MAX_DELIVERY_BATCH`], in order
/// per connection): on a worker thread (`tcpThreadCount > 0`) every message
/// it found queued at once; on the receiver thread (`tcpThreadCount=0`) the
/// messages one connection's read turn decoded. It pushes one result per
/// message onto the vector, in order; a missing result counts as a
/// failure. Set with [`crate::channel::ChannelBuilder::batch_listener`], it
/// replaces the per-message listener for native connections, so a host
/// with a costly call boundary (JNI) pays it once per batch; Tribes
/// connections still go through the per-message listener.
pub type BatchListener = Arc<dyn Fn(&[&Message], &mut Vec<Result<(), String>>) + Send + Sync>;

/// The most messages one [`BatchListener`] call receives.
pub const MAX_DELIVERY_BATCH: usize = 64;

pub use crate::proto::sender::{Delivery, Outcome};

/// Told each message's outcome in the asynchronous modes:
/// `(message id, destination, outcome)`. Called on the sender I/O thread;
/// keep it short.
pub type OutcomeListener = Arc<dyn Fn(u64, SocketAddr, &Outcome) + Send + Sync>;

/// Per-send options.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// Acknowledgement requested.
    pub ack: AckMode,
    /// Compress (subject to `compressionMinSize`).
    pub compress: bool,
}

impl SendOptions {
    /// The channel defaults (`waitForAck`, `syncAck`, `compress`).
    pub fn from_config(c: &Config) -> Self {
        SendOptions {
            ack: c.default_ack(),
            compress: c.compress,
        }
    }
    /// Frame flags for the ack mode.
    pub fn ack_flags(&self) -> u8 {
        match self.ack {
            AckMode::None => 0,
            AckMode::Receipt => FLAG_ACK_RECEIPT,
            AckMode::Delivery => FLAG_ACK_DELIVERY,
        }
    }
}

/// State shared by a channel's transport threads.
pub struct Shared {
    /// Configuration (frozen at start).
    pub cfg: Config,
    /// Counters.
    pub stats: Stats,
    /// This node's member id.
    pub member_id: [u8; 16],
    /// Outcome listener for the asynchronous modes.
    pub outcome: Option<OutcomeListener>,
    /// The receiver's bound address, once bound (announced in prefaces).
    pub local: std::sync::OnceLock<SocketAddr>,
    /// Told of every destination found unreachable (membership's failure
    /// detector listens here).
    pub on_unreachable: std::sync::OnceLock<Box<dyn Fn(SocketAddr) + Send + Sync>>,
    /// The receiver's per-stream high-water marks (exactly-once delivery
    /// across reconnects), shared by its threads.
    pub dedup: crate::proto::dedup::DedupTable,
    /// The batch listener, if any (set before the receiver starts): the
    /// workers and the receiver thread's own deliveries use it.
    pub batch: std::sync::OnceLock<BatchListener>,
}

impl Shared {
    /// Shared state for a channel with `cfg`, member id and outcome listener.
    pub fn new(cfg: Config, member_id: [u8; 16], outcome: Option<OutcomeListener>) -> Shared {
        Shared {
            cfg,
            stats: Stats::default(),
            member_id,
            outcome,
            local: std::sync::OnceLock::new(),
            on_unreachable: std::sync::OnceLock::new(),
            dedup: Default::default(),
            batch: std::sync::OnceLock::new(),
        }
    }

    /// Our preface (a reply on the accepting side).
    pub fn preface(&self, reply: bool) -> crate::wire::Preface {
        let mut p = crate::wire::Preface::new(self.member_id, &self.cfg.domain, reply);
        p.listen_port = self.local.get().map_or(0, |a| a.port());
        p
    }

    /// Tells the failure detector that `to` could not be reached.
    pub fn unreachable(&self, to: SocketAddr) {
        if let Some(f) = self.on_unreachable.get() {
            f(to);
        }
    }

    /// Reports an outcome to the listener and the ticket, and counts it.
    pub fn report(&self, id: u64, to: SocketAddr, outcome: Outcome, ticket: Option<&Arc<Ticket>>) {
        match &outcome {
            Ok(Delivery::Acked) => {}
            Ok(Delivery::Sent) => {}
            Err(Error::Timeout) => Stats::add(&self.stats.timeouts, 1),
            Err(e) => {
                if matches!(e, Error::QueueFull) {
                    Stats::add(&self.stats.queue_full, 1);
                }
                Stats::add(&self.stats.failures, 1);
                if matches!(e, Error::Unreachable(_)) {
                    self.unreachable(to);
                }
            }
        }
        if let Some(l) = &self.outcome {
            // A panicking listener must not take the I/O thread down.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l(id, to, &outcome)));
            if r.is_err() {
                crate::sr_log!(Error, "outcome listener panicked for message {id}");
            }
        }
        if let Some(t) = ticket {
            t.complete(to, outcome);
        }
    }
}

/// The receiver of whichever driver runs.
pub enum AnyReceiver {
    /// mio selector thread.
    Mio(receiver::Receiver),
    /// io_uring ring thread.
    #[cfg(target_os = "linux")]
    Uring(uring_rx::UringReceiver),
}

impl AnyReceiver {
    /// Starts the receiver of `backend`.
    ///
    /// # Errors
    /// Bind, ring or thread failures.
    pub fn start(
        backend: Backend,
        shared: Arc<Shared>,
        listener: MessageListener,
    ) -> crate::Result<AnyReceiver> {
        Ok(match backend {
            Backend::Mio => AnyReceiver::Mio(receiver::Receiver::start(shared, listener)?),
            #[cfg(target_os = "linux")]
            Backend::Uring => AnyReceiver::Uring(uring_rx::UringReceiver::start(shared, listener)?),
            #[cfg(not(target_os = "linux"))]
            Backend::Uring => AnyReceiver::Mio(receiver::Receiver::start(shared, listener)?),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            AnyReceiver::Mio(r) => r.local_addr(),
            #[cfg(target_os = "linux")]
            AnyReceiver::Uring(r) => r.local_addr(),
        }
    }

    /// Stops it. Idempotent.
    pub fn stop(&mut self) {
        match self {
            AnyReceiver::Mio(r) => r.stop(),
            #[cfg(target_os = "linux")]
            AnyReceiver::Uring(r) => r.stop(),
        }
    }
}

/// The asynchronous engine of whichever driver runs.
pub enum AnyPump {
    /// mio.
    Mio(pump::Pump),
    /// io_uring.
    #[cfg(target_os = "linux")]
    Uring(uring_pump::UringPump),
}

impl AnyPump {
    /// Starts the engine of `backend` on a thread named `name`, with the
    /// `fastasyncqueue` policy: a member whose queue is full fails its copy
    /// of a message with `QueueFull` (reported), the others take theirs.
    ///
    /// # Errors
    /// Poll, ring or thread failures.
    pub fn start(backend: Backend, shared: Arc<Shared>, name: &str) -> crate::Result<AnyPump> {
        Self::start_policy(backend, shared, name, false)
    }

    /// As [`AnyPump::start`]; with `admission` (the `asynchronous`
    /// policy) a send first reserves room at every destination, all or
    /// nothing, waiting up to `queueAddWaitTimeout`.
    ///
    /// # Errors
    /// Poll, ring or thread failures.
    pub fn start_policy(
        backend: Backend,
        shared: Arc<Shared>,
        name: &str,
        admission: bool,
    ) -> crate::Result<AnyPump> {
        Ok(match backend {
            #[cfg(target_os = "linux")]
            Backend::Uring => AnyPump::Uring(uring_pump::UringPump::start_policy(
                shared,
                name,
                uring_pump::UringPumpTuning::default(),
                admission,
            )?),
            _ => AnyPump::Mio(pump::Pump::start_policy(shared, name, admission)?),
        })
    }

    /// `addr` left the cluster: its sender state is released once every
    /// message to it has an outcome.
    pub fn member_left(&self, addr: SocketAddr) {
        match self {
            AnyPump::Mio(p) => p.member_left(addr),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => p.member_left(addr),
        }
    }

    /// Members the engine holds state for (released when idle).
    pub fn members(&self) -> u64 {
        match self {
            AnyPump::Mio(p) => p.members(),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => p.members(),
        }
    }

    /// Queues a message; see [`pump::Pump::send`].
    ///
    /// # Errors
    /// [`Error::QueueFull`], [`Error::NotRunning`].
    pub fn send(&self, item: pump::Outgoing) -> crate::Result<()> {
        match self {
            AnyPump::Mio(p) => p.send(item),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => p.send(item),
        }
    }

    /// Messages queued and not yet taken by the I/O thread.
    pub fn queue_len(&self) -> usize {
        match self {
            AnyPump::Mio(p) => p.queue_len(),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => p.queue_len(),
        }
    }

    /// Messages taken by the I/O thread that have no outcome yet.
    pub fn in_flight(&self) -> u64 {
        match self {
            AnyPump::Mio(p) => p.in_flight(),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => p.in_flight(),
        }
    }

    /// True when nothing is queued, pending or awaiting an ack.
    pub fn is_idle(&self) -> bool {
        match self {
            AnyPump::Mio(p) => p.is_idle(),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => p.is_idle(),
        }
    }

    /// Stops the engine; see [`pump::Pump::stop`]. Idempotent.
    pub fn stop(&self) {
        match self {
            AnyPump::Mio(p) => p.stop(),
            #[cfg(target_os = "linux")]
            AnyPump::Uring(p) => p.stop(),
        }
    }
}
