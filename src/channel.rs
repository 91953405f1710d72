//! The channel: what users hold.

/// A replication channel.
pub struct Channel {}
