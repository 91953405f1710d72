//! Payload compression: raw deflate (zlib-rs backend), compressor state
//! reused across messages, inflation bounded so that a bomb is refused
//! rather than inflated.

use crate::error::{Error, Result};
use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Arena chunk from which compressed and inflated payloads are split off, so
/// that steady state costs one allocation per chunk, not per message.
const ARENA: usize = 256 * 1024;

/// A reusable deflate compressor writing into a pooled arena.
pub struct Deflater {
    z: Compress,
    arena: BytesMut,
}

impl Deflater {
    /// A compressor at `level` (1 fastest .. 9 smallest).
    pub fn new(level: u32) -> Self {
        Deflater {
            z: Compress::new(Compression::new(level.clamp(1, 9)), false),
            arena: BytesMut::new(),
        }
    }

    /// Compresses `input` into a new payload sharing the arena.
    ///
    /// # Errors
    /// Only on an internal deflate failure.
    pub fn compress(&mut self, input: &[u8]) -> Result<Bytes> {
        self.z.reset();
        // deflate's worst case is a little over the input size.
        let bound = input.len() + input.len() / 1000 + 64;
        if self.arena.capacity() - self.arena.len() < bound {
            self.arena = BytesMut::with_capacity(ARENA.max(bound));
        }
        let start = self.arena.len();
        let spare = self.arena.spare_capacity_mut();
        // SAFETY: flate2 writes into initialised bytes only; we zero-fill
        // the slice it may write into first, then expose exactly what it wrote.
        let out = unsafe {
            let p = spare.as_mut_ptr() as *mut u8;
            std::ptr::write_bytes(p, 0, bound);
            std::slice::from_raw_parts_mut(p, bound)
        };
        let before_out = self.z.total_out();
        let st = self
            .z
            .compress(input, out, FlushCompress::Finish)
            .map_err(|e| Error::Decompress(format!("deflate: {e}")))?;
        if st != Status::StreamEnd {
            return Err(Error::Decompress("deflate did not finish".into()));
        }
        let n = (self.z.total_out() - before_out) as usize;
        // SAFETY: n <= bound bytes were initialised above.
        unsafe { self.arena.set_len(start + n) };
        Ok(self.arena.split_to(self.arena.len()).freeze())
    }
}

/// A reusable bounded inflater.
pub struct Inflater {
    z: Decompress,
    arena: BytesMut,
    limit: usize,
}

impl Inflater {
    /// An inflater refusing output above `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Inflater {
            z: Decompress::new(false),
            arena: BytesMut::new(),
            limit,
        }
    }

    /// Inflates one payload.
    ///
    /// # Errors
    /// [`Error::Decompress`] on corrupt input, on input that does not end
    /// the stream, or when the output would exceed the limit.
    pub fn inflate(&mut self, input: &[u8]) -> Result<Bytes> {
        self.z.reset(false);
        let mut want = (input.len().saturating_mul(8)).clamp(1024, self.limit + 1);
        loop {
            if self.arena.capacity() - self.arena.len() < want {
                self.arena = BytesMut::with_capacity(ARENA.max(want));
            }
            self.arena.clear();
            let mut consumed = 0usize;
            let mut produced = 0usize;
            self.z.reset(false);
            let done = loop {
                let in_before = self.z.total_in();
                let out_before = self.z.total_out();
                let spare = &mut self.arena.spare_capacity_mut()[produced..want];
                // SAFETY: zero-filled before handing it to zlib as &mut [u8].
                let out = unsafe {
                    let p = spare.as_mut_ptr() as *mut u8;
                    std::ptr::write_bytes(p, 0, spare.len());
                    std::slice::from_raw_parts_mut(p, spare.len())
                };
                let st = self
                    .z
                    .decompress(&input[consumed..], out, FlushDecompress::Finish)
                    .map_err(|e| Error::Decompress(e.to_string()))?;
                consumed += (self.z.total_in() - in_before) as usize;
                produced += (self.z.total_out() - out_before) as usize;
                match st {
                    Status::StreamEnd => break true,
                    _ if produced == want => break false,
                    _ if consumed == input.len() => {
                        return Err(Error::Decompress("truncated deflate stream".into()))
                    }
                    Status::BufError if self.z.total_out() == out_before => {
                        return Err(Error::Decompress("deflate stream stalled".into()))
                    }
                    _ => {}
                }
            };
            if done {
                if produced > self.limit {
                    return Err(Error::Decompress(format!(
                        "inflates past the limit of {} bytes",
                        self.limit
                    )));
                }
                // SAFETY: `produced` bytes were written by zlib.
                unsafe { self.arena.set_len(produced) };
                return Ok(self.arena.split_to(produced).freeze());
            }
            if want > self.limit {
                return Err(Error::Decompress(format!(
                    "inflates past the limit of {} bytes",
                    self.limit
                )));
            }
            want = want.saturating_mul(4).min(self.limit + 1);
        }
    }
}

/// Gzip (RFC 1952) helpers for Tribes' GzipInterceptor, bounded the same way.
pub fn gunzip_bounded(input: &[u8], limit: usize) -> Result<Bytes> {
    use std::io::Read;
    let mut d = flate2::read::GzDecoder::new(input).take(limit as u64 + 1);
    let mut out = BytesMut::with_capacity(input.len().saturating_mul(4).min(limit + 1)).writer();
    std::io::copy(&mut d, &mut out).map_err(|e| Error::Decompress(format!("gzip: {e}")))?;
    let out = out.into_inner();
    if out.len() > limit {
        return Err(Error::Decompress(format!(
            "gzip inflates past the limit of {limit} bytes"
        )));
    }
    Ok(out.freeze())
}

/// Gzip-compresses (Tribes' GzipInterceptor format).
pub fn gzip(input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(input);
    e.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        b"session-attribute-"
            .iter()
            .cycle()
            .take(n)
            .copied()
            .collect()
    }

    #[test]
    fn deflate_round_trips_with_state_reuse() {
        let mut d = Deflater::new(1);
        let mut i = Inflater::new(1 << 20);
        for n in [0usize, 1, 100, 1024, 100_000] {
            let src = text(n);
            let c = d.compress(&src).unwrap();
            assert_eq!(&i.inflate(&c).unwrap()[..], &src[..]);
        }
    }

    #[test]
    fn bomb_is_refused_not_inflated() {
        let mut d = Deflater::new(9);
        let zeros = vec![0u8; 8 << 20];
        let c = d.compress(&zeros).unwrap();
        assert!(c.len() < 64 * 1024);
        let mut i = Inflater::new(1 << 20);
        let e = i.inflate(&c).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        // the inflater still works afterwards
        let ok = d.compress(b"hello").unwrap();
        assert_eq!(&i.inflate(&ok).unwrap()[..], b"hello");
    }

    #[test]
    fn garbage_and_truncated_streams_are_refused() {
        let mut i = Inflater::new(1 << 20);
        assert!(i.inflate(b"\xff\xfe\xfd garbage").is_err());
        let mut d = Deflater::new(1);
        let c = d.compress(&text(5000)).unwrap();
        assert!(i.inflate(&c[..c.len() / 2]).is_err());
    }

    #[test]
    fn gzip_bomb_is_refused() {
        let g = gzip(&vec![0u8; 4 << 20]);
        assert!(gunzip_bounded(&g, 1 << 20).is_err());
        assert_eq!(&gunzip_bounded(&gzip(b"abc"), 10).unwrap()[..], b"abc");
    }
}
