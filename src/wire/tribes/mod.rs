//! Apache Tribes wire formats: `FLT2002` frames, ChannelData, ACK bodies and
//! member blobs. Byte tables in `docs/TRIBES-WIRE.md`; the verified facts
//! behind them in `shared/design/TRIBES.md`.
//!
//! Every decoder here treats its input as hostile: lengths are checked
//! against the bytes present and against fixed or configured bounds before
//! anything is allocated, and errors are [`crate::Error::Protocol`] (or
//! [`crate::Error::FrameTooLarge`]), never panics.

mod channel_data;
mod frame;
mod member;

pub use channel_data::{ChannelData, MAX_UNIQUE_ID_LEN};
pub use frame::{
    encode_frame, frame_header, FrameDecoder, ACK_FRAME, FAIL_ACK_FRAME, FRAME_HEADER_LEN,
    FRAME_OVERHEAD,
};
pub use member::{
    patch_alive, TribesMember, TribesMemberRef, ALIVE_OFFSET, MAX_MEMBER_BLOB,
    MEMBER_BLOB_FIXED_LEN,
};

/// `START_DATA`: ASCII `FLT2002`, opens every frame.
pub const START_DATA: [u8; 7] = *b"FLT2002";
/// `END_DATA`: ASCII `TLF2003`, closes every frame.
pub const END_DATA: [u8; 7] = *b"TLF2003";

/// `TRIBES_MBR_BEGIN`: `TRIBES-B` + `01 00`, opens a member blob.
pub const MEMBER_BEGIN: [u8; 10] = *b"TRIBES-B\x01\x00";
/// `TRIBES_MBR_END`: `TRIBES-E` + `01 00`, closes a member blob.
pub const MEMBER_END: [u8; 10] = *b"TRIBES-E\x01\x00";

/// `Member.SHUTDOWN_PAYLOAD`: the command of the last heartbeat a member
/// sends when it leaves in order; receivers drop it at once.
pub const SHUTDOWN_COMMAND: &[u8] = b"BABY-ALEX";

/// `ACK_COMMAND`: body of a positive acknowledgement.
pub const ACK_COMMAND: [u8; 3] = [0x06, 0x02, 0x03];
/// `FAIL_ACK_COMMAND`: body of a negative acknowledgement.
pub const FAIL_ACK_COMMAND: [u8; 3] = [0x0B, 0x00, 0x05];

/// Send-option bits of `ChannelData.options` (`tribes/Channel.java`).
pub mod options {
    /// Raw bytes, no Java serialization.
    pub const BYTE_MESSAGE: u32 = 0x0001;
    /// The receiver acknowledges on receipt.
    pub const USE_ACK: u32 = 0x0002;
    /// With `USE_ACK`: acknowledge after delivery, FAIL_ACK on error.
    pub const SYNCHRONIZED_ACK: u32 = 0x0004;
    /// Sent from another thread (`MessageDispatchInterceptor`).
    pub const ASYNCHRONOUS: u32 = 0x0008;
    /// Defined by Tribes, read by nothing.
    pub const SECURE: u32 = 0x0010;
    /// Sent as a UDP datagram to the member's UDP port.
    pub const UDP: u32 = 0x0020;
    /// Broadcast through the membership service's multicast socket.
    pub const MULTICAST: u32 = 0x0040;
    /// Body gzip-compressed by `GzipInterceptor`.
    pub const GZIP: u32 = 0x0100;
    /// Tribes' `SEND_OPTIONS_DEFAULT` (= `USE_ACK`).
    pub const DEFAULT: u32 = USE_ACK;
}

/// What a decoded frame payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// The 3-byte `ACK_COMMAND`.
    Ack,
    /// The 3-byte `FAIL_ACK_COMMAND`.
    FailAck,
    /// Anything else: to be decoded as a [`ChannelData`].
    Data,
}

impl PayloadKind {
    /// Tells an ACK body from a FAIL_ACK body from a ChannelData.
    pub fn of(payload: &[u8]) -> PayloadKind {
        if payload == ACK_COMMAND {
            PayloadKind::Ack
        } else if payload == FAIL_ACK_COMMAND {
            PayloadKind::FailAck
        } else {
            PayloadKind::Data
        }
    }
}

const fn from_signed(src: [i8; 64]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        out[i] = src[i] as u8;
        i += 1;
    }
    out
}

/// `TcpFailureDetector.TCP_FAIL_DETECT`: body of the probe message a Tribes
/// failure detector sends (option `BYTE_MESSAGE`); receivers drop it.
pub const TCP_FAIL_DETECT: [u8; 64] = from_signed([
    79, -89, 115, 72, 121, -126, 67, -55, -97, 111, -119, -128, -95, 91, 7, 20, 125, -39, 82, 91,
    -21, -15, 67, -102, -73, 126, -66, -113, -127, 103, 30, -74, 55, 21, -66, -121, 69, 126, 76,
    -88, -65, 10, 77, 19, 83, 56, 21, 50, 85, -10, -108, -73, 58, -6, 64, 120, -111, 4, 125, -41,
    114, -124, -64, -43,
]);

/// `TcpPingInterceptor.TCP_PING_DATA`: body of a Tribes TCP ping; receivers
/// drop it.
pub const TCP_PING_DATA: [u8; 64] = from_signed([
    79, -89, 115, 72, 121, -33, 67, -55, -97, 111, -119, -128, -95, 91, 7, 20, 125, -39, 82, 91,
    -21, -33, 67, -102, -73, 126, -66, -113, -127, 103, 30, -74, 55, 21, -66, -121, 69, 33, 76,
    -88, -65, 10, 77, 19, 83, 56, 21, 50, 85, -10, -108, -73, 58, -33, 33, 120, -111, 4, 125, -41,
    114, -124, -64, -43,
]);

/// True for message bodies that Tribes' interceptors consume themselves
/// (failure-detector probes and TCP pings): a receiver drops them.
pub fn is_control_body(message: &[u8]) -> bool {
    message == TCP_FAIL_DETECT || message == TCP_PING_DATA
}

/// Reads a big-endian i32 at `pos`, or a protocol error naming `what`.
pub(crate) fn read_i32(b: &[u8], pos: usize, what: &str) -> crate::Result<i32> {
    b.get(pos..pos + 4)
        .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| truncated(what))
}

/// Reads a big-endian i64 at `pos`.
pub(crate) fn read_i64(b: &[u8], pos: usize, what: &str) -> crate::Result<i64> {
    b.get(pos..pos + 8)
        .map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            i64::from_be_bytes(a)
        })
        .ok_or_else(|| truncated(what))
}

/// Reads a length-prefixed (int32) field at `pos`, bounded by `max`;
/// returns the field's range.
pub(crate) fn read_len_field(
    b: &[u8],
    pos: usize,
    max: usize,
    what: &str,
) -> crate::Result<std::ops::Range<usize>> {
    let n = read_i32(b, pos, what)?;
    if n < 0 || n as usize > max {
        return Err(crate::Error::Protocol(format!(
            "tribes: {what} length {n} out of range 0..={max}"
        )));
    }
    let start = pos + 4;
    let end = start + n as usize;
    if end > b.len() {
        return Err(truncated(what));
    }
    Ok(start..end)
}

pub(crate) fn truncated(what: &str) -> crate::Error {
    crate::Error::Protocol(format!("tribes: truncated {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_kind_tells_acks_from_data() {
        assert_eq!(PayloadKind::of(&[6, 2, 3]), PayloadKind::Ack);
        assert_eq!(PayloadKind::of(&[0x0B, 0, 5]), PayloadKind::FailAck);
        assert_eq!(PayloadKind::of(&[6, 2]), PayloadKind::Data);
        assert_eq!(PayloadKind::of(&[]), PayloadKind::Data);
    }

    #[test]
    fn control_bodies_are_the_tribes_magic() {
        assert_eq!(TCP_FAIL_DETECT[0], 79);
        assert_eq!(TCP_FAIL_DETECT[1], 0xA7); // -89
        assert_eq!(TCP_FAIL_DETECT[63], 0xD5); // -43
        assert_eq!(TCP_PING_DATA[5], 0xDF); // -33
        assert!(is_control_body(&TCP_PING_DATA));
        assert!(is_control_body(&TCP_FAIL_DETECT));
        assert!(!is_control_body(&TCP_PING_DATA[..63]));
    }

    #[test]
    fn length_fields_are_bounded() {
        let b = [0x7F, 0xFF, 0xFF, 0xFF, 1, 2];
        assert!(read_len_field(&b, 0, 1 << 20, "x").is_err());
        let b = [0xFF, 0xFF, 0xFF, 0xFF];
        assert!(read_len_field(&b, 0, 10, "x").is_err());
        let b = [0, 0, 0, 2, 9, 8, 7];
        assert_eq!(read_len_field(&b, 0, 10, "x").unwrap(), 4..6);
        assert!(read_i32(&b, 5, "x").is_err());
        assert!(read_i64(&b, 0, "x").is_err());
    }
}
