//! Tribes TCP framing (`XByteBuffer`): `FLT2002` ‖ int32 length ‖ payload ‖
//! `TLF2003`.

use bytes::{BufMut, Bytes};

use super::{ACK_COMMAND, END_DATA, FAIL_ACK_COMMAND, START_DATA};
use crate::error::{Error, Result};

/// Bytes before the payload: `FLT2002` (7) + length (4).
pub const FRAME_HEADER_LEN: usize = 11;
/// Bytes a frame adds to its payload: header (11) + `TLF2003` (7).
pub const FRAME_OVERHEAD: usize = 18;

/// A whole ACK frame (21 bytes, verified against Tribes 10.1.60).
pub const ACK_FRAME: [u8; 21] = ack_frame(ACK_COMMAND);
/// A whole FAIL_ACK frame (21 bytes, verified against Tribes 10.1.60).
pub const FAIL_ACK_FRAME: [u8; 21] = ack_frame(FAIL_ACK_COMMAND);

const fn ack_frame(body: [u8; 3]) -> [u8; 21] {
    let mut f = [0u8; 21];
    let mut i = 0;
    while i < 7 {
        f[i] = START_DATA[i];
        f[14 + i] = END_DATA[i];
        i += 1;
    }
    f[10] = 3;
    f[11] = body[0];
    f[12] = body[1];
    f[13] = body[2];
    f
}

/// The 11-byte header of a frame carrying `len` payload bytes, for callers
/// that write header, payload and [`END_DATA`] as separate slices
/// (`writev`) so the payload is never copied.
///
/// # Errors
/// [`Error::FrameTooLarge`] if `len` does not fit Tribes' int32 length.
pub fn frame_header(len: usize) -> Result<[u8; FRAME_HEADER_LEN]> {
    if len > i32::MAX as usize - FRAME_OVERHEAD {
        return Err(Error::FrameTooLarge {
            size: len as u64,
            limit: (i32::MAX as usize - FRAME_OVERHEAD) as u64,
        });
    }
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[..7].copy_from_slice(&START_DATA);
    h[7..].copy_from_slice(&(len as i32).to_be_bytes());
    Ok(h)
}

/// Appends one whole frame around `payload` to `out` (a `Vec<u8>` or a
/// `BytesMut`).
///
/// # Errors
/// As [`frame_header`]; nothing is written then.
pub fn encode_frame<B: BufMut>(payload: &[u8], out: &mut B) -> Result<()> {
    let h = frame_header(payload.len())?;
    out.put_slice(&h);
    out.put_slice(payload);
    out.put_slice(&END_DATA);
    Ok(())
}

/// Incremental, sans-IO frame decoder.
///
/// Append received bytes to a `BytesMut` and call [`FrameDecoder::decode`]
/// until it returns `Ok(None)`. Each payload is split off the buffer and
/// frozen, so it shares the read buffer's memory (no copy). Unlike Tribes'
/// `ObjectReader`, which silently discards garbage, any violation is an
/// error: the caller closes the connection.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_payload: usize,
}

impl FrameDecoder {
    /// A decoder refusing payloads above `max_payload` bytes (clamped to
    /// what an int32 length can express).
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder {
            max_payload: max_payload.min(i32::MAX as usize - FRAME_OVERHEAD),
        }
    }

    /// The payload bound.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Decodes the next complete frame at the front of `buf`, removing it
    /// from `buf`. `Ok(None)` means more bytes are needed; the caller may
    /// use [`FrameDecoder::needed`] to size its next read.
    ///
    /// # Errors
    /// [`Error::Protocol`] if the buffer does not start with `FLT2002`, the
    /// length is negative, or `TLF2003` is not where the length says;
    /// [`Error::FrameTooLarge`] above the bound. The buffer is left as it
    /// was on error.
    pub fn decode<B: crate::proto::FrameBuf>(&self, buf: &mut B) -> Result<Option<Bytes>> {
        let n = buf.len().min(START_DATA.len());
        if buf[..n] != START_DATA[..n] {
            return Err(Error::Protocol(
                "tribes: frame does not start with FLT2002".into(),
            ));
        }
        if buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[7], buf[8], buf[9], buf[10]]);
        if len < 0 {
            return Err(Error::Protocol(format!(
                "tribes: negative frame length {len}"
            )));
        }
        let len = len as usize;
        if len > self.max_payload {
            return Err(Error::FrameTooLarge {
                size: len as u64,
                limit: self.max_payload as u64,
            });
        }
        let total = FRAME_OVERHEAD + len;
        if buf.len() < total {
            return Ok(None);
        }
        if buf[FRAME_HEADER_LEN + len..total] != END_DATA {
            return Err(Error::Protocol(
                "tribes: frame trailer is not TLF2003".into(),
            ));
        }
        buf.skip(FRAME_HEADER_LEN);
        let payload = buf.split_frame(len);
        buf.skip(END_DATA.len());
        Ok(Some(payload))
    }

    /// How many more bytes the frame at the front of `buf` needs (at least
    /// 1 while the header is incomplete), or 0 if a frame is complete.
    /// Garbage or an oversized length reports 0: `decode` will fail.
    pub fn needed(&self, buf: &[u8]) -> usize {
        if buf.len() < FRAME_HEADER_LEN {
            return FRAME_HEADER_LEN - buf.len();
        }
        let len = i32::from_be_bytes([buf[7], buf[8], buf[9], buf[10]]);
        if len < 0 || len as usize > self.max_payload {
            return 0;
        }
        (FRAME_OVERHEAD + len as usize).saturating_sub(buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn ack_frames_are_byte_exact() {
        let ack = [
            0x46, 0x4C, 0x54, 0x32, 0x30, 0x30, 0x32, 0, 0, 0, 3, 6, 2, 3, 0x54, 0x4C, 0x46, 0x32,
            0x30, 0x30, 0x33,
        ];
        assert_eq!(ACK_FRAME, ack);
        let mut fail = ack;
        fail[11..14].copy_from_slice(&[0x0B, 0, 5]);
        assert_eq!(FAIL_ACK_FRAME, fail);
        let mut v = Vec::new();
        encode_frame(&ACK_COMMAND, &mut v).unwrap();
        assert_eq!(v, ack);
    }

    #[test]
    fn decodes_pipelined_frames_zero_copy() {
        let mut buf = BytesMut::new();
        encode_frame(b"hello", &mut buf).unwrap();
        encode_frame(b"", &mut buf).unwrap();
        buf.extend_from_slice(&ACK_FRAME);
        let base = buf.as_ptr() as usize;
        let d = FrameDecoder::new(1024);
        let a = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&a[..], b"hello");
        assert_eq!(
            a.as_ptr() as usize,
            base + FRAME_HEADER_LEN,
            "payload was copied"
        );
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], b"");
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], &ACK_COMMAND);
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn byte_by_byte_feeding_yields_the_frame_once() {
        let mut whole = Vec::new();
        encode_frame(b"abcdef", &mut whole).unwrap();
        let d = FrameDecoder::new(64);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for (i, b) in whole.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            if i + 1 < whole.len() {
                assert!(d.needed(&buf) > 0);
            }
            while let Some(p) = d.decode(&mut buf).unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0][..], b"abcdef");
    }

    #[test]
    fn garbage_prefix_is_refused_early() {
        let d = FrameDecoder::new(64);
        let mut buf = BytesMut::from(&b"GET"[..]);
        assert!(d.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"FLT"[..]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        let mut buf = BytesMut::new();
        assert!(d.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn bad_lengths_and_trailers_are_refused() {
        let d = FrameDecoder::new(64);
        let mut h = frame_header(0).unwrap().to_vec();
        h[7..11].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(d.decode(&mut BytesMut::from(&h[..])).is_err());
        h[7..11].copy_from_slice(&65i32.to_be_bytes());
        let mut buf = BytesMut::from(&h[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(Error::FrameTooLarge {
                size: 65,
                limit: 64
            })
        ));
        assert_eq!(buf.len(), 11, "buffer untouched on error");
        let mut v = Vec::new();
        encode_frame(b"xy", &mut v).unwrap();
        let last = v.len() - 1;
        v[last] = b'4';
        assert!(d.decode(&mut BytesMut::from(&v[..])).is_err());
    }

    #[test]
    fn huge_lengths_are_not_encodable() {
        assert!(frame_header(i32::MAX as usize).is_err());
        assert_eq!(
            FrameDecoder::new(usize::MAX).max_payload(),
            i32::MAX as usize - 18
        );
    }
}
