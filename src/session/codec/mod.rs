//! The compact binary codec of the store's own messages (not Java
//! serialization).
//!
//! Every message starts with `0xD5`, the codec version (2) and a type byte.
//! Integers are LEB128 varints (signed ones zigzag), byte strings are a
//! varint length then the bytes, a version is a varint counter then the
//! 16-byte writer id. Decoding treats input as hostile: every length and
//! count is checked against [`CodecLimits`] and against the bytes actually
//! left before anything is allocated, trailing bytes are refused, and
//! nothing panics. Decoded attribute values are slices of the input
//! [`Bytes`] (no copy).

use super::model::{AttrOp, MetaChange, Session, SessionId, SessionMeta, Version, MAX_LOST};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use std::time::Instant;

const MAGIC: u8 = 0xD5;
const CODEC_VERSION: u8 = 3;

const T_DELTA: u8 = 1;
const T_ACCESS: u8 = 2;
const T_COPY: u8 = 3;
const T_REMOVE: u8 = 4;
const T_CHANGE_ID: u8 = 5;
const T_STATE_REQUEST: u8 = 6;
const T_STATE_CHUNK: u8 = 7;
const T_STATE_COMPLETE: u8 = 8;
const T_CHUNK_ACK: u8 = 9;
const T_FETCH_REQUEST: u8 = 10;
const T_FETCH_REPLY: u8 = 11;
const T_LEAVING: u8 = 12;
const T_FORWARD: u8 = 13;
const T_COMMIT_RESULT: u8 = 14;
const T_FORWARD_CHANGE_ID: u8 = 15;

/// Bounds the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecLimits {
    /// Longest session id.
    pub max_id_len: usize,
    /// Longest attribute name.
    pub max_name_len: usize,
    /// Largest attribute value (and principal / auth type).
    pub max_value_len: usize,
    /// Most attributes in one session image.
    pub max_attrs: usize,
    /// Most operations in one delta.
    pub max_ops: usize,
    /// Most sessions in one state-transfer chunk.
    pub max_sessions_per_chunk: usize,
}

impl Default for CodecLimits {
    fn default() -> Self {
        CodecLimits {
            max_id_len: 1024,
            max_name_len: 4096,
            max_value_len: 64 << 20,
            max_attrs: 1 << 16,
            max_ops: 1 << 16,
            max_sessions_per_chunk: 1 << 20,
        }
    }
}

/// A whole session as it travels (copies, transfer chunks, fetch replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionImage {
    /// Session id.
    pub id: SessionId,
    /// Version of this state.
    pub version: Version,
    /// Metadata.
    pub meta: SessionMeta,
    /// Milliseconds since the last access, as the sender saw it.
    pub idle_ms: u64,
    /// Primaries of the session the sender saw leave the view since
    /// `version` was written (decoded values above 16 read as 16). A new
    /// primary's first commit on this copy starts a term `2^lost` ahead.
    pub lost: u8,
    /// Attributes.
    pub attrs: Vec<(Bytes, Bytes)>,
}

impl SessionImage {
    /// The image of a session as of `now`.
    pub fn of(s: &Session, now: Instant) -> Self {
        SessionImage {
            id: s.id.clone(),
            version: s.version,
            meta: s.meta.clone(),
            idle_ms: s.idle_ms(now),
            lost: s.lost,
            attrs: s
                .attrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
    /// Turns the image into a session, last accessed `idle_ms` before `now`.
    pub fn into_session(self, now: Instant) -> Session {
        let last = now
            .checked_sub(std::time::Duration::from_millis(self.idle_ms))
            .unwrap_or(now);
        let mut s = Session::new(self.id, self.meta, self.version, last);
        s.lost = self.lost.min(MAX_LOST);
        s.attrs.reserve(self.attrs.len());
        s.attrs.extend(self.attrs);
        s
    }
}

/// What changed in one commit: sent instead of the whole session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// Session id.
    pub id: SessionId,
    /// The version the change was made on.
    pub base: Version,
    /// The version it produces.
    pub version: Version,
    /// Attribute changes.
    pub ops: Vec<AttrOp>,
    /// Metadata changes.
    pub meta: MetaChange,
}

/// Why a whole copy of a session is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyReason {
    /// The session was just created.
    Create = 0,
    /// The receiver refused a delta (gap) or a copy was lost: full state.
    Repair = 1,
    /// Placement changed (member lost): re-replication to a new holder.
    Rebalance = 2,
    /// Drain before shutdown: the sender hands the session over.
    Handoff = 3,
    /// The sender no longer holds the session by its placement and drops
    /// its copy once every holder acknowledged this one (hand-off before
    /// release). A receiver whose placement still has the sender as a
    /// holder refuses it, and the sender keeps its copy.
    Release = 4,
}

/// Why a session is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Idle past its max inactive interval.
    Expired = 0,
    /// Invalidated by the application.
    Invalidated = 1,
}

/// One message of the session store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A commit's changes.
    Delta(Delta),
    /// The session was read (refreshes its last access).
    Access {
        /// Session id.
        id: SessionId,
    },
    /// A whole session.
    Copy {
        /// Why.
        reason: CopyReason,
        /// The session.
        session: SessionImage,
    },
    /// Expiry or invalidation.
    Remove {
        /// Session id.
        id: SessionId,
        /// Version at removal.
        version: Version,
        /// Why.
        reason: RemoveReason,
    },
    /// Rename (`old` disappears, `session` carries the new id and all state).
    ChangeId {
        /// The old id.
        old: SessionId,
        /// The session under its new id.
        session: SessionImage,
    },
    /// A joiner asks for its share of the sessions.
    StateRequest {
        /// Transfer id chosen by the joiner.
        transfer: u64,
        /// The member ids the joiner places sessions on (itself included):
        /// a donor sends every session the joiner holds by this view too,
        /// since it may lack members that died unnoticed.
        view: Vec<[u8; 16]>,
        /// Departures from the placement set the joiner has counted
        /// ([`crate::session::SessionNode::departures`]).
        departures: u32,
    },
    /// One chunk of a state transfer.
    StateChunk {
        /// Transfer id.
        transfer: u64,
        /// Chunk sequence number, from 0.
        seq: u32,
        /// Sessions.
        sessions: Vec<SessionImage>,
    },
    /// The donor has sent everything.
    StateComplete {
        /// Transfer id.
        transfer: u64,
        /// Number of chunks sent (sequence numbers `0..chunks`).
        chunks: u32,
        /// Number of sessions sent.
        sessions: u64,
        /// Departures from the placement set the donor has counted
        /// ([`crate::session::SessionNode::departures`]).
        departures: u32,
        /// The donor is draining: the joiner must not place sessions on it.
        leaving: bool,
    },
    /// The joiner applied a chunk (flow control).
    ChunkAck {
        /// Transfer id.
        transfer: u64,
        /// Chunk sequence number.
        seq: u32,
    },
    /// A non-holder asks an owner for a session (backup mode).
    FetchRequest {
        /// Request id.
        fetch: u64,
        /// Session id.
        id: SessionId,
    },
    /// Reply to a fetch.
    FetchReply {
        /// Request id.
        fetch: u64,
        /// Session id.
        id: SessionId,
        /// The session, if the owner has it.
        session: Option<SessionImage>,
    },
    /// Ownership notice: the sender is draining; leave it out of placement.
    Leaving,
    /// A commit (or create) a node that is not the session's primary hands
    /// to the primary, the one member that orders the session's commits.
    /// The primary answers with a [`Message::CommitResult`].
    Forward {
        /// Request id chosen by the sender.
        req: u64,
        /// Create the session (it must not exist) rather than change it.
        create: bool,
        /// Apply only if the primary holds version `txn.base`.
        check_base: bool,
        /// Creation time, for a create.
        creation_time: u64,
        /// The session id, the base version, the changes (`version` unused).
        txn: Delta,
    },
    /// A rename asked on a node that holds no copy of the session, handed
    /// to the session's primary (as [`Message::Forward`] hands a commit).
    /// The primary answers with a [`Message::CommitResult`].
    ForwardChangeId {
        /// Request id chosen by the sender.
        req: u64,
        /// The session's id now.
        old: SessionId,
        /// Its new id.
        new: SessionId,
    },
    /// The outcome of a [`Message::Forward`] or [`Message::ForwardChangeId`].
    CommitResult {
        /// The request id of the forward.
        req: u64,
        /// What happened.
        outcome: ForwardOutcome,
        /// Copies that acknowledged (with [`ForwardOutcome::Acked`]).
        copies: u32,
    },
}

/// The outcome of a forwarded commit, as the primary reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// Applied and acknowledged by every required copy.
    Acked = 0,
    /// Not applied: the base was not current (or the id exists, for a create).
    Conflict = 1,
    /// Applied on the primary, but not acknowledged by every copy: it may or may not survive.
    Unacknowledged = 2,
    /// Not applied: the receiver is not a ready primary of the session, or too few holders are up.
    Unavailable = 3,
    /// Not applied: no such session.
    NotFound = 4,
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a field.
    Truncated,
    /// The first byte is not the session-store magic.
    BadMagic(u8),
    /// An unknown codec version.
    UnsupportedVersion(u8),
    /// An unknown message type.
    UnknownType(u8),
    /// A length or count exceeds its bound.
    TooLong {
        /// Which field.
        field: &'static str,
        /// Declared length or count.
        len: u64,
        /// Bound.
        limit: u64,
    },
    /// A field has an impossible value.
    Invalid(&'static str),
    /// Bytes left over after the message.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "truncated session message"),
            DecodeError::BadMagic(b) => write!(f, "bad magic byte {b:#04x}"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported codec version {v}"),
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t}"),
            DecodeError::TooLong { field, len, limit } => {
                write!(f, "{field} of {len} exceeds the limit of {limit}")
            }
            DecodeError::Invalid(s) => write!(f, "invalid field: {s}"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
        }
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------- encoding

fn put_varint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    put_varint(b, v.len() as u64);
    b.put_slice(v);
}

fn put_opt(b: &mut BytesMut, v: &Option<Bytes>) {
    match v {
        None => b.put_u8(0),
        Some(x) => {
            b.put_u8(1);
            put_bytes(b, x);
        }
    }
}

fn put_version(b: &mut BytesMut, v: Version) {
    put_varint(b, v.counter);
    b.put_slice(&v.writer);
}

fn put_meta(b: &mut BytesMut, m: &SessionMeta) {
    put_varint(b, m.creation_time);
    put_varint(b, zigzag(m.max_inactive_secs));
    put_opt(b, &m.principal);
    put_opt(b, &m.auth_type);
}

fn header(b: &mut BytesMut, t: u8) {
    b.put_slice(&[MAGIC, CODEC_VERSION, t]);
}

fn opt_len(v: &Option<Bytes>) -> usize {
    v.as_ref().map_or(1, |x| x.len() + 11)
}

fn meta_len(m: &SessionMeta) -> usize {
    20 + opt_len(&m.principal) + opt_len(&m.auth_type)
}

/// Upper bound of the encoded size of a session image.
fn session_len<'a>(
    id: &[u8],
    meta: &SessionMeta,
    attrs: impl Iterator<Item = (&'a Bytes, &'a Bytes)>,
) -> usize {
    let a: usize = attrs.map(|(k, v)| k.len() + v.len() + 20).sum();
    id.len() + 10 + 27 + meta_len(meta) + 10 + 1 + 10 + a
}

fn put_session<'a>(
    b: &mut BytesMut,
    id: &[u8],
    version: Version,
    meta: &SessionMeta,
    (idle_ms, lost): (u64, u8),
    count: usize,
    attrs: impl Iterator<Item = (&'a Bytes, &'a Bytes)>,
) {
    put_bytes(b, id);
    put_version(b, version);
    put_meta(b, meta);
    put_varint(b, idle_ms);
    b.put_u8(lost);
    put_varint(b, count as u64);
    for (k, v) in attrs {
        put_bytes(b, k);
        put_bytes(b, v);
    }
}

fn put_image(b: &mut BytesMut, s: &SessionImage) {
    put_session(
        b,
        &s.id,
        s.version,
        &s.meta,
        (s.idle_ms, s.lost),
        s.attrs.len(),
        s.attrs.iter().map(|(k, v)| (k, v)),
    );
}

fn image_len(s: &SessionImage) -> usize {
    session_len(&s.id, &s.meta, s.attrs.iter().map(|(k, v)| (k, v)))
}

fn put_live(b: &mut BytesMut, s: &Session, now: Instant) {
    put_session(
        b,
        &s.id,
        s.version,
        &s.meta,
        (s.idle_ms(now), s.lost),
        s.attrs.len(),
        s.attrs.iter(),
    );
}

/// Upper bound of the encoded size of a live session.
pub(crate) fn live_len(s: &Session) -> usize {
    session_len(&s.id, &s.meta, s.attrs.iter())
}

fn put_delta(b: &mut BytesMut, d: &Delta) {
    put_bytes(b, &d.id);
    put_version(b, d.base);
    put_version(b, d.version);
    put_varint(b, d.ops.len() as u64);
    for op in &d.ops {
        match op {
            AttrOp::Set(n, v) => {
                b.put_u8(0);
                put_bytes(b, n);
                put_bytes(b, v);
            }
            AttrOp::Remove(n) => {
                b.put_u8(1);
                put_bytes(b, n);
            }
        }
    }
    let m = &d.meta;
    let flags = (m.max_inactive_secs.is_some() as u8)
        | ((m.principal.is_some() as u8) << 1)
        | ((m.auth_type.is_some() as u8) << 2);
    b.put_u8(flags);
    if let Some(x) = m.max_inactive_secs {
        put_varint(b, zigzag(x));
    }
    if let Some(p) = &m.principal {
        put_opt(b, p);
    }
    if let Some(a) = &m.auth_type {
        put_opt(b, a);
    }
}

fn delta_len(d: &Delta) -> usize {
    let ops: usize = d
        .ops
        .iter()
        .map(|op| match op {
            AttrOp::Set(n, v) => n.len() + v.len() + 21,
            AttrOp::Remove(n) => n.len() + 11,
        })
        .sum();
    let m = &d.meta;
    let meta =
        11 + m.principal.as_ref().map_or(0, opt_len) + m.auth_type.as_ref().map_or(0, opt_len);
    3 + d.id.len() + 10 + 54 + 10 + ops + meta
}

impl Message {
    /// Encodes the message.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut b);
        b.freeze()
    }

    fn encoded_len_hint(&self) -> usize {
        match self {
            Message::Delta(d) | Message::Forward { txn: d, .. } => 25 + delta_len(d),
            Message::Copy { session, .. } => 4 + image_len(session),
            Message::ChangeId { old, session } => 14 + old.len() + image_len(session),
            Message::StateChunk { sessions, .. } => {
                30 + sessions.iter().map(image_len).sum::<usize>()
            }
            Message::FetchReply { id, session, .. } => {
                25 + id.len() + session.as_ref().map_or(0, image_len)
            }
            Message::Access { id }
            | Message::Remove { id, .. }
            | Message::FetchRequest { id, .. } => 50 + id.len(),
            Message::ForwardChangeId { old, new, .. } => 30 + old.len() + new.len(),
            _ => 32,
        }
    }

    /// Appends the encoded message to `b`.
    pub fn encode_into(&self, b: &mut BytesMut) {
        match self {
            Message::Delta(d) => {
                header(b, T_DELTA);
                put_delta(b, d);
            }
            Message::Access { id } => {
                header(b, T_ACCESS);
                put_bytes(b, id);
            }
            Message::Copy { reason, session } => {
                header(b, T_COPY);
                b.put_u8(*reason as u8);
                put_image(b, session);
            }
            Message::Remove {
                id,
                version,
                reason,
            } => {
                header(b, T_REMOVE);
                put_bytes(b, id);
                put_version(b, *version);
                b.put_u8(*reason as u8);
            }
            Message::ChangeId { old, session } => {
                header(b, T_CHANGE_ID);
                put_bytes(b, old);
                put_image(b, session);
            }
            Message::StateRequest {
                transfer,
                view,
                departures,
            } => {
                header(b, T_STATE_REQUEST);
                put_varint(b, *transfer);
                put_varint(b, view.len() as u64);
                for id in view {
                    b.put_slice(id);
                }
                put_varint(b, u64::from(*departures));
            }
            Message::StateChunk {
                transfer,
                seq,
                sessions,
            } => {
                header(b, T_STATE_CHUNK);
                put_varint(b, *transfer);
                put_varint(b, *seq as u64);
                put_varint(b, sessions.len() as u64);
                for s in sessions {
                    put_image(b, s);
                }
            }
            Message::StateComplete {
                transfer,
                chunks,
                sessions,
                departures,
                leaving,
            } => {
                header(b, T_STATE_COMPLETE);
                put_varint(b, *transfer);
                put_varint(b, *chunks as u64);
                put_varint(b, *sessions);
                put_varint(b, u64::from(*departures));
                b.put_u8(u8::from(*leaving));
            }
            Message::ChunkAck { transfer, seq } => {
                header(b, T_CHUNK_ACK);
                put_varint(b, *transfer);
                put_varint(b, *seq as u64);
            }
            Message::FetchRequest { fetch, id } => {
                header(b, T_FETCH_REQUEST);
                put_varint(b, *fetch);
                put_bytes(b, id);
            }
            Message::FetchReply { fetch, id, session } => {
                header(b, T_FETCH_REPLY);
                put_varint(b, *fetch);
                put_bytes(b, id);
                match session {
                    None => b.put_u8(0),
                    Some(s) => {
                        b.put_u8(1);
                        put_image(b, s);
                    }
                }
            }
            Message::Leaving => header(b, T_LEAVING),
            Message::Forward {
                req,
                create,
                check_base,
                creation_time,
                txn,
            } => {
                header(b, T_FORWARD);
                put_varint(b, *req);
                b.put_u8((*create as u8) | ((*check_base as u8) << 1));
                put_varint(b, *creation_time);
                put_delta(b, txn);
            }
            Message::ForwardChangeId { req, old, new } => {
                header(b, T_FORWARD_CHANGE_ID);
                put_varint(b, *req);
                put_bytes(b, old);
                put_bytes(b, new);
            }
            Message::CommitResult {
                req,
                outcome,
                copies,
            } => {
                header(b, T_COMMIT_RESULT);
                put_varint(b, *req);
                b.put_u8(*outcome as u8);
                put_varint(b, *copies as u64);
            }
        }
    }
}

/// Encodes a copy of a live session without building an image first.
pub(crate) fn encode_copy(reason: CopyReason, s: &Session, now: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + live_len(s));
    header(&mut b, T_COPY);
    b.put_u8(reason as u8);
    put_live(&mut b, s, now);
    b.freeze()
}

/// Encodes a rename: the session `s` (already under its new id) replaces `old`.
pub(crate) fn encode_change_id(old: &[u8], s: &Session, now: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(14 + old.len() + live_len(s));
    header(&mut b, T_CHANGE_ID);
    put_bytes(&mut b, old);
    put_live(&mut b, s, now);
    b.freeze()
}

/// Encodes a fetch reply carrying a live session (or none).
pub(crate) fn encode_fetch_reply(
    fetch: u64,
    id: &[u8],
    s: Option<&Session>,
    now: Instant,
) -> Bytes {
    let mut b = BytesMut::with_capacity(25 + id.len() + s.map_or(0, live_len));
    header(&mut b, T_FETCH_REPLY);
    put_varint(&mut b, fetch);
    put_bytes(&mut b, id);
    match s {
        None => b.put_u8(0),
        Some(s) => {
            b.put_u8(1);
            put_live(&mut b, s, now);
        }
    }
    b.freeze()
}

/// Encodes one state-transfer chunk straight from live sessions.
pub(crate) fn encode_chunk(
    transfer: u64,
    seq: u32,
    sessions: &[&Session],
    bytes_hint: usize,
    now: Instant,
) -> Bytes {
    let mut b = BytesMut::with_capacity(bytes_hint + 30);
    header(&mut b, T_STATE_CHUNK);
    put_varint(&mut b, transfer);
    put_varint(&mut b, seq as u64);
    put_varint(&mut b, sessions.len() as u64);
    for s in sessions {
        put_live(&mut b, s, now);
    }
    b.freeze()
}

mod decode;

#[cfg(test)]
mod tests;
