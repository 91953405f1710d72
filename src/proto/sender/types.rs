//! The values a [`SenderConn`](super::SenderConn) takes and gives: its
//! limits, the messages it queues, its state, the actions and outcomes it
//! reports, its counters and the chunks it offers to write.

use crate::config::Config;
use crate::error::Error;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// How a message ended for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written to the socket (no ack was requested).
    Sent,
    /// Acknowledged by the receiver.
    Acked,
}

/// Outcome of one message at one destination.
pub type Outcome = Result<Delivery, Error>;

/// The limits and timers a [`SenderConn`](super::SenderConn) runs with.
#[derive(Debug, Clone, Copy)]
pub struct SenderLimits {
    /// Messages waiting unwritten (`maxQueueLength`).
    pub queue: usize,
    /// Acked messages in flight (written, ack not yet in).
    pub window: usize,
    /// Each message's outcome is due this long after enqueue (`ackTimeout`).
    pub ack_timeout: Duration,
    /// Resends after a broken connection (`maxRetryAttempts`).
    pub max_retry_attempts: u32,
    /// A connect not done by then fails (`connectTimeout`).
    pub connect_timeout: Duration,
    /// First and longest pause before reconnecting.
    pub backoff_min: Duration,
    /// See `backoff_min`.
    pub backoff_max: Duration,
    /// Close a connection quiet for this long (`keepAliveTimeout`; 0 = never).
    pub keep_alive_timeout: Duration,
    /// Close a quiet connection after this many messages (0 = never).
    pub keep_alive_count: u64,
    /// Ping a connection quiet for this long (0 = never).
    pub ping_interval: Duration,
    /// Largest frame payload (`maxFrameSize`).
    pub max_frame_size: usize,
    /// A member with nothing to do for this long may be forgotten
    /// (`memberIdleRelease`).
    pub idle_release: Duration,
    /// A member whose queue is full and that wrote nothing for this long
    /// is stalled: its new messages fail at once ([`Error::QueueFull`])
    /// instead of holding up the engine's shared intake.
    pub stall_after: Duration,
    /// A secure handshake not done by this long after connecting fails
    /// the connection (`handshakeTimeout`).
    pub handshake_timeout: Duration,
}

impl SenderLimits {
    /// The limits of a channel configured with `c`.
    pub fn from_config(c: &Config) -> SenderLimits {
        SenderLimits {
            queue: c.max_queue_length,
            window: c.max_queue_length,
            ack_timeout: c.ack_timeout,
            max_retry_attempts: c.max_retry_attempts,
            connect_timeout: c.connect_timeout,
            backoff_min: c.reconnect_backoff_min,
            backoff_max: c.reconnect_backoff_max,
            keep_alive_timeout: c.keep_alive_timeout,
            keep_alive_count: c.keep_alive_count,
            ping_interval: c.ping_interval,
            max_frame_size: c.max_frame_size,
            idle_release: c.member_idle_release,
            stall_after: (c.ack_timeout / 4).min(Duration::from_millis(250)),
            handshake_timeout: c.rx_limits.handshake_timeout,
        }
    }
}

/// One message handed to [`SenderConn::handle_enqueue`](super::SenderConn::handle_enqueue).
pub struct Message<T> {
    /// Message id (unique per sending channel).
    pub id: u64,
    /// Payload (shared across destinations).
    pub payload: Bytes,
    /// DATA frame flags as written (ack flags, compressed).
    pub flags: u8,
    /// An ack decides the outcome.
    pub ack: bool,
    /// Compress in a BATCH with its neighbours before writing.
    pub deflate: bool,
    /// The caller's handle, given back with the outcome.
    pub token: T,
}

/// Connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No socket, nothing asked.
    Idle,
    /// A connect was asked for ([`Action::Connect`]) and not started yet.
    Wanted,
    /// Connect in progress, failing at the deadline.
    Connecting(Instant),
    /// Connected; frames may be written.
    Open,
    /// Waiting until then before reconnecting.
    Backoff(Instant),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a connection, then call [`SenderConn::handle_connecting`](super::SenderConn::handle_connecting) (or
    /// [`SenderConn::handle_connect_failed`](super::SenderConn::handle_connect_failed)).
    Connect,
    /// Drop the socket (its messages were already dealt with); the string
    /// says why, for the log.
    Close(String),
}

/// Counters since the last [`SenderConn::take_counters`](super::SenderConn::take_counters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Messages fully written.
    pub msgs_sent: u64,
    /// Frame bytes fully written.
    pub bytes_sent: u64,
    /// Messages acked.
    pub acks: u64,
    /// Messages queued again for resend after a broken connection.
    pub resends: u64,
    /// Messages compressed into BATCH frames.
    pub compressed: u64,
    /// Reconnects after a backoff.
    pub reconnects: u64,
    /// Connections whose peer did not prove the cluster key / certificate.
    pub secure_refusals: u64,
    /// Connections closed for a record that failed authentication.
    pub secure_errors: u64,
}

/// One frame (or the rest of one) to write: copy `hdr`, share
/// `payload[skip..]`.
pub struct Chunk<'a> {
    /// Header bytes still to write (empty when the header is out).
    pub hdr: &'a [u8],
    /// The payload.
    pub payload: &'a Bytes,
    /// Payload bytes already written.
    pub skip: usize,
}
