//! The loopback capture used by the encrypted-run tests sees clear text
//! (so "the marker is absent" means something), and the shared-key secure
//! layer carried over a real TCP connection on `lo` puts none of the
//! payload's marker on the wire; nor do real channels in either mode
//! (shared key, certificates), either sender family, on both drivers.

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

#[path = "support/certs.rs"]
mod certs;

/// Two real channels with encryption on (mode `sec`), on driver `io`,
/// each message carrying the marker in each replication-mode family; the
/// capture holds more bytes than were sent and none of the marker.
fn encrypted_channels_hide_the_marker(sec: &str, io: &str) {
    use bytes::Bytes;
    use sessionrepl::config::AckMode;
    use sessionrepl::transport::SendOptions;
    use sessionrepl::{Channel, Config, ReplicationMode};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    if io == "uring" && sessionrepl::__internal::driver::uring::probe().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no io_uring under CI=true"
        );
        return;
    }
    let Some(cap) = start_capture() else { return };
    let m = marker(&format!("{sec}-{io}"));
    let cfg = |mode: ReplicationMode| {
        let mut c = Config::default();
        c.io_backend = io.into();
        c.replication_mode = mode;
        for s in certs::security_settings(sec) {
            let (k, v) = s.split_once('=').unwrap();
            c.set(k, v).unwrap();
        }
        c
    };
    let got = Arc::new(AtomicUsize::new(0));
    let g2 = got.clone();
    let m2 = m.clone();
    let rx = Channel::builder(cfg(ReplicationMode::Synchronous))
        .listener(move |msg| {
            assert!(contains(&msg.payload, &m2));
            g2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .start()
        .unwrap();
    let to = [rx.local_addr()];
    let opts = SendOptions {
        ack: AckMode::Receipt,
        compress: false,
    };
    let payload = Bytes::from([m.as_slice(), b" session attribute "].concat().repeat(8));
    let mut sent = 0;
    for mode in [
        ReplicationMode::Synchronous,
        ReplicationMode::FastAsyncQueue,
    ] {
        let tx = Channel::builder(cfg(mode)).start().unwrap();
        for _ in 0..100 {
            tx.send(&to, payload.clone(), opts).unwrap();
            sent += payload.len();
        }
        tx.flush(Duration::from_secs(20)).unwrap();
        tx.stop();
    }
    let end = Instant::now() + Duration::from_secs(20);
    while got.load(Ordering::SeqCst) < 200 {
        assert!(
            Instant::now() < end,
            "only {} delivered",
            got.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    rx.stop();
    let wire = cap.stop();
    assert!(wire.len() > sent, "captured {} of {sent} bytes", wire.len());
    assert!(
        !contains(&wire, &m),
        "the marker crossed loopback in clear ({sec}, {io})"
    );
}

#[test]
fn shared_key_channels_put_no_plaintext_on_loopback() {
    encrypted_channels_hide_the_marker("key", "mio");
    encrypted_channels_hide_the_marker("key", "uring");
}

#[test]
fn certificate_channels_put_no_plaintext_on_loopback() {
    encrypted_channels_hide_the_marker("tls", "mio");
    encrypted_channels_hide_the_marker("tls", "uring");
}
