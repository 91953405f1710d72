//! sessionrepl's own runs of the scenarios, and the `sessionrepl bench`
//! command that prints floor, sessionrepl and Tribes lines from one run.

use super::{floor, tribes, warmup_count, BenchLine, LatencyRecorder, Scenario};
use bytes::Bytes;
use sessionrepl::config::AckMode;
use sessionrepl::transport::SendOptions;
use sessionrepl::{Channel, Config, ReplicationMode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of one bench run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Divide default counts by this.
    pub scale: u64,
    /// `ioBackend` for sessionrepl's runs.
    pub io: String,
    /// Run the raw-socket floor.
    pub floor: bool,
    /// Run the Tribes peer.
    pub peer: bool,
    /// `--plot FILE.svg`: draw the run's lines (see [`super::plot`]).
    pub plot: Option<std::path::PathBuf>,
    /// `--from FILE`: plot the bench lines of an earlier run instead of
    /// running (with `--plot`).
    pub from: Option<std::path::PathBuf>,
    /// `--rounds N`: every scenario's rows N times, interleaved, then the
    /// median of the per-round ratios (see [`super::rounds`]).
    pub rounds: u32,
}

/// A receiving and a sending channel, both on the `io` driver (the receiver
/// is the side the driver matters most to: the synchronous modes write
/// from the caller's thread), the sender in `mode` and edited by `edit`.
fn channel_pair(
    mode: ReplicationMode,
    io: &str,
    edit: impl FnOnce(&mut Config),
) -> sessionrepl::Result<(Channel, Channel, Arc<AtomicU64>)> {
    let got = Arc::new(AtomicU64::new(0));
    let g2 = got.clone();
    let mut rx_cfg = bench_config()?;
    rx_cfg.io_backend = io.to_string();
    let rx = Channel::builder(rx_cfg)
        .listener(move |_| {
            g2.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .start()?;
    let mut cfg = bench_config()?;
    cfg.io_backend = io.to_string();
    cfg.replication_mode = mode;
    cfg.queue_add_wait_timeout = Duration::from_secs(60);
    cfg.ack_timeout = Duration::from_secs(30);
    cfg.max_pool_socket_limit = 8;
    edit(&mut cfg);
    let tx = Channel::builder(cfg).start()?;
    Ok((rx, tx, got))
}

/// `--set key=value` pairs of the bench command, applied to every channel
/// the scenarios start (tuning experiments: `idleSpinMicros`, buffers, ...).
static BENCH_SETS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Set while the clear-text comparison rows of an encrypted run are
/// measured: [`bench_config`] then leaves the security settings out.
static CLEAR_TEXT_ROWS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True for the settings that turn encryption on.
fn is_security_key(k: &str) -> bool {
    k.starts_with("encryption") || k.starts_with("tls")
}

/// A default config with the bench's `--set` pairs applied.
///
/// # Errors
/// A pair the config refuses.
pub fn bench_config() -> sessionrepl::Result<Config> {
    let mut cfg = Config::default();
    let clear = CLEAR_TEXT_ROWS.load(Ordering::Relaxed);
    for (k, v) in BENCH_SETS.get().map(Vec::as_slice).unwrap_or_default() {
        if clear && is_security_key(k) {
            continue;
        }
        cfg.set(k, v)?;
    }
    Ok(cfg)
}

/// The security mode of the bench's settings (`none`, `shared-key`,
/// `tls`), for the `sec=` field.
fn security_mode() -> &'static str {
    match bench_config().map(|c| c.security.context()) {
        Ok(Ok(Some(ctx))) => ctx.mode_name(),
        _ => "none",
    }
}

fn wait_for(got: &AtomicU64, n: u64, limit: Duration) -> sessionrepl::Result<()> {
    let deadline = Instant::now() + limit;
    while got.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(sessionrepl::Error::Timeout);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    Ok(())
}

/// How the S1 rows hand each payload to `send`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Payload {
    /// One shared `Bytes`, cloned per send (a reference count).
    Shared,
    /// A fresh allocation per send (`Bytes::copy_from_slice`): a Rust
    /// caller that copies into its own buffer; row `payload=copied`.
    Copied,
    /// A copy per send into the channel's pooled memory
    /// (`Channel::copy_payload`), as `sr_channel_send` (the C API) and the
    /// Java binding copy; row `payload=pooled`.
    Pooled,
}

/// One-way stream (S1, S5): `count` messages of `size` bytes, no ack.
fn stream(
    s: Scenario,
    count: u64,
    size: usize,
    compress: bool,
    how: Payload,
    io: &str,
) -> sessionrepl::Result<BenchLine> {
    let (rx, tx, got) = channel_pair(ReplicationMode::FastAsyncQueue, io, |c| {
        c.compress = compress;
    })?;
    let to = [rx.local_addr()];
    let opts = SendOptions {
        ack: AckMode::None,
        compress,
    };
    // S5 (compressed) cycles through distinct session-like payloads, S1
    // sends one payload.
    let payloads: Vec<Bytes> = if compress {
        super::session_payloads(super::SESSION_PAYLOADS, size)
            .into_iter()
            .map(Bytes::from)
            .collect()
    } else {
        vec![Bytes::from(super::payload(size))]
    };
    let next = std::cell::Cell::new(0usize);
    // `Shared`: one `Bytes` cloned for every message (its reference count
    // then bounces between the caller's and the I/O thread's cores); the
    // others copy the caller's bytes for each message.
    let send = |tx: &Channel| {
        let i = next.get();
        next.set(if i + 1 == payloads.len() { 0 } else { i + 1 });
        let payload = &payloads[i];
        let p = match how {
            Payload::Shared => payload.clone(),
            Payload::Copied => Bytes::copy_from_slice(payload),
            Payload::Pooled => tx.copy_payload(payload),
        };
        tx.send(&to, p, opts)
    };
    let warm = warmup_count(count);
    for _ in 0..warm {
        send(&tx)?;
    }
    wait_for(&got, warm, Duration::from_secs(60))?;
    let t0 = Instant::now();
    for _ in 0..count {
        send(&tx)?;
    }
    wait_for(&got, warm + count, Duration::from_secs(300))?;
    let el = t0.elapsed();
    let st = tx.stats();
    tx.stop();
    rx.stop();
    let line = BenchLine::measured(s, "sessionrepl", count, size as u64, el)
        .with_extra("wire_bytes", st.bytes_sent);
    Ok(match how {
        Payload::Shared => line,
        Payload::Copied => line.with_extra("payload", "copied"),
        Payload::Pooled => line.with_extra("payload", "pooled"),
    })
}

/// Request/ack (S2, S3, S4): `threads` callers, each send waits for its ack.
fn acked(
    s: Scenario,
    count: u64,
    size: usize,
    threads: usize,
    io: &str,
) -> sessionrepl::Result<BenchLine> {
    let mode = if threads > 1 {
        ReplicationMode::Pooled
    } else {
        ReplicationMode::Synchronous
    };
    let (rx, tx, got) = channel_pair(mode, io, |_| {})?;
    let to = [rx.local_addr()];
    let opts = SendOptions {
        ack: AckMode::Delivery,
        compress: false,
    };
    let payload = Bytes::from(super::payload(size));
    let per = count / threads as u64;
    let warm = warmup_count(count) / threads as u64;
    let run = |n: u64, rec: &mut Option<LatencyRecorder>| -> sessionrepl::Result<()> {
        for _ in 0..n {
            let t = Instant::now();
            tx.send(&to, payload.clone(), opts)?;
            if let Some(r) = rec.as_mut() {
                r.record(t.elapsed());
            }
        }
        Ok(())
    };
    let mut recs = Vec::new();
    let mut el = Duration::ZERO;
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|sc| -> sessionrepl::Result<()> {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (run, barrier) = (&run, &barrier);
                sc.spawn(move || -> sessionrepl::Result<LatencyRecorder> {
                    run(warm, &mut None)?;
                    barrier.wait();
                    let mut r = Some(LatencyRecorder::with_capacity(per as usize));
                    let res = run(per, &mut r);
                    barrier.wait();
                    res.map(|()| r.unwrap_or_else(|| LatencyRecorder::with_capacity(0)))
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        barrier.wait();
        el = t0.elapsed();
        for h in hs {
            recs.push(h.join().map_err(|_| sessionrepl::Error::Shutdown)??);
        }
        Ok(())
    })?;
    let mut all = LatencyRecorder::with_capacity(count as usize);
    for r in &recs {
        all.merge(r);
    }
    let n = per * threads as u64;
    debug_assert!(got.load(Ordering::Relaxed) >= n);
    tx.stop();
    rx.stop();
    let mut line =
        BenchLine::measured(s, "sessionrepl", n, size as u64, el).with_latency(all.percentiles());
    if threads > 1 {
        line = line.with_extra("threads", threads);
    }
    Ok(line)
}

/// Runs sessionrepl's side of one scenario; `None` where it has none yet.
///
/// # Errors
/// Whatever failed in the channel.
pub fn run_sessionrepl(
    s: Scenario,
    count: u64,
    io: &str,
) -> sessionrepl::Result<Option<BenchLine>> {
    let size = s.default_size();
    Ok(Some(match s {
        Scenario::S1 => stream(s, count, size, false, Payload::Shared, io)?,
        Scenario::S5 => stream(s, count, size, true, Payload::Shared, io)?,
        Scenario::S2 | Scenario::S4 => acked(s, count, size, 1, io)?,
        Scenario::S3 => acked(s, count, size, s.threads(), io)?,
        Scenario::S6 => match super::session::s6(count, io)?.into_iter().next() {
            Some(l) => l,
            None => return Ok(None),
        },
        Scenario::S7 => super::session::s7(count, size, io)?,
    }))
}

/// Every line sessionrepl prints for a scenario: S6 has three workloads
/// (1 KiB deltas, 100 × 1 KiB attributes, one 100 KiB attribute), S1 three
/// (one shared `Bytes` cloned per send; a fresh allocation per send,
/// `payload=copied`; a copy per send into the channel's pooled memory as
/// `sr_channel_send` makes, `payload=pooled`), the others one line.
///
/// # Errors
/// Whatever failed in the channel or the stores.
pub fn run_sessionrepl_lines(
    s: Scenario,
    count: u64,
    io: &str,
) -> sessionrepl::Result<Vec<BenchLine>> {
    match s {
        Scenario::S6 => super::session::s6(count, io),
        // More S1 rows: each payload copied per send (see `Payload`).
        Scenario::S1 => [Payload::Shared, Payload::Copied, Payload::Pooled]
            .into_iter()
            .map(|how| stream(s, count, s.default_size(), false, how, io))
            .collect(),
        _ => Ok(run_sessionrepl(s, count, io)?.into_iter().collect()),
    }
}

/// Parses `sessionrepl bench` arguments.
///
/// # Errors
/// A message naming the bad argument.
pub fn parse_args(args: &[String]) -> Result<BenchOptions, String> {
    let mut o = BenchOptions {
        scenarios: Scenario::ALL.to_vec(),
        scale: 1,
        io: "mio".into(),
        floor: true,
        peer: true,
        plot: None,
        from: None,
        rounds: 1,
    };
    let mut sets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--scenario" => {
                o.scenarios = super::parse_scenarios(&val()?).map_err(|e| e.to_string())?
            }
            "--scale" => {
                o.scale = val()?
                    .parse()
                    .ok()
                    .filter(|n: &u64| *n >= 1)
                    .ok_or("--scale takes a whole number >= 1")?
            }
            "--io" => {
                let v = val()?;
                sessionrepl::__internal::driver::Backend::resolve(&v).map_err(|e| e.to_string())?;
                o.io = v;
            }
            "--no-peer" => o.peer = false,
            "--set" => {
                let kv = val()?;
                let (k, v) = kv.split_once('=').ok_or("--set takes key=value")?;
                Config::default().set(k, v).map_err(|e| e.to_string())?;
                sets.push((k.to_string(), v.to_string()));
            }
            "--no-floor" => o.floor = false,
            "--rounds" => {
                o.rounds = val()?
                    .parse()
                    .ok()
                    .filter(|n: &u32| (1..=100).contains(n))
                    .ok_or("--rounds takes a whole number from 1 to 100")?
            }
            "--plot" => o.plot = Some(val()?.into()),
            "--from" => o.from = Some(val()?.into()),
            other => {
                return Err(format!(
                    "unknown bench option '{other}' (see `sessionrepl help`)"
                ))
            }
        }
    }
    if o.from.is_some() && o.plot.is_none() {
        return Err("--from needs --plot FILE.svg".into());
    }
    let _ = BENCH_SETS.set(sets);
    Ok(o)
}

/// `sessionrepl bench`: for each scenario, the floor, sessionrepl and the
/// Tribes peer, one line each, from the same run.
///
/// # Errors
/// Bad arguments or a failed sessionrepl run.
pub fn cli(args: &[String]) -> Result<(), String> {
    let o = parse_args(args)?;
    if let (Some(from), Some(plot)) = (&o.from, &o.plot) {
        let text = std::fs::read_to_string(from).map_err(|e| format!("{}: {e}", from.display()))?;
        super::plot::plot_svg(&super::plot::read_lines(&text), plot)?;
        println!("plot {}", plot.display());
        return Ok(());
    }
    let mut rounds: Vec<Vec<BenchLine>> = Vec::new();
    for r in 1..=o.rounds {
        if o.rounds > 1 {
            println!("# round {r} of {}", o.rounds);
        }
        let mut done: Vec<BenchLine> = Vec::new();
        run_round(&o, &mut |l: BenchLine| {
            println!("{l}");
            done.push(l);
        })?;
        rounds.push(done);
    }
    if o.rounds > 1 {
        for l in super::rounds::summary(&rounds) {
            println!("{l}");
        }
    }
    let done: Vec<BenchLine> = rounds.into_iter().flatten().collect();
    if let Some(plot) = &o.plot {
        super::plot::plot_svg(&done, plot)?;
        println!("plot {}", plot.display());
    }
    Ok(())
}

/// One round: every scenario's floor, sessionrepl and peer rows, each
/// handed to `out` as it is measured.
fn run_round(o: &BenchOptions, out: &mut dyn FnMut(BenchLine)) -> Result<(), String> {
    for &s in &o.scenarios {
        let count = s.scaled_count(o.scale);
        let size = s.default_size();
        if o.floor {
            match floor::for_scenario(s, count, size) {
                Ok(Some(l)) => out(l),
                Ok(None) => {}
                Err(e) => eprintln!("{} floor failed: {e}", s.id()),
            }
        }
        let sec = security_mode();
        if sec != "none" {
            // The clear-text rows to compare with, from the same run.
            CLEAR_TEXT_ROWS.store(true, Ordering::Relaxed);
            let r = run_sessionrepl_lines(s, count, &o.io);
            CLEAR_TEXT_ROWS.store(false, Ordering::Relaxed);
            match r {
                Ok(lines) => {
                    for l in lines {
                        out(l.with_extra("io", &o.io).with_extra("sec", "none"));
                    }
                }
                Err(e) => return Err(format!("{} (clear text) failed: {e}", s.id())),
            }
        }
        match run_sessionrepl_lines(s, count, &o.io) {
            Ok(lines) if !lines.is_empty() => {
                for l in lines {
                    out(l.with_extra("io", &o.io).with_extra("sec", sec));
                }
            }
            Ok(_) => eprintln!(
                "{} {}: not implemented in sessionrepl yet",
                s.id(),
                s.name()
            ),
            Err(e) => return Err(format!("{} failed: {e}", s.id())),
        }
        if o.peer {
            // Tribes is an order of magnitude slower; a smaller count keeps the
            // run short without changing its per-message figures much.
            let n = (count / 5).max(s.threads() as u64 * 100);
            match tribes::run_scenario(s, n, size, Duration::from_secs(300)) {
                Ok(Some(l)) => out(l),
                Ok(None) => {}
                Err(e) => eprintln!("{} tribes failed: {e}", s.id()),
            }
            // With `--set encryptionKey=...`, Tribes with EncryptInterceptor
            // under the same key as the peer row to compare with.
            if let Some(key) = bench_config().ok().and_then(|c| c.security.encryption_key) {
                let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
                match tribes::run_scenario_keyed(s, n, size, Duration::from_secs(300), Some(&hex)) {
                    Ok(Some(l)) => out(l),
                    Ok(None) => {}
                    Err(e) => eprintln!("{} tribes-encrypt failed: {e}", s.id()),
                }
            }
        }
    }
    Ok(())
}
