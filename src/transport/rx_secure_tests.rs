//! Shared-key records on the real delivery path (`RxCore::decode`),
//! without sockets: records opened in place in the connection's read
//! buffer, or in the stream's own buffer when bytes come as chunks; frames
//! that straddle records and reads delivered once, in order; a bad record
//! delivers nothing more and closes the connection.

use super::super::*;
use crate::config::Config;
use crate::proto::secure::{SecureContext, SecureStream, SharedKey};
use crate::wire::frame::FrameHeader;
use bytes::BytesMut;
use std::sync::Mutex;

struct NoWake;
impl Wake for NoWake {
    fn wake(&self) {}
}

fn ctx() -> SecureContext {
    SecureContext::shared_key(&[SharedKey::from_bytes(vec![3; 32]).unwrap()])
}

/// A shared-key core delivering on the I/O thread, recording payloads.
fn core() -> (RxCore, Arc<Mutex<Vec<Bytes>>>) {
    let cfg = Config::default();
    let mut shared = Shared::new(cfg, [1; 16], None);
    shared.secure = Some(ctx());
    let shared = Arc::new(shared);
    let got = Arc::new(Mutex::new(Vec::new()));
    let g2 = got.clone();
    let l: MessageListener = Arc::new(move |m| {
        g2.lock().unwrap().push(m.payload.clone());
        Ok(())
    });
    let (c, workers) = start_workers(&shared, l, Box::new(NoWake), 0).unwrap();
    assert!(workers.is_empty());
    (c, got)
}

fn payload(id: u64) -> Vec<u8> {
    (0..1000 + id as usize % 700)
        .map(|i| (i as u64 * 13 + id) as u8)
        .collect()
}

/// The sending side: its hello, then (once `answer` is given) the
/// preface and `n` DATA frames sealed as one write batch of records.
struct Sender(SecureStream);

impl Sender {
    fn new() -> Sender {
        Sender(SecureStream::connect(&ctx(), "127.0.0.1".parse().unwrap()).unwrap())
    }
    fn take(&mut self) -> Vec<u8> {
        let out = self.0.pending().to_vec();
        self.0.written(out.len());
        out
    }
    fn frames(&mut self, answer: &[u8], n: u64) -> Vec<u8> {
        self.0.receive(answer).unwrap();
        assert!(self.0.is_established());
        let mut s = self.0.sealer();
        s.push(&Preface::new([2; 16], b"", false).encode());
        for id in 1..=n {
            let p = payload(id);
            s.push(&FrameHeader::data(id, p.len(), 0).encode());
            s.push(&p);
        }
        s.finish().unwrap();
        self.take()
    }
    /// DATA frames `ids` sealed as a write batch of their own: its records
    /// start at a frame boundary.
    fn batch(&mut self, ids: std::ops::RangeInclusive<u64>) -> Vec<u8> {
        let mut s = self.0.sealer();
        for id in ids {
            let p = payload(id);
            s.push(&FrameHeader::data(id, p.len(), 0).encode());
            s.push(&p);
        }
        s.finish().unwrap();
        self.take()
    }
}

/// Runs the handshake through `rx`; returns the sealed frames to feed.
fn handshake(rx: &mut RxCore, c: &mut ConnCore, tx: &mut Sender, n: u64) -> Vec<u8> {
    let mut hello = BytesMut::from(&tx.take()[..]);
    rx.decode(1, c, &mut hello).unwrap();
    let answer = std::mem::take(c.proto.take_output());
    assert!(!answer.is_empty(), "the responder answers the hello");
    tx.frames(&answer, n)
}

fn check(got: &Mutex<Vec<Bytes>>, n: u64) {
    let got = got.lock().unwrap();
    assert_eq!(got.len() as u64, n);
    for (k, p) in got.iter().enumerate() {
        assert_eq!(&p[..], &payload(k as u64 + 1)[..], "message {}", k + 1);
    }
}

#[test]
fn frames_straddling_records_and_reads_arrive_once_in_order() {
    for read in [1_usize, 997, 10_000, 70_000, 1 << 20] {
        let (mut rx, got) = core();
        let mut c = rx.new_conn(1, "127.0.0.1:9".parse().unwrap());
        let mut tx = Sender::new();
        let wire = handshake(&mut rx, &mut c, &mut tx, 300); // ~7 records
        let mut carry = BytesMut::new();
        for chunk in wire.chunks(read) {
            carry.extend_from_slice(chunk);
            rx.decode(1, &mut c, &mut carry).unwrap();
        }
        check(&got, 300);
        assert!(carry.is_empty(), "read {read}: {} bytes left", carry.len());
    }
}

#[test]
fn chunks_from_elsewhere_are_opened_in_the_streams_own_buffer() {
    let (mut rx, got) = core();
    let mut c = rx.new_conn(1, "127.0.0.1:9".parse().unwrap());
    let mut tx = Sender::new();
    let wire = handshake(&mut rx, &mut c, &mut tx, 300);
    for chunk in wire.chunks(4093) {
        let mut b = Bytes::copy_from_slice(chunk);
        rx.decode(1, &mut c, &mut b).unwrap();
        assert!(b.is_empty(), "a chunk is taken whole");
    }
    check(&got, 300);
}

#[test]
fn a_flipped_bit_closes_the_connection_and_delivers_nothing_after_it() {
    let (mut rx, got) = core();
    let mut c = rx.new_conn(1, "127.0.0.1:9".parse().unwrap());
    let mut tx = Sender::new();
    let mut wire = handshake(&mut rx, &mut c, &mut tx, 300);
    // In the second record: the first record's frames may be delivered,
    // none after.
    let second = 2 + 65_535 + 100;
    wire[second] ^= 4;
    let mut carry = BytesMut::new();
    let mut closed = None;
    for chunk in wire.chunks(20_000) {
        carry.extend_from_slice(chunk);
        if let Err(e) = rx.decode(1, &mut c, &mut carry) {
            closed = Some(e);
            break;
        }
    }
    assert!(
        matches!(closed, Some(Close::Secure(SecureError::Corrupt(_)))),
        "{closed:?}"
    );
    let n = got.lock().unwrap().len() as u64;
    assert!(
        n < 70,
        "{n} messages delivered, more than the first record holds"
    );
    check(&got, n);
}

/// A record stopped midway is a frame in progress, even when every frame
/// before it is complete: its clock starts with the read that left it
/// (frames completed before it in the same read), does not restart while
/// it trickles in, and the connection expires at `connectionUploadTimeout`
/// on the engine's clock. Before, such a connection counted as between
/// frames (no deadline) and was never closed.
#[test]
fn a_record_stopped_midway_expires_at_connection_upload_timeout() {
    let (mut rx, got) = core();
    let mut c = rx.new_conn(1, "127.0.0.1:9".parse().unwrap());
    let mut tx = Sender::new();
    let mut wire = handshake(&mut rx, &mut c, &mut tx, 10); // one record
    let first = wire.len();
    wire.extend_from_slice(&tx.batch(11..=20)); // the next record
    let upload = Config::default().rx_limits.connection_upload_timeout;
    let t0 = Instant::now() + Duration::from_secs(1);
    rx.set_now(t0);
    // The first record and half the second.
    let cut = first + (wire.len() - first) / 2;
    let mut carry = BytesMut::from(&wire[..cut]);
    rx.decode(1, &mut c, &mut carry).unwrap();
    check(&got, 10);
    let due = rx
        .limits
        .next_deadline()
        .expect("a partial record has an upload deadline");
    assert_eq!(due, t0 + upload, "from the engine's clock");
    // More of the same record later: same deadline.
    rx.set_now(t0 + upload / 2);
    carry.extend_from_slice(&wire[cut..cut + 5]);
    rx.decode(1, &mut c, &mut carry).unwrap();
    check(&got, 10);
    assert_eq!(
        rx.limits.next_deadline(),
        Some(due),
        "same record, same deadline"
    );
    assert!(rx.limits.expired(due - Duration::from_millis(1)).is_empty());
    assert_eq!(rx.limits.expired(due), vec![(1, Expiry::Upload)]);
    // Completed in time instead, it ends the deadline: between frames.
    carry.extend_from_slice(&wire[cut + 5..]);
    rx.decode(1, &mut c, &mut carry).unwrap();
    check(&got, 20);
    assert_eq!(rx.limits.next_deadline(), None, "between frames");
}
