//! The types a host sees at the node's boundary: transmits, outcomes,
//! tickets, events, lookups and counters.

use crate::session::model::{MemberKey, Session, SessionId, Version};
use bytes::Bytes;

/// Who a transmit goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// One member.
    One(MemberKey),
    /// Several members (the payload is shared, not copied).
    Many(Vec<MemberKey>),
}

impl Dest {
    /// The members, as a slice.
    pub fn members(&self) -> &[MemberKey] {
        match self {
            Dest::One(m) => std::slice::from_ref(m),
            Dest::Many(v) => v,
        }
    }
}

/// Identifies a transmit whose per-member outcome the node wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SendToken(pub u64);

impl SendToken {
    /// The token of fire-and-forget messages: send without an ack and do
    /// not report an outcome.
    pub const NONE: SendToken = SendToken(0);
}

/// A message the host must hand to the channel.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Destination members.
    pub to: Dest,
    /// Encoded message.
    pub payload: Bytes,
    /// Report each member's outcome with [`SessionNode::handle_send_outcome`](super::SessionNode::handle_send_outcome)
    /// unless this is [`SendToken::NONE`].
    pub token: SendToken,
}

impl Transmit {
    /// True if the node wants acknowledgements (and outcomes) for this message.
    pub fn needs_ack(&self) -> bool {
        self.token != SendToken::NONE
    }
}

/// Outcome of one transmit for one member, as the channel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The member acknowledged (with delivery acks: its `handle_message` returned `Ok`).
    Acked,
    /// The member refused it (its `handle_message` returned `Err`) or the send failed.
    Failed,
    /// No acknowledgement in time.
    TimedOut,
}

/// Identifies one commit (or create / invalidate / id change) until it is
/// reported acked or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitTicket(pub u64);

/// Why a commit was not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFailure {
    /// A required copy kept refusing or timing out after `commitRetries`.
    Unacknowledged,
    /// Not applied: the session changed since the transaction's base
    /// version (or, for a create, the id exists), or a concurrent commit
    /// of the same session won.
    Conflict,
    /// Not applied: no ready primary took the commit within its deadline
    /// (it is joining or draining, or placement moved while the commit was
    /// on its way; a refused forward is routed again to the current
    /// primary while the deadline allows), or fewer than
    /// `minCommitCopies` holders are up. Retry later.
    Unavailable,
    /// Not applied: the session does not exist.
    NotFound,
}

impl CommitFailure {
    /// True if the commit is certainly not applied anywhere and never will
    /// be; false for [`CommitFailure::Unacknowledged`], whose change may
    /// survive (read the session to find out).
    pub fn is_definite(self) -> bool {
        self != CommitFailure::Unacknowledged
    }
}

/// Why a state transfer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferFailure {
    /// `stateTransferTimeout` passed before every donor completed.
    Timeout {
        /// Donors that had not completed.
        missing: usize,
    },
}

/// What the host should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A session was created by another member (or arrived by transfer).
    Created {
        /// Session id.
        id: SessionId,
        /// The member it came from.
        by: MemberKey,
    },
    /// A session was changed by another member.
    Updated {
        /// Session id.
        id: SessionId,
        /// Its new version.
        version: Version,
        /// The member it came from.
        by: MemberKey,
    },
    /// A session expired (here, or on the member that owns its expiry).
    Expired {
        /// Session id.
        id: SessionId,
        /// True if this node expired it.
        local: bool,
    },
    /// A session was invalidated on another member.
    Invalidated {
        /// Session id.
        id: SessionId,
        /// The member.
        by: MemberKey,
    },
    /// A session was renamed on another member.
    IdChanged {
        /// Old id.
        old: SessionId,
        /// New id.
        new: SessionId,
        /// The member.
        by: MemberKey,
    },
    /// Every required copy acknowledged the commit.
    CommitAcked {
        /// The ticket `commit` returned.
        ticket: CommitTicket,
        /// Session id.
        id: SessionId,
        /// Copies that now hold it, this node included.
        copies: usize,
    },
    /// The commit could not be acknowledged by every required copy.
    CommitFailed {
        /// The ticket.
        ticket: CommitTicket,
        /// Session id.
        id: SessionId,
        /// Why.
        reason: CommitFailure,
    },
    /// Two concurrent versions of a session met; the higher one was kept.
    Conflict {
        /// Session id.
        id: SessionId,
        /// Version kept.
        kept: Version,
        /// Version discarded.
        discarded: Version,
    },
    /// A read started by `get` finished: take its result with
    /// [`SessionNode::take_fetched`](super::SessionNode::take_fetched).
    Fetched {
        /// Session id.
        id: SessionId,
        /// True if the session exists (false: the primary says it does not).
        found: bool,
    },
    /// A read started by `get` could not be answered (no ready primary
    /// answered within `accessTimeout`): neither found nor absent; retry.
    FetchFailed {
        /// Session id.
        id: SessionId,
    },
    /// The cluster's health as this node sees it changed (a member was
    /// added, lost or started leaving, or copies were restored).
    Health {
        /// Members in placement, this node included.
        members: usize,
        /// Sessions held here with fewer than `backupCount + 1` copies
        /// confirmed (too few members, or copies still in flight).
        under_replicated: usize,
    },
    /// State transfer is complete: the node holds its full share.
    Ready {
        /// Sessions held.
        sessions: usize,
    },
    /// State transfer failed; the node is not ready.
    TransferFailed {
        /// Why.
        reason: TransferFailure,
    },
    /// Every session this node held is handed over and acknowledged: safe to stop.
    Drained,
}

/// Life-cycle of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Created; `start` not called yet.
    Idle,
    /// Receiving state from the other members.
    Joining,
    /// Holds its share; serving.
    Ready,
    /// State transfer timed out; the node holds partial state.
    TransferFailed,
    /// Handing its sessions to the others.
    Draining,
    /// Everything handed over: safe to stop.
    Drained,
}

/// What `get` found.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The session is here.
    Local(&'a Session),
    /// Not here; it is being fetched from `owner` (a [`SessionEvent::Fetched`]
    /// follows). The host may instead forward the request to `owner`.
    Fetching {
        /// The member asked.
        owner: MemberKey,
    },
    /// This node gave the session away (drain): forward or redirect to `owner`.
    Moved(MemberKey),
    /// No such session.
    NotFound,
    /// Cannot be answered now (no ready primary of the session, or it may
    /// not hold every copy yet after a placement change): neither found nor
    /// absent. Retry shortly.
    Unavailable,
}

/// Counters of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Sessions held now.
    pub sessions: usize,
    /// Commits (with changes), creates, invalidations and id changes started here.
    pub commits: u64,
    /// Of those, acknowledged by every required copy.
    pub commits_acked: u64,
    /// Of those, not acknowledged.
    pub commits_failed: u64,
    /// Concurrent versions met (here or reported by a peer's refusal).
    pub conflicts: u64,
    /// Replicated changes applied here.
    pub applied: u64,
    /// Replicated changes ignored as older than what is here.
    pub stale: u64,
    /// Deltas refused for a missing base (a whole copy was then sent).
    pub gaps: u64,
    /// Whole copies sent (repair, rebalance, hand-off).
    pub copies_sent: u64,
    /// Messages that could not be decoded.
    pub decode_errors: u64,
    /// Sessions expired here.
    pub expired: u64,
    /// Sessions that became primary here after their primary left.
    pub promotions: u64,
    /// Copies sent to restore the configured number of copies.
    pub rereplications: u64,
    /// State transfers served to joiners.
    pub transfers_served: u64,
    /// State transfers received (as a joiner).
    pub transfers_received: u64,
    /// Sessions received through state transfer.
    pub sessions_transferred: u64,
    /// Fetches started.
    pub fetches: u64,
    /// Sessions handed over by drain.
    pub handoffs: u64,
    /// Commits handed to the session's primary by this node.
    pub forwarded: u64,
    /// Now: sessions held here with fewer than `backupCount + 1` copies
    /// confirmed (too few members, or re-replication still in flight). Safe
    /// to take the next node down only while this is 0 on every node.
    pub under_replicated: usize,
    /// Now: hand-offs in flight (drain hand-offs, copies released to their
    /// new holders, state transfers served).
    pub handoffs_in_progress: usize,
}

impl SessionStats {
    /// The counters in the Prometheus text format, names prefixed with
    /// `sessionrepl_session_` (gauges: `sessions`, `under_replicated`,
    /// `handoffs_in_progress`).
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write;
        let rows: [(&str, &str, u64, &str); 23] = [
            (
                "sessions",
                "gauge",
                self.sessions as u64,
                "sessions held here",
            ),
            ("commits", "counter", self.commits, "commits started here"),
            (
                "commits_acked",
                "counter",
                self.commits_acked,
                "commits acknowledged",
            ),
            (
                "commits_failed",
                "counter",
                self.commits_failed,
                "commits not acknowledged",
            ),
            (
                "conflicts",
                "counter",
                self.conflicts,
                "commits refused or met on a stale base",
            ),
            (
                "applied",
                "counter",
                self.applied,
                "replicated changes applied here",
            ),
            (
                "stale",
                "counter",
                self.stale,
                "replicated changes older than held",
            ),
            (
                "gaps",
                "counter",
                self.gaps,
                "deltas refused for a missing base",
            ),
            (
                "copies_sent",
                "counter",
                self.copies_sent,
                "whole copies sent",
            ),
            (
                "decode_errors",
                "counter",
                self.decode_errors,
                "undecodable messages",
            ),
            ("expired", "counter", self.expired, "sessions expired here"),
            (
                "promotions",
                "counter",
                self.promotions,
                "sessions promoted to primary here",
            ),
            (
                "rereplications",
                "counter",
                self.rereplications,
                "copies sent to restore the copy count",
            ),
            (
                "transfers_served",
                "counter",
                self.transfers_served,
                "state transfers served",
            ),
            (
                "transfers_received",
                "counter",
                self.transfers_received,
                "state transfers received",
            ),
            (
                "sessions_transferred",
                "counter",
                self.sessions_transferred,
                "sessions received by transfer",
            ),
            (
                "fetches",
                "counter",
                self.fetches,
                "reads asked of a primary",
            ),
            (
                "handoffs",
                "counter",
                self.handoffs,
                "sessions handed over by drain",
            ),
            (
                "forwarded",
                "counter",
                self.forwarded,
                "commits handed to the primary",
            ),
            (
                "under_replicated",
                "gauge",
                self.under_replicated as u64,
                "sessions with fewer copies than configured",
            ),
            (
                "handoffs_in_progress",
                "gauge",
                self.handoffs_in_progress as u64,
                "hand-offs in flight",
            ),
            (
                "at_risk",
                "gauge",
                (self.under_replicated > 0) as u64,
                "1 if losing another node now could lose acknowledged commits",
            ),
            (
                "commits_pending",
                "gauge",
                self.commits
                    .saturating_sub(self.commits_acked + self.commits_failed),
                "commits started here and not settled",
            ),
        ];
        let mut s = String::new();
        for (name, kind, v, help) in rows {
            let _ = writeln!(s, "# HELP sessionrepl_session_{name} {help}");
            let _ = writeln!(s, "# TYPE sessionrepl_session_{name} {kind}");
            let _ = writeln!(s, "sessionrepl_session_{name} {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::SessionStats;

    #[test]
    fn prometheus_text_has_the_risk_gauges() {
        let s = SessionStats {
            under_replicated: 3,
            conflicts: 2,
            ..SessionStats::default()
        };
        let t = s.to_prometheus();
        assert!(
            t.contains("# TYPE sessionrepl_session_under_replicated gauge\n"),
            "{t}"
        );
        assert!(
            t.contains("sessionrepl_session_under_replicated 3\n"),
            "{t}"
        );
        assert!(t.contains("sessionrepl_session_conflicts 2\n"), "{t}");
        assert!(t.contains("sessionrepl_session_at_risk 1\n"), "{t}");
    }
}
