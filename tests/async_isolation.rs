//! Isolation of the asynchronous modes over real loopback sockets, on both
//! drivers: a member that accepts and never reads does not stop the others;
//! its messages end `QueueFull`/`Timeout`; the I/O thread sleeps while
//! nothing can progress; a send to several members is all-or-nothing in
//! `asynchronous` mode; hundreds of dead destinations cost no threads; a
//! resend after a reconnect is delivered once.

use bytes::Bytes;
use sessionrepl::config::AckMode;
use sessionrepl::transport::SendOptions;
use sessionrepl::{Channel, Config, Error, ReplicationMode};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[macro_use]
mod common;
use common::io_cfg;

on_both_drivers!(
    fastasync_member_not_reading_does_not_stop_the_others,
    asynchronous_send_to_several_is_all_or_nothing,
    asynchronous_sends_to_200_dead_members_cost_no_threads,
    resend_after_reconnect_is_delivered_once,
    a_send_from_the_sender_thread_never_waits_for_its_own_queue,
);

/// A member that accepts connections and never reads them.
struct Deaf {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

fn deaf() -> Deaf {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let h2 = held.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            match s {
                Ok(s) => h2.lock().unwrap().push(s),
                Err(_) => return,
            }
        }
    });
    Deaf { addr, held }
}

fn counting_receiver() -> (Channel, Arc<AtomicU64>) {
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    let ch = Channel::builder(io_cfg())
        .listener(move |_| {
            n2.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .start()
        .unwrap();
    (ch, n)
}

type Outcomes = Arc<Mutex<HashMap<(u64, SocketAddr), String>>>;

fn sender(mode: ReplicationMode, edit: impl FnOnce(&mut Config)) -> (Channel, Outcomes) {
    let mut cfg = io_cfg();
    cfg.replication_mode = mode;
    edit(&mut cfg);
    let out: Outcomes = Arc::default();
    let o2 = out.clone();
    let ch = Channel::builder(cfg)
        .outcome_listener(move |id, to, o| {
            let s = match o {
                Ok(d) => format!("{d:?}"),
                Err(e) => format!("err:{e:?}"),
            };
            assert!(
                o2.lock().unwrap().insert((id, to), s).is_none(),
                "two outcomes for {id} at {to}"
            );
        })
        .start()
        .unwrap();
    (ch, out)
}

/// CPU time (user + system, clock ticks) of this process's threads whose
/// name starts with `prefix`.
fn thread_ticks(prefix: &str) -> u64 {
    let mut t = 0;
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        t += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        t += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    t
}

/// The engine's threads (named `sr-*`) in this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("sr-"))
        })
        .count()
}

/// The tests measure process-wide figures (threads, RSS, CPU): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fastasync_member_not_reading_does_not_stop_the_others() {
    let _serial = serial();
    let a = deaf();
    let (b, got) = counting_receiver();
    let (tx, out) = sender(ReplicationMode::FastAsyncQueue, |c| {
        c.max_queue_length = 512;
        c.queue_add_wait_timeout = Duration::from_millis(100);
        c.ack_timeout = Duration::from_millis(1000);
    });
    let to = [a.addr, b.local_addr()];
    let payload = Bytes::from(vec![3u8; 1024]);
    let opts = SendOptions {
        ack: AckMode::None,
        compress: false,
    };
    // Long enough for A's socket buffers (a few MB) and queue to fill.
    let t0 = Instant::now();
    let mut sent = 0u64;
    while t0.elapsed() < Duration::from_secs(2) {
        if tx.send(&to, payload.clone(), opts).is_ok() {
            sent += 1;
        }
    }
    let at_b_before = got.load(Ordering::Relaxed);
    let t1 = Instant::now();
    let mut late = 0u64;
    while t1.elapsed() < Duration::from_secs(1) {
        if tx.send(&to, payload.clone(), opts).is_ok() {
            late += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let b_rate = got.load(Ordering::Relaxed) - at_b_before;
    eprintln!("B received {b_rate} msgs in the 1 s after A filled up");
    // Before the fix B received 0 messages/s once A's queue was full.
    assert!(
        b_rate >= 2_000,
        "B received only {b_rate} msgs in the second after A filled up ({late} sent, {sent} before)"
    );
    assert!(
        !a.held.lock().unwrap().is_empty(),
        "the deaf member was connected"
    );
    // A's messages beyond its queue end QueueFull (or Timeout), each once.
    tx.flush(Duration::from_secs(10)).unwrap();
    let o = out.lock().unwrap();
    let at_a: Vec<&String> = o
        .iter()
        .filter(|((_, to), _)| *to == a.addr)
        .map(|(_, s)| s)
        .collect();
    let failed = at_a
        .iter()
        .filter(|s| s.contains("QueueFull") || s.contains("Timeout"))
        .count();
    assert!(failed > 0, "no QueueFull/Timeout at the deaf member");
    // Every message has exactly one outcome at B (the listener asserts no
    // second one); most were written (B is only as slow as its reader).
    let at_b: Vec<&String> = o
        .iter()
        .filter(|((_, to), _)| *to == b.local_addr())
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        at_b.len() as u64,
        sent + late,
        "one outcome per message at B"
    );
    let b_sent = at_b.iter().filter(|s| s.as_str() == "Sent").count() as u64;
    assert!(
        b_sent * 2 >= sent + late,
        "B: {b_sent} of {} written",
        sent + late
    );
    drop(o);
    // Idle: nothing queued, A still deaf. The I/O thread must sleep.
    let c0 = thread_ticks("sr-fastasync");
    std::thread::sleep(Duration::from_secs(1));
    let used = thread_ticks("sr-fastasync") - c0;
    eprintln!("idle I/O thread: {used} ticks (of 100) in 1 s");
    let hz = 100; // USER_HZ on Linux
    assert!(
        used * 100 / hz <= 15,
        "idle I/O thread used {used} ticks in 1 s"
    );
    tx.stop();
    b.stop();
}

fn asynchronous_send_to_several_is_all_or_nothing() {
    let _serial = serial();
    let a = deaf();
    let (b, got) = counting_receiver();
    let (tx, out) = sender(ReplicationMode::Asynchronous, |c| {
        c.max_queue_length = 4;
        c.queue_add_wait_timeout = Duration::ZERO;
        c.ack_timeout = Duration::from_secs(30);
    });
    let opts = SendOptions {
        ack: AckMode::Receipt,
        compress: false,
    };
    // A never acks: four messages fill its place for 30 s.
    for _ in 0..4 {
        tx.send(&[a.addr], Bytes::from_static(b"fill"), opts)
            .unwrap();
    }
    let to = [b.local_addr(), a.addr];
    for _ in 0..20 {
        match tx.send(&to, Bytes::from_static(b"both"), opts) {
            Err(Error::QueueFull) => {}
            r => panic!("expected QueueFull, got {r:?}"),
        }
    }
    // B alone is not held up, and got none of the refused messages.
    let id = tx
        .send(&[b.local_addr()], Bytes::from_static(b"b"), opts)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.lock().unwrap().contains_key(&(id, b.local_addr())) {
        assert!(Instant::now() < deadline, "B's message got no outcome");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(out.lock().unwrap()[&(id, b.local_addr())], "Acked");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        got.load(Ordering::Relaxed),
        1,
        "refused messages never delivered"
    );
    // Stop reports A's four outstanding messages before it returns.
    tx.stop();
    let o = out.lock().unwrap();
    let at_a = o.iter().filter(|((_, to), _)| *to == a.addr).count();
    assert_eq!(at_a, 4, "{o:?}");
    assert!(o
        .iter()
        .filter(|((_, to), _)| *to == a.addr)
        .all(|(_, s)| s.contains("Shutdown")));
    b.stop();
}

fn asynchronous_sends_to_200_dead_members_cost_no_threads() {
    let _serial = serial();
    // Ports nobody listens on (bound, then released), below the ephemeral
    // range: a connect to a free ephemeral port can pick that same port as
    // its source and connect to itself (TCP simultaneous open), which is
    // not a dead member.
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768);
    let dead: Vec<SocketAddr> = (low.saturating_sub(12_000)..low)
        .filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
        .map(|l| l.local_addr().unwrap())
        .take(200)
        .collect();
    assert_eq!(dead.len(), 200, "free ports below the ephemeral range");
    let (tx, out) = sender(ReplicationMode::Asynchronous, |c| {
        c.ack_timeout = Duration::from_secs(5);
        c.max_retry_attempts = 1;
    });
    // Warm up one send so the engine thread exists.
    let _ = tx.send(&dead[..1], Bytes::from_static(b"w"), tx.default_options());
    std::thread::sleep(Duration::from_millis(100));
    let (t0, r0) = (threads(), rss_kb());
    for round in 0..5 {
        for &d in &dead {
            tx.send(
                &[d],
                Bytes::from(vec![round as u8; 1024]),
                tx.default_options(),
            )
            .unwrap();
        }
    }
    tx.flush(Duration::from_secs(30)).unwrap();
    let (t1, r1) = (threads(), rss_kb());
    eprintln!("sr-* threads {t0} -> {t1}, RSS {r0} kB -> {r1} kB");
    assert!(t1 <= t0 + 1, "threads {t0} -> {t1}");
    assert!(r1 < r0 + 50 * 1024, "RSS {r0} kB -> {r1} kB");
    let o = out.lock().unwrap();
    let failed = o
        .values()
        .filter(|s| s.contains("Unreachable") || s.contains("Timeout"))
        .count();
    let others: Vec<&String> = o
        .values()
        .filter(|s| !(s.contains("Unreachable") || s.contains("Timeout")))
        .collect();
    assert_eq!(
        failed, 1001,
        "every message to a dead member failed once; others: {others:?}"
    );
    drop(o);
    tx.stop();
}

/// A proxy between a sender and a receiver: its first connection forwards
/// the sender's bytes but swallows the receiver's acks, and is cut after
/// `cut_after`; later connections forward both ways.
fn ack_eating_proxy(to: SocketAddr, cut_after: Duration) -> SocketAddr {
    use std::io::{Read, Write};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for (k, s) in l.incoming().enumerate() {
            let Ok(mut down) = s else { return };
            let mut up = TcpStream::connect(to).unwrap();
            let (mut d2, mut u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            let first = k == 0;
            std::thread::spawn(move || {
                let mut b = [0u8; 65536];
                while let Ok(n) = up.read(&mut b) {
                    if n == 0 || (!first && d2.write_all(&b[..n]).is_err()) {
                        break;
                    }
                }
            });
            let t0 = Instant::now();
            std::thread::spawn(move || {
                let mut b = [0u8; 65536];
                if first {
                    down.set_read_timeout(Some(Duration::from_millis(20)))
                        .unwrap();
                }
                loop {
                    if first && t0.elapsed() >= cut_after {
                        let _ = down.shutdown(std::net::Shutdown::Both);
                        let _ = u2.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    match down.read(&mut b) {
                        Ok(0) => return,
                        Ok(n) => {
                            if u2.write_all(&b[..n]).is_err() {
                                return;
                            }
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    addr
}

fn resend_after_reconnect_is_delivered_once() {
    let _serial = serial();
    let seen: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let s2 = seen.clone();
    let rx = Channel::builder(io_cfg())
        .listener(move |m| {
            *s2.lock().unwrap().entry(m.id).or_insert(0) += 1;
            Ok(())
        })
        .start()
        .unwrap();
    let proxy = ack_eating_proxy(rx.local_addr(), Duration::from_millis(300));
    let (tx, out) = sender(ReplicationMode::FastAsyncQueue, |c| {
        c.ack_timeout = Duration::from_secs(20);
        c.max_retry_attempts = 3;
    });
    let opts = SendOptions {
        ack: AckMode::Receipt,
        compress: false,
    };
    let n = 200u64;
    let ids: Vec<u64> = (0..n)
        .map(|k| {
            tx.send(&[proxy], Bytes::from(format!("m{k}")), opts)
                .unwrap()
        })
        .collect();
    tx.flush(Duration::from_secs(30)).unwrap();
    let o = out.lock().unwrap();
    assert!(ids
        .iter()
        .all(|id| o.get(&(*id, proxy)).is_some_and(|s| s == "Acked")));
    drop(o);
    assert!(tx.stats().resends >= n, "the acks were eaten: all resent");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() as u64, n, "every message delivered");
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    drop(seen);
    tx.stop();
    rx.stop();
}

/// A send made from a listener the sender thread calls (here the outcome
/// listener, as the session store's does) never waits for room in that
/// thread's own queue, which only that thread empties: it fails with
/// `QueueFull` at once instead of holding the thread for
/// `queueAddWaitTimeout` per send.
fn a_send_from_the_sender_thread_never_waits_for_its_own_queue() {
    let _g = serial();
    let (rx, _n) = counting_receiver();
    let dead = deaf();
    let to_dead = dead.addr;
    let slot: Arc<std::sync::OnceLock<Channel>> = Arc::default();
    let tries: Arc<Mutex<Vec<(Duration, String)>>> = Arc::default();
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, t2, f2) = (slot.clone(), tries.clone(), fired.clone());
    let mut cfg = io_cfg();
    cfg.replication_mode = ReplicationMode::FastAsyncQueue;
    cfg.max_queue_length = 2;
    cfg.queue_add_wait_timeout = Duration::from_millis(5000);
    let none = SendOptions {
        ack: AckMode::None,
        compress: false,
    };
    let ch = Channel::builder(cfg)
        .outcome_listener(move |_, _, _| {
            if f2.swap(true, Ordering::SeqCst) {
                return;
            }
            let Some(c) = s2.get() else { return };
            for _ in 0..6 {
                let t0 = Instant::now();
                let r = c.send(&[to_dead], Bytes::from_static(b"x"), none);
                t2.lock().unwrap().push((t0.elapsed(), format!("{r:?}")));
            }
        })
        .start()
        .unwrap();
    assert!(slot.set(ch.clone()).is_ok());
    let acked = SendOptions {
        ack: AckMode::Delivery,
        compress: false,
    };
    ch.send(&[rx.local_addr()], Bytes::from_static(b"go"), acked)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tries.lock().unwrap().len() < 6 {
        assert!(
            Instant::now() < deadline,
            "the listener's sends did not end"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let tries = tries.lock().unwrap().clone();
    eprintln!("figure: sends from the sender thread: {tries:?}");
    assert!(
        tries.iter().all(|(d, _)| *d < Duration::from_millis(1000)),
        "a send from the sender thread waited: {tries:?}"
    );
    assert!(
        tries.iter().any(|(_, r)| r.contains("QueueFull")),
        "the queue of 2 never filled: {tries:?}"
    );
    ch.stop();
    rx.stop();
    drop(dead);
}
