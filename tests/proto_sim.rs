//! The sans-IO protocol pieces driven against each other on a virtual
//! clock, no sockets: a sender (frames out, `OutboundConn` + `AckTracker`)
//! and a receiver (`InboundConn`) over a simulated link that delivers bytes
//! in odd chunks, can cut the connection mid-frame, and can stall. Checks
//! partial reads, many frames per read, loss of a connection mid-frame with
//! resend on a new connection, ack timeouts, and FAIL paths: every message
//! ends with exactly one outcome.

use bytes::BytesMut;
use sessionrepl::__internal::proto::inbound::{InEvent, InboundConn};
use sessionrepl::__internal::proto::outbound::{OutboundConn, Reply};
use sessionrepl::__internal::proto::AckTracker;
use sessionrepl::__internal::wire::frame::{ack_ranges, FrameHeader, FLAG_ACK_DELIVERY};
use sessionrepl::__internal::wire::Preface;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Acked,
    Failed(String),
    TimedOut,
}

struct Conn {
    rx: InboundConn,
    tx: OutboundConn,
    to_rx: BytesMut,
    to_tx: BytesMut,
    /// What the receiver has read and not yet consumed.
    rx_buf: BytesMut,
    /// What the sender has read and not yet consumed.
    tx_buf: BytesMut,
}

impl Conn {
    fn open() -> Conn {
        let mut to_rx = BytesMut::new();
        to_rx.extend_from_slice(&Preface::new([1; 16], b"", false).encode());
        Conn {
            rx: InboundConn::new(Preface::new([2; 16], b"", true), 1 << 20),
            tx: OutboundConn::new(Vec::new()),
            to_rx,
            to_tx: BytesMut::new(),
            rx_buf: BytesMut::new(),
            tx_buf: BytesMut::new(),
        }
    }
}

struct Sim {
    now: Instant,
    conn: Conn,
    queue: VecDeque<(u64, u32)>, // (id, attempts)
    tracker: AckTracker<u32>,
    outcomes: BTreeMap<u64, Vec<Outcome>>,
    delivered: Vec<u64>,
    ack_timeout: Duration,
    max_attempts: u32,
    /// The receiver's listener is stuck (no acks after delivery).
    stalled: bool,
}

impl Sim {
    fn new(n: u64) -> Sim {
        Sim {
            now: Instant::now(),
            conn: Conn::open(),
            queue: (1..=n).map(|id| (id, 0)).collect(),
            tracker: AckTracker::new(),
            outcomes: BTreeMap::new(),
            delivered: Vec::new(),
            ack_timeout: Duration::from_millis(100),
            max_attempts: 1,
            stalled: false,
        }
    }

    fn outcome(&mut self, id: u64, o: Outcome) {
        self.outcomes.entry(id).or_default().push(o);
    }

    /// Sender writes up to `n` queued frames.
    fn send(&mut self, n: usize) {
        for _ in 0..n {
            let Some((id, attempts)) = self.queue.pop_front() else {
                return;
            };
            let payload = format!("msg-{id}").into_bytes();
            let c = &mut self.conn;
            c.to_rx.extend_from_slice(
                &FrameHeader::data(id, payload.len(), FLAG_ACK_DELIVERY).encode(),
            );
            c.to_rx.extend_from_slice(&payload);
            self.tracker
                .track(id, self.now + self.ack_timeout, attempts);
        }
    }

    /// The link moves at most `chunk` bytes each way; the receiver handles them.
    fn pump(&mut self, chunk: usize) {
        let c = &mut self.conn;
        let n = chunk.min(c.to_rx.len());
        let moved = c.to_rx.split_to(n);
        c.rx_buf.extend_from_slice(&moved);
        while let Some(ev) = c.rx.poll(&mut c.rx_buf).unwrap() {
            if let InEvent::Data(f) = ev {
                let id = f.header.id;
                self.delivered.push(id);
                if self.stalled {
                    continue;
                }
                if id % 7 == 0 {
                    c.rx.fail(id, "listener refused");
                } else {
                    c.rx.ack(id);
                }
            }
        }
        let out: Vec<u8> = c.rx.take_output().drain(..).collect();
        c.to_tx.extend_from_slice(&out);
        let m = chunk.min(c.to_tx.len());
        let back = c.to_tx.split_to(m);
        c.tx_buf.extend_from_slice(&back);
        let mut results = Vec::new();
        while let Some(r) = c.tx.poll(&mut c.tx_buf).unwrap() {
            match r {
                Reply::Ack(p) => {
                    for (f, n) in ack_ranges(&p) {
                        self.tracker
                            .ack_range(f, n, |id, _| results.push((id, Outcome::Acked)));
                    }
                }
                Reply::Fail { id, reason } if self.tracker.take(id).is_some() => {
                    results.push((id, Outcome::Failed(reason)));
                }
                _ => {}
            }
        }
        for (id, o) in results {
            self.outcome(id, o);
        }
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        let mut expired = Vec::new();
        self.tracker.expire(self.now, |id, _| expired.push(id));
        for id in expired {
            self.outcome(id, Outcome::TimedOut);
        }
    }

    /// The connection dies (mid-frame, bytes in flight lost): unacked
    /// messages are resent on a new connection, once.
    fn lose_connection(&mut self) {
        let mut again = Vec::new();
        self.tracker
            .drain_all(|id, attempts| again.push((id, attempts)));
        for (id, attempts) in again.into_iter().rev() {
            if attempts < self.max_attempts {
                self.queue.push_front((id, attempts + 1));
            } else {
                self.outcome(id, Outcome::Failed("unreachable".into()));
            }
        }
        self.conn = Conn::open();
    }
}

fn assert_one_outcome_each(sim: &Sim, n: u64) {
    for id in 1..=n {
        let o = sim
            .outcomes
            .get(&id)
            .unwrap_or_else(|| panic!("no outcome for {id}"));
        assert_eq!(o.len(), 1, "message {id} has outcomes {o:?}");
    }
}

#[test]
fn partial_reads_many_frames_per_read_acks_and_fails() {
    for chunk in [1, 7, 16, 33, 1000, 1 << 16] {
        let mut sim = Sim::new(100);
        sim.send(100);
        for _ in 0..20_000 {
            sim.pump(chunk);
            if sim.tracker.is_empty() {
                break;
            }
        }
        assert_one_outcome_each(&sim, 100);
        for id in 1..=100u64 {
            let want = if id % 7 == 0 {
                Outcome::Failed("listener refused".into())
            } else {
                Outcome::Acked
            };
            assert_eq!(sim.outcomes[&id][0], want, "chunk {chunk} id {id}");
        }
        assert_eq!(sim.delivered, (1..=100).collect::<Vec<_>>(), "in order");
    }
}

#[test]
fn connection_lost_mid_frame_resends_on_a_new_connection() {
    let mut sim = Sim::new(50);
    sim.send(50);
    // Deliver part of the stream, cutting inside a frame.
    sim.pump(300);
    let acked_before = sim.outcomes.len();
    sim.lose_connection();
    sim.send(50);
    for _ in 0..1000 {
        sim.pump(64);
        if sim.tracker.is_empty() && sim.queue.is_empty() {
            break;
        }
    }
    assert!(
        acked_before > 0 && acked_before < 50,
        "cut mid-way: {acked_before}"
    );
    assert_one_outcome_each(&sim, 50);
    // At-least-once: every message was delivered; the resent ones twice at most.
    for id in 1..=50u64 {
        let n = sim.delivered.iter().filter(|&&d| d == id).count();
        assert!((1..=2).contains(&n), "message {id} delivered {n} times");
    }
}

#[test]
fn second_loss_exhausts_retries_and_reports_unreachable() {
    let mut sim = Sim::new(10);
    sim.stalled = true; // nothing gets acked
    sim.send(10);
    sim.pump(1 << 16);
    sim.lose_connection();
    sim.send(10);
    sim.pump(1 << 16);
    sim.lose_connection();
    assert_one_outcome_each(&sim, 10);
    assert!(sim
        .outcomes
        .values()
        .all(|o| o[0] == Outcome::Failed("unreachable".into())));
}

#[test]
fn stalled_listener_times_out_on_the_virtual_clock() {
    let mut sim = Sim::new(5);
    sim.stalled = true;
    sim.send(5);
    sim.pump(1 << 16);
    sim.tick(Duration::from_millis(99));
    assert!(sim.outcomes.is_empty(), "nothing expires early");
    sim.tick(Duration::from_millis(1));
    assert_one_outcome_each(&sim, 5);
    assert!(sim.outcomes.values().all(|o| o[0] == Outcome::TimedOut));
    // A late ack after the timeout changes nothing.
    sim.stalled = false;
    sim.pump(1 << 16);
    assert_one_outcome_each(&sim, 5);
}
