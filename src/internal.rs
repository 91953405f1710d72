//! The internal layers (see the crate docs). Declared here, not at the
//! crate root, so that they are public only under this hidden module.

/// cbindgen:ignore
#[path = "driver/mod.rs"]
pub mod driver;
/// cbindgen:ignore
#[path = "proto/mod.rs"]
pub mod proto;
/// cbindgen:ignore
#[path = "queue/mod.rs"]
pub mod queue;
/// cbindgen:ignore
#[path = "wire/mod.rs"]
pub mod wire;

/// The transport's engines and handles, for benchmarks and driver tests.
///
/// cbindgen:ignore
pub mod transport {
    pub use crate::transport::pump::{Dest, Outgoing, Pump};
    pub use crate::transport::receiver::{Receiver, UringRxTuning};
    pub use crate::transport::Shared;
}
