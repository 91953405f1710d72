//! Hostile input closes only the offending connection, counted and logged;
//! the receiver keeps serving its other connections.

use bytes::Bytes;
use sessionrepl::__internal::wire::compress::Deflater;
use sessionrepl::__internal::wire::frame::{FrameHeader, FLAG_ACK_DELIVERY, FLAG_COMPRESSED};
use sessionrepl::__internal::wire::Preface;
use sessionrepl::{Channel, ReplicationMode};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[macro_use]
mod common;
use common::io_cfg;

on_both_drivers!(
    hostile_connections_are_closed_and_others_keep_working,
    foreign_cluster_domain_is_refused,
    small_frame_stopped_midway_is_closed_at_connection_upload_timeout,
);

fn good_preface() -> Vec<u8> {
    Preface::new([9; 16], b"", false).encode()
}

/// Sends `bytes` and returns what the receiver sent back before closing.
fn attack(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    // Hang up our side: truncated input must not leave the receiver waiting.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back); // returns when the receiver closes
    back
}

fn data_frame(id: u64, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = FrameHeader::data(id, payload.len(), flags)
        .encode()
        .to_vec();
    v.extend_from_slice(payload);
    v
}

/// A receiver with `cfg` that counts the messages delivered.
fn counting_receiver(cfg: sessionrepl::Config) -> (Channel, Arc<AtomicU64>) {
    let delivered = Arc::new(AtomicU64::new(0));
    let d2 = delivered.clone();
    let rx = Channel::builder(cfg)
        .listener(move |_| {
            d2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .start()
        .unwrap();
    (rx, delivered)
}

fn hostile_connections_are_closed_and_others_keep_working() {
    let mut cfg = io_cfg();
    cfg.max_frame_size = 64 * 1024;
    cfg.max_decompressed_size = 256 * 1024;
    let (rx, delivered) = counting_receiver(cfg);
    let addr = rx.local_addr();

    // A well-behaved sender keeps a connection open across all attacks.
    let mut scfg = io_cfg();
    scfg.replication_mode = ReplicationMode::Synchronous;
    let tx = Channel::builder(scfg).start().unwrap();
    let good = |i: u32| {
        tx.send(
            &[addr],
            Bytes::from(format!("good {i}")),
            tx.default_options(),
        )
        .unwrap()
    };
    good(0);

    let mut attacks: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("bad magic", b"SRPX\x01\x00\x00\x00".to_vec()),
        ("bad version", {
            let mut p = good_preface();
            p[4] = 77;
            p
        }),
    ];
    let mut oversized = good_preface();
    oversized.extend_from_slice(&FrameHeader::data(1, 1 << 30, 0).encode());
    attacks.push(("oversized frame", oversized));
    let mut unknown = good_preface();
    unknown.extend_from_slice(&[0x7f; 16]);
    attacks.push(("unknown frame type", unknown));
    let mut bomb = good_preface();
    let zeros = vec![0u8; 8 << 20];
    let c = Deflater::new(9).compress(&zeros).unwrap();
    assert!(c.len() < 64 * 1024, "bomb fits in a frame");
    bomb.extend(data_frame(1, FLAG_COMPRESSED | FLAG_ACK_DELIVERY, &c));
    attacks.push(("decompression bomb", bomb));
    // A BATCH whose inflated body holds a frame cut short.
    let mut batch_body = FrameHeader::data(3, 100, 0).encode().to_vec();
    batch_body.extend_from_slice(&[1; 10]);
    let z = Deflater::new(1).compress(&batch_body).unwrap();
    let mut bad_batch = good_preface();
    let h = sessionrepl::__internal::wire::frame::FrameHeader {
        ty: sessionrepl::__internal::wire::FrameType::Batch,
        flags: FLAG_COMPRESSED,
        len: z.len() as u32,
        id: 3,
    };
    bad_batch.extend_from_slice(&h.encode());
    bad_batch.extend_from_slice(&z);
    attacks.push(("truncated frame inside a batch", bad_batch));
    let mut corrupt = good_preface();
    corrupt.extend(data_frame(2, FLAG_COMPRESSED, b"\x00\x01\x02 not deflate"));
    attacks.push(("corrupt deflate", corrupt));

    for (i, (name, bytes)) in attacks.iter().enumerate() {
        let before = rx.stats().protocol_errors;
        let back = attack(addr, bytes);
        let deadline = Instant::now() + Duration::from_secs(10);
        while rx.stats().protocol_errors == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(rx.stats().protocol_errors, before + 1, "{name} not counted");
        if *name == "decompression bomb" {
            // The sender hears why before the close.
            assert!(
                back.windows(5).any(|w| w == b"limit"),
                "no FAIL reason in {} bytes",
                back.len()
            );
        }
        good(i as u32 + 1);
    }

    // Truncated input: a preface cut short, then the client vanishes.
    attack(addr, &good_preface()[..10]);
    // Mid-frame loss: header promises 1000 bytes, 10 arrive.
    let mut cut = good_preface();
    cut.extend_from_slice(&FrameHeader::data(5, 1000, 0).encode());
    cut.extend_from_slice(&[1; 10]);
    attack(addr, &cut);
    good(100);
    assert_eq!(
        delivered.load(Ordering::SeqCst),
        attacks.len() as u64 + 2,
        "only the good messages were delivered"
    );
    tx.stop();
    rx.stop();
}

fn foreign_cluster_domain_is_refused() {
    let mut cfg = io_cfg();
    cfg.set("domain", "shop").unwrap();
    let rx = Channel::builder(cfg).start().unwrap();
    let mut p = Preface::new([1; 16], b"bank", false).encode();
    p.extend(data_frame(1, 0, b"x"));
    attack(rx.local_addr(), &p);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.stats().protocol_errors == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rx.stats().protocol_errors, 1);
    assert_eq!(rx.stats().msgs_received, 0);
    rx.stop();
}

/// A peer that stops in the middle of a small frame (no receive-memory
/// reservation: under 64 KiB) is closed at `connectionUploadTimeout`; an
/// idle connection between frames is not, and a member keeps being served.
fn small_frame_stopped_midway_is_closed_at_connection_upload_timeout() {
    let mut cfg = io_cfg();
    cfg.rx_limits.connection_upload_timeout = Duration::from_millis(1000);
    let (rx, delivered) = counting_receiver(cfg);
    let addr = rx.local_addr();
    let open = |bytes: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(bytes).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    };
    // Idle between frames: one whole frame, then nothing.
    let mut idle_bytes = good_preface();
    idle_bytes.extend(data_frame(1, 0, b"whole"));
    let mut idle = open(&idle_bytes);
    // Stopped midway: a 100-byte frame of which 10 bytes arrive; and one
    // of which the header alone arrives (the decoder takes it: nothing
    // stays buffered, yet a frame is in progress).
    let mut cut = good_preface();
    cut.extend_from_slice(&FrameHeader::data(2, 100, 0).encode());
    let header_alone = cut.clone();
    cut.extend_from_slice(&[1; 10]);
    for (what, bytes) in [("10 payload bytes", cut), ("a header alone", header_alone)] {
        let t0 = Instant::now();
        let mut stopped = open(&bytes);
        let mut sink = Vec::new();
        let _ = stopped.read_to_end(&mut sink); // returns when the node closes it
        let took = t0.elapsed();
        eprintln!("connection stopped mid-frame ({what}) closed after {took:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(15),
            "{what}: closed after {took:?}, connectionUploadTimeout is 1 s"
        );
    }
    // The idle connection is still open (a read times out, no EOF) ...
    idle.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 64];
    match idle.read(&mut b) {
        Ok(0) => panic!("an idle connection between frames was closed"),
        Ok(_) => {}
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    // ... and still delivers.
    idle.write_all(&data_frame(3, 0, b"later")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(delivered.load(Ordering::SeqCst), 2, "the whole frames only");
    rx.stop();
}
