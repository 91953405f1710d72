//! Cluster membership: who is in the cluster (multicast heartbeats, static
//! lists, DNS), failure detection, and membership events.

mod config;
pub use config::MembershipConfig;
