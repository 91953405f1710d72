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
//! | `wire` (internal) | byte formats: native frames and preface, Tribes frames and member blobs, compression |
//! | `proto` (internal) | sans-IO state machines for both directions: frame decoding, the per-member sender, ack tracking, receiver bounds |
//! | `driver` (internal) | I/O backends (mio, io_uring) behind one `Driver` contract |
//! | `queue` (internal) | bounded lock-free queues and buffer pools |
//! | [`transport`] | senders (the four replication modes) and the receiver, one engine loop per direction over any driver; its public part is what [`Channel`] takes and gives ([`transport::SendOptions`], [`transport::Message`], [`transport::Ticket`]) |
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
pub mod error;
pub mod ffi;
/// cbindgen:ignore
pub mod log;
/// cbindgen:ignore
pub mod membership;
/// cbindgen:ignore
pub mod security;
/// cbindgen:ignore
pub mod session;
/// cbindgen:ignore
pub mod stats;
/// cbindgen:ignore
pub mod transport;

/// Internal layers, public only for this workspace's own tools (the
/// `sessionrepl` command and its benchmarks), integration tests and fuzz
/// targets. Not a stable API: hidden from the documentation, free to change
/// with any release. Inside the crate the layers are reached as
/// `crate::wire`, `crate::proto`, `crate::driver` and `crate::queue`.
///
/// cbindgen:ignore
#[doc(hidden)]
#[path = "internal.rs"]
pub mod __internal;

// The internal layers under their short names inside the crate; outside
// it they are reached only through the hidden `__internal` module.
pub(crate) use __internal::{driver, proto, queue, wire};

pub use channel::Channel;
pub use config::{Config, ReplicationMode};
pub use error::{Error, Result};
