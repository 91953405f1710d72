//! How the receivers read: a frame that arrives in pieces is delivered and
//! acked once complete, and frames that arrive together with the sender's
//! hang-up are all delivered and acked before the connection closes. The
//! mio receiver stops reading a connection after a read that emptied the
//! socket (edge-triggered readiness brings the rest); these pin down that
//! nothing is left unread that way.

use bytes::BytesMut;
use sessionrepl::__internal::proto::outbound::{OutboundConn, Reply};
use sessionrepl::__internal::wire::frame::{ack_ranges, FrameHeader, FLAG_ACK_DELIVERY};
use sessionrepl::__internal::wire::Preface;
use sessionrepl::Channel;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[macro_use]
mod common;
use common::io_cfg;

on_both_drivers!(pieces_and_frames_with_the_hangup_are_all_delivered_and_acked);

fn frame(id: u64, len: usize) -> Vec<u8> {
    let mut v = FrameHeader::data(id, len, FLAG_ACK_DELIVERY)
        .encode()
        .to_vec();
    v.extend((0..len).map(|i| (i % 251) as u8));
    v
}

/// Reads until every id in `want` is acked (or the stream ends); returns
/// the ids acked and whether the receiver closed the connection.
fn read_acks(
    s: &mut TcpStream,
    out: &mut OutboundConn,
    buf: &mut BytesMut,
    want: &[u64],
) -> (Vec<u64>, bool) {
    let mut acked = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(r) = out.poll(buf).expect("well-formed replies") {
            if let Reply::Ack(p) = r {
                acked.extend(ack_ranges(&p).flat_map(|(f, n)| f..f + n as u64));
            }
        }
        if want.iter().all(|id| acked.contains(id)) {
            return (acked, false);
        }
        match s.read(&mut chunk) {
            Ok(0) => return (acked, true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("no ack for {want:?} (got {acked:?}): {e}"),
        }
    }
}

fn pieces_and_frames_with_the_hangup_are_all_delivered_and_acked() {
    let delivered = Arc::new(AtomicU64::new(0));
    let d2 = delivered.clone();
    let rx = Channel::builder(io_cfg())
        .listener(move |m| {
            assert_eq!(m.payload[7], 7, "payload intact");
            d2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .start()
        .unwrap();
    let mut s = TcpStream::connect(rx.local_addr()).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut out, mut buf) = (OutboundConn::new(Vec::new()), BytesMut::new());
    s.write_all(&Preface::new([5; 16], b"", false).encode())
        .unwrap();

    // One frame in three pieces, each read on its own.
    let f1 = frame(1, 3000);
    for piece in [&f1[..10], &f1[10..1500], &f1[1500..]] {
        s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let (acked, closed) = read_acks(&mut s, &mut out, &mut buf, &[1]);
    assert_eq!((acked, closed), (vec![1], false));

    // Two frames and the hang-up in one go.
    let mut last = frame(2, 100);
    last.extend(frame(3, 70_000));
    s.write_all(&last).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (acked, _) = read_acks(&mut s, &mut out, &mut buf, &[2, 3]);
    assert!(acked.contains(&2) && acked.contains(&3), "acked {acked:?}");
    let (_, closed) = read_acks(&mut s, &mut out, &mut buf, &[u64::MAX]);
    assert!(closed, "the receiver closes after the sender's hang-up");
    assert_eq!(delivered.load(Ordering::SeqCst), 3);
    rx.stop();
}
