//! Senders (the four replication modes) and the receiver.
//!
//! - `receiver`: one I/O thread accepts, reads into large (or provided)
//!   buffers, decodes in place and hands the listener zero-copy slices, in
//!   order per connection; an optional worker pool keeps that order.
//! - `sync`: `synchronous` and `pooled`: the caller's thread writes on a
//!   checked-out connection and waits for its ack there.
//! - `pump`: `asynchronous` and `fastasyncqueue`: one I/O thread drives
//!   every member's sans-IO `SenderConn`
//!   (queue, window, acks, deadlines, resend), writing many frames per
//!   driver call; the two modes differ only in admission policy.
//!
//! Both I/O threads run an engine loop of `engine`, written once over the
//! [`Driver`](crate::driver::Driver) contract and monomorphised for mio and
//! io_uring.

mod engine;
mod link;
pub(crate) mod pump;
pub(crate) mod receiver;
mod rx_core;
pub(crate) mod sync;
mod ticket;
pub(crate) mod tribes_send;

pub use ticket::Ticket;

use crate::config::{AckMode, Config};
use crate::error::Error;
use crate::stats::Stats;
use crate::wire::frame::{FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

/// True for the errors that mean "not now" on a non-blocking socket
/// (including a connect still in progress).
pub(crate) fn not_now(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EINPROGRESS)
}

/// Wall-clock milliseconds since the Unix epoch (Tribes timestamps).
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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

/// State shared by a channel's transport threads (internal; reached from
/// outside only through `__internal::transport`).
#[doc(hidden)]
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
    /// Set when every connection must be authenticated and encrypted
    /// (`encryptionKey` or the `tls*File` settings).
    pub secure: Option<crate::proto::secure::SecureContext>,
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
            secure: None,
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

/// The receiver (of whichever driver runs).
pub(crate) type AnyReceiver = receiver::Receiver;

/// The asynchronous engine (of whichever driver runs).
pub(crate) type AnyPump = pump::Pump;
