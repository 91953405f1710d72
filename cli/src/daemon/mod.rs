//! `sessionrepl node`: one node as an operator runs it (docs/OPERATIONS.md).
//!
//! ```text
//! sessionrepl node [--store] [--config FILE] [--set key=value]... [--log-level L]
//! ```
//!
//! - `--config FILE`: `key=value` lines, or a Tomcat `server.xml` (its
//!   `<Cluster>` mapped to keys; a server.xml makes a session-store node).
//! - `--store` (or `nodeMode=store`): a session-store node; otherwise a
//!   channel node that prints the messages it receives.
//! - Node keys besides the library's: `metricsPort` (0 = no endpoint, the
//!   default), `metricsAddress` (default 127.0.0.1), `logLevel` (`error`,
//!   `warn`, `info`, `debug`), `drainTimeout` (ms, default 30000),
//!   `nodeMode` (`channel` or `store`).
//!
//! Output, one line each, flushed at once: `config-ignored <what>` for each
//! setting of a server.xml without an equivalent, `ready addr=<host:port>`,
//! `metrics addr=<host:port>`, member events and messages (channel mode),
//! `store-ready sessions=<n>` once state transfer is done or
//! `store-transfer-failed <why>` (store mode), then on SIGTERM/SIGINT `draining` and `drained
//! handoffs=<n>` (store mode) and `stopped`. SIGTERM and SIGINT are taken
//! synchronously (blocked, then `sigtimedwait`): no handler is installed.

mod metrics;
mod server_xml;

use metrics::{metric, MetricsServer, Render};
use sessionrepl::__internal::driver::sys::{block_signals, wait_signal};
use sessionrepl::log::{set_max_level, Level};
use sessionrepl::session::{SessionEvent, SessionStore};
use sessionrepl::{Channel, Config, Error};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Settings of the node program (not of the library).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Run a session store rather than a bare channel.
    pub store: bool,
    /// Port of `/metrics`; 0 = none.
    pub metrics_port: u16,
    /// Address `/metrics` binds (loopback unless told otherwise).
    pub metrics_address: IpAddr,
    /// Log level, when set.
    pub log_level: Option<Level>,
    /// How long a drain on SIGTERM may take before the node stops anyway.
    pub drain_timeout: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            store: false,
            metrics_port: 0,
            metrics_address: IpAddr::from([127, 0, 0, 1]),
            log_level: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Sets a node key or, failing that, a library key.
fn apply(cfg: &mut Config, o: &mut NodeOptions, k: &str, v: &str) -> sessionrepl::Result<()> {
    let (k, v) = (k.trim(), v.trim());
    let bad = sessionrepl::config::bad;
    match k {
        "metricsPort" => {
            o.metrics_port = sessionrepl::config::parse_u64(k, v, 0, 65535)? as u16;
        }
        "metricsAddress" => {
            o.metrics_address = v.parse().map_err(|_| bad(k, "expected an IP address"))?;
        }
        "logLevel" => {
            o.log_level =
                Some(Level::parse(v).ok_or_else(|| bad(k, "expected error, warn, info or debug"))?);
        }
        "drainTimeout" => {
            o.drain_timeout = sessionrepl::config::parse_ms(k, v, 1, 24 * 3600 * 1000)?;
        }
        "nodeMode" => {
            o.store = match v {
                "store" => true,
                "channel" => false,
                _ => return Err(bad(k, "expected channel or store")),
            }
        }
        _ => cfg.set(k, v)?,
    }
    Ok(())
}

/// Reads a `--config` file into `cfg` and `o`; returns what a server.xml
/// had without an equivalent.
fn read_config(path: &str, cfg: &mut Config, o: &mut NodeOptions) -> Result<Vec<String>, String> {
    // Bounded read: a FIFO or device reports no length up front.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            use std::io::Read;
            f.take(server_xml::MAX_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(|e| format!("{path}: {e}"))?;
    if text.len() > server_xml::MAX_BYTES {
        return Err(format!(
            "{path}: larger than {} bytes",
            server_xml::MAX_BYTES
        ));
    }
    if !server_xml::is_xml(&text) {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("{path}: line {}: expected key=value", n + 1))?;
            apply(cfg, o, k, v).map_err(|e| format!("{path}: line {}: {e}", n + 1))?;
        }
        return Ok(Vec::new());
    }
    let mapped = server_xml::map(&text).map_err(|e| format!("{path}: {e}"))?;
    o.store = true;
    let mut ignored = mapped.ignored;
    for s in mapped.settings {
        match apply(cfg, o, &s.key, &s.value) {
            Ok(()) => {}
            Err(Error::UnknownConfigKey(_)) => ignored.push(format!(
                "{} ({}): unknown to sessionrepl, ignored",
                s.origin, s.key
            )),
            Err(e) => return Err(format!("{path}: {}: {e}", s.origin)),
        }
    }
    Ok(ignored)
}

/// Parses the command line: the library config, the node options and the
/// server.xml settings that were ignored.
///
/// # Errors
/// An unknown option, a bad key or value, an unreadable file.
pub fn parse_args(args: &[String]) -> Result<(Config, NodeOptions, Vec<String>), String> {
    let mut cfg = Config::default();
    let mut o = NodeOptions::default();
    let mut ignored = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--set" => {
                let kv = it.next().ok_or("--set needs key=value")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--set {kv}: expected key=value"))?;
                apply(&mut cfg, &mut o, k, v).map_err(|e| e.to_string())?;
            }
            "--config" => {
                let f = it.next().ok_or("--config needs a file")?;
                ignored.extend(read_config(f, &mut cfg, &mut o)?);
            }
            "--store" => o.store = true,
            "--log-level" => {
                let l = it.next().ok_or("--log-level needs a level")?;
                apply(&mut cfg, &mut o, "logLevel", l).map_err(|e| e.to_string())?;
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok((cfg, o, ignored))
}

/// One line to stdout, flushed at once (scripts and tests read it live).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

const STOP_SIGNALS: [i32; 2] = [libc::SIGTERM, libc::SIGINT];

/// Blocks until SIGTERM or SIGINT.
fn wait_for_stop() -> Result<i32, String> {
    loop {
        if let Some(s) = wait_signal(&STOP_SIGNALS, Duration::from_millis(500))
            .map_err(|e| format!("sigtimedwait: {e}"))?
        {
            return Ok(s);
        }
    }
}

fn channel_metrics(ch: &Channel, out: &mut String) {
    out.push_str(&ch.stats().to_prometheus());
    metric(
        out,
        "sessionrepl_members",
        "gauge",
        "Members in the member list now.",
        ch.members().len() as u64,
    );
}

fn start_metrics(o: &NodeOptions, render: Render) -> Result<Option<MetricsServer>, String> {
    if o.metrics_port == 0 {
        return Ok(None);
    }
    let addr = SocketAddr::new(o.metrics_address, o.metrics_port);
    let m = MetricsServer::start(addr, render).map_err(|e| format!("metrics on {addr}: {e}"))?;
    say(&format!("metrics addr={}", m.addr()));
    Ok(Some(m))
}

/// Runs `sessionrepl node`.
///
/// # Errors
/// Bad arguments, a start failure, or a drain that did not finish.
pub fn run(args: &[String]) -> Result<(), String> {
    let (cfg, o, ignored) = parse_args(args)?;
    if let Some(l) = o.log_level {
        set_max_level(l);
    }
    for i in &ignored {
        say(&format!("config-ignored {i}"));
    }
    // Before any thread starts, so every thread inherits the mask and the
    // signals wait for `wait_for_stop`.
    block_signals(&STOP_SIGNALS).map_err(|e| format!("pthread_sigmask: {e}"))?;
    if o.store {
        run_store(cfg, &o)
    } else {
        run_channel(cfg, &o)
    }
}

fn run_channel(cfg: Config, o: &NodeOptions) -> Result<(), String> {
    let ch = Channel::builder(cfg)
        .listener(|m| {
            say(&format!(
                "message from={} bytes={}",
                m.from,
                m.payload.len()
            ));
            Ok(())
        })
        .member_listener(|ev| say(&ev.to_string()))
        .start()
        .map_err(|e| e.to_string())?;
    let ch = Arc::new(ch);
    say(&format!("ready addr={}", ch.local_addr()));
    let c2 = ch.clone();
    let m = start_metrics(
        o,
        Arc::new(move || {
            let mut s = String::new();
            channel_metrics(&c2, &mut s);
            s
        }),
    )?;
    wait_for_stop()?;
    drop(m);
    ch.stop();
    say("stopped");
    Ok(())
}

/// The store's counters, `sessionrepl_store_*`.
fn store_metrics(st: &SessionStore, out: &mut String) {
    let s = st.stats();
    let counters: [(&str, u64, &str); 19] = [
        (
            "commits",
            s.commits,
            "Commits, creates, invalidations and id changes started here.",
        ),
        (
            "commits_acked",
            s.commits_acked,
            "Commits acknowledged by every required copy.",
        ),
        (
            "commits_failed",
            s.commits_failed,
            "Commits not acknowledged.",
        ),
        ("conflicts", s.conflicts, "Concurrent versions met."),
        ("applied", s.applied, "Replicated changes applied here."),
        (
            "stale",
            s.stale,
            "Replicated changes ignored as older than what is here.",
        ),
        ("gaps", s.gaps, "Deltas refused for a missing base."),
        (
            "copies_sent",
            s.copies_sent,
            "Whole copies sent (repair, rebalance, hand-off).",
        ),
        (
            "decode_errors",
            s.decode_errors,
            "Messages that could not be decoded.",
        ),
        ("expired", s.expired, "Sessions expired here."),
        (
            "promotions",
            s.promotions,
            "Sessions that became primary here after their primary left.",
        ),
        (
            "rereplications",
            s.rereplications,
            "Copies sent to restore the number of copies.",
        ),
        (
            "transfers_served",
            s.transfers_served,
            "State transfers served to joiners.",
        ),
        (
            "transfers_received",
            s.transfers_received,
            "State transfers received.",
        ),
        (
            "sessions_transferred",
            s.sessions_transferred,
            "Sessions received through state transfer.",
        ),
        ("fetches", s.fetches, "Fetches started."),
        ("handoffs", s.handoffs, "Sessions handed over by drain."),
        (
            "members",
            st.members().len() as u64,
            "Session-store members seen now.",
        ),
        ("sessions", s.sessions as u64, "Sessions held now."),
    ];
    for (name, v, help) in counters {
        let kind = if matches!(name, "members" | "sessions") {
            "gauge"
        } else {
            "counter"
        };
        metric(out, &format!("sessionrepl_store_{name}"), kind, help, v);
    }
    metric(
        out,
        "sessionrepl_store_ready",
        "gauge",
        "1 once the node serves requests (state transfer done).",
        st.is_ready() as u64,
    );
}

fn run_store(cfg: Config, o: &NodeOptions) -> Result<(), String> {
    let store = SessionStore::builder(cfg)
        .event_listener(|ev| match ev {
            SessionEvent::Ready { sessions } => say(&format!("store-ready sessions={sessions}")),
            SessionEvent::TransferFailed { reason } => {
                say(&format!("store-transfer-failed {reason:?}"))
            }
            _ => {}
        })
        .open()
        .map_err(|e| e.to_string())?;
    let store = Arc::new(store);
    say(&format!("ready addr={}", store.local_addr()));
    let s2 = store.clone();
    let m = start_metrics(
        o,
        Arc::new(move || {
            let mut s = String::new();
            channel_metrics(s2.channel(), &mut s);
            store_metrics(&s2, &mut s);
            s
        }),
    )?;
    let sig = wait_for_stop()?;
    say(&format!(
        "draining signal={sig} sessions={}",
        store.stats().sessions
    ));
    let drained = store.drain(o.drain_timeout);
    match &drained {
        Ok(()) => say(&format!("drained handoffs={}", store.stats().handoffs)),
        Err(e) => say(&format!("drain-failed {e}")),
    }
    drop(m);
    store.close();
    say("stopped");
    drained.map_err(|e| format!("drain did not finish within {:?}: {e}", o.drain_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn node_keys_and_library_keys_mix() {
        let (cfg, o, _) = parse_args(&args(&[
            "--set",
            "metricsPort=9100",
            "--set",
            "logLevel=info",
            "--set",
            "ackTimeout=250",
            "--store",
        ]))
        .unwrap();
        assert_eq!(o.metrics_port, 9100);
        assert_eq!(o.metrics_address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(o.log_level, Some(Level::Info));
        assert!(o.store);
        assert_eq!(cfg.ack_timeout, Duration::from_millis(250));
    }

    #[test]
    fn mistakes_are_refused_with_the_fix() {
        let e = parse_args(&args(&["--set", "mcastPort=45999"])).unwrap_err();
        assert!(
            e.contains("mcastPort") && e.contains("membershipType=multicast"),
            "{e}"
        );
        assert!(parse_args(&args(&["--set", "metricsPort=x"])).is_err());
        assert!(parse_args(&args(&["--set", "nodeMode=turbo"])).is_err());
        assert!(parse_args(&args(&["--bogus"])).is_err());
        assert!(parse_args(&args(&["--config", "/nonexistent/x"])).is_err());
        let e = parse_args(&args(&["--config", "/dev/zero"])).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }
}
