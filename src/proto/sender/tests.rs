//! [`SenderConn`] against a simulated member on a virtual clock: the real
//! receiving state machine (`InboundConn`) and the receiver's dedup cursor
//! behind a simulated socket with a bounded buffer that the member may
//! stop reading. No sockets, no OS clock; every test is deterministic.

use super::*;
use crate::proto::dedup::{DedupTable, StreamCursor};
use crate::proto::inbound::{InEvent, InboundConn};
use crate::proto::secure::{SecureContext, SharedKey};
use crate::wire::compress::Inflater;
use crate::wire::frame::{batch_frames, FLAG_ACK_RECEIPT, FLAG_COMPRESSED, FLAG_SEQ};
use crate::wire::preface::CAP_SEQ;
use crate::wire::Preface;
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;

const ADDR: &str = "127.0.0.1:4000";

fn limits() -> SenderLimits {
    SenderLimits {
        queue: 64,
        window: 64,
        ack_timeout: Duration::from_millis(1000),
        max_retry_attempts: 1,
        connect_timeout: Duration::from_millis(500),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        keep_alive_timeout: Duration::ZERO,
        keep_alive_count: 0,
        ping_interval: Duration::ZERO,
        max_frame_size: 1 << 20,
        idle_release: Duration::from_secs(10),
        stall_after: Duration::from_millis(200),
        handshake_timeout: Duration::from_millis(300),
    }
}

/// The member's end of one connection.
struct Peer {
    conn: InboundConn,
    cursor: StreamCursor,
    /// Bytes in the socket, unread.
    unread: BytesMut,
    /// It read the sender's preface and answered it (a member that stops
    /// reading later has done so already).
    answered: bool,
}

/// One sender and the member it talks to.
struct Sim {
    now: Instant,
    tx: SenderConn<u64>,
    peer: Option<Peer>,
    table: DedupTable,
    /// The member reads its socket.
    reading: bool,
    /// The member answers connects.
    reachable: bool,
    /// The member acks what asks for it (else acks are withheld).
    acking: bool,
    /// Socket buffer: unread bytes beyond this are not accepted.
    sock_buf: usize,
    /// Capabilities the member's reply preface announces.
    peer_caps: u32,
    /// FLAG_SEQ frames the member received.
    markers_seen: usize,
    delivered: Vec<u64>,
    outcomes: BTreeMap<u64, Vec<Outcome>>,
    closes: Vec<String>,
    next_id: u64,
    /// The member's secure context (secure mode).
    peer_secure: Option<SecureContext>,
    /// A member refusing the handshake closes (else it stays silent).
    close_on_refusal: bool,
    /// Every byte the sender wrote.
    wire: Vec<u8>,
}

impl Sim {
    fn new(l: SenderLimits) -> Sim {
        let now = Instant::now();
        Sim {
            now,
            tx: SenderConn::new(ADDR.parse().unwrap(), l, Vec::new(), 42, now),
            peer: None,
            table: DedupTable::default(),
            reading: true,
            reachable: true,
            acking: true,
            sock_buf: 64 * 1024,
            peer_caps: Preface::new([2; 16], b"", true).caps,
            markers_seen: 0,
            delivered: Vec::new(),
            outcomes: BTreeMap::new(),
            closes: Vec::new(),
            next_id: 1,
            peer_secure: None,
            close_on_refusal: true,
            wire: Vec::new(),
        }
    }

    /// Both ends in shared-key mode, the sender with `tx_key`, the member
    /// with `rx_key`.
    fn secure(l: SenderLimits, tx_key: &str, rx_key: &str) -> Sim {
        let ctx = |k: &str| SecureContext::shared_key(&[SharedKey::from_hex(k).unwrap()]);
        let mut s = Sim::new(l);
        s.tx = SenderConn::new(ADDR.parse().unwrap(), l, Vec::new(), 42, s.now)
            .with_secure(Some(ctx(tx_key)));
        s.peer_secure = Some(ctx(rx_key));
        s
    }

    fn send(&mut self, ack: bool, deflate: bool, payload: &[u8]) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let flags = if ack { FLAG_ACK_RECEIPT } else { 0 };
        self.tx.handle_enqueue(
            self.now,
            Message {
                id,
                payload: Bytes::copy_from_slice(payload),
                flags,
                ack,
                deflate,
                token: id,
            },
        );
        id
    }

    /// Runs actions, writes, reads and replies until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(a) = self.tx.poll_action() {
                moved = true;
                match a {
                    Action::Connect => {
                        let p = Preface::new([1; 16], b"", false).encode();
                        self.tx.handle_connecting(self.now, &p);
                        if self.reachable {
                            self.tx.handle_connected(self.now);
                            let mut reply = Preface::new([2; 16], b"", true);
                            reply.caps = self.peer_caps;
                            let mut conn = InboundConn::new(reply, 1 << 20);
                            if let Some(ctx) = &self.peer_secure {
                                conn.set_secure(SecureStream::accept(ctx).unwrap());
                            }
                            self.peer = Some(Peer {
                                conn,
                                cursor: StreamCursor::default(),
                                unread: BytesMut::new(),
                                answered: false,
                            });
                        }
                    }
                    Action::Close(why) => {
                        self.closes.push(why);
                        self.peer = None;
                    }
                }
            }
            while let Some((id, tok, o)) = self.tx.poll_outcome() {
                assert_eq!(id, tok, "token travels with its message");
                self.outcomes.entry(id).or_default().push(o);
                moved = true;
            }
            if let Some(p) = self.peer.as_mut() {
                if self.tx.wants_write() && p.unread.len() < self.sock_buf {
                    let room = self.sock_buf - p.unread.len();
                    let mut bytes = Vec::new();
                    let mut b = Batcher::new(1);
                    let (ctl, frames) = self.tx.poll_transmit(&mut b, 16);
                    bytes.extend_from_slice(ctl);
                    for f in frames {
                        bytes.extend_from_slice(f.hdr);
                        bytes.extend_from_slice(&f.payload[f.skip..]);
                    }
                    let n = bytes.len().min(room);
                    if n > 0 {
                        self.wire.extend_from_slice(&bytes[..n]);
                        p.unread.extend_from_slice(&bytes[..n]);
                        self.tx.handle_written(self.now, n);
                        moved = true;
                    }
                }
            }
            let answer = self.peer.as_ref().is_some_and(|p| !p.answered);
            if (self.reading || answer) && self.read() {
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("simulation did not settle");
    }

    /// The member reads and answers; true if anything happened.
    fn read(&mut self) -> bool {
        let Some(p) = self.peer.as_mut() else {
            return false;
        };
        if p.unread.is_empty() {
            return false;
        }
        p.answered = true;
        let mut inflater = Inflater::new(1 << 24);
        let mut buf = if p.conn.is_secure() {
            let r = p.conn.open_secure(&p.unread);
            p.unread.clear();
            if let Err(e) = r {
                self.closes.push(format!("member: {e}"));
                if self.close_on_refusal {
                    self.peer = None;
                    self.tx.handle_broken(self.now, "closed by member");
                }
                return true;
            }
            p.conn.take_plain()
        } else {
            std::mem::take(&mut p.unread)
        };
        loop {
            let ev = p.conn.poll(&mut buf).expect("valid stream");
            let Some(ev) = ev else { break };
            let frames: Vec<(u64, u8, Bytes)> = match ev {
                InEvent::Open(_) | InEvent::GoAway(_) => continue,
                InEvent::Data(f) => vec![(f.header.id, f.header.flags, f.payload)],
                InEvent::Batch(f) => {
                    assert!(f.header.flags & FLAG_COMPRESSED != 0);
                    let body = inflater.inflate(&f.payload).unwrap();
                    batch_frames(&body, 1 << 20)
                        .map(|r| r.map(|(h, p)| (h.id, h.flags, p)).unwrap())
                        .collect()
                }
            };
            for (id, flags, payload) in frames {
                if flags & FLAG_SEQ != 0 {
                    self.markers_seen += 1;
                    // An older receiver does not know the flag: a message.
                    if self.peer_caps & CAP_SEQ != 0 {
                        p.cursor.on_marker(&self.table, [1; 16], &payload).unwrap();
                        continue;
                    }
                }
                if p.cursor.accept() {
                    self.delivered.push(id);
                }
                if flags & FLAG_ACK_RECEIPT != 0 && self.acking {
                    p.conn.ack(id);
                }
            }
        }
        if p.conn.is_secure() {
            p.conn.put_plain(buf);
        } else {
            p.unread = buf;
        }
        let out = std::mem::take(p.conn.take_output());
        if !out.is_empty() {
            let mut b = BytesMut::from(&out[..]);
            self.tx.handle_replies(self.now, &mut b);
        }
        true
    }

    /// Moves the virtual clock by `d`, firing the sender's timers on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            match self.tx.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.tx.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
        self.tx.handle_timeout(self.now);
        self.settle();
    }

    fn one_outcome_each(&self, ids: impl Iterator<Item = u64>) {
        for id in ids {
            let o = self.outcomes.get(&id).map_or(0, |v| v.len());
            assert_eq!(o, 1, "message {id}: {o} outcomes");
        }
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.values().flatten().filter(|o| f(o)).count()
    }
}

#[test]
fn messages_flow_and_each_gets_one_outcome() {
    let mut s = Sim::new(limits());
    let ids: Vec<u64> = (0..10).map(|k| s.send(k % 2 == 0, false, b"x")).collect();
    s.settle();
    s.one_outcome_each(ids.iter().copied());
    assert_eq!(s.count(|o| matches!(o, Ok(Delivery::Acked))), 5);
    assert_eq!(s.count(|o| matches!(o, Ok(Delivery::Sent))), 5);
    assert_eq!(s.delivered, ids);
    assert_eq!(s.tx.load(), 0);
}

#[test]
fn member_that_stops_reading_times_out_by_the_deadline_and_is_closed() {
    let mut s = Sim::new(limits());
    s.reading = false;
    s.sock_buf = 1000;
    let ids: Vec<u64> = (0..40).map(|_| s.send(true, false, &[7; 100])).collect();
    s.settle();
    assert!(s.outcomes.is_empty(), "nothing decided before the deadline");
    s.advance(Duration::from_millis(999));
    assert!(s.outcomes.is_empty());
    s.advance(Duration::from_millis(2));
    s.one_outcome_each(ids.iter().copied());
    assert_eq!(s.count(|o| matches!(o, Err(Error::Timeout))), 40);
    assert!(
        s.closes.iter().any(|c| c.contains("write deadline")),
        "a half-written frame past its deadline closes the connection: {:?}",
        s.closes
    );
    assert_eq!(s.tx.load(), 0);
}

#[test]
fn full_window_stops_writing_until_acks_arrive() {
    let mut l = limits();
    l.window = 4;
    let mut s = Sim::new(l);
    s.acking = false;
    let ids: Vec<u64> = (0..10).map(|_| s.send(true, false, b"m")).collect();
    s.settle();
    assert_eq!(s.delivered.len(), 4, "only the window went out");
    assert!(!s.tx.wants_write());
    s.acking = true;
    // Acks for the first four (withheld until now) let the rest go.
    let p = s.peer.as_mut().unwrap();
    for id in 1..=4 {
        p.conn.ack(id);
    }
    let out = std::mem::take(p.conn.take_output());
    s.tx.handle_replies(s.now, &mut BytesMut::from(&out[..]));
    s.settle();
    assert_eq!(s.delivered, ids);
    s.one_outcome_each(ids.iter().copied());
    assert_eq!(s.count(|o| matches!(o, Ok(Delivery::Acked))), 10);
}

#[test]
fn full_queue_fails_only_that_members_messages() {
    let mut l = limits();
    l.queue = 8;
    let mut stuck = Sim::new(l);
    stuck.reachable = false; // connect never completes: nothing drains
    let mut fine = Sim::new(l);
    let mut accepted = 0;
    for _ in 0..20 {
        let a = stuck.send(false, false, b"a");
        fine.send(false, false, b"b");
        stuck.settle();
        fine.settle();
        accepted += usize::from(!stuck.outcomes.contains_key(&a));
    }
    assert_eq!(accepted, 8, "the stuck member takes its queue's worth");
    assert_eq!(stuck.count(|o| matches!(o, Err(Error::QueueFull))), 12);
    assert_eq!(fine.delivered.len(), 20, "the other member is untouched");
    assert_eq!(fine.count(|o| matches!(o, Ok(Delivery::Sent))), 20);
}

#[test]
fn reconnect_resends_unacked_and_the_receiver_delivers_once() {
    let mut s = Sim::new(limits());
    s.acking = false; // delivered, but the acks are lost with the connection
    let ids: Vec<u64> = (0..10).map(|_| s.send(true, false, b"r")).collect();
    s.settle();
    assert_eq!(s.delivered, ids);
    s.acking = true;
    s.peer = None;
    s.tx.handle_broken(s.now, "reset");
    s.advance(Duration::from_millis(20)); // backoff, reconnect, resend
    assert_eq!(s.tx.take_counters().resends, 10);
    assert_eq!(s.delivered, ids, "each message delivered exactly once");
    s.one_outcome_each(ids.iter().copied());
    assert_eq!(s.count(|o| matches!(o, Ok(Delivery::Acked))), 10);
}

#[test]
fn resend_of_a_compressed_batch_after_reconnect_delivers_once() {
    let mut s = Sim::new(limits());
    s.acking = false;
    let ids: Vec<u64> = (0..30)
        .map(|k| {
            s.send(
                k % 3 != 0,
                true,
                format!("session-{k} {}", "z".repeat(200)).as_bytes(),
            )
        })
        .collect();
    s.settle();
    assert_eq!(s.delivered, ids);
    assert!(
        s.tx.take_counters().compressed > 0,
        "went out in BATCH frames"
    );
    s.acking = true;
    s.peer = None;
    s.tx.handle_broken(s.now, "reset");
    let more: Vec<u64> = (0..5).map(|_| s.send(true, true, &[9; 300])).collect();
    s.advance(Duration::from_millis(20));
    let all: Vec<u64> = ids.iter().chain(&more).copied().collect();
    assert_eq!(s.delivered, all, "no duplicate, nothing lost, in order");
    s.one_outcome_each(all.iter().copied());
}

#[test]
fn a_message_that_expired_unwritten_leaves_no_false_duplicate() {
    let mut s = Sim::new(limits());
    s.reachable = false;
    let lost: Vec<u64> = (0..3).map(|_| s.send(true, false, b"l")).collect();
    s.advance(Duration::from_millis(1001));
    assert_eq!(s.count(|o| matches!(o, Err(Error::Timeout))), 3);
    s.reachable = true;
    let later: Vec<u64> = (0..3).map(|_| s.send(true, false, b"n")).collect();
    s.advance(Duration::from_millis(200));
    assert_eq!(s.delivered, later, "numbers skipped, announced by a marker");
    s.one_outcome_each(lost.iter().chain(&later).copied());
}

#[test]
fn stop_with_messages_in_flight_reports_each_once() {
    let mut s = Sim::new(limits());
    s.reading = false;
    s.sock_buf = 300;
    let ids: Vec<u64> = (0..20).map(|_| s.send(true, false, &[1; 50])).collect();
    s.settle();
    assert!(s.tx.inflight.len() >= 2, "some written, awaiting acks");
    assert!(s.tx.head_off > 0, "one half written");
    assert!(s.outcomes.is_empty());
    s.tx.handle_shutdown();
    s.settle();
    s.one_outcome_each(ids.iter().copied());
    assert_eq!(s.count(|o| matches!(o, Err(Error::Shutdown))), 20);
    assert!(s.closes.iter().any(|c| c == "shutdown"));
    assert_eq!(s.tx.load(), 0);
}

#[test]
fn unanswered_keepalive_ping_breaks_the_connection() {
    let mut l = limits();
    l.ping_interval = Duration::from_millis(100);
    let mut s = Sim::new(l);
    s.send(false, false, b"hello");
    s.settle();
    s.reading = false;
    s.advance(Duration::from_millis(150));
    assert!(s.closes.is_empty(), "ping sent, not yet due");
    s.advance(Duration::from_millis(1000));
    assert!(
        s.closes.iter().any(|c| c.contains("keepalive")),
        "{:?}",
        s.closes
    );
}

#[test]
fn quiet_connection_closes_after_keepalive_timeout_and_state_is_released() {
    let mut l = limits();
    l.keep_alive_timeout = Duration::from_millis(300);
    let mut s = Sim::new(l);
    s.send(true, false, b"x");
    s.settle();
    s.advance(Duration::from_millis(301));
    assert_eq!(s.closes, vec!["idle".to_string()]);
    assert_eq!(s.tx.state(), State::Idle);
    assert!(!s.tx.is_reclaimable(s.now));
    s.advance(Duration::from_secs(10));
    assert!(s.tx.is_reclaimable(s.now));
}

#[test]
fn frames_wait_for_the_reply_preface() {
    let mut s = Sim::new(limits());
    s.reading = false;
    s.tx.handle_connecting(s.now, b"PREFACE");
    s.tx.handle_connected(s.now);
    s.send(true, false, b"early");
    let mut b = Batcher::new(1);
    let (ctl, frames) = s.tx.poll_transmit(&mut b, 16);
    assert_eq!(ctl, b"PREFACE");
    assert_eq!(frames.count(), 0, "no frame before the receiver answered");
    s.tx.handle_written(s.now, 7);
    assert!(!s.tx.wants_write(), "nothing to write until the reply");
}

#[test]
fn an_older_receiver_gets_no_sequence_markers() {
    let mut s = Sim::new(limits());
    s.peer_caps &= !CAP_SEQ;
    let ids: Vec<u64> = (0..5).map(|i| s.send(i % 2 == 0, false, b"m")).collect();
    s.settle();
    assert_eq!(
        s.markers_seen, 0,
        "a marker would be delivered as a message"
    );
    assert_eq!(s.delivered, ids);
    s.one_outcome_each(ids.iter().copied());
    // A receiver that understands them gets them, on the next connection
    // too (the member was upgraded meanwhile).
    s.peer = None;
    s.tx.handle_broken(s.now, "gone");
    s.peer_caps |= CAP_SEQ;
    s.delivered.clear();
    let more: Vec<u64> = (0..3).map(|_| s.send(true, false, b"n")).collect();
    s.advance(Duration::from_millis(200));
    assert!(s.markers_seen >= 1, "the stream is numbered again");
    assert_eq!(s.delivered, more);
}

#[test]
fn member_idle_release_is_the_configured_time() {
    let mut c = crate::config::Config::default();
    c.set("memberIdleRelease", "2500").unwrap();
    c.set("keepAliveTimeout", "300").unwrap();
    let mut s = Sim::new(SenderLimits::from_config(&c));
    s.send(true, false, b"x");
    s.settle();
    s.advance(Duration::from_millis(301));
    assert_eq!(s.tx.state(), State::Idle);
    let since = s.tx.idle_since;
    assert!(!s.tx.is_reclaimable(since + Duration::from_millis(2499)));
    assert!(s.tx.is_reclaimable(since + Duration::from_millis(2500)));
}

#[test]
fn unreachable_member_fails_after_retries_and_connect_deadline() {
    let mut l = limits();
    l.ack_timeout = Duration::from_secs(60);
    let mut s = Sim::new(l);
    s.reachable = false;
    let id = s.send(true, false, b"u");
    s.advance(Duration::from_millis(499));
    assert!(s.outcomes.is_empty());
    // First connect times out (500 ms): resend once; the second attempt
    // times out too: unreachable.
    s.advance(Duration::from_secs(2));
    s.one_outcome_each([id].into_iter());
    assert!(matches!(s.outcomes[&id][0], Err(Error::Unreachable(_))));
}

#[test]
fn a_full_member_counts_as_stalled_only_while_nothing_goes_out() {
    let mut l = limits();
    l.queue = 4;
    let mut s = Sim::new(l);
    s.reading = false;
    s.sock_buf = 0; // the socket takes nothing
    for _ in 0..4 {
        s.send(false, false, b"s");
    }
    s.settle();
    assert!(s.tx.is_full());
    assert!(!s.tx.is_stalled(s.now), "full, but just started");
    s.advance(Duration::from_millis(199));
    assert!(!s.tx.is_stalled(s.now));
    s.advance(Duration::from_millis(2));
    assert!(s.tx.is_stalled(s.now), "nothing out for stall_after");
    s.sock_buf = 1 << 16;
    s.settle();
    assert!(!s.tx.is_full() && !s.tx.is_stalled(s.now), "writing again");
}

#[test]
fn a_member_that_left_is_released_once_nothing_is_owed() {
    let mut s = Sim::new(limits());
    s.acking = false;
    let id = s.send(true, false, b"last");
    s.settle();
    s.tx.handle_leave(s.now);
    s.settle();
    assert!(s.closes.is_empty(), "a message is still owed an outcome");
    assert!(!s.tx.is_reclaimable(s.now));
    s.advance(Duration::from_millis(1001));
    s.one_outcome_each([id].into_iter());
    assert_eq!(s.closes, vec!["member left".to_string()]);
    assert!(s.tx.is_reclaimable(s.now), "released at once, no idle wait");
}

const K1: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const K2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secure_sender_writes_only_records_and_every_message_is_acked_once() {
    let mut s = Sim::secure(limits(), K1, K1);
    let marker = b"PLAINTEXT-MARKER-in-every-payload";
    let ids: Vec<u64> = (0..40)
        .map(|k| s.send(k % 2 == 0, k % 5 == 0, &marker.repeat(1 + k as usize % 3)))
        .collect();
    s.settle();
    assert!(s.tx.is_secured());
    s.one_outcome_each(ids.iter().copied());
    assert_eq!(s.count(|o| o.is_ok()), 40);
    assert_eq!(s.delivered, ids);
    assert!(!s.wire.is_empty() && !contains(&s.wire, marker));
    assert!(s.wire.starts_with(b"SRPN"));
    // A large message spans several records and several write batches.
    let big = s.send(true, false, &vec![7u8; 300 * 1024]);
    s.settle();
    assert!(matches!(s.outcomes[&big][..], [Ok(Delivery::Acked)]));
}

/// The S6 `attr-100k` stall (15 s, one `ackTimeout`, per lost ack): a
/// write batch of records larger than the socket takes goes out in parts,
/// and the member opens, delivers and acks the first frames before the
/// rest is written. Those frames must already count as written, else their
/// acks find nothing to acknowledge and the messages time out.
#[test]
fn secure_acks_for_frames_of_a_batch_still_being_written_are_not_lost() {
    let mut s = Sim::secure(limits(), K1, K1);
    s.sock_buf = 48 * 1024;
    let ids: Vec<u64> = (0..12)
        .map(|_| s.send(true, false, &[5u8; 40 * 1024]))
        .collect();
    s.settle();
    assert_eq!(s.delivered, ids);
    for id in &ids {
        assert!(
            matches!(
                s.outcomes.get(id).map(Vec::as_slice),
                Some([Ok(Delivery::Acked)])
            ),
            "message {id} acked at once, not left to time out: {:?}",
            s.outcomes.get(id)
        );
    }
    assert_eq!(s.tx.inflight.len(), 0);
}

/// A deadline passing while the front frames sit in records not fully
/// written cannot drop them from the queue (the written-bytes count would
/// then land on the frames behind): the member is not reading, so the
/// connection closes, as for a frame written in part in clear text.
#[test]
fn secure_overdue_frames_in_unwritten_records_close_the_connection() {
    let mut s = Sim::secure(limits(), K1, K1);
    let first = s.send(true, false, b"first");
    s.settle();
    assert!(s.tx.is_secured());
    assert!(matches!(s.outcomes[&first][..], [Ok(Delivery::Acked)]));
    s.reading = false;
    s.sock_buf = s.peer.as_ref().map_or(0, |p| p.unread.len()) + 1000;
    let ids: Vec<u64> = (0..3).map(|_| s.send(true, false, &[6u8; 4096])).collect();
    s.settle();
    assert!(s.tx.frames_in_records());
    s.advance(Duration::from_millis(1100));
    assert!(
        s.closes.iter().any(|c| c.contains("write deadline passed")),
        "closes: {:?}",
        s.closes
    );
    s.one_outcome_each(ids.iter().copied());
    assert_eq!(s.count(|o| matches!(o, Err(Error::Timeout))), 3);
}

#[test]
fn secure_sender_survives_a_reconnect_with_a_fresh_session() {
    let mut s = Sim::secure(limits(), K1, K1);
    let a = s.send(true, false, b"one");
    s.settle();
    s.tx.handle_broken(s.now, "test");
    s.peer = None;
    s.advance(Duration::from_millis(50));
    let b = s.send(true, false, b"two");
    s.advance(Duration::from_millis(50));
    assert!(matches!(s.outcomes[&a][..], [Ok(Delivery::Acked)]));
    assert!(matches!(s.outcomes[&b][..], [Ok(Delivery::Acked)]));
    assert_eq!(s.delivered, vec![a, b]);
}

#[test]
fn member_with_another_key_gets_only_the_hello_and_nothing_is_delivered() {
    let mut s = Sim::secure(limits(), K1, K2);
    let ids: Vec<u64> = (0..5).map(|_| s.send(true, false, b"secret")).collect();
    s.advance(Duration::from_millis(1500));
    s.one_outcome_each(ids.iter().copied());
    assert_eq!(s.count(|o| o.is_ok()), 0);
    assert!(s.delivered.is_empty());
    assert!(
        s.closes.iter().any(|c| c.contains("does not prove")),
        "{:?}",
        s.closes
    );
    // Only hellos (8-byte header + 48-byte Noise message) went out.
    assert!(!contains(&s.wire, b"secret"));
    assert_eq!(s.wire.len() % 56, 0, "{} bytes", s.wire.len());
}

#[test]
fn silent_member_fails_the_handshake_by_its_deadline_and_is_counted() {
    let mut s = Sim::secure(limits(), K1, K2);
    s.close_on_refusal = false;
    let id = s.send(true, false, b"x");
    s.settle();
    assert!(!s.tx.is_secured());
    s.advance(Duration::from_millis(350));
    assert!(
        s.closes.iter().any(|c| c.contains("handshake timed out")),
        "{:?}",
        s.closes
    );
    assert!(s.tx.take_counters().secure_refusals >= 1);
    s.advance(Duration::from_millis(1000));
    s.one_outcome_each([id].into_iter());
    assert!(s.delivered.is_empty());
}

#[test]
fn quiet_sent_messages_are_counted_not_reported_and_the_rest_still_are() {
    let mut s = Sim::new(limits());
    // Odd tokens are "told to nobody"; acked messages always report.
    s.tx = SenderConn::new(ADDR.parse().unwrap(), limits(), Vec::new(), 42, s.now)
        .with_quiet_sent(|t: &u64| t % 2 == 1);
    let ids: Vec<u64> = (0..12).map(|k| s.send(k % 3 == 0, false, b"q")).collect();
    s.settle();
    assert_eq!(s.delivered, ids, "every message still reaches the member");
    let quiet: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&id| id % 2 == 1 && (id - 1) % 3 != 0)
        .collect();
    let loud: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !quiet.contains(id))
        .collect();
    s.one_outcome_each(loud.iter().copied());
    for id in &quiet {
        assert!(!s.outcomes.contains_key(id), "message {id} reported");
    }
    assert_eq!(s.tx.take_quiet_sent(), quiet.len());
    assert_eq!(s.tx.take_quiet_sent(), 0, "the count is taken once");
    assert_eq!(s.tx.load(), 0);
}
