//! Connection preface, sent by the connecting side and answered by the
//! accepting side (with the `REPLY` flag) before any frame.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `SRPL` (`53 52 50 4C`) |
//! | 4 | 1 | protocol version (1) |
//! | 5 | 1 | flags: bit 0 = reply |
//! | 6 | 2 | domain length D (at most 255) |
//! | 8 | 16 | member id |
//! | 24 | 2 | auth length A (at most 1024; reserved, 0 today) |
//! | 26 | 2 | listen port of the writer's receiver (0 = none) |
//! | 28 | 4 | capabilities (bit 0 = deflate, bit 1 = sequence markers) |
//! | 32 | D | cluster domain |
//! | 32+D | A | authentication data |

use crate::error::{Error, Result};

/// Magic bytes opening a native connection.
pub const MAGIC: [u8; 4] = *b"SRPL";
/// Protocol version spoken.
pub const VERSION: u8 = 1;
/// Fixed part of the preface.
pub const FIXED_LEN: usize = 32;
/// Longest domain.
pub const MAX_DOMAIN: usize = 255;
/// Longest auth field.
pub const MAX_AUTH: usize = 1024;
/// Capability bit: the sender can inflate deflate payloads.
pub const CAP_DEFLATE: u32 = 1;
/// Capability bit: the writer's receiver understands sequence markers
/// (`FLAG_SEQ` DATA frames, exactly-once delivery): a sender writes them
/// only to a receiver whose reply preface has it, since an older receiver
/// would deliver them as messages.
pub const CAP_SEQ: u32 = 2;
/// Flag: this preface answers one.
pub const FLAG_REPLY: u8 = 1;

/// A decoded preface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preface {
    /// Protocol version.
    pub version: u8,
    /// True on the accepting side's answer.
    pub reply: bool,
    /// Sender's member id.
    pub member_id: [u8; 16],
    /// Capability bits.
    pub caps: u32,
    /// Cluster domain.
    pub domain: Vec<u8>,
    /// Authentication data (reserved).
    pub auth: Vec<u8>,
    /// Port the writer's receiver listens on (0 = none), so the reader can
    /// name the member by its address rather than the connection's.
    pub listen_port: u16,
}

impl Preface {
    /// A preface of this build.
    pub fn new(member_id: [u8; 16], domain: &[u8], reply: bool) -> Self {
        Preface {
            version: VERSION,
            reply,
            member_id,
            caps: CAP_DEFLATE | CAP_SEQ,
            domain: domain[..domain.len().min(MAX_DOMAIN)].to_vec(),
            auth: Vec::new(),
            listen_port: 0,
        }
    }

    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED_LEN + self.domain.len() + self.auth.len());
        b.extend_from_slice(&MAGIC);
        b.push(self.version);
        b.push(if self.reply { FLAG_REPLY } else { 0 });
        b.extend_from_slice(&(self.domain.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.member_id);
        b.extend_from_slice(&(self.auth.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.listen_port.to_be_bytes());
        b.extend_from_slice(&self.caps.to_be_bytes());
        b.extend_from_slice(&self.domain);
        b.extend_from_slice(&self.auth);
        b
    }

    /// Decodes a preface from the start of `buf`. `Ok(None)` means more
    /// bytes are needed; `Ok(Some((p, n)))` consumed `n` bytes.
    ///
    /// # Errors
    /// Bad magic, unsupported version, unknown flags or oversized fields.
    pub fn decode(buf: &[u8]) -> Result<Option<(Preface, usize)>> {
        let n = buf.len().min(4);
        if buf[..n] != MAGIC[..n] {
            return Err(Error::Protocol("bad preface magic".into()));
        }
        if buf.len() < FIXED_LEN {
            return Ok(None);
        }
        let version = buf[4];
        if version != VERSION {
            return Err(Error::Protocol(format!("unsupported version {version}")));
        }
        let flags = buf[5];
        if flags & !FLAG_REPLY != 0 {
            return Err(Error::Protocol(format!("unknown preface flags {flags:#x}")));
        }
        let dlen = u16::from_be_bytes([buf[6], buf[7]]) as usize;
        let alen = u16::from_be_bytes([buf[24], buf[25]]) as usize;
        if dlen > MAX_DOMAIN || alen > MAX_AUTH {
            return Err(Error::Protocol("preface field too long".into()));
        }
        let total = FIXED_LEN + dlen + alen;
        if buf.len() < total {
            return Ok(None);
        }
        let mut member_id = [0u8; 16];
        member_id.copy_from_slice(&buf[8..24]);
        let caps = u32::from_be_bytes([buf[28], buf[29], buf[30], buf[31]]);
        Ok(Some((
            Preface {
                version,
                reply: flags & FLAG_REPLY != 0,
                member_id,
                caps,
                domain: buf[FIXED_LEN..FIXED_LEN + dlen].to_vec(),
                auth: buf[FIXED_LEN + dlen..total].to_vec(),
                listen_port: u16::from_be_bytes([buf[26], buf[27]]),
            },
            total,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_round_trips_and_waits_for_bytes() {
        let mut p = Preface::new([7; 16], b"shop", false);
        p.listen_port = 4001;
        let b = p.encode();
        for cut in 0..b.len() {
            assert!(Preface::decode(&b[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let (q, n) = Preface::decode(&b).unwrap().unwrap();
        assert_eq!(q, p);
        assert_eq!(n, b.len());
    }

    #[test]
    fn bad_preface_is_refused() {
        assert!(Preface::decode(b"GET / HTTP/1.1\r\n").is_err());
        let mut b = Preface::new([1; 16], b"", true).encode();
        b[4] = 9;
        assert!(Preface::decode(&b).is_err());
        let mut b = Preface::new([1; 16], b"", true).encode();
        b[6] = 0xff;
        b[7] = 0xff;
        assert!(Preface::decode(&b).is_err());
    }
}
