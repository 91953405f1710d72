//! Helpers of the drivers' socket tests: a registered loopback pair, and
//! zero-timeout polling until a receive completes.

use super::{Driver, Event, Token};
use socket2::Socket;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A connected pair: the driver's side registered as `token`, and the
/// peer's side.
pub(crate) fn pair<D: Driver>(d: &mut D, token: Token) -> TcpStream {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (ours, _) = l.accept().expect("accept");
    d.register(token, Socket::from(ours)).expect("register");
    peer
}

/// Polls (zero timeout, at most `polls` times) until `token` received
/// bytes; returns them and how many polls it took.
pub(crate) fn received_within<D: Driver>(
    d: &mut D,
    token: Token,
    polls: u32,
) -> Option<(Vec<u8>, u32)> {
    let mut out = Vec::new();
    for k in 1..=polls {
        d.poll(Duration::ZERO, &mut out).expect("poll");
        for ev in out.drain(..) {
            if let Event::Received {
                token: t,
                res: Ok(n),
                buf,
            } = ev
            {
                assert!(n > 0, "no end of stream here");
                if t == token {
                    return Some((buf.to_vec(), k));
                }
            }
        }
    }
    None
}
