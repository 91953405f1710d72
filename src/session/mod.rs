//! The replicated session store: delta (all-to-all) and backup (primary + N)
//! modes, state transfer on join, expiry, id change, drain before shutdown.
//!
//! The store is a sans-IO state machine ([`SessionNode`], one per node):
//! bytes and `now` go in, messages to send and events come out, so the
//! replication logic runs the same against the real channel and against the
//! deterministic simulated cluster in `sim` (cargo feature `sim`, a test
//! harness left out of the library users link).
//!
//! Wiring a node onto a channel:
//!
//! | channel | node |
//! |---|---|
//! | member added / removed | [`SessionNode::member_added`] / [`SessionNode::member_removed`] |
//! | message `(from, bytes)` | [`SessionNode::handle_message`]; its `Err` is the FAIL of a delivery ack |
//! | per-member outcome of a send | [`SessionNode::handle_send_outcome`] with the [`SendToken`] |
//! | timer | [`SessionNode::handle_timeout`] at [`SessionNode::poll_timeout`] |
//! | after every input | drain [`SessionNode::poll_transmit`] (send each, with an ack unless the token is `NONE`) and [`SessionNode::poll_event`] |
//!
//! [`SessionNode`]: crate::session::SessionNode
//! [`SessionNode::member_added`]: crate::session::SessionNode::member_added
//! [`SessionNode::member_removed`]: crate::session::SessionNode::member_removed
//! [`SessionNode::handle_message`]: crate::session::SessionNode::handle_message
//! [`SessionNode::handle_send_outcome`]: crate::session::SessionNode::handle_send_outcome
//! [`SendToken`]: crate::session::SendToken
//! [`SessionNode::handle_timeout`]: crate::session::SessionNode::handle_timeout
//! [`SessionNode::poll_timeout`]: crate::session::SessionNode::poll_timeout
//! [`SessionNode::poll_transmit`]: crate::session::SessionNode::poll_transmit
//! [`SessionNode::poll_event`]: crate::session::SessionNode::poll_event

mod codec;
mod config;
pub mod hash;
mod model;
mod node;
mod placement;
#[cfg(feature = "sim")]
pub mod sim;
mod store;
mod table;

pub use codec::{
    CodecLimits, CopyReason, DecodeError, Delta, ForwardOutcome, Message, RemoveReason,
    SessionImage,
};
pub use config::{SessionConfig, SessionMode};
pub use model::{AttrOp, MemberKey, MetaChange, Session, SessionId, SessionMeta, Txn, Version};
pub use node::{
    CommitFailure, CommitTicket, Dest, Lookup, NodeState, Reject, SendOutcome, SendToken,
    SessionEvent, SessionNode, SessionStats, TransferFailure, Transmit,
};
pub use placement::{Holders, Placement};
pub use store::{
    member_key, CommitHandle, EventListener, FetchHandle, LookupStep, MemberEventListener,
    SessionStore, SessionStoreBuilder, StoreLookup, LOOKUP_RETRY,
};
pub use table::SessionTable;
