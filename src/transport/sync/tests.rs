//! Socket tests of the synchronous sender against peers that misbehave in
//! this process: one that never reads, one that reads but never acks, and a
//! real receiver beside them. Bounds are generous (the machine is loaded);
//! they catch the old behaviour, which blocked for minutes.

use super::SyncSender;
use crate::config::Config;
use crate::error::Error;
use crate::transport::Shared;
use crate::wire::frame::{FrameHeader, FLAG_ACK_DELIVERY};
use crate::wire::Preface;
use crate::Channel;
use bytes::Bytes;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACK_TIMEOUT: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(1500);

fn sender(limit: usize) -> SyncSender {
    let mut cfg = Config::default();
    cfg.ack_timeout = ACK_TIMEOUT;
    cfg.max_retry_attempts = 0;
    SyncSender::new(Arc::new(Shared::new(cfg, [7; 16], None)), limit)
}

/// A peer that answers the preface, then either never reads (`read =
/// false`) or reads and drops everything without acking. Keeps every
/// accepted connection; counts them and the ones the sender closed.
struct BadPeer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed_by_sender: Arc<AtomicUsize>,
    _conns: Arc<Mutex<Vec<TcpStream>>>,
}

fn bad_peer(read: bool) -> BadPeer {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let (a2, c2, k2) = (accepted.clone(), closed.clone(), conns.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            a2.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(&Preface::new([9; 16], b"", true).encode());
            if read {
                let (mut r, c) = (s.try_clone().unwrap(), c2.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
            k2.lock().unwrap().push(s);
        }
    });
    BadPeer {
        addr,
        accepted,
        closed_by_sender: closed,
        _conns: conns,
    }
}

fn frame(id: u64, payload: &Bytes) -> [u8; crate::wire::HEADER_LEN] {
    FrameHeader::data(id, payload.len(), FLAG_ACK_DELIVERY).encode()
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `f` on its own thread and fails the test if it has not finished
/// within `limit` (a regression here hangs rather than fails).
fn bounded(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (done, wait) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match wait.recv_timeout(limit) {
        Ok(()) => h.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(_) => panic!("still running after {limit:?}"),
    }
}

#[test]
fn writes_to_a_peer_that_never_reads_end_by_the_deadline() {
    bounded(Duration::from_secs(60), writes_to_a_peer_that_never_reads);
}

fn writes_to_a_peer_that_never_reads() {
    let peer = bad_peer(false);
    let tx = sender(1);
    let big = Bytes::from(vec![b'x'; 1 << 20]);
    for id in 1..=12u64 {
        let t = Instant::now();
        let r = tx.send_one(peer.addr, &frame(id, &big), &big, id, true);
        let took = t.elapsed();
        assert!(matches!(r, Err(Error::Timeout)), "send {id}: {r:?}");
        assert!(took <= ACK_TIMEOUT + SLACK, "send {id} took {took:?}");
        assert!(
            took >= ACK_TIMEOUT - Duration::from_millis(5),
            "send {id} gave up early: {took:?}"
        );
    }
    // Each timed-out connection was closed and a fresh one opened.
    assert_eq!(peer.accepted.load(Ordering::SeqCst), 12);
    assert_eq!(tx.shared.stats.timeouts.load(Ordering::Relaxed), 12);
}

#[test]
fn a_connection_that_timed_out_is_closed_never_reused() {
    let peer = bad_peer(true);
    let tx = sender(1);
    let p = Bytes::from_static(b"hello");
    for id in 1..=3u64 {
        let r = tx.send_one(peer.addr, &frame(id, &p), &p, id, true);
        assert!(matches!(r, Err(Error::Timeout)), "send {id}: {r:?}");
        wait_until("the peer sees the timed-out connection closed", || {
            peer.closed_by_sender.load(Ordering::SeqCst) == id as usize
        });
    }
    assert_eq!(peer.accepted.load(Ordering::SeqCst), 3);
}

#[test]
fn a_member_that_never_reads_does_not_hold_a_healthy_members_connection() {
    bounded(Duration::from_secs(60), || {
        stalled_beside_healthy(false, 4 << 20)
    });
}

#[test]
fn a_member_that_never_acks_does_not_hold_a_healthy_members_connection() {
    bounded(Duration::from_secs(60), || {
        stalled_beside_healthy(true, 4096)
    });
}

/// A send to [A, B] with A stalled (never reading, or reading and never
/// acking) while another caller sends to B alone.
fn stalled_beside_healthy(stalled_reads: bool, size: usize) {
    let stalled = bad_peer(stalled_reads);
    let (healthy, got) = counting_receiver();
    let (a, b) = (stalled.addr, healthy.local_addr());
    // One connection per member (synchronous): a caller that kept B's
    // connection while waiting for A would stall every other caller to B.
    let ack_timeout = Duration::from_millis(1000);
    let tx = {
        let mut cfg = Config::default();
        cfg.ack_timeout = ack_timeout;
        cfg.max_retry_attempts = 0;
        Arc::new(SyncSender::new(
            Arc::new(Shared::new(cfg, [7; 16], None)),
            1,
        ))
    };
    let big = Bytes::from(vec![b'x'; size]);
    let t = Instant::now();
    let tx2 = tx.clone();
    let many = std::thread::spawn(move || tx2.send_many(&[a, b], &frame(1, &big), &big, 1, true));
    wait_until("B got the message sent to [A, B]", || {
        got.load(Ordering::SeqCst) == 1
    });
    let to_b = t.elapsed();
    let p = Bytes::from_static(b"alone");
    let t2 = Instant::now();
    let r = tx.send_one(b, &frame(2, &p), &p, 2, true);
    let alone = t2.elapsed();
    let res = many.join().unwrap();
    let all = t.elapsed();
    println!(
        "figure: stalled_reads={stalled_reads} size={size} to_b_ms={} b_alone_ms={} \
         to_both_ms={}",
        to_b.as_millis(),
        alone.as_millis(),
        all.as_millis()
    );
    assert!(r.is_ok(), "send to B alone: {r:?}");
    assert!(to_b < ack_timeout / 2, "B got its copy after {to_b:?}");
    assert!(
        alone < ack_timeout / 2,
        "a send to B alone waited {alone:?}"
    );
    assert!(
        matches!(res[0], (x, Err(Error::Timeout)) if x == a),
        "{res:?}"
    );
    assert!(matches!(res[1], (x, Ok(())) if x == b), "{res:?}");
    assert!(all <= ack_timeout + SLACK, "send to [A, B] took {all:?}");
    healthy.stop();
}

/// A real receiver (default config) that counts what it delivers.
pub(super) fn counting_receiver() -> (Channel, Arc<AtomicUsize>) {
    let got = Arc::new(AtomicUsize::new(0));
    let g2 = got.clone();
    let rx = Channel::builder(Config::default())
        .listener(move |_| {
            g2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .start()
        .unwrap();
    (rx, got)
}

#[test]
fn a_refused_connection_is_unreachable_at_once() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let tx = sender(1);
    let p = Bytes::from_static(b"x");
    let t = Instant::now();
    let r = tx.send_one(port, &frame(1, &p), &p, 1, true);
    assert!(matches!(r, Err(Error::Unreachable(_))), "{r:?}");
    assert!(t.elapsed() < ACK_TIMEOUT, "took {:?}", t.elapsed());
}

#[test]
fn spin_backs_off_after_misses_and_resets_after_a_hit() {
    let tx = sender(1);
    assert!(tx.spin_allowed());
    tx.spin_missed();
    assert!(!tx.spin_allowed() && !tx.spin_allowed(), "two sends skip");
    assert!(tx.spin_allowed(), "then one tries again");
    tx.spin_missed();
    let skipped = std::iter::from_fn(|| (!tx.spin_allowed()).then_some(())).count();
    assert_eq!(skipped, 4, "a second miss in a row doubles the skip");
    for _ in 0..20 {
        tx.spin_missed();
    }
    let skipped = std::iter::from_fn(|| (!tx.spin_allowed()).then_some(())).count();
    assert_eq!(skipped, 256, "the skip is bounded");
    // A spin that got its ack (what `drive` records) starts over.
    tx.spin_misses.store(0, Ordering::Relaxed);
    tx.spin_missed();
    let skipped = std::iter::from_fn(|| (!tx.spin_allowed()).then_some(())).count();
    assert_eq!(skipped, 2);
}

/// A member that accepts the connection but never answers the preface fails
/// at `connectTimeout`, not at the (later) send deadline, which leaves the
/// send time to try again (`maxRetryAttempts`). Before, the sender slept
/// until the send's deadline and reported the member then, without a retry.
#[test]
fn a_preface_never_answered_fails_at_connect_timeout_and_is_retried() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a2 = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            let Ok(s) = s else { return };
            a2.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    let mut cfg = Config::default();
    cfg.ack_timeout = Duration::from_secs(5);
    cfg.connect_timeout = Duration::from_millis(200);
    cfg.max_retry_attempts = 1;
    let tx = SyncSender::new(Arc::new(Shared::new(cfg, [7; 16], None)), 1);
    let p = Bytes::from_static(b"x");
    let t = Instant::now();
    let r = tx.send_one(addr, &frame(1, &p), &p, 1, true);
    let took = t.elapsed();
    assert!(
        matches!(&r, Err(Error::Unreachable(w)) if w.contains("connectTimeout")),
        "{r:?}"
    );
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(200) + SLACK,
        "took {took:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one retry expected");
}

#[test]
fn callers_waiting_for_acks_spin_then_yield_then_block_and_a_missed_spin_stops_all_polling() {
    use super::Spin;
    let s = sender(4);
    let (pure, yielding) = (s.spin_slots, s.yield_slots);
    assert!(pure >= 1 && yielding > pure, "slots {pure} / {yielding}");
    let kinds: Vec<Spin> = (0..yielding + 2).map(|n| s.spin_kind(n)).collect();
    assert!(kinds[..pure].iter().all(|&k| k == Spin::Pure), "{kinds:?}");
    assert!(
        kinds[pure..yielding].iter().all(|&k| k == Spin::Yield),
        "{kinds:?}"
    );
    assert!(
        kinds[yielding..].iter().all(|&k| k == Spin::No),
        "{kinds:?}"
    );
    // A spin that ran out before its ack: the next two waits (pure or
    // yielding alike) block at once, then polling resumes.
    s.spin_missed();
    assert_eq!(s.spin_kind(0), Spin::No);
    assert_eq!(s.spin_kind(pure), Spin::No);
    assert_eq!(s.spin_kind(pure), Spin::Yield);
    assert_eq!(s.spin_kind(0), Spin::Pure);
}
