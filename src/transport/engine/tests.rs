//! The sender engine against the in-memory driver on a virtual clock.

use super::send::SendEngine;
use crate::config::Config;
use crate::driver::fake::FakeDriver;
use crate::driver::Driver;
use crate::error::Error;
use crate::transport::link::PumpHandle;
use crate::transport::pump::{Dest, Outgoing};
use crate::transport::{Outcome, Shared};
use crate::wire::frame::FLAG_ACK_RECEIPT;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<Vec<(u64, SocketAddr, String)>>>;

struct NoWake;
impl crate::queue::Wake for NoWake {
    fn wake(&self) {}
}

fn engine(cfg: Config, mut d: FakeDriver) -> (SendEngine<FakeDriver>, PumpHandle, Seen) {
    // Each member answers the preface, as a receiver does.
    d.greeting = crate::wire::Preface::new([1; 16], b"", true).encode();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let listener: crate::transport::OutcomeListener =
        Arc::new(move |id, to, o: &Outcome| s2.lock().unwrap().push((id, to, format!("{o:?}"))));
    let shared = Arc::new(Shared::new(cfg, [9; 16], Some(listener)));
    let h = PumpHandle::new(shared, Box::new(NoWake), false);
    let e = SendEngine::new(d, h.clone_ref());
    (e, h, seen)
}

fn cfg() -> Config {
    let mut c = Config::default();
    c.idle.spin = Duration::ZERO;
    c.ack_timeout = Duration::from_millis(1000);
    c
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn msg(id: u64, dest: Dest, body: &'static [u8], flags: u8) -> Outgoing {
    Outgoing {
        id,
        dest,
        payload: Bytes::from_static(body),
        flags,
        ticket: None,
    }
}

fn position(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn frames_go_out_in_order_and_each_is_reported_sent() {
    let (mut e, h, seen) = engine(cfg(), FakeDriver::new(1 << 20));
    let a = addr(4001);
    for (id, body) in [
        (1, &b"alpha-payload"[..]),
        (2, b"beta-payload"),
        (3, b"gamma-payload"),
    ] {
        h.send(msg(id, Dest::One(a), body, 0)).unwrap();
    }
    for _ in 0..20 {
        e.turn(false);
    }
    let d = e.driver();
    let t = d.token_of(a).expect("connected");
    let w = &d.socks[&t].written;
    let p: Vec<usize> = [&b"alpha-payload"[..], b"beta-payload", b"gamma-payload"]
        .iter()
        .map(|b| position(w, b).expect("payload written"))
        .collect();
    assert!(p[0] < p[1] && p[1] < p[2], "out of order: {p:?}");
    let seen = seen.lock().unwrap();
    let ids: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(
        seen.iter().all(|s| s.1 == a && s.2 == "Ok(Sent)"),
        "{seen:?}"
    );
}

#[test]
fn a_member_that_takes_nothing_times_out_by_its_deadline_and_the_other_is_not_delayed() {
    let (stuck, fine) = (addr(4002), addr(4003));
    let mut d = FakeDriver::new(1 << 20);
    d.room_of.insert(stuck, 0);
    let (mut e, h, seen) = engine(cfg(), d);
    let start = e.driver().now();
    let dest = Dest::Many(Arc::from(vec![stuck, fine]));
    h.send(msg(7, dest, b"to-both-payload", FLAG_ACK_RECEIPT))
        .unwrap();
    let mut fine_written_at: Option<Instant> = None;
    let mut stuck_outcome: Option<(Instant, String)> = None;
    for _ in 0..100_000 {
        // Deadlines fire at the start of a turn, before its wait.
        let before = e.driver().now();
        e.turn(false);
        let now = e.driver().now();
        if fine_written_at.is_none() {
            let d = e.driver();
            if let Some(t) = d.token_of(fine) {
                if position(&d.socks[&t].written, b"to-both-payload").is_some() {
                    fine_written_at = Some(now);
                }
            }
        }
        if let Some(s) = seen.lock().unwrap().iter().find(|s| s.1 == stuck) {
            stuck_outcome = Some((before, s.2.clone()));
        }
        if stuck_outcome.is_some() || now > start + Duration::from_secs(10) {
            break;
        }
    }
    let fine_at = fine_written_at.expect("the healthy member got its frame");
    assert!(
        fine_at - start < Duration::from_millis(10),
        "{:?}",
        fine_at - start
    );
    let (at, o) = stuck_outcome.expect("the stuck member got an outcome");
    assert_eq!(o, format!("{:?}", Err::<(), _>(Error::Timeout)));
    let took = at - start;
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(1010),
        "timed out after {took:?}, not by ackTimeout"
    );
}

#[test]
fn an_idle_engine_sleeps_instead_of_spinning() {
    let (mut e, _h, _seen) = engine(cfg(), FakeDriver::new(1 << 20));
    for _ in 0..10 {
        e.turn(false);
    }
    let waits = &e.driver().waits;
    assert!(
        waits[2..].iter().all(|w| *w >= Duration::from_millis(200)),
        "{waits:?}"
    );
}

#[test]
fn a_refused_connect_fails_the_message_as_unreachable_without_blocking_others() {
    let (down, up) = (addr(4004), addr(4005));
    let mut d = FakeDriver::new(1 << 20);
    d.refused.insert(down);
    let mut c = cfg();
    c.max_retry_attempts = 0;
    let (mut e, h, seen) = engine(c, d);
    h.send(msg(1, Dest::One(down), b"lost-payload", 0)).unwrap();
    h.send(msg(2, Dest::One(up), b"kept-payload", 0)).unwrap();
    let start = e.driver().now();
    while seen.lock().unwrap().len() < 2 && e.driver().now() < start + Duration::from_secs(60) {
        e.turn(false);
    }
    let seen = seen.lock().unwrap();
    let of = |a| seen.iter().find(|s| s.1 == a).map(|s| s.2.clone());
    assert_eq!(of(up).as_deref(), Some("Ok(Sent)"));
    let o = of(down).expect("an outcome for the unreachable member");
    assert!(o.starts_with("Err("), "{o}");
}

#[test]
fn a_full_socket_resumes_when_the_peer_reads_and_an_ack_completes_the_message() {
    let a = addr(4006);
    let mut c = cfg();
    c.ack_timeout = Duration::from_secs(60);
    let (mut e, h, seen) = engine(c, FakeDriver::new(64));
    let body: &'static [u8] = &[b'x'; 4096];
    h.send(msg(5, Dest::One(a), body, FLAG_ACK_RECEIPT))
        .unwrap();
    for _ in 0..20 {
        e.turn(false);
    }
    let t = e.driver().token_of(a).expect("connected");
    assert_eq!(
        e.driver().socks[&t].written.len(),
        64,
        "more than the socket took"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    e.driver().give_room(t, 1 << 20);
    for _ in 0..20 {
        e.turn(false);
    }
    assert!(position(&e.driver().socks[&t].written, body).is_some());
    assert!(seen.lock().unwrap().is_empty(), "no outcome before the ack");
    let mut reply = Vec::new();
    let mut acks = crate::wire::frame::AckBatch::default();
    acks.push(5);
    acks.flush_into(&mut reply);
    e.driver().reply(t, &reply);
    for _ in 0..20 {
        e.turn(false);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].0, seen[0].2.as_str()), (5, "Ok(Acked)"));
}
