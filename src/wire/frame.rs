//! Native frame header: 16 bytes, big-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | type |
//! | 1 | 1 | flags |
//! | 2 | 2 | reserved, zero |
//! | 4 | 4 | payload length |
//! | 8 | 8 | message id |

use crate::error::{Error, Result};

/// Length of a frame header.
pub const HEADER_LEN: usize = 16;

/// DATA flag: payload is deflate-compressed.
pub const FLAG_COMPRESSED: u8 = 0x01;
/// DATA flag: ack on receipt (Tribes `USE_ACK`).
pub const FLAG_ACK_RECEIPT: u8 = 0x02;
/// DATA flag: ack after delivery, FAIL if the listener fails
/// (Tribes `USE_ACK|SYNCHRONIZED_ACK`).
pub const FLAG_ACK_DELIVERY: u8 = 0x04;
/// DATA flag: a sequence marker, not a message. Its 16-byte payload is
/// the sending stream's epoch and the sequence number of the next message
/// on this connection (both big-endian u64); see `docs/PROTOCOL.md`
/// ("Exactly-once across reconnects"). Never delivered to a listener.
pub const FLAG_SEQ: u8 = 0x08;
/// Length of a sequence marker's payload.
pub const SEQ_MARKER_LEN: usize = 16;
pub(crate) const DATA_FLAGS: u8 = FLAG_COMPRESSED | FLAG_ACK_RECEIPT | FLAG_ACK_DELIVERY | FLAG_SEQ;
/// Not a wire flag: marks a queued DATA frame that the I/O thread is to
/// compress (in a BATCH with its neighbours). Never written.
pub const FLAG_INTERNAL_DEFLATE: u8 = 0x80;

/// Size of one ACK range on the wire: first id (8) + count (4).
pub const ACK_RANGE_LEN: usize = 12;
/// Most ranges one ACK frame may carry.
pub const MAX_ACK_RANGES: usize = 4096;
/// Longest FAIL/GOAWAY reason accepted.
pub const MAX_REASON_LEN: usize = 1024;

/// Frame type byte.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// A message.
    Data = 1,
    /// Acknowledges ranges of message ids.
    Ack = 2,
    /// A message failed at the receiver; payload is the reason.
    Fail = 3,
    /// Keepalive request; id is echoed.
    Ping = 4,
    /// Keepalive answer.
    Pong = 5,
    /// Orderly close with a reason.
    GoAway = 6,
    /// A container: its payload, deflated (flag COMPRESSED), is a run of
    /// complete DATA frames. The sender's I/O thread batches messages this
    /// way so one deflate stream (one reset of the compressor) serves many
    /// small messages.
    Batch = 7,
}

impl FrameType {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Data,
            2 => Self::Ack,
            3 => Self::Fail,
            4 => Self::Ping,
            5 => Self::Pong,
            6 => Self::GoAway,
            7 => Self::Batch,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Type.
    pub ty: FrameType,
    /// Flags (only DATA has any).
    pub flags: u8,
    /// Payload length.
    pub len: u32,
    /// Message id (DATA, FAIL), nonce (PING/PONG), zero otherwise.
    pub id: u64,
}

impl FrameHeader {
    /// A DATA header.
    pub fn data(id: u64, len: usize, flags: u8) -> Self {
        FrameHeader {
            ty: FrameType::Data,
            flags,
            len: len as u32,
            id,
        }
    }

    /// Encodes into 16 bytes.
    #[inline]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.ty as u8;
        b[1] = self.flags;
        b[4..8].copy_from_slice(&self.len.to_be_bytes());
        b[8..16].copy_from_slice(&self.id.to_be_bytes());
        b
    }

    /// Decodes and validates a header against `max_frame` (payload bytes).
    ///
    /// # Errors
    /// Unknown type, flags not allowed for the type, reserved bits set, a
    /// length above `max_frame`, or a control frame of impossible length.
    #[inline]
    pub fn decode(b: &[u8; HEADER_LEN], max_frame: usize) -> Result<Self> {
        let ty = FrameType::from_u8(b[0])
            .ok_or_else(|| Error::Protocol(format!("unknown frame type {}", b[0])))?;
        let flags = b[1];
        if b[2] != 0 || b[3] != 0 {
            return Err(Error::Protocol("reserved header bits set".into()));
        }
        let len = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let id = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        let allowed = match ty {
            FrameType::Data => DATA_FLAGS,
            FrameType::Batch => FLAG_COMPRESSED,
            _ => 0,
        };
        if flags & !allowed != 0 {
            return Err(Error::Protocol(format!(
                "flags {flags:#04x} not allowed on {ty:?}"
            )));
        }
        let l = len as usize;
        match ty {
            FrameType::Data | FrameType::Batch => {
                if l > max_frame {
                    return Err(Error::FrameTooLarge {
                        size: l as u64,
                        limit: max_frame as u64,
                    });
                }
            }
            FrameType::Ack => {
                if l % ACK_RANGE_LEN != 0 || l / ACK_RANGE_LEN > MAX_ACK_RANGES {
                    return Err(Error::Protocol(format!("bad ACK length {l}")));
                }
            }
            FrameType::Fail | FrameType::GoAway => {
                if l > MAX_REASON_LEN {
                    return Err(Error::Protocol(format!("reason of {l} bytes")));
                }
            }
            FrameType::Ping | FrameType::Pong => {
                if l != 0 {
                    return Err(Error::Protocol("PING/PONG with payload".into()));
                }
            }
        }
        Ok(FrameHeader { ty, flags, len, id })
    }
}

/// Iterates the DATA frames inside an (inflated) BATCH payload, zero-copy.
/// Each item is `(header, payload)`; an inner frame that is not plain DATA
/// (compressed, or another type), oversized, or cut short is an error.
pub fn batch_frames(
    body: &bytes::Bytes,
    max_frame: usize,
) -> impl Iterator<Item = Result<(FrameHeader, bytes::Bytes)>> + '_ {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if off >= body.len() {
            return None;
        }
        let r = (|| {
            let rest = &body[off..];
            if rest.len() < HEADER_LEN {
                return Err(Error::Protocol("BATCH ends inside a frame header".into()));
            }
            let mut hb = [0u8; HEADER_LEN];
            hb.copy_from_slice(&rest[..HEADER_LEN]);
            let h = FrameHeader::decode(&hb, max_frame)?;
            if h.ty != FrameType::Data || h.flags & FLAG_COMPRESSED != 0 {
                return Err(Error::Protocol(
                    "BATCH may hold only plain DATA frames".into(),
                ));
            }
            let end = off + HEADER_LEN + h.len as usize;
            if end > body.len() {
                return Err(Error::Protocol("BATCH ends inside a frame".into()));
            }
            let p = body.slice(off + HEADER_LEN..end);
            off = end;
            Ok((h, p))
        })();
        if r.is_err() {
            off = body.len();
        }
        Some(r)
    })
}

/// The payload of a sequence marker (see [`FLAG_SEQ`]).
pub fn seq_marker(epoch: u64, seq: u64) -> [u8; SEQ_MARKER_LEN] {
    let mut b = [0u8; SEQ_MARKER_LEN];
    b[..8].copy_from_slice(&epoch.to_be_bytes());
    b[8..].copy_from_slice(&seq.to_be_bytes());
    b
}

/// Decodes a sequence marker's payload into `(epoch, seq)`.
///
/// # Errors
/// A payload that is not exactly [`SEQ_MARKER_LEN`] bytes.
pub fn parse_seq_marker(p: &[u8]) -> Result<(u64, u64)> {
    if p.len() != SEQ_MARKER_LEN {
        return Err(Error::Protocol(format!(
            "sequence marker of {} bytes",
            p.len()
        )));
    }
    let mut e = [0u8; 8];
    let mut s = [0u8; 8];
    e.copy_from_slice(&p[..8]);
    s.copy_from_slice(&p[8..]);
    Ok((u64::from_be_bytes(e), u64::from_be_bytes(s)))
}

/// Appends one ACK range (`first`, `count`) to an ACK payload.
pub fn put_ack_range(out: &mut Vec<u8>, first: u64, count: u32) {
    out.extend_from_slice(&first.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
}

/// Iterates the ranges of an ACK payload (its length was validated by
/// [`FrameHeader::decode`]).
pub fn ack_ranges(payload: &[u8]) -> impl Iterator<Item = (u64, u32)> + '_ {
    payload.chunks_exact(ACK_RANGE_LEN).map(|c| {
        let mut f = [0u8; 8];
        f.copy_from_slice(&c[..8]);
        let mut n = [0u8; 4];
        n.copy_from_slice(&c[8..12]);
        (u64::from_be_bytes(f), u32::from_be_bytes(n))
    })
}

/// Collects acknowledged ids into ranges as they come (ids mostly ascend).
#[derive(Debug, Default)]
pub struct AckBatch {
    ranges: Vec<(u64, u32)>,
}

impl AckBatch {
    /// Adds one id, extending the last range when contiguous; an id the
    /// last range already holds (a repeated id) adds nothing.
    #[inline]
    pub fn push(&mut self, id: u64) {
        if let Some(last) = self.ranges.last_mut() {
            if last.0.wrapping_add(last.1 as u64) == id && last.1 < u32::MAX {
                last.1 += 1;
                return;
            }
            if id.wrapping_sub(last.0) < last.1 as u64 {
                return;
            }
        }
        self.ranges.push((id, 1));
    }
    /// True if nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    /// Bytes the pending ranges take once encoded (headers included).
    pub fn encoded_len(&self) -> usize {
        let n = self.ranges.len();
        n * ACK_RANGE_LEN + n.div_ceil(MAX_ACK_RANGES) * HEADER_LEN
    }
    /// Encodes pending ranges as ACK frames (header + payload) into `out`
    /// and clears the batch.
    pub fn flush_into(&mut self, out: &mut Vec<u8>) {
        for chunk in self.ranges.chunks(MAX_ACK_RANGES) {
            let h = FrameHeader {
                ty: FrameType::Ack,
                flags: 0,
                len: (chunk.len() * ACK_RANGE_LEN) as u32,
                id: 0,
            };
            out.extend_from_slice(&h.encode());
            for &(f, n) in chunk {
                put_ack_range(out, f, n);
            }
        }
        self.ranges.clear();
    }
}

/// Encodes a control frame with a reason (FAIL, GOAWAY) into `out`; the
/// reason is cut to [`MAX_REASON_LEN`] bytes at a character boundary.
pub fn put_reason_frame(out: &mut Vec<u8>, ty: FrameType, id: u64, reason: &str) {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let h = FrameHeader {
        ty,
        flags: 0,
        len: end as u32,
        id,
    };
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = FrameHeader::data(0x0102_0304_0506_0708, 1024, FLAG_ACK_DELIVERY);
        let b = h.encode();
        assert_eq!(b[0], 1);
        assert_eq!(&b[4..8], &1024u32.to_be_bytes());
        assert_eq!(FrameHeader::decode(&b, 4096).unwrap(), h);
    }

    #[test]
    fn oversized_and_garbage_headers_are_refused() {
        let b = FrameHeader::data(1, 5000, 0).encode();
        assert!(matches!(
            FrameHeader::decode(&b, 4096),
            Err(Error::FrameTooLarge { size: 5000, .. })
        ));
        let mut g = [0xffu8; HEADER_LEN];
        assert!(FrameHeader::decode(&g, 4096).is_err());
        g[0] = 1;
        g[1] = 0x80;
        assert!(FrameHeader::decode(&g, 4096).is_err());
        let mut ack = FrameHeader::data(0, 13, 0);
        ack.ty = FrameType::Ack;
        assert!(FrameHeader::decode(&ack.encode(), 4096).is_err());
    }

    #[test]
    fn batch_frames_yields_inner_data_and_refuses_bad_inner_frames() {
        let mut body = Vec::new();
        for (id, p) in [(1u64, &b"one"[..]), (2, b""), (3, b"three")] {
            body.extend_from_slice(&FrameHeader::data(id, p.len(), FLAG_ACK_DELIVERY).encode());
            body.extend_from_slice(p);
        }
        let b = bytes::Bytes::from(body.clone());
        let got: Vec<_> = batch_frames(&b, 1024).map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 3);
        assert_eq!((got[2].0.id, &got[2].1[..]), (3, &b"three"[..]));
        // cut short
        let cut = bytes::Bytes::from(body[..body.len() - 2].to_vec());
        assert!(batch_frames(&cut, 1024).any(|r| r.is_err()));
        // nested compression is refused
        let mut nested = FrameHeader::data(9, 1, FLAG_COMPRESSED).encode().to_vec();
        nested.push(0);
        let n = bytes::Bytes::from(nested);
        assert!(batch_frames(&n, 1024).next().unwrap().is_err());
        // an inner frame over the limit is refused
        let big = bytes::Bytes::from(FrameHeader::data(1, 5000, 0).encode().to_vec());
        assert!(batch_frames(&big, 1024).next().unwrap().is_err());
    }

    #[test]
    fn ack_batch_merges_contiguous_ids() {
        let mut a = AckBatch::default();
        // Repeated ids (a hostile sender's) add nothing.
        for id in [5, 6, 7, 7, 6, 9, 10, 10] {
            a.push(id);
        }
        let want = a.encoded_len();
        let mut out = Vec::new();
        a.flush_into(&mut out);
        assert_eq!(out.len(), want);
        let h = FrameHeader::decode(out[..16].try_into().unwrap(), 0).unwrap();
        assert_eq!(h.ty, FrameType::Ack);
        let r: Vec<_> = ack_ranges(&out[16..]).collect();
        assert_eq!(r, vec![(5, 3), (9, 2)]);

        assert!(a.is_empty());
    }
}
