//! Sans-IO protocol state machines: bytes and `now` in, frames, bytes to
//! send and events out. No sockets, no clock, no threads.
//!
//! - [`decoder`]: splits native frames out of a read buffer, zero-copy.
//! - [`inbound`]: the accepting side of a connection (preface, frames,
//!   acks to send back).
//! - [`outbound`]: the connecting side (preface answer, ACK/FAIL/PONG).
//! - [`ack`]: the sender's tracker of messages awaiting an ack.
//! - [`secure`]: authenticated encryption of connections (shared-key Noise,
//!   mutual TLS) and the Tribes `EncryptInterceptor` message codec.
//! - [`limits`]: the receiver's bounds (slots, handshake and ack-write
//!   deadlines, receive memory).
//! - [`sender`]: one member's asynchronous sender (queue, window, acks,
//!   deadlines, resend, keepalive, batching, sequence markers).
//! - [`dedup`]: the receiver's side of exactly-once delivery across
//!   reconnects (per-stream sequence high-water marks).
//!
//! [`decoder`]: crate::proto::decoder
//! [`inbound`]: crate::proto::inbound
//! [`outbound`]: crate::proto::outbound
//! [`ack`]: crate::proto::ack
//! [`secure`]: crate::proto::secure
//! [`limits`]: crate::proto::limits
//! [`sender`]: crate::proto::sender
//! [`dedup`]: crate::proto::dedup

pub mod ack;
pub mod decoder;
pub mod dedup;
pub mod inbound;
pub mod limits;
pub mod outbound;
pub mod secure;
pub mod sender;

pub use ack::AckTracker;
pub use decoder::{Frame, FrameBuf, FrameDecoder};
