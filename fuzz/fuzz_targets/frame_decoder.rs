//! Fuzzes every decoder a peer's bytes reach: the native inbound state
//! machine (preface, frames, BATCH bodies), the sender's reply decoder, the
//! Tribes frame and ChannelData decoders, and bounded inflation. The input
//! is fed in two chunks at a split point taken from its first byte.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sessionrepl::__internal::proto::inbound::{InEvent, InboundConn};
use sessionrepl::__internal::proto::outbound::OutboundConn;
use sessionrepl::__internal::wire::compress::Inflater;
use sessionrepl::__internal::wire::frame::batch_frames;
use sessionrepl::__internal::wire::tribes;
use sessionrepl::__internal::wire::Preface;

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let (a, b) = data.split_at(split);

    let mut rx = InboundConn::new(Preface::new([2; 16], b"", true), MAX);
    let mut inflater = Inflater::new(MAX);
    let mut buf = BytesMut::from(a);
    'native: for chunk in [b, &[][..]] {
        buf.extend_from_slice(chunk);
        loop {
            match rx.poll(&mut buf) {
                Ok(Some(InEvent::Data(f))) => {
                    assert!(f.payload.len() <= MAX);
                    let _ = inflater.inflate(&f.payload);
                }
                Ok(Some(InEvent::Batch(f))) => {
                    if let Ok(body) = inflater.inflate(&f.payload) {
                        assert!(body.len() <= MAX);
                        for r in batch_frames(&body, MAX) {
                            if r.is_err() {
                                break;
                            }
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'native,
            }
        }
    }

    let mut tx = OutboundConn::new(Vec::new());
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = tx.poll(&mut buf) {}

    let dec = tribes::FrameDecoder::new(MAX);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(p)) = dec.decode(&mut buf) {
        assert!(p.len() <= MAX);
        if let Ok(cd) = tribes::ChannelData::decode(p) {
            let _ = cd.member();
        }
    }
    let _ = tribes::ChannelData::decode(Bytes::copy_from_slice(data));
    let _ = tribes::TribesMember::decode(data);
});
