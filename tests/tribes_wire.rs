//! Property tests of the Tribes codecs: round trips, arbitrary chunking of
//! the frame stream, and arbitrary bytes never panicking.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::net::IpAddr;

use sessionrepl::__internal::wire::tribes::{
    encode_frame, ChannelData, FrameDecoder, TribesMember,
};

fn member() -> impl Strategy<Value = TribesMember> {
    (
        any::<i64>(),
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from)
        ],
        proptest::collection::vec(any::<u8>(), 0..32),
        proptest::collection::vec(any::<u8>(), 0..32),
        any::<[u8; 16]>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(alive_ms, port, secure_port, udp_port, host, command, domain, unique_id, payload)| {
                TribesMember {
                    alive_ms,
                    port,
                    secure_port,
                    udp_port,
                    host,
                    command,
                    domain,
                    unique_id,
                    payload,
                }
            },
        )
}

proptest! {
    #[test]
    fn member_blob_round_trips(m in member()) {
        let b = m.to_bytes().unwrap();
        prop_assert_eq!(b.len(), m.encoded_len());
        prop_assert_eq!(TribesMember::decode(&b).unwrap(), m);
    }

    #[test]
    fn channel_data_round_trips(
        m in member(),
        options in any::<u32>(),
        timestamp in any::<i64>(),
        uid in proptest::collection::vec(any::<u8>(), 0..32),
        msg in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let cd = ChannelData {
            options,
            timestamp,
            unique_id: Bytes::from(uid),
            address: Bytes::from(m.to_bytes().unwrap()),
            message: Bytes::from(msg),
        };
        let mut v = Vec::new();
        cd.encode(&mut v).unwrap();
        prop_assert_eq!(v.len(), cd.encoded_len());
        let back = ChannelData::decode(Bytes::from(v)).unwrap();
        prop_assert_eq!(back.member().unwrap().to_owned(), m);
        prop_assert_eq!(back, cd);
    }

    #[test]
    fn frames_survive_any_chunking(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 1..8),
        cuts in proptest::collection::vec(1usize..40, 1..50),
    ) {
        let mut stream = Vec::new();
        for p in &payloads {
            encode_frame(p, &mut stream).unwrap();
        }
        let d = FrameDecoder::new(100);
        let mut buf = BytesMut::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < stream.len() {
            let n = cuts[i % cuts.len()].min(stream.len() - pos);
            buf.extend_from_slice(&stream[pos..pos + n]);
            pos += n;
            i += 1;
            while let Some(p) = d.decode(&mut buf).unwrap() {
                got.push(p.to_vec());
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, payloads);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = TribesMember::decode(&b);
        let _ = ChannelData::decode(Bytes::from(b.clone()));
        let mut buf = BytesMut::from(&b[..]);
        let d = FrameDecoder::new(64);
        while let Ok(Some(_)) = d.decode(&mut buf) {}
        // The same bytes behind valid headers.
        let mut framed = BytesMut::new();
        encode_frame(&b, &mut framed).unwrap();
        let p = FrameDecoder::new(1024).decode(&mut framed).unwrap().unwrap();
        let _ = ChannelData::decode(p);
    }
}
