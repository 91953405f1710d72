//! # sessionrepl
//!
//! A native HTTP-session replication engine: the job Apache Tomcat's cluster
//! (Tribes transport, multicast membership, DeltaManager and BackupManager)
//! does inside the JVM, as a Rust library with a C ABI.
//!
//! Layers, bottom to top (arrows point down only):
//!
//! | module | does |
//! |---|---|
//! | [`wire`] | byte formats: native frames and preface, Tribes frames and member blobs, compression |
//! | [`proto`] | sans-IO state machines: frame decoding, ack tracking, timeouts |
//! | [`driver`] | I/O backends (mio) behind one contract |
//! | [`queue`] | bounded lock-free queues and buffer pools |
//! | [`transport`] | senders (the four replication modes) and the receiver |
//! | [`membership`] | who is in the cluster: multicast, static, DNS, failure detection |
//! | [`channel`] | what users hold: config, start/stop, send, listeners, stats |
//! | [`session`] | the replicated session store |
//! | [`ffi`] | the C ABI |
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

/// cbindgen:ignore
pub mod channel;
/// cbindgen:ignore
pub mod config;
/// cbindgen:ignore
pub mod driver;
/// cbindgen:ignore
pub mod error;
pub mod ffi;
/// cbindgen:ignore
pub mod log;
/// cbindgen:ignore
pub mod membership;
/// cbindgen:ignore
pub mod proto;
/// cbindgen:ignore
pub mod queue;
/// cbindgen:ignore
pub mod session;
/// cbindgen:ignore
pub mod stats;
/// cbindgen:ignore
pub mod transport;
/// cbindgen:ignore
pub mod wire;

pub use channel::Channel;
pub use config::{Config, ReplicationMode};
pub use error::{Error, Result};
