//! Measures where `SENDMSG_ZC` pays on this machine: the io_uring engine
//! streams `count` frames of each size to a receiver on loopback, once with
//! plain `sendmsg` and once with zero-copy sends, back to back.
//!
//! `cargo run --release --example zc_threshold`

use bytes::Bytes;
use sessionrepl::__internal::driver::uring::UringTuning;
use sessionrepl::__internal::transport::Pump;
use sessionrepl::__internal::transport::Shared;
use sessionrepl::__internal::transport::{Dest, Outgoing};
use sessionrepl::{Channel, Config};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn run(size: usize, zc_min: usize, total_bytes: usize) -> f64 {
    let got = Arc::new(AtomicU64::new(0));
    let g2 = got.clone();
    let mut rcfg = Config::default();
    rcfg.io_backend = "uring".into();
    let rx = Channel::builder(rcfg)
        .listener(move |_| {
            g2.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .start()
        .expect("receiver");
    let mut cfg = Config::default();
    cfg.max_queue_length = 4096;
    let shared = Arc::new(Shared::new(cfg, [1; 16], None));
    let pump = Pump::start_uring(
        shared,
        "zc",
        UringTuning {
            zc_min,
            zc_loopback: true,
            hot_reads: false,
        },
        false,
    )
    .expect("pump");
    let payload = Bytes::from(vec![7u8; size]);
    let count = (total_bytes / size).max(1000) as u64;
    let to = rx.local_addr();
    let t0 = Instant::now();
    for id in 0..count {
        let item = Outgoing {
            id,
            dest: Dest::One(to),
            payload: payload.clone(),
            flags: 0,
            ticket: None,
        };
        pump.send(item).expect("queued");
    }
    while got.load(Ordering::Relaxed) < count {
        std::thread::sleep(Duration::from_micros(50));
    }
    let secs = t0.elapsed().as_secs_f64();
    pump.stop();
    rx.stop();
    (count as usize * size) as f64 / secs / 1e6
}

fn main() {
    for size in [1024, 4096, 16 * 1024, 64 * 1024, 256 * 1024] {
        let copy = run(size, usize::MAX, 512 << 20);
        let zc = run(size, 0, 512 << 20);
        println!(
            "size={size} sendmsg_MB_per_s={copy:.0} sendmsg_zc_MB_per_s={zc:.0} zc/copy={:.2}",
            zc / copy
        );
    }
}
