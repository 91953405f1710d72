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
use sessionrepl::__internal::wire::frame::{batch_frames, FLAG_COMPRESSED, FLAG_SEQ};
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

    // The receiver's fast path (a run of DATA frames taken in one pass)
    // yields exactly the frames, and the error, of one `poll` per frame.
    let by_poll = frames_seen(a, b, false);
    assert_eq!(by_poll, frames_seen(a, b, true));

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

/// The DATA frames (id, flags, payload) of `a` then `b` on one inbound
/// connection, and whether it ended in an error; with `runs`, complete
/// DATA frames are taken as runs (`data_run` / `take_data`) first.
fn frames_seen(a: &[u8], b: &[u8], runs: bool) -> (Vec<(u64, u8, Bytes)>, bool) {
    let mut rx = InboundConn::new(Preface::new([2; 16], b"", true), MAX);
    let mut buf = BytesMut::from(a);
    let mut seen = Vec::new();
    for chunk in [b, &[][..]] {
        buf.extend_from_slice(chunk);
        loop {
            if runs {
                let (n, len) = rx.data_run(&buf, 64, FLAG_COMPRESSED | FLAG_SEQ);
                if n > 0 {
                    let mut run = buf.split_to(len).freeze();
                    for _ in 0..n {
                        seen.push(rx.take_data(&mut run).expect("counted by data_run"));
                    }
                    assert!(run.is_empty());
                    continue;
                }
            }
            match rx.poll(&mut buf) {
                Ok(Some(InEvent::Data(f))) => seen.push((f.header.id, f.header.flags, f.payload)),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return (seen, true),
            }
        }
    }
    (seen, false)
}
