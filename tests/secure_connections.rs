//! A node that requires encryption, over real loopback sockets on both
//! drivers: peers without the cluster key are refused (nothing delivered,
//! nothing sent to them, the refusal counted and visible in Prometheus
//! text), and a record replayed, altered, truncated or taken from another
//! connection closes that connection only, delivering nothing.

use bytes::Bytes;
use sessionrepl::__internal::proto::secure::{SecureContext, SecureSession, SharedKey};
use sessionrepl::__internal::wire::frame::FrameHeader;
use sessionrepl::__internal::wire::Preface;
use sessionrepl::config::AckMode;
use sessionrepl::transport::SendOptions;
use sessionrepl::{Channel, Error, ReplicationMode};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[macro_use]
mod common;
use common::certs::{self, CLUSTER_KEY, OTHER_KEY};
use common::io_cfg;

on_both_drivers!(
    clear_text_peer_is_refused_counted_and_sent_nothing,
    node_with_another_key_delivers_nothing_either_way,
    node_with_a_foreign_certificate_is_refused,
    replayed_flipped_truncated_and_foreign_records_close_only_their_connection,
);

const WAIT: Duration = Duration::from_secs(20);

type Log = Arc<Mutex<Vec<Bytes>>>;

fn node(settings: &[String]) -> (Channel, Log) {
    let mut cfg = io_cfg();
    for s in settings {
        let (k, v) = s.split_once('=').unwrap();
        cfg.set(k, v).unwrap();
    }
    cfg.replication_mode = ReplicationMode::Synchronous;
    cfg.ack_timeout = Duration::from_secs(3);
    cfg.set("handshakeTimeout", "2000").unwrap();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let ch = Channel::builder(cfg)
        .listener(move |m| {
            l2.lock().unwrap().push(m.payload.clone());
            Ok(())
        })
        .start()
        .unwrap();
    (ch, log)
}

fn key(k: &str) -> Vec<String> {
    vec![format!("encryptionKey={k}")]
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads until the node closes the connection; returns what it sent.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("connection not closed by the node: {e}"),
        }
    }
}

fn data(id: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = FrameHeader::data(id, payload.len(), 0).encode().to_vec();
    v.extend_from_slice(payload);
    v
}

fn clear_text_peer_is_refused_counted_and_sent_nothing() {
    let (rx, log) = node(&key(CLUSTER_KEY));
    let mut s = TcpStream::connect(rx.local_addr()).unwrap();
    let mut bytes = Preface::new([9; 16], b"", false).encode().to_vec();
    bytes.extend_from_slice(&data(1, b"clear-text-message"));
    s.write_all(&bytes).unwrap();
    assert!(read_to_close(&mut s).is_empty(), "the node answered");
    wait_until("the refusal count", || rx.stats().secure_refusals == 1);
    assert!(log.lock().unwrap().is_empty());
    let prom = rx.stats().to_prometheus();
    assert!(prom.contains("sessionrepl_secure_refusals 1"), "{prom}");
    // A hello made with another key: refused, and not answered.
    let ctx = SecureContext::shared_key(&[SharedKey::from_hex(OTHER_KEY).unwrap()]);
    let mut sess = SecureSession::connect(&ctx, rx.local_addr().ip()).unwrap();
    let mut hello = Vec::new();
    sess.send(b"early data", &mut hello).unwrap();
    let mut s = TcpStream::connect(rx.local_addr()).unwrap();
    s.write_all(&hello).unwrap();
    assert!(read_to_close(&mut s).is_empty(), "the node answered");
    wait_until("the second refusal", || rx.stats().secure_refusals == 2);
    assert!(log.lock().unwrap().is_empty());
    rx.stop();
}

fn node_with_another_key_delivers_nothing_either_way() {
    let (a, log_a) = node(&key(CLUSTER_KEY));
    let (b, log_b) = node(&key(OTHER_KEY));
    let opts = SendOptions {
        ack: AckMode::Delivery,
        compress: false,
    };
    let r = a.send(&[b.local_addr()], Bytes::from_static(b"to b"), opts);
    assert!(
        matches!(r, Err(Error::Unreachable(_)) | Err(Error::Timeout)),
        "{r:?}"
    );
    let r = b.send(&[a.local_addr()], Bytes::from_static(b"to a"), opts);
    assert!(
        matches!(r, Err(Error::Unreachable(_)) | Err(Error::Timeout)),
        "{r:?}"
    );
    assert!(log_a.lock().unwrap().is_empty() && log_b.lock().unwrap().is_empty());
    assert!(a.stats().secure_refusals >= 1, "{:?}", a.stats());
    assert!(b.stats().secure_refusals >= 1, "{:?}", b.stats());
    // A node with the key still gets through.
    let (c, _) = node(&key(CLUSTER_KEY));
    c.send(&[a.local_addr()], Bytes::from_static(b"member"), opts)
        .unwrap();
    assert_eq!(log_a.lock().unwrap().len(), 1);
    for ch in [a, b, c] {
        ch.stop();
    }
}

fn node_with_a_foreign_certificate_is_refused() {
    let (a, log_a) = node(&certs::cluster_tls().settings());
    let (b, _) = node(&certs::foreign_tls().settings());
    let opts = SendOptions {
        ack: AckMode::Delivery,
        compress: false,
    };
    let r = b.send(&[a.local_addr()], Bytes::from_static(b"intruder"), opts);
    assert!(r.is_err(), "{r:?}");
    assert!(log_a.lock().unwrap().is_empty());
    wait_until("the refusal count", || a.stats().secure_refusals >= 1);
    let (c, _) = node(&certs::cluster_tls().settings());
    c.send(&[a.local_addr()], Bytes::from_static(b"member"), opts)
        .unwrap();
    assert_eq!(log_a.lock().unwrap().len(), 1);
    for ch in [a, b, c] {
        ch.stop();
    }
}

/// A hand-driven client with the cluster key: handshake, then records.
struct RawClient {
    s: TcpStream,
    sess: SecureSession,
}

impl RawClient {
    fn connect(to: SocketAddr) -> RawClient {
        let ctx = SecureContext::shared_key(&[SharedKey::from_hex(CLUSTER_KEY).unwrap()]);
        let mut sess = SecureSession::connect(&ctx, to.ip()).unwrap();
        let mut s = TcpStream::connect(to).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut out = Vec::new();
        sess.poll_transmit(&mut out);
        s.write_all(&out).unwrap();
        let mut plain = Vec::new();
        let mut b = [0u8; 4096];
        while !sess.is_established() {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "closed during the handshake");
            sess.receive(&b[..n], &mut plain).unwrap();
        }
        let mut c = RawClient { s, sess };
        let p = Preface::new([7; 16], b"", false).encode().to_vec();
        let rec = c.seal(&p);
        c.s.write_all(&rec).unwrap();
        c
    }

    fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.sess.send(plain, &mut out).unwrap();
        out
    }
}

fn replayed_flipped_truncated_and_foreign_records_close_only_their_connection() {
    let (rx, log) = node(&key(CLUSTER_KEY));
    let to = rx.local_addr();
    let (tx, _) = node(&key(CLUSTER_KEY));
    let opts = SendOptions {
        ack: AckMode::Receipt,
        compress: false,
    };
    let delivered = |m: &[u8]| log.lock().unwrap().iter().any(|p| &p[..] == m);

    // Replayed record.
    let mut c = RawClient::connect(to);
    let rec = c.seal(&data(1, b"first"));
    c.s.write_all(&rec).unwrap();
    wait_until("first", || delivered(b"first"));
    c.s.write_all(&rec).unwrap();
    read_to_close(&mut c.s);
    assert_eq!(log.lock().unwrap().len(), 1, "replay delivered");

    // One bit flipped.
    let mut c = RawClient::connect(to);
    let mut rec = c.seal(&data(2, b"flipped"));
    let mid = rec.len() / 2;
    rec[mid] ^= 0x10;
    c.s.write_all(&rec).unwrap();
    read_to_close(&mut c.s);
    assert!(!delivered(b"flipped"));

    // Truncated, then the stream ends.
    let mut c = RawClient::connect(to);
    let rec = c.seal(&data(3, b"truncated"));
    c.s.write_all(&rec[..rec.len() - 1]).unwrap();
    c.s.shutdown(Shutdown::Write).unwrap();
    read_to_close(&mut c.s);
    assert!(!delivered(b"truncated"));

    // A record sealed for another connection.
    let mut a = RawClient::connect(to);
    let mut b = RawClient::connect(to);
    let from_a = a.seal(&data(4, b"from a"));
    a.s.write_all(&from_a).unwrap();
    wait_until("from a", || delivered(b"from a"));
    b.s.write_all(&from_a).unwrap();
    read_to_close(&mut b.s);
    // ... while its own connection, and the node's other peers, go on.
    let rec = a.seal(&data(5, b"still fine"));
    a.s.write_all(&rec).unwrap();
    wait_until("still fine", || delivered(b"still fine"));
    for i in 0..50u32 {
        tx.send(&[to], Bytes::from(format!("peer-{i}")), opts)
            .unwrap();
    }
    let n = |m: &[u8]| log.lock().unwrap().iter().filter(|p| &p[..] == m).count();
    assert_eq!(n(b"from a"), 1, "the foreign record was delivered");
    assert_eq!(log.lock().unwrap().len(), 3 + 50);
    let st = rx.stats();
    assert!(st.secure_errors >= 3, "{st:?}");
    tx.stop();
    rx.stop();
}
