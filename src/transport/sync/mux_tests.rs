//! Socket tests of the shared connection (`mux.rs`) against a scripted
//! peer in this process: the test decides when and in which order each
//! frame is acked, failed, or its connection closed, so callers sharing one
//! connection can be checked one against another.

use super::SyncSender;
use crate::config::Config;
use crate::error::Error;
use crate::transport::Shared;
use crate::wire::frame::{put_ack_range, put_reason_frame, FrameHeader, FrameType};
use crate::wire::frame::{FLAG_ACK_DELIVERY, HEADER_LEN};
use crate::wire::Preface;
use bytes::Bytes;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACK_TIMEOUT: Duration = Duration::from_millis(1000);
/// Generous: the machine is shared and loaded.
const SLACK: Duration = Duration::from_millis(1500);

fn shared_sender(ack_timeout: Duration) -> Arc<SyncSender> {
    let mut cfg = Config::default();
    cfg.ack_timeout = ack_timeout;
    cfg.max_retry_attempts = 0;
    let s = SyncSender::new(Arc::new(Shared::new(cfg, [7; 16], None)), 8);
    Arc::new(s.with_shared_connections(true))
}

/// A peer that answers the preface and reports each frame it reads as
/// (connection number, message id); the test writes its replies.
struct ScriptedPeer {
    addr: SocketAddr,
    frames: Receiver<(usize, u64)>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// Connections whose sender closed them.
    closed: Arc<AtomicUsize>,
}

impl ScriptedPeer {
    fn start() -> ScriptedPeer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, frames) = channel();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let closed = Arc::new(AtomicUsize::new(0));
        let (k2, c2) = (conns.clone(), closed.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let _ = s.write_all(&Preface::new([9; 16], b"", true).encode());
                let no = {
                    let mut k = k2.lock().unwrap();
                    k.push(s.try_clone().unwrap());
                    k.len() - 1
                };
                let (tx, c2) = (tx.clone(), c2.clone());
                std::thread::spawn(move || read_frames(s, no, tx, c2));
            }
        });
        ScriptedPeer {
            addr,
            frames,
            conns,
            closed,
        }
    }

    /// The next `n` frames read, sorted by id.
    fn take(&self, n: usize) -> Vec<(usize, u64)> {
        let mut got: Vec<_> = (0..n)
            .map(|_| self.frames.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort_unstable_by_key(|&(_, id)| id);
        got
    }

    fn reply(&self, conn: usize, bytes: &[u8]) {
        let mut s = self.conns.lock().unwrap()[conn].try_clone().unwrap();
        s.write_all(bytes).unwrap();
    }

    /// One ACK frame for `id` alone.
    fn ack(&self, conn: usize, id: u64) {
        let mut p = Vec::new();
        put_ack_range(&mut p, id, 1);
        let h = FrameHeader {
            ty: FrameType::Ack,
            flags: 0,
            len: p.len() as u32,
            id: 0,
        };
        let mut b = h.encode().to_vec();
        b.extend_from_slice(&p);
        self.reply(conn, &b);
    }

    fn fail(&self, conn: usize, id: u64, reason: &str) {
        let mut b = Vec::new();
        put_reason_frame(&mut b, FrameType::Fail, id, reason);
        self.reply(conn, &b);
    }

    fn accepted(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

/// Skips the sender's preface, then reports every frame's id.
fn read_frames(
    mut s: TcpStream,
    no: usize,
    tx: std::sync::mpsc::Sender<(usize, u64)>,
    closed: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut preface_done = false;
    loop {
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
        if !preface_done {
            match Preface::decode(&buf).unwrap() {
                Some((_, used)) => {
                    buf.drain(..used);
                    preface_done = true;
                }
                None => continue,
            }
        }
        while buf.len() >= HEADER_LEN {
            let h = FrameHeader::decode(&buf[..HEADER_LEN].try_into().unwrap(), 1 << 24).unwrap();
            let total = HEADER_LEN + h.len as usize;
            if buf.len() < total {
                break;
            }
            let _ = tx.send((no, h.id));
            buf.drain(..total);
        }
    }
    closed.fetch_add(1, Ordering::SeqCst);
}

/// Starts one caller per id, each sending one frame that asks for an ack;
/// returns their handles (each gives its outcome and how long it took).
fn callers(
    tx: &Arc<SyncSender>,
    to: SocketAddr,
    ids: &[u64],
) -> Vec<std::thread::JoinHandle<(crate::Result<()>, Duration)>> {
    ids.iter()
        .map(|&id| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let p = Bytes::from(vec![b'x'; 100]);
                let hdr = FrameHeader::data(id, p.len(), FLAG_ACK_DELIVERY).encode();
                let t = Instant::now();
                let r = tx.send_one(to, &hdr, &p, id, true);
                (r, t.elapsed())
            })
        })
        .collect()
}

/// One send of `id` that the peer must see on connection `conn`; the
/// peer acks it and the send succeeds.
fn send_acked_on(tx: &Arc<SyncSender>, peer: &ScriptedPeer, id: u64, conn: usize) {
    let hs = callers(tx, peer.addr, &[id]);
    assert_eq!(peer.take(1), vec![(conn, id)]);
    peer.ack(conn, id);
    assert!(hs.into_iter().all(|h| h.join().unwrap().0.is_ok()));
}

#[test]
fn callers_share_one_connection_and_each_gets_its_ack_out_of_order() {
    let peer = ScriptedPeer::start();
    let tx = shared_sender(ACK_TIMEOUT);
    let hs = callers(&tx, peer.addr, &[1, 2, 3, 4]);
    let got = peer.take(4);
    assert!(got.iter().all(|&(c, _)| c == 0), "one connection: {got:?}");
    assert_eq!(peer.accepted(), 1);
    // Acks in reverse order, one frame each: every caller gets its own.
    for id in [4, 3, 2, 1] {
        peer.ack(0, id);
    }
    for h in hs {
        let (r, took) = h.join().unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert!(took < ACK_TIMEOUT, "took {took:?}");
    }
    // The connection stays for the next send.
    send_acked_on(&tx, &peer, 5, 0);
    assert_eq!(peer.accepted(), 1);
    assert_eq!(tx.shared.stats.acks_received.load(Ordering::Relaxed), 5);
}

#[test]
fn one_callers_timeout_leaves_the_others_acked_and_retires_the_connection() {
    let peer = ScriptedPeer::start();
    let tx = shared_sender(ACK_TIMEOUT);
    let hs = callers(&tx, peer.addr, &[1, 2, 3]);
    assert_eq!(peer.take(3), vec![(0, 1), (0, 2), (0, 3)]);
    // 1 is never acked; 3 is acked, 2 fails at the member.
    peer.ack(0, 3);
    peer.fail(0, 2, "listener refused");
    let out: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let (r1, t1) = &out[0];
    assert!(matches!(r1, Err(Error::Timeout)), "{r1:?}");
    assert!(
        *t1 >= ACK_TIMEOUT - Duration::from_millis(5),
        "gave up early: {t1:?}"
    );
    assert!(*t1 <= ACK_TIMEOUT + SLACK, "took {t1:?}");
    assert!(
        matches!(&out[1].0, Err(Error::RemoteFailure(r)) if r == "listener refused"),
        "{:?}",
        out[1]
    );
    assert!(out[1].1 < ACK_TIMEOUT / 2, "the FAIL waited {:?}", out[1].1);
    assert!(
        out[2].0.is_ok() && out[2].1 < ACK_TIMEOUT / 2,
        "{:?}",
        out[2]
    );
    // The timed-out connection is closed and never used again.
    let t = Instant::now();
    while peer.closed.load(Ordering::SeqCst) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "never closed");
        std::thread::sleep(Duration::from_millis(5));
    }
    send_acked_on(&tx, &peer, 4, 1);
    assert_eq!(peer.accepted(), 2);
    assert_eq!(tx.shared.stats.timeouts.load(Ordering::Relaxed), 1);
}

#[test]
fn a_closed_connection_gives_each_waiting_caller_its_outcome_once() {
    let peer = ScriptedPeer::start();
    let tx = shared_sender(Duration::from_secs(5));
    let hs = callers(&tx, peer.addr, &[1, 2, 3, 4]);
    assert_eq!(peer.take(4).len(), 4);
    peer.ack(0, 2);
    // Let the ack be read before the close.
    std::thread::sleep(Duration::from_millis(100));
    let _ = peer.conns.lock().unwrap()[0].shutdown(Shutdown::Both);
    let out: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, (r, took)) in out.iter().enumerate() {
        if i == 1 {
            assert!(r.is_ok(), "acked before the close: {r:?}");
        } else {
            assert!(matches!(r, Err(Error::Unreachable(_))), "caller {i}: {r:?}");
        }
        assert!(*took < Duration::from_secs(3), "caller {i} waited {took:?}");
    }
    let st = &tx.shared.stats;
    assert_eq!(st.failures.load(Ordering::Relaxed), 3);
    assert_eq!(st.acks_received.load(Ordering::Relaxed), 1);
}

#[test]
fn a_member_that_never_reads_times_out_every_sharing_caller_by_its_deadline() {
    // Nothing of 4 × 1 MiB is read: the writer's deadline breaks the
    // connection (half a frame may be in it) and each caller leaves by its
    // own deadline.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let keep: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let k2 = keep.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(&Preface::new([9; 16], b"", true).encode());
            k2.lock().unwrap().push(s);
        }
    });
    let ack_timeout = Duration::from_millis(500);
    let tx = shared_sender(ack_timeout);
    let hs: Vec<_> = (1..=4u64)
        .map(|id| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let p = Bytes::from(vec![b'x'; 1 << 20]);
                let hdr = FrameHeader::data(id, p.len(), FLAG_ACK_DELIVERY).encode();
                let t = Instant::now();
                let r = tx.send_one(addr, &hdr, &p, id, true);
                (r, t.elapsed())
            })
        })
        .collect();
    for h in hs {
        let (r, took) = h.join().unwrap();
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(took <= ack_timeout + SLACK, "took {took:?}");
    }
    assert_eq!(keep.lock().unwrap().len(), 1, "one shared connection");
}

#[test]
fn a_pooled_channel_sharing_connections_gets_every_ack_from_a_real_receiver() {
    use crate::config::ReplicationMode;
    use crate::transport::{AckMode, SendOptions};
    use crate::Channel;
    let (rx, got) = super::tests::counting_receiver();
    let mut cfg = Config::default();
    cfg.set("replicationMode", "pooled").unwrap();
    cfg.set("poolSharedConnection", "true").unwrap();
    assert!(cfg.pool_shared_connection);
    assert_eq!(cfg.replication_mode, ReplicationMode::Pooled);
    let tx = Channel::builder(cfg).start().unwrap();
    let to = [rx.local_addr()];
    let opts = SendOptions {
        ack: AckMode::Delivery,
        compress: false,
    };
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for i in 0..500u32 {
                    let p = Bytes::from(i.to_be_bytes().to_vec());
                    tx.send(&to, p, opts).unwrap();
                }
            });
        }
    });
    assert_eq!(got.load(Ordering::SeqCst), 2000);
    let st = tx.stats();
    assert_eq!(st.acks_received, 2000);
    assert_eq!(st.timeouts + st.failures, 0);
    tx.stop();
    rx.stop();
}
