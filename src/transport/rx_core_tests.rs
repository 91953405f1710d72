//! The receiver's per-connection bounds on the real delivery path
//! (`RxCore::decode`), without sockets: bytes in, holds and listener calls
//! out.

use super::*;
use crate::config::Config;
use crate::wire::compress::Deflater;
use crate::wire::frame::{FrameHeader, FrameType, FLAG_SEQ};
use bytes::BytesMut;
use std::sync::atomic::AtomicUsize;

struct NoWake;
impl Wake for NoWake {
    fn wake(&self) {}
}

/// A core delivering on the I/O thread (no workers) and counting calls.
fn core(cfg: Config) -> (RxCore, Arc<AtomicUsize>) {
    cfg.validate().unwrap();
    let shared = Arc::new(Shared::new(cfg, [1; 16], None));
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let l: MessageListener = Arc::new(move |_| {
        n2.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let (c, workers) = start_workers(&shared, l, Box::new(NoWake), 0).unwrap();
    assert!(workers.is_empty());
    (c, n)
}

fn peer() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

fn preface() -> Vec<u8> {
    Preface::new([2; 16], b"", false).encode()
}

fn data(id: u64, flags: u8, p: &[u8]) -> Vec<u8> {
    let mut v = FrameHeader::data(id, p.len(), flags).encode().to_vec();
    v.extend_from_slice(p);
    v
}

#[test]
fn inflate_budget_yields_the_turn_and_the_next_turn_goes_on() {
    let mut cfg = Config::default();
    cfg.rx_limits.max_inflate_per_turn = 1 << 20;
    let (mut rx, delivered) = core(cfg);
    let mut c = rx.new_conn(1, peer());
    let z = Deflater::new(1).compress(&vec![7u8; 512 * 1024]).unwrap();
    let mut buf = BytesMut::from(&preface()[..]);
    for id in 1..=5 {
        buf.extend_from_slice(&data(id, FLAG_COMPRESSED, &z));
    }
    rx.begin_turn(&mut c);
    rx.decode(1, &mut c, &mut buf).unwrap();
    // 2 × 512 KiB inflated: the budget is spent, the rest waits its turn.
    assert_eq!(delivered.load(Ordering::SeqCst), 2);
    assert_eq!(c.hold, Some(Hold::Turn));
    assert!(c.retry_next_turn());
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert_eq!(
        delivered.load(Ordering::SeqCst),
        2,
        "held until its next turn"
    );
    rx.begin_turn(&mut c);
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), 4);
    rx.begin_turn(&mut c);
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), 5);
    assert!(buf.is_empty());
}

#[test]
fn unread_acks_hold_the_connection_until_they_drain() {
    let mut cfg = Config::default();
    cfg.rx_limits.max_pending_ack_bytes = 1024;
    let (mut rx, _) = core(cfg);
    let mut c = rx.new_conn(1, peer());
    let mut buf = BytesMut::from(&preface()[..]);
    for id in 0..200 {
        let h = FrameHeader {
            ty: FrameType::Ping,
            flags: 0,
            len: 0,
            id,
        };
        buf.extend_from_slice(&h.encode());
    }
    // Ack requests with ids that never merge into one range.
    for id in 0..60u64 {
        buf.extend_from_slice(&data(id * 2, FLAG_ACK_RECEIPT, b""));
    }
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert_eq!(c.hold, Some(Hold::Output));
    assert!(!c.retry_next_turn(), "only drained output resumes it");
    assert!(!buf.is_empty(), "no more input is taken while held");
    assert!(!rx.output_drained(&mut c));
    // The peer reads: the output is written, the hold ends.
    c.proto.take_output().clear();
    assert!(rx.output_drained(&mut c));
    assert_eq!(c.hold, None);
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert!(buf.is_empty());
    assert_eq!(c.hold, None, "59 ack ranges fit in 1 KiB");
}

#[test]
fn a_frame_that_does_not_fit_receive_memory_waits_for_it() {
    let mut cfg = Config::default();
    cfg.max_frame_size = 512 * 1024;
    cfg.rx_limits.max_receive_memory = 1 << 20;
    let (mut rx, delivered) = core(cfg);
    let body = vec![3u8; 400 * 1024];
    let (mut a, mut b) = (rx.new_conn(1, peer()), rx.new_conn(2, peer()));
    let full = data(1, 0, &body);
    let mut abuf = BytesMut::from(&preface()[..]);
    abuf.extend_from_slice(&full[..1000]);
    let mut bbuf = abuf.clone();
    let mut cbuf = abuf.clone();
    let mut cc = rx.new_conn(3, peer());
    rx.decode(1, &mut a, &mut abuf).unwrap();
    rx.decode(2, &mut b, &mut bbuf).unwrap();
    assert_eq!(
        (a.hold, b.hold),
        (None, None),
        "two 400 KiB frames fit in 1 MiB"
    );
    rx.decode(3, &mut cc, &mut cbuf).unwrap();
    assert_eq!(cc.hold, Some(Hold::Memory), "the third does not");
    assert!(rx.memory_waiters().is_empty(), "nothing released yet");
    // The first frame completes: its memory returns and the waiter retries.
    abuf.extend_from_slice(&full[1000..]);
    rx.decode(1, &mut a, &mut abuf).unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
    assert_eq!(rx.memory_waiters(), vec![3]);
    assert!(rx.unhold_memory(&mut cc));
    rx.decode(3, &mut cc, &mut cbuf).unwrap();
    assert_eq!(cc.hold, None);
    // A closed connection gives its reservation back too.
    rx.on_close(&b, &Close::Eof);
    assert_eq!(
        rx.limits.memory_used(),
        400 * 1024,
        "only the third's frame"
    );
}

#[test]
fn a_batch_stops_at_the_output_bound_and_goes_on_when_acks_drain() {
    let mut cfg = Config::default();
    cfg.rx_limits.max_pending_ack_bytes = 1024;
    let (mut rx, delivered) = core(cfg);
    let mut c = rx.new_conn(1, peer());
    // 1000 ack requests with ids that never merge into one range.
    let mut body = Vec::new();
    for i in 0..1000u64 {
        body.extend_from_slice(&data(i * 2, FLAG_ACK_RECEIPT, b""));
    }
    let z = Deflater::new(1).compress(&body).unwrap();
    let mut buf = BytesMut::from(&preface()[..]);
    let h = FrameHeader {
        ty: FrameType::Batch,
        flags: FLAG_COMPRESSED,
        len: z.len() as u32,
        id: 0,
    };
    buf.extend_from_slice(&h.encode());
    buf.extend_from_slice(&z);
    rx.decode(1, &mut c, &mut buf).unwrap();
    let first = delivered.load(Ordering::SeqCst);
    assert_eq!(c.hold, Some(Hold::Output));
    assert!(first < 100, "{first} delivered past the bound");
    assert!(c.proto.pending_output() <= 1024 + 12 + 16);
    // Each time the peer reads its acks, the batch goes on from where it stopped.
    let mut rounds = 0;
    while delivered.load(Ordering::SeqCst) < 1000 {
        c.proto.take_output().clear();
        assert!(rx.output_drained(&mut c));
        rx.decode(1, &mut c, &mut buf).unwrap();
        rounds += 1;
        assert!(rounds < 100, "no progress");
    }
    assert!(rounds > 5);
    assert!(c.batch_rest.is_none());
}

#[test]
fn a_tribes_peer_that_does_not_read_its_acks_is_held_too() {
    use crate::wire::tribes::{options, ChannelData, TribesMember};
    let mut cfg = Config::default();
    cfg.rx_limits.max_pending_ack_bytes = 1024;
    let (mut rx, delivered) = core(cfg);
    let mut c = rx.new_conn(1, peer());
    let mut blob = BytesMut::new();
    TribesMember::new("127.0.0.1".parse().unwrap(), 4000, [5; 16])
        .encode(&mut blob)
        .unwrap();
    let mut buf = BytesMut::new();
    for i in 0..200u8 {
        let cd = ChannelData {
            options: options::BYTE_MESSAGE | options::USE_ACK,
            timestamp: 0,
            unique_id: Bytes::copy_from_slice(&[i; 16]),
            address: blob.clone().freeze(),
            message: Bytes::from_static(b"attr"),
        };
        cd.encode_framed(&mut buf).unwrap();
    }
    rx.decode(1, &mut c, &mut buf).unwrap();
    // 21-byte ACK frames: held once past 1 KiB, the rest unread.
    assert_eq!(c.hold, Some(Hold::Output));
    let n = delivered.load(Ordering::SeqCst);
    assert!((48..=50).contains(&n), "{n} delivered");
    c.proto.take_output().clear();
    assert!(rx.output_drained(&mut c));
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert!(delivered.load(Ordering::SeqCst) > n);
}

#[test]
fn a_small_frame_stopped_midway_expires_at_connection_upload_timeout() {
    let mut cfg = Config::default();
    cfg.rx_limits.connection_upload_timeout = Duration::from_secs(30);
    let (mut rx, delivered) = core(cfg);
    let mut c = rx.new_conn(1, peer());
    let frame = data(1, 0, &[5u8; 100]);
    // Preface and one whole frame: between frames, no deadline.
    let mut buf = BytesMut::from(&preface()[..]);
    buf.extend_from_slice(&frame);
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
    assert_eq!(
        rx.limits.next_deadline(),
        None,
        "an idle connection has none"
    );
    // Half a header, then half a small frame: its clock starts at the first
    // byte and does not restart while the same frame trickles in.
    let t0 = Instant::now() + Duration::from_secs(1);
    rx.set_now(t0);
    buf.extend_from_slice(&frame[..5]);
    rx.decode(1, &mut c, &mut buf).unwrap();
    let due = rx
        .limits
        .next_deadline()
        .expect("a frame started has a deadline");
    assert_eq!(due, t0 + Duration::from_secs(30), "from the engine's clock");
    rx.set_now(t0 + Duration::from_secs(7));
    buf.extend_from_slice(&frame[5..60]);
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert_eq!(
        rx.limits.next_deadline(),
        Some(due),
        "same frame, same deadline"
    );
    // On the virtual clock: not before, then the connection is closed.
    assert!(rx.limits.expired(due - Duration::from_millis(1)).is_empty());
    assert_eq!(rx.limits.expired(due), vec![(1, Expiry::Upload)]);
}

#[test]
fn a_completed_frame_ends_its_deadline_and_the_next_partial_starts_anew() {
    let (mut rx, delivered) = core(Config::default());
    let mut c = rx.new_conn(1, peer());
    let a = data(1, 0, &[1u8; 100]);
    let b = data(2, 0, &[2u8; 100]);
    let mut buf = BytesMut::from(&preface()[..]);
    buf.extend_from_slice(&a[..50]);
    rx.decode(1, &mut c, &mut buf).unwrap();
    let first = rx.limits.next_deadline().expect("first frame's deadline");
    let later = Duration::from_millis(2);
    rx.set_now(first - Config::default().rx_limits.connection_upload_timeout + later);
    // The first frame completes and the second starts in the same read.
    buf.extend_from_slice(&a[50..]);
    buf.extend_from_slice(&b[..30]);
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
    let second = rx.limits.next_deadline().expect("second frame's deadline");
    assert_eq!(
        second,
        first + later,
        "the second frame's clock starts when it does"
    );
    buf.extend_from_slice(&b[30..]);
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), 2);
    assert_eq!(rx.limits.next_deadline(), None);
}

/// The (id, payload) of each message a listener got, in order.
type Recorded = Arc<std::sync::Mutex<Vec<(u64, Vec<u8>)>>>;

/// A core delivering on the I/O thread that records each message's id and
/// payload.
fn recording_core() -> (RxCore, Recorded) {
    let shared = Arc::new(Shared::new(Config::default(), [1; 16], None));
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g2 = got.clone();
    let l: MessageListener = Arc::new(move |m: &Message| {
        g2.lock().unwrap().push((m.id, m.payload.to_vec()));
        Ok(())
    });
    let (c, _) = start_workers(&shared, l, Box::new(NoWake), 0).unwrap();
    (c, got)
}

/// The ids acked in `c`'s output (after its preface answer).
fn acked_ids(c: &mut ConnCore) -> Vec<u64> {
    use crate::proto::outbound::{OutboundConn, Reply};
    let mut back = BytesMut::from(&c.proto.take_output()[..]);
    let mut tx = OutboundConn::new(Vec::new());
    let mut ids = Vec::new();
    while let Some(r) = tx.poll(&mut back).unwrap() {
        if let Reply::Ack(p) = r {
            ids.extend(crate::wire::frame::ack_ranges(&p).flat_map(|(f, n)| f..f + n as u64));
        }
    }
    ids
}

#[test]
fn runs_of_frames_are_delivered_once_each_across_a_reconnect() {
    use crate::wire::frame::seq_marker;
    let (mut rx, got) = recording_core();
    // 150 messages (more than one run), numbered 1..=150 by a marker.
    let mut c = rx.new_conn(1, peer());
    let mut buf = BytesMut::from(&preface()[..]);
    buf.extend_from_slice(&data(0, FLAG_SEQ, &seq_marker(7, 1)));
    for id in 1..=150u64 {
        buf.extend_from_slice(&data(id, 0, &id.to_be_bytes()));
    }
    rx.decode(1, &mut c, &mut buf).unwrap();
    assert!(buf.is_empty());
    // Reconnect: 141..=150 resent with ack requests, then 151..=160; a
    // frame cut in two by the read ends the second decode.
    let mut c2 = rx.new_conn(2, peer());
    let mut buf2 = BytesMut::from(&preface()[..]);
    buf2.extend_from_slice(&data(0, FLAG_SEQ, &seq_marker(7, 141)));
    for id in 141..=160u64 {
        buf2.extend_from_slice(&data(id, FLAG_ACK_RECEIPT, &id.to_be_bytes()));
    }
    let last = data(161, FLAG_ACK_DELIVERY, &161u64.to_be_bytes());
    buf2.extend_from_slice(&last[..10]);
    rx.decode(2, &mut c2, &mut buf2).unwrap();
    assert_eq!(buf2.len(), 10, "the partial frame waits");
    buf2.extend_from_slice(&last[10..]);
    rx.decode(2, &mut c2, &mut buf2).unwrap();
    let got = got.lock().unwrap();
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=161).collect::<Vec<_>>(), "each once, in order");
    assert!(got.iter().all(|(id, p)| p[..] == id.to_be_bytes()));
    assert_eq!(
        acked_ids(&mut c2),
        (141..=161).collect::<Vec<_>>(),
        "duplicates are acked without a second delivery"
    );
}
