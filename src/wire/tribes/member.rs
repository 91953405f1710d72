//! The Tribes member blob (`MemberImpl.getData` / `getMember`): what every
//! multicast heartbeat carries and what every ChannelData names as its
//! sender.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 10 | `TRIBES-B 01 00` |
//! | 10 | 4 | body length L (= total − 24) |
//! | 14 | 8 | alive time, ms since the member's service start |
//! | 22 | 4 | TCP port |
//! | 26 | 4 | secure port (−1 = none) |
//! | 30 | 4 | UDP port (−1 = none) |
//! | 34 | 1 | host length h (4 or 16) |
//! | 35 | h | host, raw IP bytes |
//! | | 4 + c | command length + command |
//! | | 4 + d | domain length + domain |
//! | | 16 | unique id |
//! | | 4 + p | payload length + payload |
//! | 14 + L | 10 | `TRIBES-E 01 00` |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

use super::{
    read_i32, read_i64, read_len_field, truncated, MEMBER_BEGIN, MEMBER_END, SHUTDOWN_COMMAND,
};
use crate::error::{Error, Result};

/// Largest member blob accepted or produced: one UDP datagram (Tribes'
/// `MAX_PACKET_SIZE`).
pub const MAX_MEMBER_BLOB: usize = 65535;

/// Size of a blob with an empty host, command, domain and payload: begin
/// (10) + body length (4) + alive (8) + three ports (12) + host length (1)
/// + three int32 lengths (12) + unique id (16) + end (10).
pub const MEMBER_BLOB_FIXED_LEN: usize = 73;

/// Offset of the alive time inside a blob (Tribes patches it in place).
pub const ALIVE_OFFSET: usize = 14;

/// A member blob, owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TribesMember {
    /// Milliseconds since the member's membership service started.
    pub alive_ms: i64,
    /// TCP listen port.
    pub port: i32,
    /// TLS port, −1 when none.
    pub secure_port: i32,
    /// UDP port, −1 when none.
    pub udp_port: i32,
    /// Listen address.
    pub host: IpAddr,
    /// Command (`BABY-ALEX` on shutdown, else empty).
    pub command: Vec<u8>,
    /// Cluster domain bytes.
    pub domain: Vec<u8>,
    /// 16-byte unique id.
    pub unique_id: [u8; 16],
    /// Application payload.
    pub payload: Vec<u8>,
}

/// A member blob decoded in place: the variable fields borrow the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TribesMemberRef<'a> {
    /// See [`TribesMember::alive_ms`].
    pub alive_ms: i64,
    /// See [`TribesMember::port`].
    pub port: i32,
    /// See [`TribesMember::secure_port`].
    pub secure_port: i32,
    /// See [`TribesMember::udp_port`].
    pub udp_port: i32,
    /// See [`TribesMember::host`].
    pub host: IpAddr,
    /// See [`TribesMember::command`].
    pub command: &'a [u8],
    /// See [`TribesMember::domain`].
    pub domain: &'a [u8],
    /// See [`TribesMember::unique_id`].
    pub unique_id: [u8; 16],
    /// See [`TribesMember::payload`].
    pub payload: &'a [u8],
}

impl<'a> TribesMemberRef<'a> {
    /// Decodes the blob at the start of `b`; returns it and the number of
    /// bytes it occupies. Bytes after the end marker are not looked at.
    ///
    /// Bytes inside the body after the payload are tolerated (room for
    /// later versions); every length is checked against the body first.
    ///
    /// # Errors
    /// [`Error::Protocol`] on a missing marker, a truncated or oversized
    /// blob, a host that is not 4 or 16 bytes, or a field overrunning the
    /// body.
    pub fn parse(b: &'a [u8]) -> Result<(TribesMemberRef<'a>, usize)> {
        let n = b.len().min(MEMBER_BEGIN.len());
        if b[..n] != MEMBER_BEGIN[..n] {
            return Err(Error::Protocol("tribes: member blob lacks TRIBES-B".into()));
        }
        let body_len = read_i32(b, MEMBER_BEGIN.len(), "member blob header")?;
        let total = (body_len as i64) + 24;
        if body_len < 0
            || total > MAX_MEMBER_BLOB as i64
            || (total as usize) < MEMBER_BLOB_FIXED_LEN
        {
            return Err(Error::Protocol(format!(
                "tribes: member body length {body_len} out of range"
            )));
        }
        let total = total as usize;
        if b.len() < total {
            return Err(truncated("member blob"));
        }
        let end = total - MEMBER_END.len();
        if b[end..total] != MEMBER_END {
            return Err(Error::Protocol("tribes: member blob lacks TRIBES-E".into()));
        }
        // Parse only inside the body so no field can read the end marker.
        let body = &b[..end];
        let alive_ms = read_i64(body, 14, "alive time")?;
        let port = read_i32(body, 22, "port")?;
        let secure_port = read_i32(body, 26, "secure port")?;
        let udp_port = read_i32(body, 30, "udp port")?;
        let hl = *body.get(34).ok_or_else(|| truncated("host length"))? as usize;
        let host_bytes = body.get(35..35 + hl).ok_or_else(|| truncated("host"))?;
        let host = match hl {
            4 => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(host_bytes).unwrap_or_default(),
            )),
            16 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(host_bytes).unwrap_or_default(),
            )),
            _ => {
                return Err(Error::Protocol(format!(
                    "tribes: member host of {hl} bytes (want 4 or 16)"
                )))
            }
        };
        let mut pos = 35 + hl;
        let cmd = read_len_field(body, pos, body.len(), "command")?;
        pos = cmd.end;
        let dom = read_len_field(body, pos, body.len(), "domain")?;
        pos = dom.end;
        let id = body
            .get(pos..pos + 16)
            .ok_or_else(|| truncated("unique id"))?;
        let mut unique_id = [0u8; 16];
        unique_id.copy_from_slice(id);
        pos += 16;
        let pay = read_len_field(body, pos, body.len(), "payload")?;
        Ok((
            TribesMemberRef {
                alive_ms,
                port,
                secure_port,
                udp_port,
                host,
                command: &body[cmd],
                domain: &body[dom],
                unique_id,
                payload: &body[pay],
            },
            total,
        ))
    }

    /// True if this is a shutdown notice (command `BABY-ALEX`).
    pub fn is_shutdown(&self) -> bool {
        self.command == SHUTDOWN_COMMAND
    }

    /// Copies into an owned [`TribesMember`].
    pub fn to_owned(&self) -> TribesMember {
        TribesMember {
            alive_ms: self.alive_ms,
            port: self.port,
            secure_port: self.secure_port,
            udp_port: self.udp_port,
            host: self.host,
            command: self.command.to_vec(),
            domain: self.domain.to_vec(),
            unique_id: self.unique_id,
            payload: self.payload.to_vec(),
        }
    }
}

impl TribesMember {
    /// A member with no secure or UDP port and empty command, domain and
    /// payload.
    pub fn new(host: IpAddr, port: u16, unique_id: [u8; 16]) -> Self {
        TribesMember {
            alive_ms: 0,
            port: i32::from(port),
            secure_port: -1,
            udp_port: -1,
            host,
            command: Vec::new(),
            domain: Vec::new(),
            unique_id,
            payload: Vec::new(),
        }
    }

    /// Decodes a blob that must fill `b` exactly (one heartbeat datagram,
    /// or the address field of a ChannelData).
    ///
    /// # Errors
    /// As [`TribesMemberRef::parse`], and trailing bytes after the blob.
    pub fn decode(b: &[u8]) -> Result<TribesMember> {
        let (m, used) = TribesMemberRef::parse(b)?;
        if used != b.len() {
            return Err(Error::Protocol(format!(
                "tribes: {} bytes after member blob",
                b.len() - used
            )));
        }
        Ok(m.to_owned())
    }

    fn host_len(&self) -> usize {
        match self.host {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 16,
        }
    }

    /// Length of the encoded blob.
    pub fn encoded_len(&self) -> usize {
        MEMBER_BLOB_FIXED_LEN
            + self.host_len()
            + self.command.len()
            + self.domain.len()
            + self.payload.len()
    }

    /// Appends the blob to `out`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the blob would exceed
    /// [`MAX_MEMBER_BLOB`] (nothing is written then).
    pub fn encode<B: BufMut>(&self, out: &mut B) -> Result<()> {
        let total = self.encoded_len();
        if total > MAX_MEMBER_BLOB {
            return Err(Error::InvalidArgument(format!(
                "member blob of {total} bytes exceeds {MAX_MEMBER_BLOB}"
            )));
        }
        out.put_slice(&MEMBER_BEGIN);
        out.put_i32((total - 24) as i32);
        out.put_i64(self.alive_ms);
        out.put_i32(self.port);
        out.put_i32(self.secure_port);
        out.put_i32(self.udp_port);
        match self.host {
            IpAddr::V4(a) => {
                out.put_u8(4);
                out.put_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.put_u8(16);
                out.put_slice(&a.octets());
            }
        }
        for field in [&self.command, &self.domain] {
            out.put_i32(field.len() as i32);
            out.put_slice(field);
        }
        out.put_slice(&self.unique_id);
        out.put_i32(self.payload.len() as i32);
        out.put_slice(&self.payload);
        out.put_slice(&MEMBER_END);
        Ok(())
    }

    /// The encoded blob as a new vector.
    ///
    /// # Errors
    /// As [`TribesMember::encode`].
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(self.encoded_len().min(MAX_MEMBER_BLOB));
        self.encode(&mut v)?;
        Ok(v)
    }

    /// True if this is a shutdown notice (command `BABY-ALEX`).
    pub fn is_shutdown(&self) -> bool {
        self.command == SHUTDOWN_COMMAND
    }

    /// Tribes' identity of a member: host bytes, port and unique id.
    pub fn identity(&self) -> (IpAddr, i32, [u8; 16]) {
        (self.host, self.port, self.unique_id)
    }
}

/// Rewrites the alive time of an encoded blob in place, as Tribes does for
/// each heartbeat.
///
/// # Errors
/// [`Error::InvalidArgument`] if `blob` does not start with a member blob
/// header.
pub fn patch_alive(blob: &mut [u8], alive_ms: i64) -> Result<()> {
    if blob.len() < MEMBER_BLOB_FIXED_LEN || blob[..MEMBER_BEGIN.len()] != MEMBER_BEGIN {
        return Err(Error::InvalidArgument("not a member blob".into()));
    }
    blob[ALIVE_OFFSET..ALIVE_OFFSET + 8].copy_from_slice(&alive_ms.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blob of a Tribes 10.1.60 member on 127.0.0.1:4000 with domain
    /// `abc` (80 bytes, the size TRIBES.md records as verified), built by
    /// hand from the layout table.
    fn reference_blob() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"TRIBES-B\x01\x00");
        v.extend_from_slice(&56i32.to_be_bytes()); // 80 - 24
        v.extend_from_slice(&1234i64.to_be_bytes());
        v.extend_from_slice(&4000i32.to_be_bytes());
        v.extend_from_slice(&(-1i32).to_be_bytes());
        v.extend_from_slice(&(-1i32).to_be_bytes());
        v.push(4);
        v.extend_from_slice(&[127, 0, 0, 1]);
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&3i32.to_be_bytes());
        v.extend_from_slice(b"abc");
        v.extend_from_slice(&[7u8; 16]);
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(b"TRIBES-E\x01\x00");
        v
    }

    fn reference_member() -> TribesMember {
        let mut m = TribesMember::new(IpAddr::from([127, 0, 0, 1]), 4000, [7; 16]);
        m.alive_ms = 1234;
        m.domain = b"abc".to_vec();
        m
    }

    #[test]
    fn encodes_byte_exact_ipv4_blob_of_80_bytes() {
        let b = reference_member().to_bytes().unwrap();
        assert_eq!(b.len(), 80);
        assert_eq!(b, reference_blob());
        assert_eq!(
            &b[..10],
            &[0x54, 0x52, 0x49, 0x42, 0x45, 0x53, 0x2D, 0x42, 1, 0]
        );
    }

    #[test]
    fn decodes_reference_blob() {
        let m = TribesMember::decode(&reference_blob()).unwrap();
        assert_eq!(m, reference_member());
        assert!(!m.is_shutdown());
    }

    #[test]
    fn shutdown_command_round_trips() {
        let mut m = reference_member();
        m.command = SHUTDOWN_COMMAND.to_vec();
        let b = m.to_bytes().unwrap();
        assert!(TribesMember::decode(&b).unwrap().is_shutdown());
    }

    #[test]
    fn ipv6_host_round_trips() {
        let mut m = reference_member();
        m.host = "fd00::7".parse().unwrap();
        m.payload = vec![1, 2, 3];
        let b = m.to_bytes().unwrap();
        assert_eq!(b.len(), 80 + 12 + 3);
        assert_eq!(TribesMember::decode(&b).unwrap(), m);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = reference_blob();
        for n in 0..b.len() {
            assert!(TribesMember::decode(&b[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn absurd_lengths_are_refused() {
        let mut b = reference_blob();
        b[10..14].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(TribesMember::decode(&b).is_err());
        let mut b = reference_blob();
        b[10..14].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(TribesMember::decode(&b).is_err());
        // Domain length larger than the body.
        let mut b = reference_blob();
        b[43..47].copy_from_slice(&1_000_000i32.to_be_bytes());
        assert!(TribesMember::decode(&b).is_err());
        // Negative command length.
        let mut b = reference_blob();
        b[39..43].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(TribesMember::decode(&b).is_err());
        // Host of 5 bytes.
        let mut b = reference_blob();
        b[34] = 5;
        assert!(TribesMember::decode(&b).is_err());
        // Host length 0xFF (Java's -1).
        let mut b = reference_blob();
        b[34] = 0xFF;
        assert!(TribesMember::decode(&b).is_err());
    }

    #[test]
    fn markers_and_trailing_bytes_are_checked() {
        let mut b = reference_blob();
        b[75] ^= 1;
        assert!(TribesMember::decode(&b).is_err());
        let mut b = reference_blob();
        b[0] = b'X';
        assert!(TribesMember::decode(&b).is_err());
        let mut b = reference_blob();
        b.push(0);
        assert!(TribesMember::decode(&b).is_err());
        let (_, used) = TribesMemberRef::parse(&b).unwrap();
        assert_eq!(used, 80);
    }

    #[test]
    fn patch_alive_rewrites_offset_14() {
        let mut b = reference_blob();
        patch_alive(&mut b, 99_999).unwrap();
        assert_eq!(TribesMember::decode(&b).unwrap().alive_ms, 99_999);
        assert!(patch_alive(&mut [0u8; 5], 1).is_err());
    }

    #[test]
    fn oversized_member_is_not_encoded() {
        let mut m = reference_member();
        m.payload = vec![0; MAX_MEMBER_BLOB];
        let mut v = Vec::new();
        assert!(m.encode(&mut v).is_err());
        assert!(v.is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..300usize {
            let mut b = reference_blob();
            b.resize(len.max(b.len()), 0);
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let i = (seed as usize) % b.len();
                b[i] = (seed >> 24) as u8;
            }
            let _ = TribesMember::decode(&b[..len.min(b.len())]);
        }
    }
}
