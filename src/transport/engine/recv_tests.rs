//! The receiver engine against the in-memory driver: the byte path (plain
//! reads, zero-copy chunks, chunks consumed incrementally from shared
//! buffers) delivers every frame whole, once and in order, wherever the
//! stream is cut.

use super::recv::RecvEngine;
use crate::config::Config;
use crate::driver::fake::FakeDriver;
use crate::transport::rx_core;
use crate::transport::{Message, MessageListener, Shared};
use crate::wire::frame::{FrameHeader, FrameType};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Got = Arc<Mutex<Vec<(u64, Bytes)>>>;

struct NoWake;
impl crate::queue::Wake for NoWake {
    fn wake(&self) {}
}

fn engine(d: FakeDriver) -> (RecvEngine<FakeDriver>, Got) {
    let mut cfg = Config::default();
    cfg.idle.spin = Duration::ZERO;
    cfg.tcp_thread_count = 0;
    let shared = Arc::new(Shared::new(cfg, [3; 16], None));
    let got: Got = Arc::default();
    let g2 = got.clone();
    let listener: MessageListener = Arc::new(move |m: &Message| {
        g2.lock().unwrap().push((m.id, m.payload.clone()));
        Ok(())
    });
    let (core, workers) = rx_core::start_workers(&shared, listener, Box::new(NoWake), 0).unwrap();
    assert!(workers.is_empty(), "delivery runs on the engine thread");
    let e = RecvEngine::new(d, core, Arc::new(AtomicBool::new(false)));
    (e, got)
}

/// A preface and DATA frames of awkward sizes; returns the stream and
/// the messages it carries.
fn stream() -> (Vec<u8>, Vec<(u64, Bytes)>) {
    let mut s = crate::wire::Preface::new([5; 16], b"", false).encode();
    let mut msgs = Vec::new();
    let sizes = [1usize, 100, 1000, 70_000, 5, 300, 16_384, 2, 200_000, 17];
    for (k, &n) in sizes.iter().cycle().take(40).enumerate() {
        let id = k as u64 + 1;
        let body: Vec<u8> = (0..n).map(|i| (i * 7 + k) as u8).collect();
        let h = FrameHeader {
            ty: FrameType::Data,
            flags: 0,
            len: n as u32,
            id,
        };
        s.extend_from_slice(&h.encode());
        s.extend_from_slice(&body);
        msgs.push((id, Bytes::from(body)));
    }
    (s, msgs)
}

/// Cut sizes, cycling: single bytes, headers cut in two, chunks larger
/// than one read.
const CUTS: [usize; 7] = [1, 7, 13, 4096, 3, 65_537, 11];

fn pieces(len: usize) -> Vec<std::ops::Range<usize>> {
    let (mut v, mut at) = (Vec::new(), 0);
    for &c in CUTS.iter().cycle() {
        if at >= len {
            break;
        }
        let end = (at + c).min(len);
        v.push(at..end);
        at = end;
    }
    v
}

/// Feeds the stream to one accepted connection with `give`, a turn after
/// each piece, and checks what the listener got.
fn run(multishot: bool, mut give: impl FnMut(&mut FakeDriver, usize, &[u8], usize)) -> Got {
    let mut d = FakeDriver::new(1 << 20);
    d.multishot = multishot;
    let (mut e, got) = engine(d);
    let mut idle: Option<Instant> = None;
    e.driver().accept(SocketAddr::from(([127, 0, 0, 1], 5000)));
    e.turn(&mut idle);
    let t = *e
        .driver()
        .socks
        .keys()
        .next()
        .expect("accepted and registered");
    let (bytes, want) = stream();
    for r in pieces(bytes.len()) {
        let start = r.start;
        give(e.driver(), t, &bytes[r], start);
        e.turn(&mut idle);
    }
    for _ in 0..10 {
        e.turn(&mut idle);
    }
    assert!(
        e.driver().socks.contains_key(&t),
        "the connection was closed"
    );
    let g = got.lock().unwrap();
    assert_eq!(g.len(), want.len(), "messages delivered");
    for (a, b) in g.iter().zip(&want) {
        assert_eq!(a.0, b.0, "order");
        assert!(a.1 == b.1, "message {} arrived altered", a.0);
    }
    drop(g);
    got
}

#[test]
fn plain_reads_deliver_frames_cut_anywhere_whole_and_in_order() {
    run(false, |d, t, b, _| d.reply(t, b));
}

#[test]
fn zero_copy_chunks_deliver_frames_cut_anywhere_whole_and_in_order() {
    run(true, |d, t, b, _| {
        d.chunk(t, Bytes::copy_from_slice(b), None)
    });
}

#[test]
fn incremental_chunks_join_in_place_and_frames_inside_a_buffer_are_not_copied() {
    // The stream lies in provided buffers of 96 KiB, each filled by
    // several chunks (incremental consumption).
    const BUF: usize = 96 * 1024;
    let (bytes, _) = stream();
    let buffers: Vec<Bytes> = bytes.chunks(BUF).map(Bytes::copy_from_slice).collect();
    let bufs = buffers.clone();
    let got = run(true, move |d, t, b, start| {
        // A piece may cross a buffer boundary: hand it over per buffer.
        let mut at = start;
        let end = start + b.len();
        while at < end {
            let (k, off) = (at / BUF, at % BUF);
            let n = (BUF - off).min(end - at);
            let buf = &bufs[k];
            d.chunk(t, buf.slice(off..off + n), Some(buf.clone()));
            at += n;
        }
    });
    // Every frame that lies inside one buffer arrived as a slice of it,
    // though the stream was cut into small pieces (headers included):
    // tails are joined in place, not copied.
    let g = got.lock().unwrap();
    let mut at = crate::wire::Preface::new([5; 16], b"", false)
        .encode()
        .len();
    let mut in_place = 0;
    for (_, p) in g.iter() {
        at += crate::wire::frame::HEADER_LEN;
        let (k, off) = (at / BUF, at % BUF);
        if off + p.len() <= BUF && !p.is_empty() {
            let base = buffers[k].as_ptr() as usize;
            assert_eq!(
                p.as_ptr() as usize,
                base + off,
                "a frame inside buffer {k} was copied"
            );
            in_place += 1;
        }
        at += p.len();
    }
    assert!(
        in_place >= 20,
        "only {in_place} frames lay inside one buffer"
    );
}
