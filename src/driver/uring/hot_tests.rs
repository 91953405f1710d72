//! The busy-poll path of the io_uring driver (`hot_reads`): the hot
//! connection's receive is read directly with no operation in the ring,
//! handed to the ring before the engine sleeps, and every other
//! connection is still served by the ring.

use super::*;
use crate::driver::test_pairs::{pair, received_within};
use std::io::Write;
use std::time::Instant;

/// A driver that reads its hot connection directly, or `None` when
/// io_uring is refused here (a failure under `CI=true`).
fn driver() -> Option<UringDriver> {
    if let Err(why) = crate::driver::uring::probe() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "io_uring unavailable under CI=true: {why}"
        );
        eprintln!("skipped: io_uring unavailable here: {why}");
        return None;
    }
    let t = UringTuning {
        hot_reads: true,
        ..UringTuning::default()
    };
    Some(UringDriver::new(64, t).expect("ring"))
}

fn arm(d: &mut UringDriver, token: Token) {
    let mut buf = BytesMut::with_capacity(4096);
    assert!(d.recv(token, &mut buf, 4096).expect("recv").is_none());
}

#[test]
fn the_hot_receive_is_read_directly_with_no_operation_in_the_ring() {
    let Some(mut d) = driver() else { return };
    let mut peer = pair(&mut d, 1);
    assert!(!d.recv_multi(1).expect("recv_multi"), "receives are plain");
    let ops = d.ring.in_flight();
    arm(&mut d, 1);
    assert_eq!(d.hot, Some(1));
    assert!(d.slots[&1].parked.is_some() && d.slots[&1].recv.is_none());
    assert_eq!(d.ring.in_flight(), ops, "nothing submitted");
    peer.write_all(b"first").expect("write");
    // Loopback delivers within the write: the first zero poll reads it.
    let (got, polls) = received_within(&mut d, 1, 1).expect("read at once");
    assert_eq!((&got[..], polls), (&b"first"[..], 1));
    // Data waiting when the engine asks again is read in the call itself.
    peer.write_all(b"second").expect("write");
    let mut buf = BytesMut::with_capacity(4096);
    assert_eq!(
        d.recv(1, &mut buf, 4096).expect("recv"),
        None,
        "drained: parks"
    );
    let (got, _) = received_within(&mut d, 1, 1).expect("read at once");
    assert_eq!(&got[..], b"second");
    assert_eq!(d.ring.in_flight(), ops, "still nothing submitted");
}

#[test]
fn the_hot_receive_goes_to_the_ring_before_the_engine_sleeps() {
    let Some(mut d) = driver() else { return };
    let mut peer = pair(&mut d, 1);
    arm(&mut d, 1);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        peer.write_all(b"late").expect("write");
        peer
    });
    let t0 = Instant::now();
    let mut out = Vec::new();
    while out.is_empty() && t0.elapsed() < Duration::from_secs(10) {
        d.poll(Duration::from_secs(5), &mut out).expect("poll");
        assert!(d.hot.is_none(), "handed to the ring");
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "woken by the data");
    match out.pop() {
        Some(Event::Received {
            token: 1,
            res: Ok(4),
            buf,
        }) => assert_eq!(&buf[..], b"late"),
        other => panic!("unexpected {other:?}"),
    }
    drop(writer.join());
}

#[test]
fn other_connections_are_served_while_one_is_hot() {
    let Some(mut d) = driver() else { return };
    let mut a = pair(&mut d, 1);
    let mut b = pair(&mut d, 2);
    arm(&mut d, 1);
    // The receive served last is the hot one; the other goes to the ring.
    arm(&mut d, 2);
    assert_eq!(d.hot, Some(2));
    assert!(d.slots[&1].parked.is_none() && d.slots[&1].recv.is_some());
    a.write_all(b"cold").expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        assert!(Instant::now() < deadline, "the ring did not serve it");
        if let Some((got, _)) = received_within(&mut d, 1, 1) {
            break got;
        }
    };
    assert_eq!(&got[..], b"cold");
    b.write_all(b"hot").expect("write");
    let (got, polls) = received_within(&mut d, 2, 1).expect("read at once");
    assert_eq!((&got[..], polls), (&b"hot"[..], 1));
}

#[test]
fn closing_the_hot_connection_forgets_its_receive() {
    let Some(mut d) = driver() else { return };
    let mut peer = pair(&mut d, 1);
    arm(&mut d, 1);
    d.close(1, &[]);
    assert!(d.hot.is_none());
    let _ = peer.write_all(b"too late");
    assert!(received_within(&mut d, 1, 4).is_none());
    // The token is reused at once and becomes hot in its turn.
    let mut again = pair(&mut d, 1);
    arm(&mut d, 1);
    again.write_all(b"new").expect("write");
    let (got, _) = received_within(&mut d, 1, 1).expect("read at once");
    assert_eq!(&got[..], b"new");
}

#[test]
fn end_of_stream_on_the_hot_connection_is_reported() {
    let Some(mut d) = driver() else { return };
    let peer = pair(&mut d, 1);
    arm(&mut d, 1);
    drop(peer);
    let mut out = Vec::new();
    d.poll(Duration::ZERO, &mut out).expect("poll");
    assert!(
        matches!(
            out.as_slice(),
            [Event::Received {
                token: 1,
                res: Ok(0),
                ..
            }]
        ),
        "{out:?}"
    );
}
