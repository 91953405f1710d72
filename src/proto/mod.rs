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

pub mod ack;
pub mod decoder;
pub mod inbound;
pub mod outbound;
pub mod secure;

pub use ack::AckTracker;
pub use decoder::{Frame, FrameBuf, FrameDecoder};
