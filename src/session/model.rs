//! The data model: members, versions, sessions and the changes a request
//! records (a [`Txn`]).

use crate::session::hash::HashMap;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A session id: opaque bytes (hosts usually pass the cookie value).
pub type SessionId = Bytes;

/// How the store names a cluster member: its 16-byte member id plus the
/// address the channel reaches it at. Ordered by id first, so every node
/// sorts members the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberKey {
    /// The member's 16-byte id (unique in the cluster).
    pub id: [u8; 16],
    /// The address the channel sends to.
    pub addr: SocketAddr,
}

impl MemberKey {
    /// A member key from its id and address.
    pub fn new(id: [u8; 16], addr: SocketAddr) -> Self {
        MemberKey { id, addr }
    }
}

/// The version of a session: a counter bumped by every commit, plus the id
/// of the member that wrote it. Versions are totally ordered (counter, then
/// writer), which is how concurrent commits of one session on two nodes are
/// resolved the same way everywhere: the higher version wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Version {
    /// Number of commits that led to this state.
    pub counter: u64,
    /// Member id of the writer of this state.
    pub writer: [u8; 16],
}

/// The most departed primaries a copy counts ([`Session::lost`]); a new
/// term starts at most `2^MAX_LOST` terms ahead of its base.
pub(crate) const MAX_LOST: u8 = 16;

impl Version {
    /// The first version of a new term (the counter's high 32 bits) that a
    /// primary `writer` starts on top of `self`, `lost` primaries of the
    /// session having left the view since `self` was written: `2^lost`
    /// terms ahead (`lost` capped at [`MAX_LOST`]), so it outranks every
    /// term those primaries may have started without anyone knowing (each
    /// jumped by less than `2^i` after `i` losses, and `2^lost` exceeds
    /// `1 + 2 + ... + 2^(lost-1)`). Past the last term (2^32 - 1) it only
    /// counts up within it, as [`Version::next`].
    pub(crate) fn new_term(self, lost: u8, writer: [u8; 16]) -> Version {
        let jump = 1u64 << lost.min(MAX_LOST);
        let term = (self.counter >> 32)
            .saturating_add(jump)
            .min(u64::from(u32::MAX));
        let counter = term << 32;
        if counter <= self.counter {
            return self.next(writer);
        }
        Version { counter, writer }
    }

    /// The version a commit by `writer` on top of `self` produces.
    pub fn next(self, writer: [u8; 16]) -> Version {
        Version {
            counter: self.counter.saturating_add(1),
            writer,
        }
    }
}

/// Session metadata, replicated with the attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionMeta {
    /// Creation time as the host counts it (opaque to the store, e.g. epoch ms).
    pub creation_time: u64,
    /// Seconds of inactivity after which the session expires; negative: never.
    pub max_inactive_secs: i64,
    /// Authenticated principal, serialized by the host.
    pub principal: Option<Bytes>,
    /// Authentication type, serialized by the host.
    pub auth_type: Option<Bytes>,
}

/// One replicated session.
#[derive(Debug, Clone)]
pub struct Session {
    pub(crate) id: SessionId,
    pub(crate) attrs: HashMap<Bytes, Bytes>,
    pub(crate) meta: SessionMeta,
    pub(crate) version: Version,
    /// Last access as this node saw it (requests here, or refreshes).
    pub(crate) last_access: Instant,
    /// When this node last told others about an access (refresh throttle).
    pub(crate) last_replicated: Instant,
    /// How many primaries of the session left the placement set (lost or
    /// drained) since `version` was written, as far as this node knows:
    /// counted here, or carried by the copy it came in (plus departures
    /// seen here while a copy may have been in flight). An upper bound, at
    /// most [`MAX_LOST`]; 0 again once a commit advances the version. A
    /// primary's commit on this copy starts a term `2^lost` ahead
    /// ([`Version::new_term`]).
    pub(crate) lost: u8,
    /// The highest `lost` that every holder acknowledged for `version`
    /// (primary only: a repair copy all of them acknowledged). A new term
    /// that relies on a higher count waits until they have it.
    pub(crate) lost_on_holders: u8,
}

impl Session {
    pub(crate) fn new(id: SessionId, meta: SessionMeta, version: Version, now: Instant) -> Self {
        Session {
            id,
            attrs: HashMap::default(),
            meta,
            version,
            last_access: now,
            last_replicated: now,
            lost: 0,
            lost_on_holders: 0,
        }
    }
    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }
    /// One attribute's value.
    pub fn attribute(&self, name: &[u8]) -> Option<&Bytes> {
        self.attrs.get(name)
    }
    /// All attributes, in no particular order.
    pub fn attributes(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.attrs.iter()
    }
    /// Number of attributes.
    pub fn attribute_count(&self) -> usize {
        self.attrs.len()
    }
    /// The metadata.
    pub fn meta(&self) -> &SessionMeta {
        &self.meta
    }
    /// The current version.
    pub fn version(&self) -> Version {
        self.version
    }
    /// When this node last saw the session accessed.
    pub fn last_access(&self) -> Instant {
        self.last_access
    }
    /// Milliseconds since the last access, as of `now`.
    pub fn idle_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.last_access).as_millis() as u64
    }
    /// True if the session has been idle longer than its max inactive interval.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.meta.max_inactive_secs >= 0
            && now.saturating_duration_since(self.last_access)
                > Duration::from_secs(self.meta.max_inactive_secs as u64)
    }
    /// Applies attribute operations and metadata changes (no version change).
    pub(crate) fn apply(&mut self, ops: &[AttrOp], meta: &MetaChange) {
        for op in ops {
            match op {
                AttrOp::Set(n, v) => {
                    self.attrs.insert(n.clone(), v.clone());
                }
                AttrOp::Remove(n) => {
                    self.attrs.remove(n);
                }
            }
        }
        if let Some(m) = meta.max_inactive_secs {
            self.meta.max_inactive_secs = m;
        }
        if let Some(p) = &meta.principal {
            self.meta.principal = p.clone();
        }
        if let Some(a) = &meta.auth_type {
            self.meta.auth_type = a.clone();
        }
    }
}

/// One attribute change recorded during a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrOp {
    /// Set `name` to `value` (opaque bytes the host serialized).
    Set(Bytes, Bytes),
    /// Remove `name`.
    Remove(Bytes),
}

/// Metadata changes recorded during a request (`None` = unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetaChange {
    /// New max inactive interval in seconds.
    pub max_inactive_secs: Option<i64>,
    /// New principal (`Some(None)` clears it).
    pub principal: Option<Option<Bytes>>,
    /// New auth type (`Some(None)` clears it).
    pub auth_type: Option<Option<Bytes>>,
}

impl MetaChange {
    /// True if nothing changes.
    pub fn is_empty(&self) -> bool {
        self.max_inactive_secs.is_none() && self.principal.is_none() && self.auth_type.is_none()
    }
}

/// The changes one request makes to one session, committed at request end
/// (Tomcat's ReplicationValve moment) with `SessionNode::commit`.
#[derive(Debug, Clone)]
pub struct Txn {
    pub(crate) id: SessionId,
    pub(crate) ops: Vec<AttrOp>,
    pub(crate) meta: MetaChange,
    pub(crate) base: Option<Version>,
}

impl Txn {
    /// An empty transaction on session `id`.
    pub fn new(id: impl Into<SessionId>) -> Self {
        Txn {
            id: id.into(),
            ops: Vec::new(),
            meta: MetaChange::default(),
            base: None,
        }
    }
    /// An empty transaction on `session`, based on the version it was read
    /// at (see [`Txn::set_base`]).
    pub fn on(session: &Session) -> Self {
        let mut t = Txn::new(session.id.clone());
        t.base = Some(session.version);
        t
    }
    /// Optimistic concurrency: the commit applies only if the session is
    /// still at `version` (the version the request read, from
    /// [`Session::version`]) on its primary; otherwise it fails with
    /// `Error::Conflict` and changes nothing. The check is per session,
    /// not per attribute: any other commit in between conflicts. Without a
    /// base, a commit applies on whatever version is current (last writer
    /// wins).
    pub fn set_base(&mut self, version: Version) -> &mut Self {
        self.base = Some(version);
        self
    }
    /// The version this transaction was read at, if set.
    pub fn base(&self) -> Option<Version> {
        self.base
    }
    /// The session this transaction changes.
    pub fn id(&self) -> &SessionId {
        &self.id
    }
    /// Records `name = value`.
    pub fn set(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.ops.push(AttrOp::Set(name.into(), value.into()));
        self
    }
    /// Records the removal of `name`.
    pub fn remove(&mut self, name: impl Into<Bytes>) -> &mut Self {
        self.ops.push(AttrOp::Remove(name.into()));
        self
    }
    /// Records a new max inactive interval (seconds; negative: never expire).
    pub fn set_max_inactive(&mut self, secs: i64) -> &mut Self {
        self.meta.max_inactive_secs = Some(secs);
        self
    }
    /// Records a new principal (`None` clears it).
    pub fn set_principal(&mut self, principal: Option<Bytes>) -> &mut Self {
        self.meta.principal = Some(principal);
        self
    }
    /// Records a new auth type (`None` clears it).
    pub fn set_auth_type(&mut self, auth_type: Option<Bytes>) -> &mut Self {
        self.meta.auth_type = Some(auth_type);
        self
    }
    /// True if the transaction changes nothing (the request only read).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.meta.is_empty()
    }
}
