//! Cluster membership: who is in the cluster (multicast heartbeats, static
//! lists, DNS), failure detection, and membership events.
//!
//! - [`MemberTable`]: the sans-IO member list (heartbeats, probes and `now`
//!   in; events out), tested on a virtual clock.
//! - [`MembershipService`]: the threads and sockets around it.
//!
//! Heartbeats are Tribes member blobs (`wire::tribes`), so sessionrepl nodes
//! and Apache Tribes nodes see each other; sessionrepl nodes add
//! [`PeerFacts`] to the blob's payload to recognise one another.
//!
//! [`MemberTable`]: crate::membership::MemberTable
//! [`MembershipService`]: crate::membership::MembershipService
//! [`PeerFacts`]: crate::membership::PeerFacts

pub mod auth;
mod config;
mod member;
mod service;
mod table;

pub use config::{MembershipConfig, MembershipType, StaticMember};
pub use member::{
    caps, derived_id, hex, LocalMemberInfo, Member, MemberEvent, MemberSource, PeerFacts,
    RemoveReason, FACTS_LEN, FACTS_MAGIC, FACTS_VERSION, MAX_MEMBER_PAYLOAD, PAYLOAD_MAGIC,
};
pub use service::{MemberListener, MembershipService};
pub use table::{MemberTable, MembershipStats, ProbeRequest, TableConfig, MAX_MEMBERS};
