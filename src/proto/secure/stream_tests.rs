//! The in-place receive path ([`SecureStream::open_in_place`]): records
//! opened where they lie in the receive buffer, whatever the read sizes,
//! with the same refusals as the copying path.

use super::*;
use crate::proto::secure::noise::MAX_RECORD_LEN;
use crate::proto::secure::SharedKey;

fn ctx(b: u8) -> SecureContext {
    SecureContext::shared_key(&[SharedKey::from_bytes(vec![b; 32]).unwrap()])
}

/// A connecting stream and the accepting one, whose handshake went
/// through the in-place path (the receive buffer `rx` given back empty).
fn pair() -> (SecureStream, SecureStream, BytesMut) {
    let mut a = SecureStream::connect(&ctx(1), "127.0.0.1".parse().unwrap()).unwrap();
    let mut b = SecureStream::accept(&ctx(1)).unwrap();
    let mut rx = BytesMut::from(a.pending());
    let n = a.pending().len();
    a.written(n);
    assert_eq!(b.open_in_place(&mut rx).unwrap(), 0);
    assert!(rx.is_empty() && b.is_established());
    let answer = b.pending().to_vec();
    b.written(answer.len());
    a.receive(&answer).unwrap();
    assert!(a.is_established());
    (a, b, rx)
}

/// `data` sealed by `a` as one write batch (records of up to 64 KiB).
fn seal(a: &mut SecureStream, data: &[u8]) -> Vec<u8> {
    let mut s = a.sealer();
    s.push(data);
    s.finish().unwrap();
    let out = a.pending().to_vec();
    a.written(out.len());
    out
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n as u32).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// Feeds `wire` in reads of `read` bytes; after each, a decoder takes
/// whole `frame`-byte pieces from the front (leaving a partial one, as a
/// frame decoder does). Returns what it took; checks the bound on the
/// bytes kept in the buffer on the way.
fn receive_in_reads(
    b: &mut SecureStream,
    rx: &mut BytesMut,
    wire: &[u8],
    read: usize,
    frame: usize,
) -> Vec<u8> {
    let mut got = Vec::new();
    for chunk in wire.chunks(read) {
        rx.extend_from_slice(chunk);
        let ready = b.open_in_place(rx).unwrap();
        // Spent bytes never outgrow the plaintext before them; after them
        // is at most one partial record.
        assert!(
            rx.len() <= 2 * ready + RECORD_HEADER_LEN + MAX_RECORD_LEN,
            "{} bytes kept for {ready} of plaintext",
            rx.len()
        );
        let mut plain = rx.split_to(ready);
        while plain.len() >= frame {
            got.extend_from_slice(&plain.split_to(frame));
        }
        b.plain_left(plain.len(), rx);
        plain.unsplit(std::mem::take(rx));
        *rx = plain;
    }
    got
}

#[test]
fn records_open_in_place_whatever_the_read_sizes() {
    let data = pattern(300_000); // five records, the last one partial
    for (read, frame) in [
        (1, 1),
        (7, 1000),
        (1000, 1000),
        (70_000, 1024),
        (300_100, 4096),
        (65_537, 100_000),
    ] {
        let (mut a, mut b, mut rx) = pair();
        let wire = seal(&mut a, &data);
        let mut got = receive_in_reads(&mut b, &mut rx, &wire, read, frame);
        // What the decoder left is the plaintext at the front.
        let ready = b.open_in_place(&mut rx).unwrap();
        assert_eq!(ready, data.len() - got.len(), "read {read}");
        got.extend_from_slice(&rx[..ready]);
        assert_eq!(got, data, "read {read}, frame {frame}");
        assert!(rx.len() <= 2 * ready, "read {read}: spent bytes kept");
    }
}

#[test]
fn frames_are_slices_of_the_receive_buffer() {
    let (mut a, mut b, mut rx) = pair();
    let wire = seal(&mut a, &pattern(50_000));
    rx.reserve(wire.len());
    rx.extend_from_slice(&wire);
    let base = rx.as_ptr() as usize;
    let ready = b.open_in_place(&mut rx).unwrap();
    assert_eq!(ready, 50_000);
    let frame = rx.split_to(1000).freeze();
    assert_eq!(
        frame.as_ptr() as usize,
        base,
        "opened where it was read, not copied"
    );
    assert_eq!(&frame[..], &pattern(50_000)[..1000]);
}

#[test]
fn a_flipped_bit_anywhere_in_a_record_fails_and_stays_failed() {
    let data = pattern(2000);
    let n = seal(&mut pair().0, &data).len();
    for i in (0..n).step_by(97).chain([0, 1, n - 1]) {
        let (mut a, mut b, mut rx) = pair();
        let mut wire = seal(&mut a, &data);
        wire[i] ^= 0x10;
        rx.extend_from_slice(&wire);
        match b.open_in_place(&mut rx) {
            Err(SecureError::Corrupt(_)) => {}
            // A flipped length asks for more bytes than will come.
            Ok(0) if i < RECORD_HEADER_LEN => continue,
            other => panic!("flip at {i}: {other:?}"),
        }
        let mut next = BytesMut::from(&seal(&mut a, b"later")[..]);
        assert!(
            b.open_in_place(&mut next).is_err(),
            "flip at {i}: session goes on"
        );
    }
}

#[test]
fn a_replayed_or_reordered_record_fails() {
    let (mut a, mut b, mut rx) = pair();
    let r1 = seal(&mut a, b"one");
    let r2 = seal(&mut a, b"two");
    rx.extend_from_slice(&r1);
    assert_eq!(b.open_in_place(&mut rx).unwrap(), 3);
    b.plain_left(0, &mut rx.split_off(3));
    rx.clear();
    rx.extend_from_slice(&r1);
    assert!(matches!(
        b.open_in_place(&mut rx),
        Err(SecureError::Corrupt(_))
    ));
    let (mut a, mut b, mut rx) = pair();
    let _r1 = seal(&mut a, b"one");
    let r2b = seal(&mut a, b"two");
    rx.extend_from_slice(&r2b);
    assert!(b.open_in_place(&mut rx).is_err(), "second record first");
    let _ = r2;
}

#[test]
fn a_truncated_record_opens_nothing_and_a_spliced_one_fails() {
    // A tag whose last byte equals the next record's first would make the
    // splice below the same bytes (1 run in 256): take another session.
    let (mut b, mut rx, r1, r2) = loop {
        let (mut a, b, rx) = pair();
        let r1 = seal(&mut a, &pattern(5000));
        let r2 = seal(&mut a, b"next");
        if r1.last() != r2.first() {
            break (b, rx, r1, r2);
        }
    };
    rx.extend_from_slice(&r1[..r1.len() - 1]);
    assert_eq!(b.open_in_place(&mut rx).unwrap(), 0, "partial record held");
    // The next record's bytes take the missing byte's place: wrong tag.
    rx.extend_from_slice(&r2);
    assert!(matches!(
        b.open_in_place(&mut rx),
        Err(SecureError::Corrupt(_))
    ));
}

#[test]
fn a_record_length_out_of_bounds_fails() {
    for hdr in [[0u8, 0], [0, TAG_LEN as u8]] {
        let (_a, mut b, mut rx) = pair();
        rx.extend_from_slice(&hdr);
        rx.extend_from_slice(&[0; 64]);
        assert!(matches!(
            b.open_in_place(&mut rx),
            Err(SecureError::Corrupt(_))
        ));
    }
}

#[test]
fn a_record_from_another_connection_fails() {
    let (mut a1, _b1, _) = pair();
    let (_a2, mut b2, mut rx) = pair();
    rx.extend_from_slice(&seal(&mut a1, b"from connection 1"));
    assert!(b2.open_in_place(&mut rx).is_err());
}

#[test]
fn a_buffer_that_lost_its_records_is_an_error_not_a_panic() {
    let (mut a, mut b, mut rx) = pair();
    rx.extend_from_slice(&seal(&mut a, &pattern(3000)));
    assert_eq!(b.open_in_place(&mut rx).unwrap(), 3000);
    b.plain_left(2000, &mut BytesMut::new());
    let mut other = BytesMut::from(&b"short"[..]);
    assert!(matches!(
        b.open_in_place(&mut other),
        Err(SecureError::Corrupt(_))
    ));
}

#[test]
fn hello_split_across_reads_then_records_in_the_same_read() {
    let mut a = SecureStream::connect(&ctx(1), "127.0.0.1".parse().unwrap()).unwrap();
    let mut b = SecureStream::accept(&ctx(1)).unwrap();
    let hello = a.pending().to_vec();
    a.written(hello.len());
    let mut rx = BytesMut::new();
    for byte in &hello[..hello.len() - 1] {
        rx.extend_from_slice(std::slice::from_ref(byte));
        assert_eq!(b.open_in_place(&mut rx).unwrap(), 0);
        assert!(!b.is_established());
    }
    rx.extend_from_slice(&hello[hello.len() - 1..]);
    assert_eq!(b.open_in_place(&mut rx).unwrap(), 0);
    assert!(b.is_established() && rx.is_empty());
    let answer = b.pending().to_vec();
    a.receive(&answer).unwrap();
    let data = pattern(70_000);
    rx.extend_from_slice(&seal(&mut a, &data));
    assert_eq!(b.open_in_place(&mut rx).unwrap(), data.len());
    assert_eq!(&rx[..data.len()], &data[..]);
}

#[test]
fn a_peer_without_the_key_is_refused_in_place_and_gets_no_answer() {
    let a = SecureStream::connect(&ctx(2), "127.0.0.1".parse().unwrap()).unwrap();
    let mut b = SecureStream::accept(&ctx(1)).unwrap();
    let mut rx = BytesMut::from(a.pending());
    assert!(matches!(
        b.open_in_place(&mut rx),
        Err(SecureError::Refused(_))
    ));
    assert!(b.pending().is_empty());
}

#[test]
fn shared_output_keeps_its_bytes_and_offsets_while_more_is_sealed() {
    let (mut a, mut b, mut rx) = pair();
    let data = pattern(70_000); // two records
    let mut s = a.sealer();
    s.push(&data);
    s.finish().unwrap();
    let sealed = a.pending().to_vec();
    a.share_pending();
    let (shared, skip) = a.pending_shared().expect("output shared");
    assert_eq!((&shared[..], skip), (&sealed[..], 0));
    let held = shared.clone(); // a driver still sending it
    assert_eq!(a.written(100), 0, "no record fully out yet");
    assert_eq!(a.pending_shared().map(|(_, k)| k), Some(100));
    assert_eq!(a.pending(), &sealed[100..]);
    // Sealing more while the driver holds the buffer takes it back (a
    // copy): the same bytes at the same offsets, then the new record.
    let mut s = a.sealer();
    s.push(b"more");
    s.finish().unwrap();
    assert!(a.pending_shared().is_none(), "taken back");
    let rest = a.pending().to_vec();
    assert_eq!(&rest[..sealed.len() - 100], &sealed[100..]);
    assert_eq!(a.written(rest.len()), data.len() + 4);
    assert!(a.pending().is_empty());
    assert_eq!(&held[..], &sealed[..], "the driver's bytes are unchanged");
    rx.extend_from_slice(&sealed[..100]);
    rx.extend_from_slice(&rest);
    assert_eq!(b.open_in_place(&mut rx).unwrap(), data.len() + 4);
    assert_eq!(&rx[..data.len()], &data[..]);
    assert_eq!(&rx[data.len()..data.len() + 4], b"more");
}

#[test]
fn a_shared_buffer_no_one_holds_is_taken_back_for_the_next_batch() {
    let (mut a, _b, _rx) = pair();
    for _ in 0..2 {
        let mut s = a.sealer();
        s.push(&pattern(30_000));
        s.finish().unwrap();
        a.share_pending();
        let n = a.pending_shared().expect("output shared").0.len();
        assert_eq!(a.written(n), 30_000);
        // Written and no driver holds it: its allocation is the output
        // buffer again (empty), not dropped.
        assert!(a.shared.is_empty() && a.wire.is_empty());
        assert!(a.wire.capacity() >= n, "capacity {}", a.wire.capacity());
    }
    // Still held by a driver when written: dropped, never copied.
    let mut s = a.sealer();
    s.push(&pattern(30_000));
    s.finish().unwrap();
    a.share_pending();
    let (held, _) = a.pending_shared().expect("output shared");
    let held = held.clone();
    assert_eq!(a.written(held.len()), 30_000);
    assert!(a.shared.is_empty() && a.wire.capacity() == 0);
}
