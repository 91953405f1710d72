//! The small byte encodings that carry structured values across JNI (one
//! array instead of many JNI calls), mirrored by `io.sessionrepl.Wire`.
//! Big-endian; strings and byte strings are a u32 length then the bytes.
//! Socket addresses: a family byte (4 or 6), the address, a u16 port.
//! Decoding treats the Java input as hostile: every length is checked.

use crate::boundary::Fail;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Builds an encoding.
#[derive(Default)]
pub(crate) struct Enc(pub Vec<u8>);

impl Enc {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    pub(crate) fn opt_bytes(&mut self, b: Option<&[u8]>) -> &mut Self {
        match b {
            None => self.u8(0),
            Some(b) => self.u8(1).bytes(b),
        }
    }
    pub(crate) fn addr(&mut self, a: SocketAddr) -> &mut Self {
        match a.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.0.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.0.extend_from_slice(&ip.octets());
            }
        }
        self.0.extend_from_slice(&a.port().to_be_bytes());
        self
    }
}

/// Reads an encoding from Java.
pub(crate) struct Dec<'a> {
    b: &'a [u8],
}

impl<'a> Dec<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Dec { b }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        if self.b.len() < n {
            return Err(Fail::arg("truncated encoding from Java"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, Fail> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Fail> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Fail> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, Fail> {
        let hi = self.u32()? as u64;
        Ok(hi << 32 | self.u32()? as u64)
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Fail> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(crate) fn addr(&mut self) -> Result<SocketAddr, Fail> {
        let ip = match self.u8()? {
            4 => {
                let b = self.take(4)?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            6 => {
                let b: [u8; 16] = self
                    .take(16)?
                    .try_into()
                    .map_err(|_| Fail::arg("address"))?;
                IpAddr::V6(Ipv6Addr::from(b))
            }
            f => return Err(Fail::arg(format!("address family {f}"))),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    /// A list of addresses: u32 count, then each (bounded by the input).
    pub(crate) fn addrs(&mut self) -> Result<Vec<SocketAddr>, Fail> {
        let n = self.u32()? as usize;
        if n > self.b.len() / 7 + 1 {
            return Err(Fail::arg("address count exceeds the encoding"));
        }
        (0..n).map(|_| self.addr()).collect()
    }
}
