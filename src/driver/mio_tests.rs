//! The busy-poll path of the mio driver: the hot socket is read directly,
//! and every other socket is still served within [`HOT_POLLS`] polls.

use super::*;
use crate::driver::test_pairs::{pair, received_within};
use std::io::Write;
use std::net::TcpStream;

/// Makes `token` the hot socket: one receive served on its readable edge;
/// then arms the next receive, which waits (the socket was emptied).
fn make_hot(d: &mut MioDriver, peer: &mut TcpStream, token: Token) {
    let mut buf = BytesMut::with_capacity(4096);
    assert!(d.recv(token, &mut buf, 4096).expect("recv").is_none());
    peer.write_all(b"first").expect("write");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let buf = loop {
        assert!(std::time::Instant::now() < deadline, "no readable edge");
        d.poll(Duration::from_millis(100), &mut out).expect("poll");
        if let Some(Event::Received { buf, .. }) = out.pop() {
            break buf;
        }
    };
    assert_eq!(&buf[..], b"first");
    assert_eq!(d.hot, Some(token));
    let mut buf = BytesMut::with_capacity(4096);
    assert!(d.recv(token, &mut buf, 4096).expect("recv").is_none());
}

#[test]
fn a_busy_polling_engine_reads_its_hot_socket_without_epoll_wait() {
    let mut d = MioDriver::new().expect("driver");
    let mut peer = pair(&mut d, 1);
    make_hot(&mut d, &mut peer, 1);
    peer.write_all(b"second").expect("write");
    // Loopback delivers within the write: the first zero poll reads it,
    // and it did not go through epoll_wait (no poll of epoll counted yet).
    let (got, polls) = received_within(&mut d, 1, 1).expect("read at once");
    assert_eq!((&got[..], polls), (&b"second"[..], 1));
    assert_eq!(d.hot_polls, 1, "served by the direct read");
    // Nothing more: the edge of "second" is dropped by epoll_wait (it
    // re-checks readiness), so no empty Received follows.
    let mut buf = BytesMut::with_capacity(4096);
    assert!(d.recv(1, &mut buf, 4096).expect("recv").is_none());
    assert!(received_within(&mut d, 1, 2 * HOT_POLLS).is_none());
}

#[test]
fn other_sockets_are_served_while_the_engine_busy_polls() {
    let mut d = MioDriver::new().expect("driver");
    let mut hot = pair(&mut d, 1);
    let mut cold = pair(&mut d, 2);
    make_hot(&mut d, &mut hot, 1);
    let mut buf = BytesMut::with_capacity(4096);
    // The cold socket's receive waits for its edge.
    assert!(d.recv(2, &mut buf, 4096).expect("recv").is_none());
    cold.write_all(b"cold").expect("write");
    let (got, polls) = received_within(&mut d, 2, HOT_POLLS).expect("served by epoll_wait");
    assert_eq!(&got[..], b"cold");
    assert!(polls <= HOT_POLLS);
}
