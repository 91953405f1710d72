//! Property tests of the native codecs: any frame sequence survives
//! encoding and decoding in arbitrary chunks; arbitrary bytes never panic
//! the decoders and never make them buffer past their bound.

use bytes::BytesMut;
use proptest::prelude::*;
use sessionrepl::__internal::proto::inbound::{InEvent, InboundConn};
use sessionrepl::__internal::proto::FrameDecoder;
use sessionrepl::__internal::wire::frame::{
    FrameHeader, FrameType, FLAG_ACK_DELIVERY, FLAG_ACK_RECEIPT, FLAG_COMPRESSED,
};
use sessionrepl::__internal::wire::Preface;

fn frame_strategy() -> impl Strategy<Value = (u64, u8, Vec<u8>)> {
    (
        any::<u64>(),
        prop::sample::select(vec![
            0,
            FLAG_ACK_RECEIPT,
            FLAG_ACK_DELIVERY,
            FLAG_COMPRESSED | FLAG_ACK_DELIVERY,
        ]),
        prop::collection::vec(any::<u8>(), 0..600),
    )
}

proptest! {
    #[test]
    fn frames_round_trip_in_any_chunking(
        frames in prop::collection::vec(frame_strategy(), 1..40),
        chunk in 1usize..300,
    ) {
        let mut wire = Vec::new();
        for (id, flags, p) in &frames {
            wire.extend_from_slice(&FrameHeader::data(*id, p.len(), *flags).encode());
            wire.extend_from_slice(p);
        }
        let mut d = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for c in wire.chunks(chunk) {
            buf.extend_from_slice(c);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push((f.header.id, f.header.flags, f.payload.to_vec()));
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn preface_round_trips(id in any::<[u8; 16]>(), domain in prop::collection::vec(any::<u8>(), 0..255), port in any::<u16>()) {
        let mut p = Preface::new(id, &domain, false);
        p.listen_port = port;
        let (q, n) = Preface::decode(&p.encode()).unwrap().unwrap();
        prop_assert_eq!(n, p.encode().len());
        prop_assert_eq!(q, p);
    }

    #[test]
    fn garbage_never_panics_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..4096), chunk in 1usize..512) {
        let mut d = FrameDecoder::new(2048);
        let mut buf = BytesMut::new();
        'outer: for c in bytes.chunks(chunk) {
            buf.extend_from_slice(c);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(f)) => prop_assert!(f.payload.len() <= 2048),
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
        // The inbound state machine, with and without a valid preface first.
        for prefix in [Vec::new(), Preface::new([1; 16], b"", false).encode()] {
            let mut rx = InboundConn::new(Preface::new([2; 16], b"", true), 2048);
            let mut buf = BytesMut::from(&prefix[..]);
            buf.extend_from_slice(&bytes);
            loop {
                match rx.poll(&mut buf) {
                    Ok(Some(InEvent::Data(f))) | Ok(Some(InEvent::Batch(f))) => {
                        prop_assert!(f.payload.len() <= 2048);
                        prop_assert!(matches!(f.header.ty, FrameType::Data | FrameType::Batch));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
