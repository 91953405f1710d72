//! Loopback tests of every replication mode, with and without acks and
//! compression: every message's outcome and the per-connection order.

use bytes::Bytes;
use sessionrepl::config::AckMode;
use sessionrepl::transport::SendOptions;
use sessionrepl::{Channel, Config, Error, ReplicationMode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[macro_use]
mod common;
use common::io_cfg;

on_both_drivers!(
    synchronous_mode_with_ack_after_delivery,
    synchronous_mode_ack_on_receipt_compressed,
    synchronous_mode_without_ack,
    pooled_mode_with_ack_and_worker_pool,
    pooled_mode_compressed_without_ack,
    asynchronous_mode_with_ack,
    asynchronous_mode_compressed_without_ack,
    fastasyncqueue_with_ack_after_delivery,
    fastasyncqueue_compressed_ack_on_receipt_with_workers,
    fastasyncqueue_without_ack,
    pooled_concurrent_callers_all_get_acks,
    listener_failure_comes_back_as_fail_in_every_mode,
    unreachable_member_is_reported_in_every_mode,
    ack_timeout_is_reported_when_the_listener_stalls,
    full_queue_is_an_error_the_caller_sees,
    one_message_to_many_members_reaches_each,
    stop_reports_shutdown_for_what_is_queued,
);

// A representative set with encryption on (shared key and certificates):
// each replication mode, FAIL frames, several members.
on_both_drivers_encrypted!(
    synchronous_mode_with_ack_after_delivery,
    pooled_mode_with_ack_and_worker_pool,
    asynchronous_mode_compressed_without_ack,
    fastasyncqueue_compressed_ack_on_receipt_with_workers,
    listener_failure_comes_back_as_fail_in_every_mode,
    one_message_to_many_members_reaches_each,
);

type Log = Arc<Mutex<Vec<(u64, Bytes)>>>;

fn receiver(cfg_edit: impl FnOnce(&mut Config)) -> (Channel, Log) {
    let mut cfg = io_cfg();
    cfg_edit(&mut cfg);
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let ch = Channel::builder(cfg)
        .listener(move |m| {
            if &m.payload[..] == b"please fail" {
                return Err("listener refused it".into());
            }
            l2.lock().unwrap().push((m.id, m.payload.clone()));
            Ok(())
        })
        .start()
        .unwrap();
    (ch, log)
}

type Outcomes = Arc<Mutex<HashMap<(u64, SocketAddr), String>>>;

fn sender(mode: ReplicationMode, edit: impl FnOnce(&mut Config)) -> (Channel, Outcomes) {
    let mut cfg = io_cfg();
    cfg.replication_mode = mode;
    cfg.ack_timeout = Duration::from_secs(5);
    edit(&mut cfg);
    let out: Outcomes = Arc::new(Mutex::new(HashMap::new()));
    let o2 = out.clone();
    let ch = Channel::builder(cfg)
        .outcome_listener(move |id, to, o| {
            let s = match o {
                Ok(d) => format!("{d:?}"),
                Err(e) => format!("err:{e}"),
            };
            assert!(
                o2.lock().unwrap().insert((id, to), s).is_none(),
                "two outcomes for {id}"
            );
        })
        .start()
        .unwrap();
    (ch, out)
}

fn payload(i: usize, size: usize) -> Bytes {
    let mut v: Vec<u8> = format!("{i:08}-").into_bytes();
    v.extend(b"session-attribute-".iter().cycle().take(size));
    Bytes::from(v)
}

fn run_mode(mode: ReplicationMode, ack: AckMode, compress: bool, workers: usize) {
    let (rx, log) = receiver(|c| c.tcp_thread_count = workers);
    let (tx, outcomes) = sender(mode, |c| c.compress = compress);
    let to = [rx.local_addr()];
    let opts = SendOptions { ack, compress };
    let n = 2000;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(tx.send(&to, payload(i, 300 + i % 700), opts).unwrap());
    }
    tx.flush(Duration::from_secs(20)).unwrap();
    // Without acks the sender is done when bytes are written; wait for delivery.
    for _ in 0..2000 {
        if log.lock().unwrap().len() == n {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), n, "{mode:?} {ack:?} compress={compress}");
    for (i, (id, p)) in got.iter().enumerate() {
        assert_eq!(*id, ids[i], "order broken at {i}");
        assert_eq!(p, &payload(i, 300 + i % 700), "payload {i} differs");
    }
    if !mode.is_synchronous() {
        let o = outcomes.lock().unwrap();
        let want = if ack == AckMode::None {
            "Sent"
        } else {
            "Acked"
        };
        for id in &ids {
            assert_eq!(
                o.get(&(*id, to[0])).map(String::as_str),
                Some(want),
                "outcome of {id}"
            );
        }
    }
    if compress {
        assert!(tx.stats().compressed >= n as u64);
    }
    tx.stop();
    rx.stop();
}

fn synchronous_mode_with_ack_after_delivery() {
    run_mode(ReplicationMode::Synchronous, AckMode::Delivery, false, 0);
}
fn synchronous_mode_ack_on_receipt_compressed() {
    run_mode(ReplicationMode::Synchronous, AckMode::Receipt, true, 0);
}
fn synchronous_mode_without_ack() {
    run_mode(ReplicationMode::Synchronous, AckMode::None, false, 0);
}
fn pooled_mode_with_ack_and_worker_pool() {
    run_mode(ReplicationMode::Pooled, AckMode::Delivery, false, 2);
}
fn pooled_mode_compressed_without_ack() {
    run_mode(ReplicationMode::Pooled, AckMode::None, true, 0);
}
fn asynchronous_mode_with_ack() {
    run_mode(ReplicationMode::Asynchronous, AckMode::Delivery, false, 0);
}
fn asynchronous_mode_compressed_without_ack() {
    run_mode(ReplicationMode::Asynchronous, AckMode::None, true, 1);
}
fn fastasyncqueue_with_ack_after_delivery() {
    run_mode(ReplicationMode::FastAsyncQueue, AckMode::Delivery, false, 0);
}
fn fastasyncqueue_compressed_ack_on_receipt_with_workers() {
    run_mode(ReplicationMode::FastAsyncQueue, AckMode::Receipt, true, 2);
}
fn fastasyncqueue_without_ack() {
    run_mode(ReplicationMode::FastAsyncQueue, AckMode::None, false, 0);
}

fn pooled_concurrent_callers_all_get_acks() {
    let (rx, log) = receiver(|_| {});
    let (tx, _) = sender(ReplicationMode::Pooled, |c| c.max_pool_socket_limit = 4);
    let to = [rx.local_addr()];
    let opts = tx.default_options();
    std::thread::scope(|s| {
        for t in 0..4 {
            let tx = tx.clone();
            s.spawn(move || {
                for i in 0..500 {
                    tx.send(&to, payload(t * 1000 + i, 100), opts).unwrap();
                }
            });
        }
    });
    assert_eq!(log.lock().unwrap().len(), 2000);
    assert_eq!(tx.stats().acks_received, 2000);
}

fn listener_failure_comes_back_as_fail_in_every_mode() {
    for mode in [
        ReplicationMode::Synchronous,
        ReplicationMode::Pooled,
        ReplicationMode::Asynchronous,
        ReplicationMode::FastAsyncQueue,
    ] {
        let (rx, _) = receiver(|_| {});
        let (tx, _) = sender(mode, |_| {});
        let to = [rx.local_addr()];
        let opts = SendOptions {
            ack: AckMode::Delivery,
            compress: false,
        };
        let (_, t) = tx
            .send_with_ticket(&to, Bytes::from_static(b"please fail"), opts)
            .unwrap();
        match t.wait_ok(Duration::from_secs(10)) {
            Err(Error::RemoteFailure(r)) => assert!(r.contains("refused"), "{r}"),
            other => panic!("{mode:?}: expected FAIL, got {other:?}"),
        }
        // Ack on receipt ignores the listener's verdict (Tribes semantics).
        let opts = SendOptions {
            ack: AckMode::Receipt,
            compress: false,
        };
        let (_, t) = tx
            .send_with_ticket(&to, Bytes::from_static(b"please fail"), opts)
            .unwrap();
        assert!(t.wait_ok(Duration::from_secs(10)).is_ok(), "{mode:?}");
        tx.stop();
        rx.stop();
    }
}

fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn unreachable_member_is_reported_in_every_mode() {
    for mode in [
        ReplicationMode::Synchronous,
        ReplicationMode::Pooled,
        ReplicationMode::Asynchronous,
        ReplicationMode::FastAsyncQueue,
    ] {
        let (tx, _) = sender(mode, |c| {
            c.reconnect_backoff_min = Duration::from_millis(5);
            c.connect_timeout = Duration::from_millis(500);
        });
        let (_, t) = tx
            .send_with_ticket(
                &[dead_addr()],
                Bytes::from_static(b"x"),
                tx.default_options(),
            )
            .unwrap();
        match t.wait_ok(Duration::from_secs(10)) {
            Err(Error::Unreachable(_)) => {}
            other => panic!("{mode:?}: expected Unreachable, got {other:?}"),
        }
        tx.stop();
    }
}

fn ack_timeout_is_reported_when_the_listener_stalls() {
    for mode in [
        ReplicationMode::Synchronous,
        ReplicationMode::FastAsyncQueue,
    ] {
        let gate = Arc::new(Mutex::new(()));
        let g = gate.lock().unwrap();
        let g2 = gate.clone();
        let rx = Channel::builder(io_cfg())
            .listener(move |_| {
                drop(g2.lock().unwrap());
                Ok(())
            })
            .start()
            .unwrap();
        let (tx, _) = sender(mode, |c| c.ack_timeout = Duration::from_millis(100));
        let (_, t) = tx
            .send_with_ticket(
                &[rx.local_addr()],
                Bytes::from_static(b"x"),
                tx.default_options(),
            )
            .unwrap();
        assert!(
            matches!(t.wait_ok(Duration::from_secs(10)), Err(Error::Timeout)),
            "{mode:?}"
        );
        assert_eq!(tx.stats().timeouts, 1);
        drop(g);
        tx.stop();
        rx.stop();
    }
}

fn full_queue_is_an_error_the_caller_sees() {
    let gate = Arc::new(Mutex::new(()));
    let g = gate.lock().unwrap();
    let g2 = gate.clone();
    let rx = Channel::builder(io_cfg())
        .listener(move |_| {
            drop(g2.lock().unwrap());
            Ok(())
        })
        .start()
        .unwrap();
    let (tx, outcomes) = sender(ReplicationMode::FastAsyncQueue, |c| {
        c.max_queue_length = 8;
        c.queue_add_wait_timeout = Duration::from_millis(20);
        c.ack_timeout = Duration::from_secs(30);
    });
    let to = [rx.local_addr()];
    let big = Bytes::from(vec![7u8; 1 << 20]);
    let mut full = 0;
    for _ in 0..200 {
        match tx.send(&to, big.clone(), tx.default_options()) {
            Ok(_) => {}
            Err(Error::QueueFull) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    drop(g);
    tx.stop();
    // The caller sees QueueFull when the shared queue stays full; a
    // message the member's own queue cannot take ends QueueFull for that
    // member (reported, counted the same way).
    let member_full = outcomes
        .lock()
        .unwrap()
        .values()
        .filter(|s| s.contains("queue full"))
        .count() as u64;
    assert!(full + member_full > 0, "queue never filled");
    assert_eq!(tx.stats().queue_full, full + member_full);
    rx.stop();
}

fn one_message_to_many_members_reaches_each() {
    let rxs: Vec<_> = (0..3).map(|_| receiver(|_| {})).collect();
    let to: Vec<_> = rxs.iter().map(|(c, _)| c.local_addr()).collect();
    for mode in [
        ReplicationMode::Pooled,
        ReplicationMode::Asynchronous,
        ReplicationMode::FastAsyncQueue,
    ] {
        let (tx, _) = sender(mode, |_| {});
        let (_, t) = tx
            .send_with_ticket(&to, Bytes::from_static(b"to all"), tx.default_options())
            .unwrap();
        let outs = t.wait(Duration::from_secs(10)).unwrap();
        assert_eq!(outs.len(), 3);
        assert!(outs.iter().all(|(_, o)| o.is_ok()), "{mode:?} {outs:?}");
        tx.stop();
    }
    for (_, log) in &rxs {
        assert_eq!(log.lock().unwrap().len(), 3);
    }
}

fn stop_reports_shutdown_for_what_is_queued() {
    let gate = Arc::new(Mutex::new(()));
    let g = gate.lock().unwrap();
    let g2 = gate.clone();
    let rx = Channel::builder(io_cfg())
        .listener(move |_| {
            drop(g2.lock().unwrap());
            Ok(())
        })
        .start()
        .unwrap();
    let (tx, outcomes) = sender(ReplicationMode::FastAsyncQueue, |_| {});
    let to = [rx.local_addr()];
    let n = 50;
    for i in 0..n {
        tx.send(&to, payload(i, 10), tx.default_options()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    tx.stop();
    assert_eq!(
        outcomes.lock().unwrap().len(),
        n,
        "every message has an outcome"
    );
    assert!(matches!(
        tx.send(&to, payload(0, 1), tx.default_options()),
        Err(Error::NotRunning)
    ));
    drop(g);
    rx.stop();
}
