//! `sr_addr`: a member's IP address and port, by value.

use super::sr_result;
use super::{arg_ref_plain, arg_str, ffi_result, write_text, Fail, Out};
use std::ffi::c_char;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// `sr_addr.family` of an IPv4 address.
pub const SR_ADDR_IPV4: u16 = 4;
/// `sr_addr.family` of an IPv6 address.
pub const SR_ADDR_IPV6: u16 = 6;

/// An IP address and port, passed by value. Fill it with
/// `sr_addr_parse`, or by hand: `family` is `SR_ADDR_IPV4` (the address in
/// `ip[0..4]`, network order, the rest zero) or `SR_ADDR_IPV6` (all 16
/// bytes, network order); `port` is in host byte order.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct sr_addr {
    /// `SR_ADDR_IPV4` or `SR_ADDR_IPV6`.
    pub family: u16,
    /// Port, host byte order.
    pub port: u16,
    /// The address bytes, network order.
    pub ip: [u8; 16],
}

impl From<SocketAddr> for sr_addr {
    fn from(a: SocketAddr) -> Self {
        let mut ip = [0u8; 16];
        let family = match a.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                SR_ADDR_IPV4
            }
            IpAddr::V6(v6) => {
                ip = v6.octets();
                SR_ADDR_IPV6
            }
        };
        sr_addr {
            family,
            port: a.port(),
            ip,
        }
    }
}

impl sr_addr {
    pub(crate) fn to_socket(self) -> Result<SocketAddr, Fail> {
        let a = self;
        let ip = match a.family {
            SR_ADDR_IPV4 => IpAddr::V4(Ipv4Addr::new(a.ip[0], a.ip[1], a.ip[2], a.ip[3])),
            SR_ADDR_IPV6 => IpAddr::V6(Ipv6Addr::from(a.ip)),
            f => {
                return Err(Fail::invalid(format!(
                    "sr_addr.family is {f}, expected SR_ADDR_IPV4 (4) or SR_ADDR_IPV6 (6)"
                )))
            }
        };
        Ok(SocketAddr::new(ip, a.port))
    }
}

/// Parses `"ip:port"`, `"[ipv6]:port"` or `"host:port"` into `*out`. A host
/// name is resolved (which may block on DNS); its first IPv4 address is
/// preferred.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, or `SR_INVALID_ARGUMENT` (not an
/// address, or a name that does not resolve; see `sr_last_error_message`).
/// `*out` is written only on `SR_OK`.
///
/// Thread safety: may be called from any thread.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_addr_parse(text: *const c_char, out: *mut sr_addr) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let text = unsafe { arg_str(text, "text") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(parse_socket_addr(text)?.into());
        Ok(())
    })
}

pub(crate) fn parse_socket_addr(text: &str) -> Result<SocketAddr, Fail> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let all: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| Fail::invalid(format!("'{text}' is not host:port: {e}")))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| Fail::invalid(format!("'{text}' resolved to no address")))
}

/// Formats `*addr` as `"ip:port"` (`"[ipv6]:port"`) into `buf`,
/// NUL-terminated; `*out_n` gets the length without the NUL.
///
/// Returns `SR_OK`, `SR_NULL_PARAMETER`, `SR_INVALID_ARGUMENT` (bad
/// family) or `SR_INSUFFICIENT_SIZE` (then `*out_n` is the needed length
/// without the NUL and `buf` is unchanged; 48 bytes always suffice).
///
/// Thread safety: may be called from any thread.
///
/// # Safety
/// `addr` is NULL or readable; `buf` is NULL or writable for `len` bytes;
/// `out_n` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sr_addr_format(
    addr: *const sr_addr,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> sr_result {
    ffi_result(|| {
        // SAFETY: forwarded from the caller.
        let addr = unsafe { arg_ref_plain(addr, "addr") }?;
        let a = addr.to_socket()?;
        // SAFETY: forwarded from the caller.
        unsafe { write_text(&a.to_string(), buf, len, out_n) }
    })
}
