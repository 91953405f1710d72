//! Splits native frames out of a read buffer without copying payloads.

use crate::error::Result;
use crate::wire::frame::{FrameHeader, FrameType, DATA_FLAGS, HEADER_LEN};
use bytes::{Buf, Bytes, BytesMut};

/// A decoded frame: header and a zero-copy slice of the read buffer.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The header.
    pub header: FrameHeader,
    /// The payload (shares the read buffer's memory).
    pub payload: Bytes,
}

/// A read buffer frames are split from without copying: the mio driver's
/// per-connection `BytesMut`, or a `Bytes` view of an io_uring provided
/// buffer.
pub trait FrameBuf: std::ops::Deref<Target = [u8]> {
    /// Drops `n` bytes from the front.
    fn skip(&mut self, n: usize);
    /// Splits the first `n` bytes off as a shared, zero-copy slice.
    fn split_frame(&mut self, n: usize) -> Bytes;
    /// The buffer itself if it is mutable (a connection's own receive
    /// buffer, where records are opened in place).
    fn as_bytes_mut(&mut self) -> Option<&mut BytesMut> {
        None
    }
}

impl FrameBuf for BytesMut {
    #[inline]
    fn skip(&mut self, n: usize) {
        self.advance(n);
    }
    #[inline]
    fn split_frame(&mut self, n: usize) -> Bytes {
        self.split_to(n).freeze()
    }
    #[inline]
    fn as_bytes_mut(&mut self) -> Option<&mut BytesMut> {
        Some(self)
    }
}

impl FrameBuf for Bytes {
    #[inline]
    fn skip(&mut self, n: usize) {
        self.advance(n);
    }
    #[inline]
    fn split_frame(&mut self, n: usize) -> Bytes {
        self.split_to(n)
    }
}

/// Incremental frame decoder bounded by a maximum frame size.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: usize,
    /// Header of a frame whose payload has not fully arrived.
    pending: Option<FrameHeader>,
}

impl FrameDecoder {
    /// A decoder refusing DATA payloads above `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            max_frame,
            pending: None,
        }
    }

    /// Bytes still needed to complete the frame in progress (0 if unknown),
    /// so the driver can reserve room for a large frame in one go.
    pub fn wanted(&self, buf: &BytesMut) -> usize {
        self.wanted_after(buf.len())
    }

    /// As [`FrameDecoder::wanted`], given how many bytes are buffered.
    pub fn wanted_after(&self, buffered: usize) -> usize {
        match self.pending {
            Some(h) => (h.len as usize).saturating_sub(buffered),
            None => HEADER_LEN.saturating_sub(buffered),
        }
    }

    /// The payload length of the frame whose header was taken and whose
    /// payload is incomplete (what a receive-memory reservation covers).
    pub fn frame_in_progress(&self) -> Option<usize> {
        self.pending.map(|h| h.len as usize)
    }

    /// Takes the next complete frame off the front of `buf`.
    ///
    /// # Errors
    /// A header that fails validation; the connection must then be closed.
    #[inline(always)]
    pub fn decode<B: FrameBuf>(&mut self, buf: &mut B) -> Result<Option<Frame>> {
        if self.pending.is_none() {
            if let Some(header) = self.complete_data(buf) {
                // The common case, kept inline in the caller's loop: one
                // split per frame, and no result moved through memory.
                let payload = split_data(buf, &header);
                return Ok(Some(Frame { header, payload }));
            }
        }
        self.decode_general(buf)
    }

    /// How many complete, valid DATA frames with none of the `exclude`
    /// flags start `buf` (at most `max`), and how many bytes they take, to
    /// take one by one with [`FrameDecoder::take_data`]; none while a
    /// frame is in progress. Only headers are read, nothing is split.
    #[inline]
    pub fn data_run(&self, buf: &[u8], max: usize, exclude: u8) -> (usize, usize) {
        if self.pending.is_some() {
            return (0, 0);
        }
        let (mut off, mut n) = (0usize, 0usize);
        while n < max {
            let Some(h) = buf.get(off..).and_then(|b| self.complete_data(b)) else {
                break;
            };
            if h.flags & exclude != 0 {
                break;
            }
            off += HEADER_LEN + h.len as usize;
            n += 1;
        }
        (n, off)
    }

    /// Takes a complete DATA frame off the front of `buf` as `(id, flags,
    /// payload)`; `None` (nothing taken) if `buf` does not start with one.
    /// The caller's loop over a [`FrameDecoder::data_run`] keeps it inline.
    #[inline(always)]
    pub fn take_data<B: FrameBuf>(&mut self, buf: &mut B) -> Option<(u64, u8, Bytes)> {
        if self.pending.is_some() {
            return None;
        }
        let h = self.complete_data(buf)?;
        Some((h.id, h.flags, split_data(buf, &h)))
    }

    /// The header of a valid DATA frame complete in `buf`; `None` for
    /// anything else (other types, a bad header, a partial frame), which
    /// [`FrameDecoder::decode_general`] then decodes or refuses.
    #[inline(always)]
    fn complete_data(&self, buf: &[u8]) -> Option<FrameHeader> {
        let b: [u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        let [ty, flags, r0, r1, l0, l1, l2, l3, id @ ..] = b;
        if ty != FrameType::Data as u8 || r0 | r1 != 0 || flags & !DATA_FLAGS != 0 {
            return None;
        }
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if len > self.max_frame || buf.len() - HEADER_LEN < len {
            return None;
        }
        Some(FrameHeader::data(u64::from_be_bytes(id), len, flags))
    }

    /// [`FrameDecoder::decode`] for every frame type and for frames that
    /// arrive in parts.
    #[inline(never)]
    fn decode_general<B: FrameBuf>(&mut self, buf: &mut B) -> Result<Option<Frame>> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                if buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let mut hb = [0u8; HEADER_LEN];
                hb.copy_from_slice(&buf[..HEADER_LEN]);
                let h = FrameHeader::decode(&hb, self.max_frame)?;
                buf.skip(HEADER_LEN);
                h
            }
        };
        let len = header.len as usize;
        if buf.len() < len {
            self.pending = Some(header);
            return Ok(None);
        }
        self.pending = None;
        let payload = buf.split_frame(len);
        Ok(Some(Frame { header, payload }))
    }
}

/// Splits the complete frame `h` heads off the front of `buf` and returns
/// its payload (a zero-copy slice).
#[inline(always)]
fn split_data<B: FrameBuf>(buf: &mut B, h: &FrameHeader) -> Bytes {
    let mut payload = buf.split_frame(HEADER_LEN + h.len as usize);
    payload.advance(HEADER_LEN);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{FrameType, FLAG_ACK_DELIVERY};

    fn frame(id: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = FrameHeader::data(id, payload.len(), FLAG_ACK_DELIVERY)
            .encode()
            .to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn partial_reads_and_many_frames_per_read() {
        let mut wire = Vec::new();
        for i in 0..50u64 {
            wire.extend(frame(i, &vec![i as u8; (i * 7) as usize]));
        }
        // feed in every chunk size from 1 to 40 bytes
        for step in 1..40 {
            let mut d = FrameDecoder::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                buf.extend_from_slice(chunk);
                while let Some(f) = d.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 50, "step {step}");
            for (i, f) in got.iter().enumerate() {
                assert_eq!(f.header.id, i as u64);
                assert_eq!(f.header.ty, FrameType::Data);
                assert_eq!(&f.payload[..], &vec![i as u8; i * 7][..]);
            }
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn connection_lost_mid_frame_leaves_nothing_delivered() {
        let w = frame(9, &[1; 100]);
        let mut d = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&w[..60]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert_eq!(d.wanted(&buf), 100 - 44);
        assert_eq!(d.frame_in_progress(), Some(100));
        buf.extend_from_slice(&w[60..]);
        assert!(d.decode(&mut buf).unwrap().is_some());
        assert_eq!(d.frame_in_progress(), None);
    }

    #[test]
    fn complete_frames_with_bad_headers_are_refused_like_partial_ones() {
        let good = frame(3, b"abc");
        let mut bad_flags = good.clone();
        bad_flags[1] = 0x80;
        let mut reserved = good.clone();
        reserved[3] = 1;
        let mut oversized = good.clone();
        oversized[4..8].copy_from_slice(&2000u32.to_be_bytes());
        oversized.resize(HEADER_LEN + 2000, 0);
        for (what, w) in [
            ("flags", bad_flags),
            ("reserved", reserved),
            ("size", oversized),
        ] {
            let mut d = FrameDecoder::new(1000);
            let mut buf = BytesMut::from(&w[..]);
            assert!(d.decode(&mut buf).is_err(), "{what}");
        }
        // Other frame types in between take the general path.
        let mut w = FrameHeader {
            ty: FrameType::Ping,
            flags: 0,
            len: 0,
            id: 9,
        }
        .encode()
        .to_vec();
        w.extend(good);
        let mut d = FrameDecoder::new(1000);
        let mut buf = Bytes::from(w);
        assert_eq!(
            d.decode(&mut buf).unwrap().unwrap().header.ty,
            FrameType::Ping
        );
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!((f.header.id, &f.payload[..]), (3, &b"abc"[..]));
        assert!(buf.is_empty() && d.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn oversized_frame_is_refused_before_buffering() {
        let mut d = FrameDecoder::new(1000);
        let mut buf = BytesMut::from(&FrameHeader::data(1, 1 << 30, 0).encode()[..]);
        assert!(d.decode(&mut buf).is_err());
    }
}
