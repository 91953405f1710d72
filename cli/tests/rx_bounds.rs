//! The receiver's bounds against hostile peers, on a real `sessionrepl node`
//! process (its RSS read from /proc) and real sockets, on both drivers:
//! a peer that floods PINGs or ack requests and never reads, half-open
//! connections beyond `maxConnections`, a silent connection against
//! `handshakeTimeout`, large partial frames against `maxReceiveMemory`. In
//! each a legitimate member keeps being served (every send acked).
//!
//! Each test prints `figure:` lines (the numbers for the table).
//! `SR_NODE_BIN=<path to an older sessionrepl>` runs the same attacks
//! against that binary (without the new keys) to measure "before"; the
//! assertions are then expected to fail.

use bytes::Bytes;
use sessionrepl::__internal::wire::compress::Deflater;
use sessionrepl::__internal::wire::frame::{
    FrameHeader, FrameType, FLAG_ACK_RECEIPT, FLAG_COMPRESSED,
};
use sessionrepl::__internal::wire::Preface;
use sessionrepl::{Channel, ReplicationMode};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[macro_use]
#[path = "../../tests/common/mod.rs"]
mod common;
use common::{io_cfg, stdout_lines};

on_both_drivers!(
    peer_that_never_reads_its_acks_is_paused_then_closed,
    half_open_connections_beyond_the_slot_limit_leave_room_for_members,
    silent_connection_is_closed_after_handshake_timeout,
    large_partial_frames_are_held_to_the_memory_bound,
    inflating_peer_does_not_monopolise_the_receiver,
);

/// A member that sends `n` messages, each acked after delivery, to
/// `addr`; returns how many were acked and the slowest round trip.
fn member_round_trips(addr: SocketAddr, n: usize) -> (usize, Duration) {
    let mut cfg = io_cfg();
    cfg.replication_mode = ReplicationMode::Synchronous;
    cfg.ack_timeout = Duration::from_secs(20);
    let tx = Channel::builder(cfg).start().unwrap();
    let (mut acked, mut worst) = (0, Duration::ZERO);
    for i in 0..n {
        let t = Instant::now();
        let r = tx.send(&[addr], Bytes::from(format!("m{i}")), tx.default_options());
        worst = worst.max(t.elapsed());
        acked += usize::from(r.is_ok());
    }
    tx.stop();
    (acked, worst)
}

/// Keys this change added; left out when measuring an older binary.
const NEW_KEYS: [&str; 7] = [
    "maxConnections",
    "handshakeTimeout",
    "maxPendingAckBytes",
    "ackWriteTimeout",
    "maxReceiveMemory",
    "connectionUploadTimeout",
    "maxInflatePerTurn",
];

struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    /// Starts `sessionrepl node` on the driver under test with `sets`.
    fn start(sets: &[&str]) -> Node {
        let (bin, older) = match std::env::var("SR_NODE_BIN") {
            Ok(b) => (b, true),
            Err(_) => (env!("CARGO_BIN_EXE_sessionrepl").to_string(), false),
        };
        let mut cmd = Command::new(bin);
        cmd.arg("node")
            .arg("--set")
            .arg(format!("ioBackend={}", io_cfg().io_backend));
        for s in sets {
            if older && NEW_KEYS.iter().any(|k| s.starts_with(k)) {
                continue;
            }
            cmd.arg("--set").arg(s);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = stdout_lines(&mut child, Duration::from_secs(30));
        let l = lines.wait("ready", |l| l.starts_with("ready addr="));
        let addr = l["ready addr=".len()..].parse().unwrap();
        Node { child, addr }
    }

    /// The node's resident memory now, in KiB.
    fn rss_kb(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn preface() -> Vec<u8> {
    Preface::new([7; 16], b"", false).encode()
}

/// A member that sends `n` messages, each acked after delivery, to
/// `addr`; returns how many were acked.
fn member_sends(addr: SocketAddr, n: usize) -> usize {
    let mut cfg = io_cfg();
    cfg.replication_mode = ReplicationMode::Synchronous;
    cfg.ack_timeout = Duration::from_secs(10);
    let tx = Channel::builder(cfg).start().unwrap();
    let mut acked = 0;
    for i in 0..n {
        let r = tx.send(
            &[addr],
            Bytes::from(format!("member {i}")),
            tx.default_options(),
        );
        if r.is_ok() {
            acked += 1;
        }
    }
    tx.stop();
    acked
}

/// True once the node closed `s` (EOF or reset); never consumes data.
fn closed_by_node(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let r = match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    r
}

/// The bytes one attack keeps writing, after the preface.
fn attack_chunk(kind: &str) -> Vec<u8> {
    let mut v = Vec::new();
    match kind {
        "ping flood" => {
            for id in 0..4096u64 {
                let h = FrameHeader {
                    ty: FrameType::Ping,
                    flags: 0,
                    len: 0,
                    id,
                };
                v.extend_from_slice(&h.encode());
            }
        }
        "ack requests, repeated ids" => {
            // Alternating ids: no two acks merge into one range.
            for i in 0..4096u64 {
                v.extend_from_slice(
                    &FrameHeader::data(1 + (i % 2) * 2, 0, FLAG_ACK_RECEIPT).encode(),
                );
            }
        }
        "compressed BATCH of ack requests" => {
            let mut body = Vec::new();
            for i in 0..65536u64 {
                body.extend_from_slice(
                    &FrameHeader::data(1 + (i % 2) * 2, 0, FLAG_ACK_RECEIPT).encode(),
                );
            }
            let z = Deflater::new(9).compress(&body).unwrap();
            let h = FrameHeader {
                ty: FrameType::Batch,
                flags: FLAG_COMPRESSED,
                len: z.len() as u32,
                id: 1,
            };
            v.extend_from_slice(&h.encode());
            v.extend_from_slice(&z);
        }
        _ => unreachable!(),
    }
    v
}

fn peer_that_never_reads_its_acks_is_paused_then_closed() {
    // Delivery on the I/O thread, then on workers (acks come back from them).
    never_reading_peer(
        "tcpThreadCount=0",
        &[
            "ping flood",
            "ack requests, repeated ids",
            "compressed BATCH of ack requests",
        ],
    );
    never_reading_peer(
        "tcpThreadCount=2",
        &[
            "ack requests, repeated ids",
            "compressed BATCH of ack requests",
        ],
    );
}

/// Receive memory of the node in [`never_reading_peer`]: the whole of what
/// it may hold for frames in progress and, on io_uring, its pool of
/// provided receive buffers (which takes what is left after one largest
/// frame, here 15 buffers of 1 MiB).
const NEVER_READING_RX_MEMORY: u64 = 16 << 20;
/// What the node may grow by besides receive memory under that attack:
/// the inflater's arenas for the BATCH bodies in this turn
/// (`maxInflatePerTurn` = 1 MiB here; an arena grows to 2.5 MiB for a
/// 1 MiB body) kept by the allocator, unsent acks (`maxPendingAckBytes`),
/// one read chunk per connection, thread stacks touched. Growth measured
/// under 4 busy loops on 2 cores: at most 14 MB on io_uring, 2 MB on mio.
const RSS_SLACK: u64 = 12 << 20;

fn never_reading_peer(workers: &str, kinds: &[&str]) {
    let rx_mem = format!("maxReceiveMemory={NEVER_READING_RX_MEMORY}");
    let node = Node::start(&[
        "maxPendingAckBytes=65536",
        "ackWriteTimeout=1000",
        "txBufSize=65536",
        "maxFrameSize=1048576",
        "maxInflatePerTurn=1048576",
        &rx_mem,
        workers,
    ]);
    let base = node.rss_kb();
    // The bound follows from the configuration: under a sustained stream
    // the io_uring receiver cycles through every buffer of its ring (the
    // kernel fills them in turn), so their pages become resident; with the
    // default 256 MiB that pool is 32 provided buffers of 1 MiB (up to 128
    // in all), which is why a fixed "base + 32 MB" was hit under load.
    let bound = base + (NEVER_READING_RX_MEMORY + RSS_SLACK) / 1024;
    for &kind in kinds {
        let s = TcpStream::connect(node.addr).unwrap();
        socket2::SockRef::from(&s)
            .set_recv_buffer_size(4096)
            .unwrap();
        s.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        (&s).write_all(&preface()).unwrap();
        let chunk = attack_chunk(kind);
        // A member is served while the flood goes on.
        let addr = node.addr;
        let member = std::thread::spawn(move || member_sends(addr, 20));
        let t0 = Instant::now();
        let mut peak = base;
        let mut sent = 0usize;
        let mut closed_after = None;
        let mut at = 0;
        while t0.elapsed() < Duration::from_secs(15) {
            // The stream repeats `chunk`, frames kept whole across short writes.
            match (&s).write(&chunk[at..]) {
                Ok(n) => {
                    sent += n;
                    at = (at + n) % chunk.len();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => {
                    closed_after = Some(t0.elapsed());
                    break;
                }
            }
            peak = peak.max(node.rss_kb());
            if peak > base + 512 * 1024 {
                break; // unbounded (an older binary): enough to tell
            }
            if closed_by_node(&s) {
                closed_after = Some(t0.elapsed());
                break;
            }
        }
        let acked = member.join().unwrap();
        println!(
            "figure: {} {workers} {kind}: node RSS {} MB -> peak {} MB, {} MB written by the attacker, closed by the node after {:?}, member acked {acked}/20",
            io_cfg().io_backend,
            base / 1024,
            peak / 1024,
            sent >> 20,
            closed_after
        );
        assert!(
            closed_after.is_some(),
            "{kind}: the node never closed the connection"
        );
        assert!(
            peak < bound,
            "{kind}: node RSS grew from {base} kB to {peak} kB (bound {bound} kB: receive memory {} MiB + {} MiB)",
            NEVER_READING_RX_MEMORY >> 20,
            RSS_SLACK >> 20
        );
        assert_eq!(acked, 20, "{kind}: the member was not served");
    }
}

fn half_open_connections_beyond_the_slot_limit_leave_room_for_members() {
    let node = Node::start(&["maxConnections=64", "handshakeTimeout=60000"]);
    let half = &preface()[..10];
    let mut attackers = Vec::new();
    for _ in 0..200 {
        let s = TcpStream::connect(node.addr).unwrap();
        (&s).write_all(half).unwrap();
        attackers.push(s);
    }
    // The node has seen them all (each was accepted and read).
    std::thread::sleep(Duration::from_millis(500));
    let acked = member_sends(node.addr, 20);
    // Evictions are done by now; count what the node closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut closed = 0;
    while Instant::now() < deadline {
        closed = attackers.iter().filter(|s| closed_by_node(s)).count();
        if closed >= 200 - 64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "figure: {} 200 half-preface connections, maxConnections=64: {closed} closed by the node (oldest first), member acked {acked}/20",
        io_cfg().io_backend
    );
    assert_eq!(acked, 20, "the member was locked out");
    assert!(
        closed >= 200 - 64,
        "only {closed} of 200 half-open connections were closed; more than 64 slots in use"
    );
    // Oldest first: the most recent attackers still hold their slots.
    assert!(
        !closed_by_node(&attackers[199]),
        "the newest half-open connection was closed before older ones"
    );
    assert!(closed_by_node(&attackers[0]), "the oldest was kept");
}

fn silent_connection_is_closed_after_handshake_timeout() {
    let node = Node::start(&["handshakeTimeout=500"]);
    let t0 = Instant::now();
    let silent = TcpStream::connect(node.addr).unwrap();
    let member = TcpStream::connect(node.addr).unwrap();
    (&member).write_all(&preface()).unwrap();
    // The node answers the member's preface; the silent one hears nothing.
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 64];
    let r = (&silent).read(&mut b);
    let waited = t0.elapsed();
    println!(
        "figure: {} silent connection, handshakeTimeout=500 ms: closed after {waited:?} ({r:?})",
        io_cfg().io_backend
    );
    assert!(
        matches!(r, Ok(0))
            || r.as_ref().is_err_and(
                |e| e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut
            ),
        "the silent connection was not closed: {r:?}"
    );
    assert!(
        waited >= Duration::from_millis(400),
        "closed before its deadline: {waited:?}"
    );
    // The connection that completed its preface is still open.
    std::thread::sleep(Duration::from_millis(600));
    let mut reply = vec![0u8; 64];
    member
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = (&member).read(&mut reply).unwrap();
    assert!(n > 0, "no preface answer");
    assert!(
        !closed_by_node(&member),
        "a member past its preface was closed"
    );
}

fn large_partial_frames_are_held_to_the_memory_bound() {
    let node = Node::start(&["maxReceiveMemory=33554432", "connectionUploadTimeout=1500"]);
    let base = node.rss_kb();
    let stop = Arc::new(AtomicBool::new(false));
    let frame = 16usize << 20;
    let mut attackers = Vec::new();
    for _ in 0..30 {
        let (addr, stop) = (node.addr, stop.clone());
        attackers.push(std::thread::spawn(move || {
            let s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut head = preface();
            head.extend_from_slice(&FrameHeader::data(1, frame, 0).encode());
            (&s).write_all(&head).unwrap();
            let body = vec![0x5a; 256 * 1024];
            let mut left = frame - 1;
            let mut closed = false;
            while left > 0 && !stop.load(Ordering::Relaxed) {
                match (&s).write(&body[..left.min(body.len())]) {
                    Ok(n) => left -= n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            // Hold the connection (and its partial frame) until told.
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut sink = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                // Reads the node's preface answer, then sees its close.
                closed = closed
                    || match (&s).read(&mut sink) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                    };
                std::thread::sleep(Duration::from_millis(20));
            }
            (frame - 1 - left, closed)
        }));
    }
    // Let the attackers push what the node takes, watching its RSS.
    let t0 = Instant::now();
    let mut peak = base;
    while t0.elapsed() < Duration::from_secs(4) {
        peak = peak.max(node.rss_kb());
        std::thread::sleep(Duration::from_millis(20));
    }
    let acked = member_sends(node.addr, 20);
    peak = peak.max(node.rss_kb());
    stop.store(true, Ordering::Relaxed);
    let ends: Vec<(usize, bool)> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    let written: usize = ends.iter().map(|e| e.0).sum();
    let closed = ends.iter().filter(|e| e.1).count();
    println!(
        "figure: {} 30 connections each holding a 16 MiB frame minus one byte, maxReceiveMemory=32 MiB: node RSS {} MB -> peak {} MB, {} MB written by the attackers, {closed} closed at connectionUploadTimeout=1.5 s, member acked {acked}/20",
        io_cfg().io_backend,
        base / 1024,
        peak / 1024,
        written >> 20
    );
    assert_eq!(acked, 20, "the member was not served");
    // Memory held mid-frame is taken back: the first holders were closed.
    assert!(closed >= 2, "no holder of receive memory was closed");
    assert!(
        peak < base + (32 + 16) * 1024,
        "node RSS grew from {base} kB to {peak} kB (bound 32 MiB)"
    );
}

fn inflating_peer_does_not_monopolise_the_receiver() {
    let node = Node::start(&["maxInflatePerTurn=1048576"]);
    // Frames cheap to send (2 KiB deflated), costly to take (2 MiB inflated).
    let z = Deflater::new(9).compress(&vec![0u8; 2 << 20]).unwrap();
    let mut frame = FrameHeader::data(1, z.len(), FLAG_COMPRESSED)
        .encode()
        .to_vec();
    frame.extend_from_slice(&z);
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, stop2) = (node.addr, stop.clone());
    let attacker = std::thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        (&s).write_all(&preface()).unwrap();
        let mut sent = 0u64;
        let burst: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * 64)
            .collect();
        let mut at = 0;
        while !stop2.load(Ordering::Relaxed) {
            match (&s).write(&burst[at..]) {
                Ok(n) => {
                    sent += n as u64;
                    at = (at + n) % burst.len();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        sent / frame.len() as u64
    });
    std::thread::sleep(Duration::from_millis(500));
    let (acked, worst) = member_round_trips(node.addr, 10);
    stop.store(true, Ordering::Relaxed);
    let frames = attacker.join().unwrap();
    println!(
        "figure: {} a peer sending 2 KiB frames that inflate to 2 MiB ({frames} sent): member acked {acked}/10, slowest round trip {worst:?}",
        io_cfg().io_backend
    );
    assert_eq!(acked, 10, "the member was starved");
}
