use super::*;
use crate::proto::secure::{SecureContext, SharedKey};

fn psks(keys: &[u8]) -> Arc<[[u8; 32]]> {
    let ks: Vec<SharedKey> = keys
        .iter()
        .map(|b| SharedKey::from_bytes(vec![*b; 32]).unwrap())
        .collect();
    match SecureContext::shared_key(&ks) {
        SecureContext::SharedKey(p) => p,
        SecureContext::Tls(_) => unreachable!(),
    }
}

/// Runs the handshake; returns both sessions, established.
fn pair(init: &[u8], resp: &[u8]) -> (NoiseSession, NoiseSession) {
    let mut a = NoiseSession::initiator(psks(init)).unwrap();
    let mut b = NoiseSession::responder(psks(resp)).unwrap();
    let mut wire = Vec::new();
    let mut plain = Vec::new();
    a.poll_transmit(&mut wire);
    b.receive(&wire, &mut plain).unwrap();
    wire.clear();
    b.poll_transmit(&mut wire);
    a.receive(&wire, &mut plain).unwrap();
    assert!(plain.is_empty());
    assert!(a.is_established() && b.is_established());
    (a, b)
}

fn seal(s: &mut NoiseSession, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    s.send(data, &mut out).unwrap();
    out
}

#[test]
fn handshake_succeeds_and_data_flows_both_ways() {
    let (mut a, mut b) = pair(&[1], &[1]);
    let mut plain = Vec::new();
    b.receive(&seal(&mut a, b"to responder"), &mut plain)
        .unwrap();
    assert_eq!(plain, b"to responder");
    plain.clear();
    a.receive(&seal(&mut b, b"to initiator"), &mut plain)
        .unwrap();
    assert_eq!(plain, b"to initiator");
    assert_eq!(b.key_index(), Some(0));
}

#[test]
fn ciphertext_does_not_contain_the_plaintext() {
    let (mut a, _b) = pair(&[1], &[1]);
    let marker = b"SECRET-SESSION-MARKER";
    let wire = seal(&mut a, marker);
    assert!(!wire.windows(marker.len()).any(|w| w == marker));
}

#[test]
fn wrong_key_is_refused_and_responder_sends_nothing() {
    let mut a = NoiseSession::initiator(psks(&[1])).unwrap();
    let mut b = NoiseSession::responder(psks(&[2])).unwrap();
    let mut wire = Vec::new();
    a.poll_transmit(&mut wire);
    let mut plain = Vec::new();
    let e = b.receive(&wire, &mut plain).unwrap_err();
    assert!(matches!(e, SecureError::Refused(_)), "{e:?}");
    let mut answer = Vec::new();
    b.poll_transmit(&mut answer);
    assert!(answer.is_empty(), "a peer without the key got {answer:?}");
    assert!(!b.is_established());
    // Whatever follows is refused too.
    assert!(b.receive(b"more", &mut plain).is_err());
    assert!(plain.is_empty());
}

#[test]
fn plaintext_peer_speaking_the_preface_is_refused() {
    let mut b = NoiseSession::responder(psks(&[1])).unwrap();
    let mut plain = Vec::new();
    let e = b.receive(b"SRPL\x01\x00\x00\x00", &mut plain).unwrap_err();
    assert!(matches!(e, SecureError::Refused(_)));
    let mut out = Vec::new();
    b.poll_transmit(&mut out);
    assert!(out.is_empty() && plain.is_empty());
}

#[test]
fn rollover_accepts_the_previous_key_and_refuses_others() {
    // Responder's current key 2, still accepting 1.
    let (_a, b) = pair(&[1], &[2, 1]);
    assert_eq!(b.key_index(), Some(1));
    let (_a, b) = pair(&[2], &[2, 1]);
    assert_eq!(b.key_index(), Some(0));
    let mut a = NoiseSession::initiator(psks(&[3])).unwrap();
    let mut b = NoiseSession::responder(psks(&[2, 1])).unwrap();
    let mut wire = Vec::new();
    a.poll_transmit(&mut wire);
    assert!(matches!(
        b.receive(&wire, &mut Vec::new()),
        Err(SecureError::Refused(_))
    ));
}

#[test]
fn replayed_answer_from_another_handshake_is_refused() {
    // Capture a responder's answer, then feed it to a new initiator.
    let mut a1 = NoiseSession::initiator(psks(&[1])).unwrap();
    let mut b1 = NoiseSession::responder(psks(&[1])).unwrap();
    let mut wire = Vec::new();
    a1.poll_transmit(&mut wire);
    b1.receive(&wire, &mut Vec::new()).unwrap();
    let mut answer = Vec::new();
    b1.poll_transmit(&mut answer);
    let mut a2 = NoiseSession::initiator(psks(&[1])).unwrap();
    let e = a2.receive(&answer, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, SecureError::Refused(_)), "{e:?}");
}

#[test]
fn replayed_connection_delivers_nothing_to_a_new_responder() {
    // An attacker records a whole initiator stream and replays it later.
    let mut a = NoiseSession::initiator(psks(&[1])).unwrap();
    let mut b = NoiseSession::responder(psks(&[1])).unwrap();
    let mut stream = Vec::new();
    a.poll_transmit(&mut stream);
    b.receive(&stream, &mut Vec::new()).unwrap();
    let mut ans = Vec::new();
    b.poll_transmit(&mut ans);
    a.receive(&ans, &mut Vec::new()).unwrap();
    stream.extend(seal(&mut a, b"transfer 100 to mallory"));
    let mut b2 = NoiseSession::responder(psks(&[1])).unwrap();
    let mut plain = Vec::new();
    let e = b2.receive(&stream, &mut plain).unwrap_err();
    assert!(matches!(e, SecureError::Corrupt(_)), "{e:?}");
    assert!(plain.is_empty());
}

#[test]
fn replayed_record_is_rejected_and_fails_the_session() {
    let (mut a, mut b) = pair(&[1], &[1]);
    let r1 = seal(&mut a, b"one");
    let mut plain = Vec::new();
    b.receive(&r1, &mut plain).unwrap();
    plain.clear();
    assert!(matches!(
        b.receive(&r1, &mut plain),
        Err(SecureError::Corrupt(_))
    ));
    assert!(plain.is_empty());
    // The session stays failed: later valid records are not delivered.
    let r2 = seal(&mut a, b"two");
    assert!(b.receive(&r2, &mut plain).is_err());
    assert!(plain.is_empty());
}

#[test]
fn reordered_records_are_rejected() {
    let (mut a, mut b) = pair(&[1], &[1]);
    let _r1 = seal(&mut a, b"one");
    let r2 = seal(&mut a, b"two");
    let mut plain = Vec::new();
    assert!(b.receive(&r2, &mut plain).is_err());
    assert!(plain.is_empty());
}

#[test]
fn a_single_bit_flip_anywhere_is_rejected() {
    let (mut a, b0) = pair(&[1], &[1]);
    drop(b0);
    let rec = seal(
        &mut a,
        b"\x01\x04\x00\x00\x00\x00\x00\x05payload-with-header",
    );
    // Every byte (length, ciphertext, tag), a different bit in each, plus
    // all 16 bits of the length field.
    let flips = (0..rec.len()).map(|i| i * 8 + i % 8).chain(0..16);
    for i in flips {
        // A fresh pair per flip, since a failure ends the session.
        let (mut a, mut b) = pair(&[1], &[1]);
        let mut r = seal(
            &mut a,
            b"\x01\x04\x00\x00\x00\x00\x00\x05payload-with-header",
        );
        r[i / 8] ^= 1 << (i % 8);
        let mut plain = Vec::new();
        let res = b.receive(&r, &mut plain);
        // A flip in the length either asks for more bytes (then the
        // stream is truncated at EOF) or fails at once.
        if res.is_ok() {
            assert!(b.receive_eof().is_err(), "flip {i} accepted");
        }
        assert!(plain.is_empty(), "flip {i} delivered {plain:?}");
    }
    let _ = rec;
}

#[test]
fn truncated_record_delivers_nothing_and_fails_at_eof() {
    let (mut a, mut b) = pair(&[1], &[1]);
    let r = seal(&mut a, b"complete message");
    let mut plain = Vec::new();
    b.receive(&r[..r.len() - 1], &mut plain).unwrap();
    assert!(plain.is_empty());
    assert!(matches!(b.receive_eof(), Err(SecureError::Corrupt(_))));
}

#[test]
fn record_from_another_connection_is_rejected() {
    let (mut a1, _b1) = pair(&[1], &[1]);
    let (_a2, mut b2) = pair(&[1], &[1]);
    let foreign = seal(&mut a1, b"from connection 1");
    let mut plain = Vec::new();
    assert!(matches!(
        b2.receive(&foreign, &mut plain),
        Err(SecureError::Corrupt(_))
    ));
    assert!(plain.is_empty());
}

#[test]
fn byte_by_byte_delivery_and_large_payloads_round_trip() {
    let mut a = NoiseSession::initiator(psks(&[1])).unwrap();
    let mut b = NoiseSession::responder(psks(&[1])).unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    // Queued before the handshake: leaves with the first transmit after it.
    let mut wire = Vec::new();
    a.send(&big, &mut wire).unwrap();
    a.poll_transmit(&mut wire);
    assert_eq!(
        wire.len(),
        HELLO_HEADER_LEN + 48,
        "only the hello before the answer"
    );
    let mut plain = Vec::new();
    for byte in &wire {
        b.receive(std::slice::from_ref(byte), &mut plain).unwrap();
    }
    let mut ans = Vec::new();
    b.poll_transmit(&mut ans);
    a.receive(&ans, &mut plain).unwrap();
    assert!(plain.is_empty());
    let mut wire = Vec::new();
    a.poll_transmit(&mut wire);
    assert!(wire.len() > big.len() && wire.len() < big.len() + 4 * 18 + 1);
    for chunk in wire.chunks(1000) {
        b.receive(chunk, &mut plain).unwrap();
    }
    assert_eq!(plain, big);
    assert!(b.receive_eof().is_ok());
}

#[test]
fn early_data_is_bounded() {
    let mut a = NoiseSession::initiator(psks(&[1])).unwrap();
    a.send(&vec![0; MAX_EARLY], &mut Vec::new()).unwrap();
    assert_eq!(
        a.send(b"x", &mut Vec::new()),
        Err(SecureError::Backpressure)
    );
}

#[test]
fn hello_decoder_refuses_bad_magic_version_and_length() {
    assert!(decode_hello(b"SR").unwrap().is_none());
    assert!(decode_hello(b"GET ").is_err());
    assert!(decode_hello(b"SRPN\x02\x01\x00\x00").is_err());
    assert!(decode_hello(b"SRPN\x01\x01\xff\xff").is_err());
    let mut h = Vec::new();
    encode_hello(1, &[5; 48], &mut h);
    let (hello, n) = decode_hello(&h).unwrap().unwrap();
    assert_eq!((hello.suite, hello.body, n), (1, &[5u8; 48][..], 56));
    assert!(decode_hello(&h[..55]).unwrap().is_none());
    // Unknown suite: refused by the responder, nothing sent back.
    let mut b = NoiseSession::responder(psks(&[1])).unwrap();
    let mut h = Vec::new();
    encode_hello(9, &[0; 48], &mut h);
    assert!(matches!(
        b.receive(&h, &mut Vec::new()),
        Err(SecureError::Refused(_))
    ));
}

#[test]
fn scattered_plaintext_is_gathered_into_one_record() {
    let (mut a, mut b) = pair(&[1], &[1]);
    let hdr = [1u8; 16];
    let body = [2u8; 1000];
    let parts: Vec<&[u8]> = (0..10).flat_map(|_| [&hdr[..], &body[..]]).collect();
    let mut wire = Vec::new();
    assert_eq!(a.send_vectored(&parts, &mut wire).unwrap(), 10_160);
    assert_eq!(
        wire.len(),
        10_160 + RECORD_HEADER_LEN + TAG_LEN,
        "one record"
    );
    let mut plain = Vec::new();
    b.receive(&wire, &mut plain).unwrap();
    assert_eq!(plain, parts.concat());
}
