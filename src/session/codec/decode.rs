//! Decoding: every length and count is bounded before anything is allocated.

use super::*;

/// Most member ids in a state request's view.
const MAX_VIEW: usize = 4096;

impl Message {
    /// Decodes one message.
    ///
    /// # Errors
    /// [`DecodeError`] for truncated, garbage or oversized input.
    pub fn decode(input: &Bytes, limits: &CodecLimits) -> Result<Message, DecodeError> {
        let mut r = Reader {
            buf: input,
            pos: 0,
            lim: limits,
        };
        let magic = r.u8()?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let v = r.u8()?;
        if v != CODEC_VERSION {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let t = r.u8()?;
        let m = match t {
            T_DELTA => Message::Delta(r.delta()?),
            T_ACCESS => Message::Access { id: r.id()? },
            T_COPY => {
                let reason = match r.u8()? {
                    0 => CopyReason::Create,
                    1 => CopyReason::Repair,
                    2 => CopyReason::Rebalance,
                    3 => CopyReason::Handoff,
                    4 => CopyReason::Release,
                    _ => return Err(DecodeError::Invalid("copy reason")),
                };
                Message::Copy {
                    reason,
                    session: r.image()?,
                }
            }
            T_REMOVE => {
                let id = r.id()?;
                let version = r.version()?;
                let reason = match r.u8()? {
                    0 => RemoveReason::Expired,
                    1 => RemoveReason::Invalidated,
                    _ => return Err(DecodeError::Invalid("remove reason")),
                };
                Message::Remove {
                    id,
                    version,
                    reason,
                }
            }
            T_CHANGE_ID => {
                let old = r.id()?;
                Message::ChangeId {
                    old,
                    session: r.image()?,
                }
            }
            T_STATE_REQUEST => {
                let transfer = r.varint()?;
                let n = r.count("view", MAX_VIEW, 16)?;
                let mut view = Vec::with_capacity(n);
                for _ in 0..n {
                    view.push(r.id16()?);
                }
                Message::StateRequest {
                    transfer,
                    view,
                    departures: r.u32()?,
                }
            }
            T_STATE_CHUNK => {
                let transfer = r.varint()?;
                let seq = r.u32()?;
                // Each image takes at least 21 bytes: bound the allocation by
                // what the input can actually hold.
                let n = r.count("sessions", limits.max_sessions_per_chunk, 21)?;
                let mut sessions = Vec::with_capacity(n);
                for _ in 0..n {
                    sessions.push(r.image()?);
                }
                Message::StateChunk {
                    transfer,
                    seq,
                    sessions,
                }
            }
            T_STATE_COMPLETE => Message::StateComplete {
                transfer: r.varint()?,
                chunks: r.u32()?,
                sessions: r.varint()?,
                departures: r.u32()?,
                leaving: r.flag()?,
            },
            T_CHUNK_ACK => Message::ChunkAck {
                transfer: r.varint()?,
                seq: r.u32()?,
            },
            T_FETCH_REQUEST => Message::FetchRequest {
                fetch: r.varint()?,
                id: r.id()?,
            },
            T_FETCH_REPLY => {
                let fetch = r.varint()?;
                let id = r.id()?;
                let session = match r.u8()? {
                    0 => None,
                    1 => Some(r.image()?),
                    _ => return Err(DecodeError::Invalid("fetch reply flag")),
                };
                Message::FetchReply { fetch, id, session }
            }
            T_LEAVING => Message::Leaving,
            T_FORWARD => {
                let req = r.varint()?;
                let flags = r.u8()?;
                if flags & !3 != 0 {
                    return Err(DecodeError::Invalid("forward flags"));
                }
                Message::Forward {
                    req,
                    create: flags & 1 != 0,
                    check_base: flags & 2 != 0,
                    creation_time: r.varint()?,
                    txn: r.delta()?,
                }
            }
            T_FORWARD_CHANGE_ID => Message::ForwardChangeId {
                req: r.varint()?,
                old: r.id()?,
                new: r.id()?,
            },
            T_COMMIT_RESULT => {
                let req = r.varint()?;
                let outcome = match r.u8()? {
                    0 => ForwardOutcome::Acked,
                    1 => ForwardOutcome::Conflict,
                    2 => ForwardOutcome::Unacknowledged,
                    3 => ForwardOutcome::Unavailable,
                    4 => ForwardOutcome::NotFound,
                    _ => return Err(DecodeError::Invalid("commit outcome")),
                };
                let copies = r.varint()?;
                if copies > u32::MAX as u64 {
                    return Err(DecodeError::Invalid("copies"));
                }
                Message::CommitResult {
                    req,
                    outcome,
                    copies: copies as u32,
                }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        let left = input.len() - r.pos;
        if left != 0 {
            return Err(DecodeError::TrailingBytes(left));
        }
        Ok(m)
    }
}

// ---------------------------------------------------------------- decoding

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    lim: &'a CodecLimits,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid("flag not 0 or 1")),
        }
    }
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(DecodeError::Invalid("varint overflow"));
            }
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid("varint too long"))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Invalid("u32 out of range"))
    }
    /// A count of items each at least `min_item` bytes long.
    fn count(
        &mut self,
        field: &'static str,
        limit: usize,
        min_item: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > limit as u64 {
            return Err(DecodeError::TooLong {
                field,
                len: n,
                limit: limit as u64,
            });
        }
        if n.saturating_mul(min_item as u64) > self.left() as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }
    fn bytes(&mut self, field: &'static str, limit: usize) -> Result<Bytes, DecodeError> {
        let n = self.varint()?;
        if n > limit as u64 {
            return Err(DecodeError::TooLong {
                field,
                len: n,
                limit: limit as u64,
            });
        }
        if n > self.left() as u64 {
            return Err(DecodeError::Truncated);
        }
        let n = n as usize;
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }
    fn id(&mut self) -> Result<Bytes, DecodeError> {
        self.bytes("session id", self.lim.max_id_len)
    }
    fn opt(&mut self, field: &'static str) -> Result<Option<Bytes>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes(field, self.lim.max_value_len)?)),
            _ => Err(DecodeError::Invalid("option flag")),
        }
    }
    fn id16(&mut self) -> Result<[u8; 16], DecodeError> {
        if self.left() < 16 {
            return Err(DecodeError::Truncated);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.buf[self.pos..self.pos + 16]);
        self.pos += 16;
        Ok(id)
    }
    fn version(&mut self) -> Result<Version, DecodeError> {
        let counter = self.varint()?;
        if self.left() < 16 {
            return Err(DecodeError::Truncated);
        }
        let mut writer = [0u8; 16];
        writer.copy_from_slice(&self.buf[self.pos..self.pos + 16]);
        self.pos += 16;
        Ok(Version { counter, writer })
    }
    fn meta(&mut self) -> Result<SessionMeta, DecodeError> {
        Ok(SessionMeta {
            creation_time: self.varint()?,
            max_inactive_secs: unzigzag(self.varint()?),
            principal: self.opt("principal")?,
            auth_type: self.opt("auth type")?,
        })
    }
    fn image(&mut self) -> Result<SessionImage, DecodeError> {
        let id = self.id()?;
        let version = self.version()?;
        let meta = self.meta()?;
        let idle_ms = self.varint()?;
        let lost = self.u8()?.min(MAX_LOST);
        let n = self.count("attributes", self.lim.max_attrs, 2)?;
        let mut attrs = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.bytes("attribute name", self.lim.max_name_len)?;
            let v = self.bytes("attribute value", self.lim.max_value_len)?;
            attrs.push((k, v));
        }
        Ok(SessionImage {
            id,
            version,
            meta,
            idle_ms,
            lost,
            attrs,
        })
    }
    fn delta(&mut self) -> Result<Delta, DecodeError> {
        let id = self.id()?;
        let base = self.version()?;
        let version = self.version()?;
        let n = self.count("delta operations", self.lim.max_ops, 2)?;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            match self.u8()? {
                0 => {
                    let k = self.bytes("attribute name", self.lim.max_name_len)?;
                    let v = self.bytes("attribute value", self.lim.max_value_len)?;
                    ops.push(AttrOp::Set(k, v));
                }
                1 => ops.push(AttrOp::Remove(
                    self.bytes("attribute name", self.lim.max_name_len)?,
                )),
                _ => return Err(DecodeError::Invalid("delta operation")),
            }
        }
        let flags = self.u8()?;
        if flags & !7 != 0 {
            return Err(DecodeError::Invalid("delta meta flags"));
        }
        let mut meta = MetaChange::default();
        if flags & 1 != 0 {
            meta.max_inactive_secs = Some(unzigzag(self.varint()?));
        }
        if flags & 2 != 0 {
            meta.principal = Some(self.opt("principal")?);
        }
        if flags & 4 != 0 {
            meta.auth_type = Some(self.opt("auth type")?);
        }
        Ok(Delta {
            id,
            base,
            version,
            ops,
            meta,
        })
    }
}
