//! Tribes `ChannelData` (`getDataPackage` / `getDataFromPackage`): the
//! payload of every data frame.
//!
//! | field | size |
//! |---|---|
//! | options | int32 |
//! | timestamp | int64 (sender's ms since the epoch) |
//! | unique id length + unique id | int32 + bytes (16 in practice) |
//! | address length + address | int32 + a member blob |
//! | message length + message | int32 + bytes |

use bytes::{BufMut, Bytes};

use super::frame::frame_header;
use super::{read_i32, read_i64, read_len_field, TribesMemberRef, END_DATA, MAX_MEMBER_BLOB};
use crate::error::{Error, Result};

/// Longest unique id accepted (Tribes sends 16 bytes).
pub const MAX_UNIQUE_ID_LEN: usize = 256;

/// A decoded ChannelData. The byte fields share the frame's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelData {
    /// Send options (see [`super::options`]).
    pub options: u32,
    /// Sender's timestamp, ms since the Unix epoch.
    pub timestamp: i64,
    /// Message id chosen by the sender (16 random bytes in Tribes).
    pub unique_id: Bytes,
    /// The sender's member blob, validated on decode.
    pub address: Bytes,
    /// The message body.
    pub message: Bytes,
}

impl ChannelData {
    /// Decodes a frame payload. `unique_id`, `address` and `message` are
    /// slices of `payload` (no copy); the address is validated as a member
    /// blob without allocating.
    ///
    /// # Errors
    /// [`Error::Protocol`] on a truncated field, a length out of range, an
    /// address that is not a member blob, or trailing bytes.
    pub fn decode(payload: Bytes) -> Result<ChannelData> {
        let b = &payload[..];
        let options = read_i32(b, 0, "options")? as u32;
        let timestamp = read_i64(b, 4, "timestamp")?;
        let uid = read_len_field(b, 12, MAX_UNIQUE_ID_LEN, "unique id")?;
        let addr = read_len_field(b, uid.end, MAX_MEMBER_BLOB, "address")?;
        validate_blob(&b[addr.clone()])?;
        let msg = read_len_field(b, addr.end, b.len(), "message")?;
        if msg.end != b.len() {
            return Err(Error::Protocol(format!(
                "tribes: {} bytes after ChannelData message",
                b.len() - msg.end
            )));
        }
        Ok(ChannelData {
            options,
            timestamp,
            unique_id: payload.slice(uid),
            address: payload.slice(addr),
            message: payload.slice(msg),
        })
    }

    /// The sender's member blob, decoded in place.
    ///
    /// # Errors
    /// Only if `address` was set by hand to something that is not a blob.
    pub fn member(&self) -> Result<TribesMemberRef<'_>> {
        TribesMemberRef::parse(&self.address).map(|(m, _)| m)
    }

    /// True if every bit of `option` is set.
    pub fn has(&self, option: u32) -> bool {
        self.options & option == option
    }

    /// Length of everything before the message bytes.
    pub fn prefix_len(&self) -> usize {
        4 + 8 + 4 + self.unique_id.len() + 4 + self.address.len() + 4
    }

    /// Length of the encoded ChannelData.
    pub fn encoded_len(&self) -> usize {
        self.prefix_len() + self.message.len()
    }

    fn check_lengths(&self) -> Result<()> {
        if self.unique_id.len() > MAX_UNIQUE_ID_LEN || self.address.len() > MAX_MEMBER_BLOB {
            return Err(Error::InvalidArgument(
                "ChannelData unique id or address too long".into(),
            ));
        }
        if self.encoded_len() > i32::MAX as usize {
            return Err(Error::FrameTooLarge {
                size: self.encoded_len() as u64,
                limit: i32::MAX as u64,
            });
        }
        Ok(())
    }

    /// Appends everything before the message bytes (ending with the message
    /// length), so a sender can `writev` the message from its own buffer.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] or [`Error::FrameTooLarge`] for fields
    /// too long to decode on the other side; nothing is written then.
    pub fn encode_prefix<B: BufMut>(&self, out: &mut B) -> Result<()> {
        self.check_lengths()?;
        out.put_u32(self.options);
        out.put_i64(self.timestamp);
        out.put_i32(self.unique_id.len() as i32);
        out.put_slice(&self.unique_id);
        out.put_i32(self.address.len() as i32);
        out.put_slice(&self.address);
        out.put_i32(self.message.len() as i32);
        Ok(())
    }

    /// Appends the encoded ChannelData.
    ///
    /// # Errors
    /// As [`ChannelData::encode_prefix`].
    pub fn encode<B: BufMut>(&self, out: &mut B) -> Result<()> {
        self.encode_prefix(out)?;
        out.put_slice(&self.message);
        Ok(())
    }

    /// Appends a whole Tribes frame carrying this ChannelData.
    ///
    /// # Errors
    /// As [`ChannelData::encode_prefix`].
    pub fn encode_framed<B: BufMut>(&self, out: &mut B) -> Result<()> {
        self.check_lengths()?;
        out.put_slice(&frame_header(self.encoded_len())?);
        self.encode(out)?;
        out.put_slice(&END_DATA);
        Ok(())
    }
}

fn validate_blob(blob: &[u8]) -> Result<()> {
    let (_, used) = TribesMemberRef::parse(blob)?;
    if used != blob.len() {
        return Err(Error::Protocol(
            "tribes: bytes after the address blob".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{options, FrameDecoder, TribesMember};
    use super::*;
    use bytes::BytesMut;

    fn sample() -> ChannelData {
        let mut m = TribesMember::new([127, 0, 0, 1].into(), 4000, [9; 16]);
        m.domain = b"abc".to_vec();
        ChannelData {
            options: options::BYTE_MESSAGE | options::USE_ACK,
            timestamp: 0x0102_0304_0506_0708,
            unique_id: Bytes::from_static(&[0xAA; 16]),
            address: Bytes::from(m.to_bytes().unwrap()),
            message: Bytes::from_static(b"hi"),
        }
    }

    #[test]
    fn layout_is_byte_exact() {
        let mut v = Vec::new();
        sample().encode(&mut v).unwrap();
        assert_eq!(v.len(), 4 + 8 + 4 + 16 + 4 + 80 + 4 + 2);
        assert_eq!(&v[..4], &[0, 0, 0, 3]);
        assert_eq!(&v[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&v[12..16], &[0, 0, 0, 16]);
        assert_eq!(&v[16..32], &[0xAA; 16]);
        assert_eq!(&v[32..36], &[0, 0, 0, 80]);
        assert_eq!(&v[36..44], b"TRIBES-B");
        assert_eq!(&v[116..120], &[0, 0, 0, 2]);
        assert_eq!(&v[120..], b"hi");
    }

    #[test]
    fn round_trip_through_a_frame_shares_the_buffer() {
        let cd = sample();
        let mut buf = BytesMut::new();
        cd.encode_framed(&mut buf).unwrap();
        let payload = FrameDecoder::new(1 << 20)
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        let start = payload.as_ptr() as usize;
        let back = ChannelData::decode(payload).unwrap();
        assert_eq!(back, cd);
        assert_eq!(back.message.as_ptr() as usize, start + 120);
        assert!(back.has(options::USE_ACK));
        assert!(!back.has(options::SYNCHRONIZED_ACK));
        let m = back.member().unwrap();
        assert_eq!(m.port, 4000);
        assert_eq!(m.domain, b"abc");
    }

    #[test]
    fn hostile_inputs_are_refused() {
        let mut v = Vec::new();
        sample().encode(&mut v).unwrap();
        for n in 0..v.len() {
            assert!(
                ChannelData::decode(Bytes::copy_from_slice(&v[..n])).is_err(),
                "{n}"
            );
        }
        let mut t = v.clone();
        t.push(0);
        assert!(ChannelData::decode(Bytes::from(t)).is_err());
        let mut t = v.clone();
        t[12..16].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(ChannelData::decode(Bytes::from(t)).is_err());
        let mut t = v.clone();
        t[116..120].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(ChannelData::decode(Bytes::from(t)).is_err());
        let mut t = v.clone();
        t[36] = b'X'; // address is not a member blob
        assert!(ChannelData::decode(Bytes::from(t)).is_err());
    }

    #[test]
    fn oversized_fields_are_not_encoded() {
        let mut cd = sample();
        cd.unique_id = Bytes::from(vec![0; MAX_UNIQUE_ID_LEN + 1]);
        let mut v = Vec::new();
        assert!(cd.encode_framed(&mut v).is_err());
        assert!(v.is_empty());
    }
}
