//! io_uring-specific behaviour: probe fallback, buffer-ring exhaustion
//! without loss, and stop under load with every operation drained and no
//! payload slice left dangling.

#![cfg(target_os = "linux")]

use bytes::Bytes;
use sessionrepl::__internal::driver::uring;
use sessionrepl::__internal::driver::Backend;
use sessionrepl::__internal::transport::Shared;
use sessionrepl::__internal::transport::{Receiver, UringRxTuning};
use sessionrepl::config::AckMode;
use sessionrepl::transport::{Message, SendOptions};
use sessionrepl::{Channel, Config, Error, ReplicationMode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The leak counters are process-wide: run these tests one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn available() -> bool {
    match uring::probe() {
        Ok(()) => true,
        Err(why) => {
            // Under CI a test that cannot run its real thing fails.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "io_uring unavailable under CI=true: {why}"
            );
            eprintln!("skipped: io_uring unavailable here: {why}");
            false
        }
    }
}

fn uring_cfg() -> Config {
    let mut c = Config::default();
    c.io_backend = "uring".into();
    c
}

/// A receiver configuration that receives multishot into provided
/// buffers: an engine that never busy-polls (a busy-polling one receives
/// plain and reads its hot connection directly).
fn multishot_cfg() -> Config {
    let mut c = uring_cfg();
    c.idle.spin = Duration::ZERO;
    c
}

fn payload(i: usize, size: usize) -> Bytes {
    let mut v: Vec<u8> = format!("{i:08}-").into_bytes();
    v.extend(b"session-attribute-".iter().cycle().take(size));
    Bytes::from(v)
}

fn wait_for(mut f: impl FnMut() -> bool, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

#[test]
fn auto_falls_back_to_mio_when_io_uring_is_refused() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    uring::force_unavailable(true);
    assert_eq!(Backend::resolve("auto").unwrap(), Backend::Mio);
    let e = Backend::resolve("uring").unwrap_err().to_string();
    assert!(e.contains("io_uring is not available"), "{e}");
    assert!(Channel::builder(uring_cfg()).start().is_err());
    // A channel on `auto` still works, on mio.
    let got = Arc::new(Mutex::new(0usize));
    let g2 = got.clone();
    let rx = Channel::builder(Config::default())
        .listener(move |_| {
            *g2.lock().unwrap() += 1;
            Ok(())
        })
        .start()
        .unwrap();
    let mut scfg = Config::default();
    scfg.replication_mode = ReplicationMode::Synchronous;
    let tx = Channel::builder(scfg).start().unwrap();
    tx.send(&[rx.local_addr()], payload(1, 10), tx.default_options())
        .unwrap();
    assert_eq!(*got.lock().unwrap(), 1);
    uring::force_unavailable(false);
    tx.stop();
    rx.stop();
    if available() {
        assert_eq!(Backend::resolve("auto").unwrap(), Backend::Uring);
    }
}

#[test]
fn exhausted_buffer_ring_loses_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !available() {
        return;
    }
    exhaust(true);
    exhaust(false);
}

fn exhaust(incremental: bool) {
    // 8 buffers of 4 KiB, at most 16 ever: a listener that keeps every
    // payload pins them all within a few messages.
    let shared = Arc::new(Shared::new(multishot_cfg(), [3; 16], None));
    let kept: Arc<Mutex<Vec<(u64, Bytes)>>> = Arc::new(Mutex::new(Vec::new()));
    let k2 = kept.clone();
    let listener = Arc::new(move |m: &Message| {
        k2.lock().unwrap().push((m.id, m.payload.clone()));
        Ok(())
    });
    let tuning = UringRxTuning {
        ring_buffers: 8,
        buffer_size: 4096,
        max_buffers: 16,
        incremental,
    };
    let mut rx = Receiver::start_uring(shared.clone(), listener, tuning).unwrap();
    let mut scfg = uring_cfg();
    scfg.replication_mode = ReplicationMode::FastAsyncQueue;
    let tx = Channel::builder(scfg).start().unwrap();
    let to = [rx.local_addr()];
    let n = 3000;
    let opts = SendOptions {
        ack: AckMode::Delivery,
        compress: false,
    };
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(tx.send(&to, payload(i, 200 + i % 1500), opts).unwrap());
    }
    tx.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(tx.stats().acks_received, n as u64);
    let got = kept.lock().unwrap().clone();
    assert_eq!(got.len(), n);
    for (i, (id, p)) in got.iter().enumerate() {
        assert_eq!(*id, ids[i], "order broken at {i}");
        assert_eq!(p, &payload(i, 200 + i % 1500), "payload {i} differs");
    }
    tx.stop();
    rx.stop();
    // Slices handed out stay valid after the ring is gone.
    let kept = std::mem::take(&mut *kept.lock().unwrap());
    for (i, (_, p)) in kept.iter().enumerate() {
        assert_eq!(p, &payload(i, 200 + i % 1500));
    }
    assert_eq!(shared.stats.snapshot().protocol_errors, 0);
}

#[test]
fn stop_under_load_drains_every_operation() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !available() {
        return;
    }
    // Multishot receives into provided buffers, then plain receives with
    // the hot connection read directly.
    stop_under_load(multishot_cfg());
    stop_under_load(uring_cfg());
}

fn stop_under_load(rx_cfg: Config) {
    let leaked_before = uring::leaked_ops();
    let kept: Arc<Mutex<Vec<Bytes>>> = Arc::new(Mutex::new(Vec::new()));
    let k2 = kept.clone();
    let rx = Channel::builder(rx_cfg)
        .listener(move |m| {
            let mut k = k2.lock().unwrap();
            if k.len() < 10_000 {
                k.push(m.payload.clone());
            }
            Ok(())
        })
        .start()
        .unwrap();
    let outcomes: Arc<Mutex<HashMap<u64, String>>> = Arc::new(Mutex::new(HashMap::new()));
    let o2 = outcomes.clone();
    let mut scfg = uring_cfg();
    scfg.replication_mode = ReplicationMode::FastAsyncQueue;
    scfg.max_queue_length = 100_000;
    let tx = Channel::builder(scfg)
        .outcome_listener(move |id, _, o| {
            let s = match o {
                Ok(d) => format!("{d:?}"),
                Err(Error::Shutdown) => "shutdown".into(),
                Err(e) => format!("err:{e}"),
            };
            assert!(o2.lock().unwrap().insert(id, s).is_none(), "two outcomes");
        })
        .start()
        .unwrap();
    let to = [rx.local_addr()];
    let opts = tx.default_options();
    // Small frames and large ones (zero-copy sends) in flight together.
    let big = Bytes::from(vec![5u8; 256 * 1024]);
    let mut sent = 0usize;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(150) {
        let p = if sent % 50 == 0 {
            big.clone()
        } else {
            payload(sent, 1024)
        };
        if tx.send(&to, p, opts).is_ok() {
            sent += 1;
        }
    }
    // Stop both ends while data is still moving.
    tx.stop();
    rx.stop();
    let o = outcomes.lock().unwrap();
    assert_eq!(o.len(), sent, "every queued message has one outcome");
    assert!(
        o.values().all(|s| s == "Acked" || s == "shutdown"),
        "unexpected outcome"
    );
    drop(o);
    assert!(
        wait_for(|| uring::live_ops() == 0, 10),
        "{} io_uring operations still in flight after stop",
        uring::live_ops()
    );
    assert_eq!(uring::leaked_ops(), leaked_before, "buffers leaked");
    // Payload slices (of provided buffers, when multishot) outlive the
    // receiver intact.
    let k = kept.lock().unwrap();
    assert!(!k.is_empty());
    assert!(k
        .iter()
        .all(|p| p.len() == 256 * 1024 && p.iter().all(|&b| b == 5)
            || p.ends_with(b"session-attribute-session-")
            || p.windows(18).any(|w| w == b"session-attribute-")));
}

#[test]
fn zero_copy_sends_deliver_intact_and_stop_drains_them() {
    use sessionrepl::__internal::driver::uring::UringTuning;
    use sessionrepl::__internal::transport::Pump;
    use sessionrepl::__internal::transport::{Dest, Outgoing};
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !available() {
        return;
    }
    let leaked_before = uring::leaked_ops();
    let got: Arc<Mutex<Vec<Bytes>>> = Arc::new(Mutex::new(Vec::new()));
    let g2 = got.clone();
    let rx = Channel::builder(uring_cfg())
        .listener(move |m| {
            g2.lock().unwrap().push(m.payload.clone());
            Ok(())
        })
        .start()
        .unwrap();
    let shared = Arc::new(Shared::new(uring_cfg(), [4; 16], None));
    let tuning = UringTuning {
        zc_min: 64 * 1024,
        zc_loopback: true,
        hot_reads: false,
    };
    let sizes = |i: usize| if i % 3 == 0 { 200 * 1024 + i } else { 100 + i };
    let body = |i: usize| Bytes::from(vec![(i % 251) as u8; sizes(i)]);
    let to = rx.local_addr();
    // Run to completion: every frame arrives intact and in order.
    let pump = Pump::start_uring(shared.clone(), "zc-test", tuning, false).unwrap();
    let n = 300;
    for i in 0..n {
        let item = Outgoing {
            id: i as u64 + 1,
            dest: Dest::One(to),
            payload: body(i),
            flags: 0,
            ticket: None,
        };
        pump.send(item).unwrap();
    }
    assert!(wait_for(|| got.lock().unwrap().len() == n, 20));
    for (i, p) in got.lock().unwrap().iter().enumerate() {
        assert_eq!(p, &body(i), "frame {i}");
    }
    // Then stop with zero-copy sends in flight.
    for i in 0..n {
        let item = Outgoing {
            id: (n + i) as u64 + 1,
            dest: Dest::One(to),
            payload: body(i),
            flags: 0,
            ticket: None,
        };
        let _ = pump.send(item);
    }
    pump.stop();
    rx.stop();
    assert!(wait_for(|| uring::live_ops() == 0, 10), "ops in flight");
    assert_eq!(uring::leaked_ops(), leaked_before);
}

#[test]
fn buffer_ring_refills_with_the_buffer_returned_last() {
    if !available() {
        return;
    }
    let ring = uring::Ring::new(8).unwrap();
    // One ring slot, up to four buffers: each take lends the slot's buffer
    // and refills the slot.
    let mut bufs = uring::BufRing::new(&ring, 7, 1, 64, 4).unwrap();
    let a = bufs.take(0, 64).unwrap();
    let b = bufs.take(0, 64).unwrap();
    assert_eq!(bufs.allocated(), 3, "a, b and the one now in the slot");
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    drop(a);
    drop(b);
    // The slot still holds the third buffer; the refill after taking it
    // must be b (returned last, still warm), not a (returned first).
    let c = bufs.take(0, 64).unwrap();
    assert!(c.as_ptr() != pa && c.as_ptr() != pb);
    let d = bufs.take(0, 64).unwrap();
    assert_eq!(d.as_ptr(), pb, "the buffer returned last is reused first");
    assert_eq!(
        bufs.allocated(),
        3,
        "no buffer allocated while others came back"
    );
    // The ring first: it holds the buffer ring's registration.
    drop(ring);
    drop((c, d, bufs));
}

/// Polls `d` until an event passes `f` (5 s at most).
fn poll_for(
    d: &mut uring::UringDriver,
    events: &mut Vec<sessionrepl::__internal::driver::Event>,
    f: impl Fn(&sessionrepl::__internal::driver::Event) -> bool,
) -> bool {
    use sessionrepl::__internal::driver::Driver;
    wait_for(
        || {
            d.poll(Duration::from_millis(10), events).unwrap();
            events.drain(..).any(|e| f(&e))
        },
        5,
    )
}

/// A send on a socket with nothing in flight goes out at once (the
/// driver reports the bytes, no completion follows); when the socket is
/// full the driver waits for room with a poll and reports `Sent(0)`, after
/// which writes go on; every byte arrives once and in order.
#[test]
fn direct_sends_wait_for_room_when_the_socket_is_full_and_lose_nothing() {
    use sessionrepl::__internal::driver::{Driver, Event, Frame, SockOpts};
    use std::io::Read;
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !available() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut d = uring::UringDriver::new(64, uring::UringTuning::default()).unwrap();
    d.connect(1, addr, &SockOpts::default()).unwrap();
    let mut events = Vec::new();
    // The connect is submitted by the next poll.
    d.poll(Duration::ZERO, &mut events).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    assert!(
        poll_for(&mut d, &mut events, |e| matches!(
            e,
            Event::Connected {
                token: 1,
                res: Ok(())
            }
        )),
        "no connect completion"
    );
    // Frames of 64 KiB, each byte telling its offset in the stream.
    let frame = |k: usize| -> Bytes {
        (0..64 * 1024)
            .map(|i| ((k * 64 * 1024 + i) % 251) as u8)
            .collect::<Vec<u8>>()
            .into()
    };
    let (mut sent, mut k, mut direct) = (0usize, 0usize, 0usize);
    let mut body = frame(0);
    let mut skip = 0;
    let full = loop {
        let f = Frame {
            head: &[],
            body: &body,
            skip,
        };
        match d.send(1, &[], std::iter::once(f)).unwrap() {
            Some(n) => {
                assert!(n > 0, "a direct send took nothing");
                direct += 1;
                sent += n;
                skip += n;
                if skip == body.len() {
                    k += 1;
                    body = frame(k);
                    skip = 0;
                }
            }
            None => break true,
        }
        assert!(direct < 100_000, "the socket never filled");
    };
    assert!(
        full && direct > 1 && sent > 0,
        "direct {direct} sent {sent}"
    );
    // Nothing comes back while the peer reads nothing.
    d.poll(Duration::from_millis(50), &mut events).unwrap();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Sent { .. })),
        "room reported while the socket is still full"
    );
    // The peer reads everything so far: room, reported as `Sent(0)`.
    let mut got = vec![0u8; sent];
    peer.read_exact(&mut got).unwrap();
    assert!(
        poll_for(&mut d, &mut events, |e| matches!(
            e,
            Event::Sent {
                token: 1,
                res: Ok(0)
            }
        )),
        "no room reported after the peer read"
    );
    // Writes go on from where they stopped.
    let f = Frame {
        head: &[],
        body: &body,
        skip,
    };
    let n = d
        .send(1, &[], std::iter::once(f))
        .unwrap()
        .expect("direct again");
    assert!(n > 0);
    let mut more = vec![0u8; n];
    peer.read_exact(&mut more).unwrap();
    got.extend_from_slice(&more);
    for (i, b) in got.iter().enumerate() {
        assert_eq!(*b, (i % 251) as u8, "byte {i} of the stream");
    }
    d.close(1, &[]);
    d.shutdown();
}
