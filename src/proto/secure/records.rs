//! Shared-key records after the Noise handshake: AES-256-GCM through
//! `aws-lc-rs` directly (AES-NI / AVX-512 VAES), keyed with the
//! handshake's split keys.
//!
//! snow's own transport mode copies each record through its buffers and
//! measured 546–672 MiB/s here; sealing in place in the caller's buffer
//! with `LessSafeKey` avoids both the copy and an allocation per record.
//! aws-lc's AVX-512 VAES code seals 64 KiB records about 1.5x as fast as
//! ring's on this machine (`bench/aead`). Its `open_within` decrypts in
//! place and then moves the plaintext over the gap (ring's shifts while it
//! decrypts), yet opening a stream of records the way the receiver does
//! still measured 4–19 % faster than ring (figures in `docs/SECURITY.md`).
//!
//! Each direction has its own key and a 64-bit counter starting at 0; the
//! nonce is 4 zero bytes then the counter big-endian (Noise's AESGCM
//! nonce), so a nonce never repeats under a key. The 2-byte record length
//! is the associated data: the header is authenticated with the body. A
//! replayed, dropped, reordered, truncated or foreign record fails its tag.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::noise::{MAX_RECORD_LEN, MAX_RECORD_PLAINTEXT, RECORD_HEADER_LEN, TAG_LEN};
use super::{PlainBuf, SecureError};

/// One direction's key and counter.
struct Direction {
    key: LessSafeKey,
    counter: u64,
}

impl Direction {
    fn new(raw: &[u8; 32]) -> Direction {
        let k = UnboundKey::new(&AES_256_GCM, raw).expect("32-byte AES-256 key");
        Direction {
            key: LessSafeKey::new(k),
            counter: 0,
        }
    }

    /// The next nonce; the counter never wraps (the session fails first).
    fn next_nonce(&mut self) -> Result<Nonce, SecureError> {
        let n = self.counter;
        self.counter = n
            .checked_add(1)
            .ok_or_else(|| SecureError::Corrupt("record counter exhausted".into()))?;
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&n.to_be_bytes());
        Ok(Nonce::assume_unique_for_key(b))
    }
}

/// Record keys of an established shared-key session.
pub(crate) struct RecordKeys {
    tx: Direction,
    rx: Direction,
}

impl RecordKeys {
    /// From the handshake's split (`k1` initiator → responder, `k2` back).
    pub(crate) fn new(initiator: bool, k1: &[u8; 32], k2: &[u8; 32]) -> RecordKeys {
        let (tx, rx) = if initiator { (k1, k2) } else { (k2, k1) };
        RecordKeys {
            tx: Direction::new(tx),
            rx: Direction::new(rx),
        }
    }

    /// Seals `parts` (gathered) into records appended to `out`: one record
    /// per [`MAX_RECORD_PLAINTEXT`] bytes, each sealed in place in `out`.
    pub(crate) fn seal(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), SecureError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        out.reserve(total + total.div_ceil(MAX_RECORD_PLAINTEXT) * (RECORD_HEADER_LEN + TAG_LEN));
        let mut start: Option<usize> = None;
        for mut p in parts.iter().copied() {
            while !p.is_empty() {
                let s = *start.get_or_insert_with(|| {
                    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
                    out.len() - RECORD_HEADER_LEN
                });
                let fill = out.len() - s - RECORD_HEADER_LEN;
                let take = (MAX_RECORD_PLAINTEXT - fill).min(p.len());
                out.extend_from_slice(&p[..take]);
                p = &p[take..];
                if fill + take == MAX_RECORD_PLAINTEXT {
                    self.seal_at(out, s)?;
                    start = None;
                }
            }
        }
        if let Some(s) = start {
            self.seal_at(out, s)?;
        }
        Ok(())
    }

    /// Seals the record that starts at `start` in `out`: a placeholder
    /// header, then its plaintext up to the end of `out`. The header is
    /// written and the tag appended.
    pub(crate) fn seal_at(&mut self, out: &mut Vec<u8>, start: usize) -> Result<(), SecureError> {
        let body = start + RECORD_HEADER_LEN;
        let n = out.len() - body;
        debug_assert!(n > 0 && n <= MAX_RECORD_PLAINTEXT);
        let hdr = ((n + TAG_LEN) as u16).to_be_bytes();
        out[start..body].copy_from_slice(&hdr);
        let nonce = self.tx.next_nonce()?;
        match self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(hdr), &mut out[body..])
        {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(SecureError::Corrupt("cannot seal record".into()))
            }
        }
    }

    /// Opens the complete records of `buf` in place. `buf` holds
    /// `[ready plaintext][gap][ciphertext]`: each record whose bytes are all
    /// there is opened and its plaintext written right after `ready` (the
    /// cipher reads ahead of where it writes, so the shift over the gap
    /// costs nothing), `ready` grows by its plaintext and `gap` by its
    /// header and tag. A partial record is left where it is.
    ///
    /// # Errors
    /// A length out of bounds or a record that fails authentication; the
    /// bytes after `ready` are then unspecified (the session is over).
    pub(crate) fn open_in_place(
        &mut self,
        buf: &mut [u8],
        ready: &mut usize,
        gap: &mut usize,
    ) -> Result<(), SecureError> {
        loop {
            let at = *ready + *gap;
            let rest = &buf[at..];
            if rest.len() < RECORD_HEADER_LEN {
                return Ok(());
            }
            let hdr = [rest[0], rest[1]];
            let len = record_len(hdr)?;
            if rest.len() < RECORD_HEADER_LEN + len {
                return Ok(());
            }
            let nonce = self.rx.next_nonce()?;
            let region = &mut buf[*ready..at + RECORD_HEADER_LEN + len];
            self.rx
                .key
                .open_within(nonce, Aad::from(hdr), region, *gap + RECORD_HEADER_LEN..)
                .map_err(|_| failed_authentication())?;
            *ready += len - TAG_LEN;
            *gap += RECORD_HEADER_LEN + TAG_LEN;
        }
    }

    /// Opens the complete records at the start of `buf` into `plain`;
    /// returns the bytes used (a partial record is left).
    pub(crate) fn open(
        &mut self,
        buf: &[u8],
        plain: &mut impl PlainBuf,
    ) -> Result<usize, SecureError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            if rest.len() < RECORD_HEADER_LEN {
                return Ok(pos);
            }
            let hdr = [rest[0], rest[1]];
            let len = record_len(hdr)?;
            if rest.len() < RECORD_HEADER_LEN + len {
                return Ok(pos);
            }
            let start = plain.len();
            let dst = plain.append(&rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len]);
            let nonce = self.rx.next_nonce()?;
            if self
                .rx
                .key
                .open_in_place(nonce, Aad::from(hdr), dst)
                .is_err()
            {
                plain.cut(start);
                return Err(failed_authentication());
            }
            plain.cut(start + len - TAG_LEN);
            pos += RECORD_HEADER_LEN + len;
        }
    }
}

/// The body length a record header announces, checked against the bounds.
fn record_len(hdr: [u8; RECORD_HEADER_LEN]) -> Result<usize, SecureError> {
    let len = u16::from_be_bytes(hdr) as usize;
    if len <= TAG_LEN || len > MAX_RECORD_LEN {
        return Err(SecureError::Corrupt(format!("record of {len} bytes")));
    }
    Ok(len)
}

fn failed_authentication() -> SecureError {
    SecureError::Corrupt(
        "record failed authentication (tampered, replayed, reordered or from another connection)"
            .into(),
    )
}
