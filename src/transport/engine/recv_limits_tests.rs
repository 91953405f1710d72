//! The receiver's bounds (issue 9, point 3) on the one receiver engine
//! over the in-memory driver and its virtual clock: each test drives
//! connections that misbehave and asserts the exact virtual time and the
//! outcome of each bound, and that a well-behaved member is still served.

use super::recv::RecvEngine;
use crate::config::Config;
use crate::driver::fake::FakeDriver;
use crate::driver::{Driver, Token};
use crate::transport::rx_core;
use crate::transport::{Message, MessageListener, Shared};
use crate::wire::compress::Deflater;
use crate::wire::frame::{FrameHeader, FLAG_ACK_RECEIPT, FLAG_COMPRESSED, HEADER_LEN};
use crate::wire::Preface;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Messages delivered: (the peer's port, id).
type Got = Arc<Mutex<Vec<(u16, u64)>>>;

struct NoWake;
impl crate::queue::Wake for NoWake {
    fn wake(&self) {}
}

/// An engine over a fake driver whose connections take `room` bytes of
/// output, delivering on its own thread, with `cfg`'s bounds.
struct Rig {
    e: RecvEngine<FakeDriver>,
    shared: Arc<Shared>,
    got: Got,
    idle: Option<Instant>,
}

impl Rig {
    fn new(mut cfg: Config, room: usize, multishot: bool) -> Rig {
        cfg.idle.spin = Duration::ZERO;
        cfg.tcp_thread_count = 0;
        cfg.validate().expect("a valid config");
        let shared = Arc::new(Shared::new(cfg, [3; 16], None));
        let got: Got = Arc::default();
        let g2 = got.clone();
        let listener: MessageListener = Arc::new(move |m: &Message| {
            g2.lock().unwrap().push((m.peer.port(), m.id));
            Ok(())
        });
        let (core, workers) =
            rx_core::start_workers(&shared, listener, Box::new(NoWake), 0).unwrap();
        assert!(workers.is_empty(), "delivery runs on the engine thread");
        let mut d = FakeDriver::new(room);
        d.multishot = multishot;
        let e = RecvEngine::new(d, core, Arc::new(AtomicBool::new(false)));
        Rig {
            e,
            shared,
            got,
            idle: None,
        }
    }

    fn d(&mut self) -> &mut FakeDriver {
        self.e.driver()
    }

    fn now(&mut self) -> Instant {
        self.e.driver().now()
    }

    fn turn(&mut self) {
        self.e.turn(&mut self.idle);
    }

    /// A peer connects from `port`; returns its token once the engine
    /// took it (None if it was refused) and the virtual time it did.
    fn accept(&mut self, port: u16) -> (Option<Token>, Instant) {
        let before: Vec<Token> = self.d().socks.keys().copied().collect();
        self.d().accept(SocketAddr::from(([127, 0, 0, 1], port)));
        let at = self.now();
        self.turn();
        let t = self.d().socks.keys().copied().find(|t| !before.contains(t));
        (t, at)
    }

    /// A peer connects from `port` and completes its preface.
    fn opened(&mut self, port: u16) -> Token {
        let (t, _) = self.accept(port);
        let t = t.expect("accepted");
        self.send(t, &preface());
        self.turn();
        t
    }

    /// The peer of `t` sends `b` (a zero-copy chunk while a multishot
    /// receive is armed, else bytes a plain read takes).
    fn send(&mut self, t: Token, b: &[u8]) {
        self.d().chunk(t, Bytes::copy_from_slice(b), None);
    }

    fn open(&mut self, t: Token) -> bool {
        self.e.driver().socks.contains_key(&t)
    }

    /// Turns (the engine sleeping until its next deadline when idle)
    /// until `t` is closed; returns the virtual time it was closed at.
    fn until_closed(&mut self, t: Token) -> Instant {
        for _ in 0..100 {
            if !self.open(t) {
                return self.now();
            }
            self.turn();
        }
        panic!("connection {t} still open after 100 turns");
    }

    /// Turns until the virtual clock reaches `at` exactly (a sleeping
    /// poll returns then, as if the peer acted).
    fn until(&mut self, at: Instant) {
        self.d().wake_at = Some(at);
        for _ in 0..1000 {
            if self.now() >= at {
                self.d().wake_at = None;
                return;
            }
            self.turn();
        }
        panic!("the clock did not reach the time asked");
    }

    fn limit_closes(&self) -> u64 {
        self.shared.stats.rx_limit_closes.load(Ordering::SeqCst)
    }

    fn got(&self) -> Vec<(u16, u64)> {
        self.got.lock().unwrap().clone()
    }
}

/// Each test runs on both shapes of receive: plain reads into the
/// connection's buffer (the mio driver's) and zero-copy chunks of provided
/// buffers (io_uring's multishot receive).
macro_rules! both_shapes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn plain_reads() {
                super::$name(false)
            }
            #[test]
            fn zero_copy_chunks() {
                super::$name(true)
            }
        }
    )*};
}

both_shapes!(
    half_a_preface_is_closed_at_handshake_timeout_exactly,
    out_of_slots_the_oldest_unauthenticated_goes_first_and_a_member_is_served,
    a_partial_frame_is_closed_at_connection_upload_timeout_from_its_first_byte,
    a_peer_that_never_reads_its_acks_is_paused_then_closed_at_ack_write_timeout,
    a_frame_past_receive_memory_waits_until_a_stopped_upload_is_closed,
    decompression_work_per_turn_is_bounded_and_others_go_between,
);

fn preface() -> Vec<u8> {
    Preface::new([5; 16], b"", false).encode()
}

fn frame(id: u64, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut v = FrameHeader::data(id, body.len(), flags).encode().to_vec();
    v.extend_from_slice(body);
    v
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn half_a_preface_is_closed_at_handshake_timeout_exactly(multishot: bool) {
    let mut cfg = Config::default();
    cfg.rx_limits.handshake_timeout = ms(700);
    let mut r = Rig::new(cfg, 1 << 20, multishot);
    let (t, at) = r.accept(4001);
    let t = t.expect("accepted");
    let half = preface();
    r.send(t, &half[..half.len() / 2]);
    // Trickling bytes of the same preface do not restart the clock.
    r.until(at + ms(300));
    assert!(r.open(t));
    r.send(t, &half[half.len() / 2..half.len() - 1]);
    let closed = r.until_closed(t);
    assert_eq!(closed - at, ms(700), "closed at handshakeTimeout");
    assert_eq!(r.limit_closes(), 1);

    // A peer that completes its preface in time is not closed.
    let (m, at) = r.accept(4002);
    let m = m.expect("accepted");
    r.send(m, &preface());
    r.until(at + ms(5000));
    assert!(r.open(m), "an opened connection has no handshake deadline");
    assert_eq!(r.limit_closes(), 1);
}

fn out_of_slots_the_oldest_unauthenticated_goes_first_and_a_member_is_served(multishot: bool) {
    let mut cfg = Config::default();
    cfg.rx_limits.max_connections = 3;
    let mut r = Rig::new(cfg, 1 << 20, multishot);
    // A member, then two half-open connections: every slot is taken.
    let member = r.opened(5000);
    let (h1, _) = r.accept(5001);
    let (h2, _) = r.accept(5002);
    let (h1, h2) = (h1.unwrap(), h2.unwrap());
    r.send(h1, &preface()[..3]);
    r.turn();
    // A newcomer evicts the oldest connection still in its handshake, at
    // once (no time passes), not the member.
    let before = r.now();
    let (newcomer, at) = r.accept(5003);
    let newcomer = newcomer.expect("admitted after an eviction");
    assert_eq!(at, before);
    assert!(!r.open(h1), "the oldest half-open connection was closed");
    assert!(r.open(h2) && r.open(member));
    assert_eq!(r.limit_closes(), 1);
    // The newcomer is a member too: it is served, and so is the first.
    let mut b = preface();
    b.extend_from_slice(&frame(7, 0, b"new"));
    r.send(newcomer, &b);
    r.send(member, &frame(8, 0, b"old"));
    r.turn();
    let got = r.got();
    assert!(
        got.contains(&(5003, 7)) && got.contains(&(5000, 8)),
        "{got:?}"
    );
    // Next, h2 is evicted; then every slot has a member: refused.
    r.opened(5004);
    assert!(!r.open(h2));
    let (refused, _) = r.accept(5005);
    assert_eq!(refused, None, "no slot without a half-open connection");
    assert_eq!(r.limit_closes(), 3, "two evictions and one refusal");
    r.send(member, &frame(9, 0, b"still"));
    r.turn();
    assert!(r.got().contains(&(5000, 9)), "members keep their slots");
}

fn a_partial_frame_is_closed_at_connection_upload_timeout_from_its_first_byte(multishot: bool) {
    let mut cfg = Config::default();
    cfg.rx_limits.connection_upload_timeout = ms(2000);
    let mut r = Rig::new(cfg, 1 << 20, multishot);
    let t = r.opened(4100);
    // Idle between frames: no deadline.
    let idle_from = r.now();
    r.until(idle_from + ms(10_000));
    assert!(r.open(t), "an idle connection is not an upload");
    // A small frame's first 10 bytes (a header in part), then a trickle.
    let f = frame(1, 0, &[9u8; 500]);
    let started = r.now();
    r.send(t, &f[..10]);
    r.until(started + ms(1500));
    r.send(t, &f[10..400]);
    let closed = r.until_closed(t);
    assert_eq!(closed - started, ms(2000), "from the frame's first byte");
    assert!(r.got().is_empty());
    assert_eq!(r.limit_closes(), 1);

    // A whole header and not one byte of its payload is a frame started
    // too (the decoder has taken the header: nothing is left buffered).
    let t = r.opened(4101);
    let started = r.now();
    r.send(t, &f[..HEADER_LEN]);
    let closed = r.until_closed(t);
    assert_eq!(closed - started, ms(2000), "a header alone");
    // Its payload arriving later does not restart the clock either.
    let t = r.opened(4102);
    let started = r.now();
    r.send(t, &f[..HEADER_LEN]);
    r.until(started + ms(1500));
    r.send(t, &f[HEADER_LEN..200]);
    let closed = r.until_closed(t);
    assert_eq!(
        closed - started,
        ms(2000),
        "a header, then part of its payload"
    );
    assert_eq!(r.limit_closes(), 3);
}

fn a_peer_that_never_reads_its_acks_is_paused_then_closed_at_ack_write_timeout(multishot: bool) {
    let mut cfg = Config::default();
    cfg.rx_limits.max_pending_ack_bytes = 1024;
    cfg.rx_limits.ack_write_timeout = ms(1000);
    // The peer reads nothing: not even the reply preface leaves.
    let mut r = Rig::new(cfg, 0, multishot);
    let (t, _) = r.accept(4200);
    let t = t.unwrap();
    // Ids with gaps: acks of consecutive ids would travel as one range.
    let mut b = preface();
    for k in 0..2000 {
        b.extend_from_slice(&frame(2 * k + 1, FLAG_ACK_RECEIPT, b"x"));
    }
    let blocked = r.now();
    r.send(t, &b);
    r.turn();
    let n = r.got().len();
    assert!(n > 0 && n < 2000, "paused at the output bound, after {n}");
    // Paused: it is no longer read, so what the peer sends next stays in
    // its socket.
    r.send(t, &frame(5000, FLAG_ACK_RECEIPT, b"y"));
    r.turn();
    assert!(!r.d().socks[&t].inbox.is_empty(), "read while paused");
    assert_eq!(r.got().len(), n, "delivered while paused");
    let closed = r.until_closed(t);
    assert_eq!(closed - blocked, ms(1000), "closed at ackWriteTimeout");
    assert_eq!(r.limit_closes(), 1);

    // One that reads its acks in time resumes and gets everything.
    let (t, _) = r.accept(4201);
    let t = t.unwrap();
    r.send(t, &b);
    r.turn();
    let first = r.got().len() - n;
    assert!(first < 2000);
    let at = r.now();
    r.until(at + ms(900));
    r.d().give_room(t, 1 << 20);
    r.until(at + ms(5000));
    assert!(r.open(t));
    assert_eq!(r.got().len() - n, 2000, "all delivered after it read");
    assert_eq!(r.limit_closes(), 1);
}

fn a_frame_past_receive_memory_waits_until_a_stopped_upload_is_closed(multishot: bool) {
    const BIG: usize = 150 * 1024;
    let mut cfg = Config::default();
    cfg.max_frame_size = 200 * 1024;
    cfg.max_decompressed_size = 200 * 1024;
    cfg.rx_limits.max_receive_memory = 200 * 1024;
    cfg.rx_limits.connection_upload_timeout = ms(3000);
    let mut r = Rig::new(cfg, 1 << 20, multishot);
    let (a, _) = r.accept(4300);
    let (b, _) = r.accept(4301);
    let (a, b) = (a.unwrap(), b.unwrap());
    let fa = frame(1, 0, &vec![1u8; BIG]);
    let fb = frame(2, 0, &vec![2u8; BIG]);
    // A reserves 150 KiB for its frame, sends 100 KiB and stops.
    let mut s = preface();
    s.extend_from_slice(&fa[..100 * 1024]);
    let a_started = r.now();
    r.send(a, &s);
    r.turn();
    // B's frame would take the total past 200 KiB: B waits, unread.
    let mut s = preface();
    s.extend_from_slice(&fb[..1000]);
    r.send(b, &s);
    r.turn();
    r.send(b, &fb[1000..]);
    r.until(a_started + ms(2999));
    assert!(r.open(a) && r.open(b));
    assert_eq!(
        r.d().socks[&b].inbox.len(),
        fb.len() - 1000,
        "a waiting frame is not read"
    );
    assert!(r.got().is_empty());
    // A is closed at its deadline; its memory goes to B, whose frame then
    // arrives whole. Waiting for memory did not count against B.
    let closed = r.until_closed(a);
    assert_eq!(closed - a_started, ms(3000));
    r.turn();
    r.turn();
    assert_eq!(r.got(), vec![(4301, 2)]);
    assert!(r.open(b));
    assert_eq!(r.limit_closes(), 1);
}

fn decompression_work_per_turn_is_bounded_and_others_go_between(multishot: bool) {
    let mut cfg = Config::default();
    cfg.rx_limits.max_inflate_per_turn = 1 << 20;
    let mut r = Rig::new(cfg, 1 << 20, multishot);
    let (a, _) = r.accept(4400);
    let (b, _) = r.accept(4401);
    let (a, b) = (a.unwrap(), b.unwrap());
    // A: eight frames that each inflate to 512 KiB, in one read.
    let z = Deflater::new(1).compress(&vec![7u8; 512 * 1024]).unwrap();
    let mut s = preface();
    for id in 1..=8 {
        s.extend_from_slice(&frame(id, FLAG_COMPRESSED, &z));
    }
    r.send(a, &s);
    let mut s = preface();
    s.extend_from_slice(&frame(100, 0, b"b"));
    r.send(b, &s);
    let start = r.now();
    r.turn();
    // A inflates its budget (two frames) per serving; B's message goes
    // in between rather than after all of A's.
    let got = r.got();
    let pos_b = got
        .iter()
        .position(|m| *m == (4401, 100))
        .expect("B served");
    assert!(pos_b <= 4, "B waited behind A's inflating: {got:?}");
    // The rest follows on the next turns, without sleeping in between.
    let mut turns = 1;
    while r.got().len() < 9 && turns < 10 {
        r.turn();
        turns += 1;
    }
    let got = r.got();
    let a_ids: Vec<u64> = got.iter().filter(|m| m.0 == 4400).map(|m| m.1).collect();
    assert_eq!(a_ids, (1..=8).collect::<Vec<_>>(), "all of A, in order");
    assert!(turns <= 4, "{turns} turns for 4 MiB at 1 MiB a turn");
    assert!(r.open(a) && r.open(b));
    assert!(
        r.now() - start < ms(1),
        "yielding costs no waiting: {:?}",
        r.now() - start
    );
}
