//! `sessionrepl demo`: two nodes on loopback exchange messages in each
//! replication mode, and the demo tells what happened.

use bytes::Bytes;
use sessionrepl::config::AckMode;
use sessionrepl::transport::SendOptions;
use sessionrepl::{Channel, Config, ReplicationMode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(_args: &[String]) -> Result<(), String> {
    let e = |e: sessionrepl::Error| e.to_string();
    let received = Arc::new(AtomicU64::new(0));
    let r2 = received.clone();
    let b = Channel::builder(Config::default())
        .listener(move |m| {
            r2.fetch_add(1, Ordering::Relaxed);
            if &m.payload[..] == b"reject me" {
                return Err("node B's listener rejected the message".into());
            }
            Ok(())
        })
        .start()
        .map_err(e)?;
    println!("node B listening on {}", b.local_addr());
    let to = [b.local_addr()];
    for mode in [
        ReplicationMode::Synchronous,
        ReplicationMode::Pooled,
        ReplicationMode::Asynchronous,
        ReplicationMode::FastAsyncQueue,
    ] {
        let mut cfg = Config::default();
        cfg.replication_mode = mode;
        let acked = Arc::new(AtomicU64::new(0));
        let a2 = acked.clone();
        let a = Channel::builder(cfg)
            .outcome_listener(move |_, _, o| {
                if o.is_ok() {
                    a2.fetch_add(1, Ordering::Relaxed);
                }
            })
            .start()
            .map_err(e)?;
        let before = received.load(Ordering::Relaxed);
        let n = 10_000u64;
        let payload = Bytes::from(sessionrepl::bench::payload(1024));
        let t0 = Instant::now();
        for _ in 0..n {
            a.send(&to, payload.clone(), a.default_options())
                .map_err(e)?;
        }
        a.flush(Duration::from_secs(30)).map_err(e)?;
        let secs = t0.elapsed().as_secs_f64();
        let opts = SendOptions {
            ack: AckMode::Delivery,
            compress: true,
        };
        let (_, t) = a
            .send_with_ticket(&to, Bytes::from_static(b"reject me"), opts)
            .map_err(e)?;
        let rejected = t.wait_ok(Duration::from_secs(10));
        let got = received.load(Ordering::Relaxed) - before;
        let st = a.stats();
        println!(
            "{:>15}: node A sent {n} x 1 KiB to B in {:.1} ms ({:.0} msgs/s); B delivered {got}; acks {}; \
             a message B's listener rejected came back as: {}",
            mode.as_str(),
            secs * 1e3,
            n as f64 / secs,
            st.acks_received,
            match rejected {
                Err(e) => e.to_string(),
                Ok(d) => format!("{d:?} (unexpected)"),
            }
        );
        a.stop();
    }
    let st = b.stats();
    println!(
        "node B totals: {} messages, {} bytes received, {} acks sent, {} listener errors, {} protocol errors",
        st.msgs_received, st.bytes_received, st.acks_sent, st.listener_errors, st.protocol_errors
    );
    b.stop();
    Ok(())
}
