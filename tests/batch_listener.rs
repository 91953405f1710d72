//! The channel's batch listener (`ChannelBuilder::batch_listener`), inline
//! (`tcpThreadCount=0`) and on worker threads: every message once, in
//! order, in batches of more than one, with per-message results (a refusal,
//! a panic, a missing result) coming back to the sender as FAILs.

use bytes::Bytes;
use sessionrepl::config::AckMode;
use sessionrepl::transport::{BatchListener, Message, SendOptions, MAX_DELIVERY_BATCH};
use sessionrepl::{Channel, ReplicationMode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[macro_use]
mod common;
use common::io_cfg;

on_both_drivers!(
    batch_listener_inline_sees_batches_and_per_message_results,
    batch_listener_on_workers_sees_batches_and_per_message_results,
);

fn batch_listener_inline_sees_batches_and_per_message_results() {
    run(0);
}

fn batch_listener_on_workers_sees_batches_and_per_message_results() {
    run(2);
}

/// What the listener saw: payloads in order and the largest batch.
#[derive(Default)]
struct Seen {
    payloads: Vec<Bytes>,
    largest: usize,
}

fn run(workers: usize) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    let batch: BatchListener = Arc::new(
        move |msgs: &[&Message], out: &mut Vec<Result<(), String>>| {
            let mut s = s2.lock().unwrap_or_else(|e| e.into_inner());
            assert!(msgs.len() <= MAX_DELIVERY_BATCH, "batch of {}", msgs.len());
            s.largest = s.largest.max(msgs.len());
            for m in msgs {
                match &m.payload[..] {
                    b"panic" => panic!("test listener panics"),
                    // no result for this one nor any after it in its batch
                    b"silent" => return,
                    b"please fail" => out.push(Err("refused by batch listener".into())),
                    _ => {
                        s.payloads.push(m.payload.clone());
                        out.push(Ok(()));
                    }
                }
            }
        },
    );
    let mut cfg = io_cfg();
    cfg.tcp_thread_count = workers;
    let rx = Channel::builder(cfg)
        .listener(|_| Err("the per-message listener must not be called".into()))
        .batch_listener(batch)
        .start()
        .unwrap();
    let outcomes: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let o2 = outcomes.clone();
    let mut cfg = io_cfg();
    cfg.replication_mode = ReplicationMode::FastAsyncQueue;
    cfg.ack_timeout = Duration::from_secs(10);
    let tx = Channel::builder(cfg)
        .outcome_listener(move |id, _, o| {
            let s = match o {
                Ok(_) => "ok".to_string(),
                Err(e) => e.to_string(),
            };
            assert!(
                o2.lock().unwrap().insert(id, s).is_none(),
                "two outcomes for {id}"
            );
        })
        .start()
        .unwrap();
    let to = [rx.local_addr()];
    let opts = SendOptions {
        ack: AckMode::Delivery,
        compress: false,
    };
    let n = 3000usize;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let p: Bytes = match i {
            1000 => "please fail".into(),
            2000 => "panic".into(),
            2500 => "silent".into(),
            _ => format!("message {i:05}").into(),
        };
        loop {
            match tx.send(&to, p.clone(), opts) {
                Ok(id) => break ids.push(id),
                Err(sessionrepl::Error::QueueFull) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(e) => panic!("send {i}: {e}"),
            }
        }
    }
    let end = Instant::now() + Duration::from_secs(60);
    while outcomes.lock().unwrap().len() < n {
        assert!(
            Instant::now() < end,
            "outcomes: {} of {n}",
            outcomes.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let outcomes = outcomes.lock().unwrap();
    let failed: Vec<(usize, &String)> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| (outcomes[id] != "ok").then_some((i, &outcomes[id])))
        .collect();
    // A panic or a missing result fails the rest of that batch, so the
    // count of failures is bounded, not exact; the refusals are exact.
    let fail_at = |i: usize| {
        failed
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, s)| s.as_str())
    };
    assert!(
        fail_at(1000).is_some_and(|s| s.contains("refused by batch listener")),
        "{failed:?}"
    );
    assert!(
        fail_at(2000).is_some_and(|s| s.contains("listener panicked")),
        "{failed:?}"
    );
    assert!(
        fail_at(2500).is_some_and(|s| s.contains("listener gave no result")),
        "{failed:?}"
    );
    assert!(
        failed.len() < 3 + 3 * MAX_DELIVERY_BATCH,
        "{} failures",
        failed.len()
    );
    let s = seen.lock().unwrap_or_else(|e| e.into_inner());
    // What the listener saw is intact and in order, and holds every message
    // whose sender got an ack (a panic also fails the messages its batch
    // handled before it, so those were seen but failed).
    let seen_idx: Vec<usize> = s
        .payloads
        .iter()
        .map(|p| {
            let t = std::str::from_utf8(p).unwrap();
            t.strip_prefix("message ").unwrap().parse().unwrap()
        })
        .collect();
    assert!(
        seen_idx.windows(2).all(|w| w[0] < w[1]),
        "out of order or twice"
    );
    for i in (0..n).filter(|i| fail_at(*i).is_none()) {
        assert!(
            seen_idx.binary_search(&i).is_ok(),
            "acked message {i} not seen"
        );
    }
    if workers == 0 {
        // The sender packs BATCH frames; one read turn holds many messages.
        assert!(s.largest > 1, "largest batch {}", s.largest);
    }
}
