//! The loopback capture used by the encrypted-run tests sees clear text
//! (so "the marker is absent" means something), and the shared-key secure
//! layer carried over a real TCP connection on `lo` puts none of the
//! payload's marker on the wire.

#[path = "support/capture.rs"]
mod capture;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use capture::{contains, LoopbackCapture};
use sessionrepl::__internal::proto::secure::{SecureContext, SecureSession, SharedKey};

fn start_capture() -> Option<LoopbackCapture> {
    match LoopbackCapture::start() {
        Ok(c) => Some(c),
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but no loopback capture: {why}"
            );
            println!("SKIP secure_capture: {why}");
            None
        }
    }
}

fn marker(tag: &str) -> Vec<u8> {
    format!(
        "MARKER-{tag}-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    )
    .into_bytes()
}

#[test]
fn capture_sees_clear_text_on_loopback() {
    let Some(cap) = start_capture() else { return };
    let m = marker("clear");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    c.write_all(&m).unwrap();
    let mut got = vec![0u8; m.len()];
    s.read_exact(&mut got).unwrap();
    let wire = cap.stop();
    assert!(
        contains(&wire, &m),
        "capture of {} bytes misses clear text",
        wire.len()
    );
}

#[test]
fn secure_session_over_tcp_puts_no_plaintext_on_the_wire() {
    let Some(cap) = start_capture() else { return };
    let m = marker("secret");
    let ctx = SecureContext::shared_key(&[SharedKey::from_hex(&"42".repeat(32)).unwrap()]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let mut a = SecureSession::connect(&ctx, [127, 0, 0, 1].into()).unwrap();
    let mut b = SecureSession::accept(&ctx).unwrap();
    // a: hello + the marker (queued until established).
    let mut out = Vec::new();
    let mut msg = Vec::new();
    for _ in 0..100 {
        msg.extend_from_slice(&m);
    }
    a.send(&msg, &mut out).unwrap();
    c.write_all(&out).unwrap();
    // b reads the hello, answers.
    let mut plain = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !b.is_established() {
        let n = s.read(&mut buf).unwrap();
        b.receive(&buf[..n], &mut plain).unwrap();
    }
    let mut ans = Vec::new();
    b.poll_transmit(&mut ans);
    s.write_all(&ans).unwrap();
    while !a.is_established() {
        let n = c.read(&mut buf).unwrap();
        a.receive(&buf[..n], &mut Vec::new()).unwrap();
    }
    let mut out = Vec::new();
    a.poll_transmit(&mut out);
    c.write_all(&out).unwrap();
    while plain.len() < msg.len() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        b.receive(&buf[..n], &mut plain).unwrap();
    }
    assert_eq!(plain, msg);
    let wire = cap.stop();
    assert!(wire.len() > msg.len(), "captured only {} bytes", wire.len());
    assert!(!contains(&wire, &m), "the marker crossed loopback in clear");
}
